//! JSONL: one JSON object per line. Blank lines are skipped; a line that is
//! not UTF-8, not JSON or not an object is rejected with its line number.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::Value;

use super::fields::{origin, Mapper};
use super::{Item, Items};
use crate::{DataError, Loc, Rejected, Result};

pub(super) fn open(path: &str, mapper: Mapper, skip: u64) -> Result<Items> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(Box::new(Lines::new(path, BufReader::with_capacity(1 << 16, file), mapper, skip)))
}

/// JSONL items from any reader (also used by the fuzz targets).
pub fn items<R: Read + Send + 'static>(
    source: &str,
    reader: R,
    mapper: Mapper,
    skip: u64,
) -> impl Iterator<Item = Result<Item>> + Send {
    Lines::new(source, BufReader::new(reader), mapper, skip)
}

struct Lines<R> {
    source: Arc<str>,
    reader: R,
    mapper: Mapper,
    line: u64,
    to_skip: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(source: &str, reader: R, mapper: Mapper, skip: u64) -> Self {
        Lines { source: source.into(), reader, mapper, line: 0, to_skip: skip, buf: Vec::new() }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(DataError::io(&*self.source, e))),
            }
            self.line += 1;
            let mut bytes = &self.buf[..];
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.to_skip > 0 {
                self.to_skip -= 1;
                continue;
            }
            let o = origin(&self.source, Loc::Line(self.line));
            let reject =
                |reason: String| Some(Ok(Item::Rejected(Rejected { origin: o.clone(), reason })));
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    return reject(format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()))
                }
            };
            let obj = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(obj)) => obj,
                Ok(_) => return reject("not a JSON object".into()),
                Err(e) => return reject(format!("not JSON ({e})")),
            };
            return Some(Ok(self.mapper.item(&obj, o)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::InputSpec;

    fn run(input: &[u8], skip: u64) -> Vec<String> {
        let m = Mapper::new(&InputSpec::default());
        items("t.jsonl", std::io::Cursor::new(input.to_vec()), m, skip)
            .map(|i| match i.unwrap() {
                Item::Record(r) => format!("ok {} {}", r.origin, r.body.joined()),
                Item::Rejected(r) => format!("bad {} {}", r.origin, r.reason),
            })
            .collect()
    }

    #[test]
    fn reports_bad_lines_with_their_number_and_skips_blank_ones() {
        let input = b"\xEF\xBB\xBF{\"text\":\"a\"}\n\n{\"text\":\"b\xff\"}\nnot json\n[1]\n{\"text\":\"c\"}";
        assert_eq!(
            run(input, 0),
            [
                "ok t.jsonl:1 a",
                "bad t.jsonl:3 invalid UTF-8 at byte 10 of the line",
                "bad t.jsonl:4 not JSON (expected ident at line 1 column 2)",
                "bad t.jsonl:5 not a JSON object",
                "ok t.jsonl:6 c",
            ]
        );
        // Resuming after three items continues with the fourth, same line numbers.
        assert_eq!(run(input, 3), ["bad t.jsonl:5 not a JSON object", "ok t.jsonl:6 c"]);
        assert!(run(b"", 0).is_empty());
        assert!(run(b"\n \r\n", 0).is_empty());
    }
}
