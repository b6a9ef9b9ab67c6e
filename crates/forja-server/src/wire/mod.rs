//! The HTTP API's JSON: request bodies read strictly into the server's own
//! types and converted by hand into control-plane and store types, and
//! response objects built field by field from them. Only this module (and
//! `infer_wire` for inference) knows these shapes, so renaming a
//! store field can never change the public API, and an unknown request
//! field is a 400 naming it.

pub mod admin;
pub mod conversations;
pub mod documents;
pub mod feedback;
pub mod jobs;
pub mod knowledge;
pub mod memory;
pub mod registry;

use crate::ApiError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// `{"object": "list", "data": [...], "has_more": …}`.
pub fn list(data: Vec<Value>, has_more: bool) -> Value {
    let first = data.first().and_then(|v| v.get("id")).cloned();
    let last = data.last().and_then(|v| v.get("id")).cloned();
    json!({ "object": "list", "data": data, "has_more": has_more, "first_id": first, "last_id": last })
}

/// A JSON body into `T`; serde's message (field, line, column) as a 400,
/// cut to one short line.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!("invalid JSON body: {}", forja_control::clip(&e.to_string(), 300)),
        param: None,
        code: "invalid_request",
    })
}

/// Like [`parse`], but an empty body is `T::default()`.
pub fn parse_opt<T: Default + DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(body)
}
