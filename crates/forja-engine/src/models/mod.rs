//! Model families. One file per family; each has a serde `Config`, private
//! blocks and a public model with `new(&Config, &Weights)` and forwards.

pub mod llama;
