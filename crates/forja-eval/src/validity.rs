//! Structured-output validity: well-formed XML, JSON that parses, JSON
//! that conforms to a JSON Schema.

use serde::{Deserialize, Serialize};

/// What an example's output must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Free text: always valid.
    #[default]
    Text,
    /// A JSON value (checked against the example's schema when it has one).
    Json,
    /// A well-formed XML document with one root element.
    Xml,
}

impl Format {
    /// Whether outputs of this format are checked.
    pub fn is_structured(self) -> bool {
        self != Format::Text
    }
}

/// Compiles a JSON Schema, or says why it is not one.
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// `Ok` when `output` is valid for `format` (and `schema`), else why not.
pub fn check(
    output: &str,
    format: Format,
    schema: Option<&jsonschema::Validator>,
) -> Result<(), String> {
    match format {
        Format::Text => Ok(()),
        Format::Json => {
            let v: serde_json::Value =
                serde_json::from_str(output.trim()).map_err(|e| format!("not JSON: {e}"))?;
            match schema {
                Some(s) => s.validate(&v).map_err(|e| {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/".to_string() } else { at };
                    format!("does not match the schema at {at}: {e}")
                }),
                None => Ok(()),
            }
        }
        Format::Xml => roxmltree::Document::parse(output.trim())
            .map(|_| ())
            .map_err(|e| format!("not well-formed XML: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cases() {
        let schema = compile_schema(&json!({
            "type": "object",
            "properties": {"votos": {"type": "integer"}},
            "required": ["votos"]
        }))
        .unwrap();
        let table: &[(&str, Format, bool)] = &[
            ("anything", Format::Text, true),
            (r#"{"a": 1}"#, Format::Json, true),
            (" [1, 2] ", Format::Json, true),
            ("{a: 1}", Format::Json, false),
            ("<acta><punto n=\"1\">x</punto></acta>", Format::Xml, true),
            ("<acta><punto>x</acta>", Format::Xml, false),
            ("<a/><b/>", Format::Xml, false),
            ("texto", Format::Xml, false),
        ];
        for (out, f, ok) in table {
            assert_eq!(check(out, *f, None).is_ok(), *ok, "{out}");
        }
        assert!(check(r#"{"votos": 12}"#, Format::Json, Some(&schema)).is_ok());
        let e = check(r#"{"votos": "doce"}"#, Format::Json, Some(&schema)).unwrap_err();
        assert!(e.contains("/votos"), "{e}");
        assert!(compile_schema(&json!({"type": 5})).is_err());
    }
}
