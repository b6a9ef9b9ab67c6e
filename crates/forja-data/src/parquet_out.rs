//! Parquet shards, converted from the JSONL shards at the end of a run (a
//! Parquet file cannot be appended to, and the JSONL shards are what the
//! checkpoints protect). The schema is what `datasets` writes for the same
//! data: string columns and, for chats, `list<struct<...>>` in the standard
//! three-level LIST layout, snappy-compressed, 10k-row groups.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;

use crate::{DataError, OutputFormat, Result};

const ROW_GROUP: usize = 10_000;

/// The columns of one output format: top-level strings, then an optional list
/// of structs of strings.
fn layout(
    format: OutputFormat,
) -> (&'static [&'static str], Option<(&'static str, [&'static str; 2])>) {
    match format {
        OutputFormat::Messages => (&["id"], Some(("messages", ["content", "role"]))),
        OutputFormat::Sharegpt => (&["id"], Some(("conversations", ["from", "value"]))),
        OutputFormat::Alpaca => (&["id", "input", "instruction", "output", "system"], None),
        OutputFormat::Text => (&["id", "text"], None),
    }
}

fn schema(format: OutputFormat) -> String {
    let (scalars, list) = layout(format);
    let mut s = String::from("message schema {\n");
    for name in scalars {
        s.push_str(&format!("  optional binary {name} (STRING);\n"));
    }
    if let Some((name, [a, b])) = list {
        s.push_str(&format!(
            "  optional group {name} (LIST) {{\n    repeated group list {{\n      optional group element {{\n        optional binary {a} (STRING);\n        optional binary {b} (STRING);\n      }}\n    }}\n  }}\n"
        ));
    }
    s.push('}');
    s
}

/// Converts each `data/*.jsonl` shard to `data/*.parquet` (removing the
/// JSONL); returns the new relative paths.
pub(crate) fn convert(out: &Path, shards: &[String], format: OutputFormat) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for rel in shards {
        let src = out.join(rel);
        let dest_rel = rel.trim_end_matches(".jsonl").to_string() + ".parquet";
        let dest = out.join(&dest_rel);
        write_shard(&src, &dest, format)
            .map_err(|e| DataError::Parquet { path: dest.clone(), message: e })?;
        std::fs::remove_file(&src).map_err(|e| DataError::io(&src, e))?;
        done.push(dest_rel);
    }
    Ok(done)
}

/// Column data of one leaf: values, definition levels, repetition levels.
#[derive(Default)]
struct Leaf {
    values: Vec<ByteArray>,
    defs: Vec<i16>,
    reps: Vec<i16>,
}

fn write_shard(src: &Path, dest: &Path, format: OutputFormat) -> std::result::Result<(), String> {
    let text = std::fs::read_to_string(src).map_err(|e| e.to_string())?;
    let schema = Arc::new(parse_message_type(&schema(format)).map_err(|e| e.to_string())?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let tmp = dest.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|e| e.to_string())?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(|e| e.to_string())?;
    let (scalars, list) = layout(format);
    let lines: Vec<&str> = text.lines().collect();
    for group in lines.chunks(ROW_GROUP) {
        let mut leaves: Vec<Leaf> = (0..scalars.len() + if list.is_some() { 2 } else { 0 })
            .map(|_| Leaf::default())
            .collect();
        for line in group {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}", src.display()))?;
            for (i, name) in scalars.iter().enumerate() {
                match v.get(*name).and_then(Value::as_str) {
                    Some(s) => {
                        leaves[i].values.push(ByteArray::from(s));
                        leaves[i].defs.push(1);
                    }
                    None => leaves[i].defs.push(0),
                }
            }
            if let Some((name, fields)) = list {
                let items = v.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                for (j, field) in fields.iter().enumerate() {
                    let leaf = &mut leaves[scalars.len() + j];
                    if items.is_empty() {
                        leaf.defs.push(1);
                        leaf.reps.push(0);
                    }
                    for (k, item) in items.iter().enumerate() {
                        leaf.reps.push(if k == 0 { 0 } else { 1 });
                        match item.get(*field).and_then(Value::as_str) {
                            Some(s) => {
                                leaf.values.push(ByteArray::from(s));
                                leaf.defs.push(4);
                            }
                            None => leaf.defs.push(3),
                        }
                    }
                }
            }
        }
        let mut rg = writer.next_row_group().map_err(|e| e.to_string())?;
        let mut i = 0;
        while let Some(mut col) = rg.next_column().map_err(|e| e.to_string())? {
            let leaf = &leaves[i];
            let reps = (i >= scalars.len()).then_some(leaf.reps.as_slice());
            match col.untyped() {
                ColumnWriter::ByteArrayColumnWriter(w) => {
                    w.write_batch(&leaf.values, Some(&leaf.defs), reps)
                        .map_err(|e| e.to_string())?;
                }
                _ => return Err("unexpected column type".into()),
            }
            col.close().map_err(|e| e.to_string())?;
            i += 1;
        }
        rg.close().map_err(|e| e.to_string())?;
    }
    let file = writer.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, dest).map_err(|e| e.to_string())
}

/// Rows of a Parquet file (for the manifest).
pub(crate) fn rows(path: &Path) -> Option<u64> {
    let f = File::open(path).ok()?;
    let r = SerializedFileReader::new(f).ok()?;
    Some(r.metadata().file_metadata().num_rows() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{self, InputSpec, Item};

    #[test]
    fn round_trips_through_our_reader() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("train-00000.jsonl");
        let lines = [
            r#"{"id":"a","messages":[{"content":"hola","role":"user"},{"content":"¿sí?","role":"assistant"}]}"#,
            r#"{"id":"b","messages":[{"content":"x","role":"user"}]}"#,
        ];
        std::fs::write(&src, lines.join("\n") + "\n").unwrap();
        let done =
            convert(dir.path(), &["train-00000.jsonl".into()], OutputFormat::Messages).unwrap();
        let path = dir.path().join(&done[0]);
        assert_eq!(rows(&path), Some(2));
        let spec = InputSpec { path: path.to_string_lossy().into(), ..Default::default() };
        let got: Vec<String> = read::open(&spec, 0)
            .unwrap()
            .map(|i| match i.unwrap() {
                Item::Record(r) => format!("{} {}", r.id, r.body.joined()),
                Item::Rejected(r) => panic!("{}", r.reason),
            })
            .collect();
        assert_eq!(got, ["a hola\n¿sí?", "b x"]);
    }
}
