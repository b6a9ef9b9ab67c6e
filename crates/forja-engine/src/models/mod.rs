//! Model families. One file per family; each has a serde `Config`, private
//! blocks and a public model with `new(&Config, &Weights)` (or a
//! `VarBuilder`, for inference-only encoders) and forwards.

pub mod bert;
pub mod config;
pub mod llama;
