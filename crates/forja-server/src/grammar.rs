//! `response_format` to a token filter: the wire's grammar kinds become
//! the engine's [`Grammar`], compiled with the serving tokenizer's
//! constraint compiler (llguidance). A bad schema, regex or Lark grammar
//! is a 400 naming `response_format`.

use crate::infer_wire::Format;
use crate::ApiError;
use forja_engine::{Grammar, TokenFilter};
use forja_serve::Serving;

/// The filter for `format`, or `None` for free text.
pub fn filter(sv: &Serving, format: &Format) -> Result<Option<Box<dyn TokenFilter>>, ApiError> {
    let g = match format {
        Format::Text => return Ok(None),
        Format::JsonObject => Grammar::JsonObject,
        Format::JsonSchema(s) => Grammar::JsonSchema(s.clone()),
        Format::Regex(r) => Grammar::Regex(r.clone()),
        Format::Lark(l) => Grammar::Lark(l.clone()),
    };
    Ok(Some(Box::new(sv.constraint(&g)?)))
}
