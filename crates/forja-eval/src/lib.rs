//! forja's evaluation: an adapter that makes things worse must never reach
//! users.
//!
//! - [`golden`]: golden sets and prediction files (JSONL), and the prompt
//!   key that keeps golden prompts out of training data.
//! - [`metrics`]: WER and CER as `jiwer` computes them, exact match, token F1.
//! - [`validity`]: well-formed XML, JSON, JSON Schema conformance.
//! - [`report`]: per-example results and the metrics they sum up to.
//! - [`run`]: evaluating base or base + adapter with the engine (greedy,
//!   batched), with reference loss and MiniLM similarity.
//! - [`probe`]: the general-capability probe (multiple choice scored by
//!   log-likelihood) that measures forgetting.
//! - [`gate`]: a tenant's promotion policy and the decision it gives.
//!
//! Knows nothing of HTTP or SQL; the control plane stores what it returns.

mod error;
pub mod gate;
pub mod golden;
pub mod metrics;
pub mod plot;
pub mod probe;
pub mod report;
pub mod run;
pub mod validity;

pub use error::{EvalError, Result};
pub use gate::{decide, AuditPolicy, Decision, GatePolicy, Outcome};
pub use golden::{parse_golden, parse_predictions, GoldenExample, GoldenSet, Prediction};
pub use metrics::Normalization;
pub use report::{EvalReport, ExampleResult, Metric};
pub use run::{evaluate, rescore, score_predictions, EvalOptions};
pub use validity::Format;
