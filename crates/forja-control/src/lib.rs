//! forja's control plane: what turns captured feedback into trained
//! adapters, safely and exactly once.
//!
//! - [`feedback`]: posted examples are curated (shape, normalisation,
//!   quality, PII) with forja-data before they count toward a trigger.
//! - [`Control`]: files, jobs, learning status, and the tick that
//!   validates jobs, requeues lost leases, fires schedules and thresholds
//!   held by a quota, and delivers webhooks.
//! - [`worker`]: the loop that leases a job, trains it with the engine,
//!   heartbeats, uploads checkpoints and the adapter; it runs in-process
//!   ([`worker::LocalLink`]) or remotely over HTTP; after training it
//!   evaluates every kept checkpoint and the current model on the tenant's
//!   golden set ([`evaluation`]) and keeps the best checkpoint.
//! - [`registry`]: golden sets, model versions with lineage, the gate,
//!   promotion and rollback; [`events`] publishes what changed.
//!
//! State lives in a [`forja_store::Store`]; this crate knows nothing of
//! HTTP routing or SQL.

mod control;
pub mod dataset;
mod error;
pub mod evaluation;
pub mod events;
pub mod feedback;
pub mod hyper;
pub mod keys;
pub mod registry;
pub mod schedule;
pub mod webhook;
pub mod worker;

pub use control::{Control, ControlConfig, JobRequest, LearningStatus, RunningJob};
pub use error::{ControlError, Result};
pub use events::{Event, EventBus, LocalBus};
pub use registry::Lineage;

/// The git commit this forja was built from (`unknown` outside a checkout).
pub const CODE_COMMIT: &str = env!("FORJA_COMMIT");
