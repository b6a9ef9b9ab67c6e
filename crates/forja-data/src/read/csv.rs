//! CSV with a header row: each row becomes a JSON object of string columns and
//! goes through the same field mapping as JSONL.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::fields::{origin, Mapper};
use super::{Item, Items};
use crate::{DataError, Loc, Rejected, Result};

pub(super) fn open(path: &str, mapper: Mapper, skip: u64) -> Result<Items> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(Box::new(items(path, file, mapper, skip)))
}

/// CSV items from any reader (also used by the fuzz targets).
pub fn items<R: Read + Send + 'static>(
    source: &str,
    reader: R,
    mapper: Mapper,
    skip: u64,
) -> impl Iterator<Item = Result<Item>> + Send {
    let source: Arc<str> = source.into();
    let mut rdr = ::csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header: std::result::Result<Vec<String>, String> = match rdr.byte_headers() {
        Ok(h) => h
            .iter()
            .enumerate()
            .map(|(i, f)| {
                String::from_utf8(f.to_vec())
                    .map_err(|_| format!("header column {} is not UTF-8", i + 1))
            })
            .collect(),
        Err(e) => Err(format!("unreadable header ({e})")),
    };
    let mut records = rdr.into_byte_records();
    let mut header_error = header.as_ref().err().cloned();
    let header = header.unwrap_or_default();
    let mut skipped = 0;
    std::iter::from_fn(move || {
        if let Some(reason) = header_error.take() {
            return Some(Ok(Item::Rejected(Rejected {
                origin: origin(&source, Loc::Line(1)),
                reason,
            })));
        }
        if header.is_empty() {
            return None;
        }
        loop {
            let row = records.next()?;
            let line = row.as_ref().ok().and_then(|r| r.position()).map_or(0, |p| p.line());
            if skipped < skip {
                skipped += 1;
                continue;
            }
            let o = origin(&source, Loc::Line(line));
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let o = origin(&source, Loc::Line(line));
                    return Some(Ok(Item::Rejected(Rejected {
                        origin: o,
                        reason: format!("bad CSV row ({e})"),
                    })));
                }
            };
            if row.len() != header.len() {
                let reason = format!("{} columns, the header has {}", row.len(), header.len());
                return Some(Ok(Item::Rejected(Rejected { origin: o, reason })));
            }
            let mut obj = Map::new();
            for (name, field) in header.iter().zip(row.iter()) {
                match std::str::from_utf8(field) {
                    Ok(v) => obj.insert(name.clone(), Value::String(v.to_string())),
                    Err(_) => {
                        let reason = format!("column `{name}` is not valid UTF-8");
                        return Some(Ok(Item::Rejected(Rejected { origin: o, reason })));
                    }
                };
            }
            return Some(Ok(mapper.item(&obj, o)));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::InputSpec;

    fn run(input: &[u8], skip: u64) -> Vec<String> {
        let m = Mapper::new(&InputSpec::default());
        items("t.csv", std::io::Cursor::new(input.to_vec()), m, skip)
            .map(|i| match i.unwrap() {
                Item::Record(r) => {
                    format!("ok {} {} {:?}", r.origin, r.body.joined(), r.meta.license)
                }
                Item::Rejected(r) => format!("bad {} {}", r.origin, r.reason),
            })
            .collect()
    }

    #[test]
    fn rows_map_by_header_and_bad_rows_are_located() {
        let input = b"id,text,license\n1,hola,MIT\n2,\"multi\nline\",\n3,x\n4,b\xffd,MIT\n5,fin,Apache-2.0\n";
        assert_eq!(
            run(input, 0),
            [
                "ok t.csv:2 hola Some(\"MIT\")",
                "ok t.csv:3 multi\nline None",
                "bad t.csv:5 2 columns, the header has 3",
                "bad t.csv:6 column `text` is not valid UTF-8",
                "ok t.csv:7 fin Some(\"Apache-2.0\")",
            ]
        );
        assert_eq!(run(input, 4), ["ok t.csv:7 fin Some(\"Apache-2.0\")"]);
        assert!(run(b"", 0).is_empty());
        assert_eq!(run(b"a,b\n1,2\n", 0), ["bad t.csv:2 no text: expected field `text`, `content`, `code` (set text_field, messages_field or prompt_field/completion_field in the [[input]])"]);
    }
}
