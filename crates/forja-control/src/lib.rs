//! forja's control plane: what turns captured feedback into trained
//! adapters, safely and exactly once.
//!
//! - [`feedback`]: posted examples are curated (shape, normalisation,
//!   quality, PII) with forja-data before they count toward a trigger.
//! - [`Control`]: files, jobs, learning status, and the tick that
//!   validates jobs, requeues lost leases, fires schedules and thresholds
//!   held by a quota, and delivers webhooks.
//! - [`worker`]: the loop that leases a job, trains it with the engine,
//!   heartbeats, uploads checkpoints and the adapter; it reaches the
//!   control plane through a [`link::Link`], in-process
//!   ([`link::LocalLink`]) or remotely over HTTP; after training it
//!   evaluates every kept checkpoint and the current model on the tenant's
//!   golden set ([`evaluation`]) and keeps the best checkpoint.
//! - [`registry`]: golden sets, model versions with lineage, the gate
//!   (which re-scores the worker's predictions itself), promotion,
//!   rollback and demotion; what changed is published on the store's
//!   [`forja_store::EventBus`].
//! - [`governance`]: auditors' signed votes on versions that passed the
//!   gate, the quorum that promotes or rejects them, deadlines.
//! - [`hub`]: a federation hub: nodes join and are approved, upload
//!   deltas in resumable chunks; deltas are verified and validated, and a
//!   round with enough nodes is aggregated and published, signed.
//! - [`documents`]: corrected documents become dictionary entries and
//!   training pairs (forja-docs diffs them), with lineage.
//! - [`webhook`]: signed deliveries on their own task, with a concurrency
//!   limit and an optional guard against private addresses.
//!
//! State lives in a [`forja_store::Store`]; this crate knows nothing of
//! HTTP routing or SQL.

pub mod continual;
mod control;
pub mod dataset;
pub mod documents;
mod error;
pub mod evaluation;
pub mod feedback;
pub mod governance;
pub mod hub;
pub mod hyper;
pub mod keys;
pub mod knowledge;
pub mod link;
pub mod live;
pub mod memory;
pub mod modes;
pub mod redteam;
pub mod registry;
pub mod replay;
pub mod schedule;
pub mod tasks;
pub mod trl;
pub mod webhook;
pub mod worker;

pub use control::{Control, ControlConfig, JobRequest, LearningStatus, ModelNames, RunningJob};
pub use error::{ControlError, Result};
pub use registry::Lineage;

/// `s` cut to `max` characters (with `…`): user input echoed in an error
/// message never makes the message huge.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The git commit this forja was built from (`unknown` outside a checkout).
pub const CODE_COMMIT: &str = env!("FORJA_COMMIT");
