//! Reads a DOCX package into [`Document`] blocks: paragraphs in reading
//! order with their chunk ids, headings (by style name or outline level),
//! list items, table cells, tracked changes accepted (deleted text kept as
//! context). Comments, footnotes, field codes and drawings are left out.
//!
//! Untrusted input: the zip is opened with entry-count and per-part size
//! limits (a part is read through `take`, so a lying header cannot inflate
//! past the limit), encrypted packages and legacy `.doc` files are named as
//! such, and XML with a DOCTYPE or an undefined entity is refused (no entity
//! is ever expanded).

use super::chunk_id_of_bookmark;
use crate::{Block, BlockKind, DocsError, Document};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::HashMap;
use std::io::{Cursor, Read};

/// Bounds on what a document may make the reader do.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest input file, compressed.
    pub max_file_bytes: u64,
    /// Most zip entries.
    pub max_entries: usize,
    /// Largest uncompressed XML part that is read.
    pub max_part_bytes: u64,
    /// Most blocks in the document.
    pub max_blocks: usize,
}

impl Default for ReadLimits {
    /// 64 MiB file, 10,000 entries, 64 MiB per part, 200,000 blocks: far
    /// above a 1,000-page minutes document (about 5 MiB of XML).
    fn default() -> Self {
        ReadLimits {
            max_file_bytes: 64 << 20,
            max_entries: 10_000,
            max_part_bytes: 64 << 20,
            max_blocks: 200_000,
        }
    }
}

/// OLE compound file signature: password-protected OOXML and legacy `.doc`.
const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Reads the blocks and forja's properties of a DOCX file.
pub fn read_docx(bytes: &[u8], limits: &ReadLimits) -> Result<Document, DocsError> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(DocsError::TooLarge(format!(
            "{} bytes, over the limit of {} bytes",
            bytes.len(),
            limits.max_file_bytes
        )));
    }
    if bytes.starts_with(&OLE_MAGIC) {
        return Err(DocsError::Encrypted("an OLE compound file".into()));
    }
    if !bytes.starts_with(b"PK") {
        return Err(DocsError::NotDocx("not a zip archive".into()));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| DocsError::NotDocx(format!("unreadable zip: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(DocsError::TooLarge(format!(
            "{} zip entries, over the limit of {}",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut package = Package { zip: &mut zip, limits };
    if let Some(mime) = package.part("mimetype")? {
        return Err(DocsError::NotDocx(format!("an OpenDocument file ({})", mime.trim())));
    }
    let main = match package.part("_rels/.rels")? {
        Some(rels) => main_part(&rels)?.unwrap_or_else(|| "word/document.xml".into()),
        None => "word/document.xml".into(),
    };
    let Some(document) = package.part(&main)? else {
        return Err(DocsError::NotDocx(format!("no {main} part")));
    };
    let dir = main.rsplit_once('/').map_or("", |(d, _)| d);
    let styles = match package.part(&format!("{dir}/styles.xml"))? {
        Some(x) => parse_styles(&x)?,
        None => HashMap::new(),
    };
    let blocks = parse_document(&main, &document, &styles, limits)?;
    let document_id = match package.part("docProps/custom.xml")? {
        Some(x) => custom_property(&x, "forja_document")?,
        None => None,
    };
    let title = match package.part("docProps/core.xml")? {
        Some(x) => element_text("docProps/core.xml", &x, "title")?,
        None => None,
    };
    Ok(Document { blocks, document_id, title })
}

struct Package<'a, 'b> {
    zip: &'a mut zip::ZipArchive<Cursor<&'b [u8]>>,
    limits: &'a ReadLimits,
}

impl Package<'_, '_> {
    /// The UTF-8 text of a part, `None` when absent.
    fn part(&mut self, name: &str) -> Result<Option<String>, DocsError> {
        let name = name.trim_start_matches('/');
        let file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(zip::result::ZipError::UnsupportedArchive(m))
                if m.contains("ncrypt") || m.contains("assword") =>
            {
                return Err(DocsError::Encrypted(format!("{name}: {m}")))
            }
            Err(e) => return Err(DocsError::NotDocx(format!("{name}: {e}"))),
        };
        if file.encrypted() {
            return Err(DocsError::Encrypted(format!("{name} is encrypted")));
        }
        let max = self.limits.max_part_bytes;
        if file.size() > max {
            return Err(DocsError::TooLarge(format!(
                "{name} unpacks to {} bytes, over the limit of {max}",
                file.size()
            )));
        }
        let mut buf = Vec::with_capacity(file.size() as usize);
        file.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| DocsError::NotDocx(format!("{name}: cannot decompress: {e}")))?;
        if buf.len() as u64 > max {
            return Err(DocsError::TooLarge(format!("{name} unpacks to more than {max} bytes")));
        }
        String::from_utf8(buf).map(Some).map_err(|_| {
            DocsError::NotDocx(format!(
                "{name} is not UTF-8 (re-save the document from Word or LibreOffice)"
            ))
        })
    }
}

fn xml_err(part: &str, reader: &Reader<&[u8]>, e: impl std::fmt::Display) -> DocsError {
    DocsError::Xml { part: part.into(), position: reader.buffer_position(), message: e.to_string() }
}

/// Pulls events, refusing DOCTYPEs (no entity expansion, ever).
fn next<'a>(part: &str, reader: &mut Reader<&'a [u8]>) -> Result<Event<'a>, DocsError> {
    match reader.read_event() {
        Ok(Event::DocType(_)) => {
            Err(xml_err(part, reader, "a DOCTYPE is not allowed in a DOCX part"))
        }
        Ok(e) => Ok(e),
        Err(e) => Err(xml_err(part, reader, e)),
    }
}

fn attr(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes().with_checks(false).flatten().find_map(|a| {
        (a.key.local_name().as_ref() == local).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_default()
        })
    })
}

/// The text an entity reference stands for: the five predefined ones and
/// character references; anything else is an error.
fn entity(
    part: &str,
    reader: &Reader<&[u8]>,
    r: &quick_xml::events::BytesRef<'_>,
) -> Result<String, DocsError> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| xml_err(part, reader, e))? {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_predefined_entity(r)
        .map(str::to_string)
        .ok_or_else(|| xml_err(part, reader, format!("undefined entity &{};", &**r)))
}

/// The target of the package's officeDocument relationship.
fn main_part(rels: &str) -> Result<Option<String>, DocsError> {
    let part = "_rels/.rels";
    let mut reader = Reader::from_str(rels);
    loop {
        match next(part, &mut reader)? {
            Event::Start(e) | Event::Empty(e)
                if e.local_name().as_ref() == "Relationship"
                    && attr(&e, "Type").is_some_and(|t| t.ends_with("/officeDocument")) =>
            {
                return Ok(attr(&e, "Target").map(|t| t.trim_start_matches('/').to_string()));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// What a paragraph style means to the reader.
#[derive(Debug, Clone, Default)]
struct Style {
    heading: Option<u8>,
    list: bool,
    based_on: Option<String>,
}

fn parse_styles(xml: &str) -> Result<HashMap<String, Style>, DocsError> {
    let part = "word/styles.xml";
    let mut reader = Reader::from_str(xml);
    let mut styles = HashMap::new();
    let mut current: Option<(String, Style)> = None;
    loop {
        match next(part, &mut reader)? {
            Event::Start(e) if e.local_name().as_ref() == "style" => {
                current = attr(&e, "styleId").map(|id| (id, Style::default()));
            }
            Event::Start(e) | Event::Empty(e) => {
                let Some((_, style)) = current.as_mut() else { continue };
                match e.local_name().as_ref() {
                    "name" => {
                        let name = attr(&e, "val").unwrap_or_default().to_ascii_lowercase();
                        if name == "title" {
                            style.heading = Some(0);
                        } else if let Some(n) =
                            name.strip_prefix("heading ").and_then(|n| n.parse::<u8>().ok())
                        {
                            style.heading = Some(n.min(9));
                        } else if name.starts_with("list bullet") || name.starts_with("list number")
                        {
                            style.list = true;
                        }
                    }
                    "outlineLvl" if style.heading.is_none() => {
                        style.heading = attr(&e, "val")
                            .and_then(|v| v.parse::<u8>().ok())
                            .filter(|&l| l < 9)
                            .map(|l| l + 1);
                    }
                    "numId" => style.list |= attr(&e, "val").is_some_and(|v| v != "0"),
                    "basedOn" => style.based_on = attr(&e, "val"),
                    _ => {}
                }
            }
            Event::End(e) if e.local_name().as_ref() == "style" => {
                if let Some((id, style)) = current.take() {
                    styles.insert(id, style);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // Inherit heading/list from `basedOn` chains (bounded: styles may loop).
    let snapshot = styles.clone();
    for style in styles.values_mut() {
        let mut parent = style.based_on.clone();
        for _ in 0..16 {
            let Some(p) = parent.as_ref().and_then(|p| snapshot.get(p)) else { break };
            if style.heading.is_none() {
                style.heading = p.heading;
            }
            style.list |= p.list;
            parent = p.based_on.clone();
        }
    }
    Ok(styles)
}

/// A paragraph being read.
#[derive(Default)]
struct Para {
    text: String,
    rejected: String,
    chunk_ids: Vec<String>,
    style: Option<String>,
    outline: Option<u8>,
    list_level: Option<u8>,
}

/// Elements whose whole content is skipped: drawings and text boxes (their
/// paragraphs are not part of the flow), alternate renderings, field codes,
/// comment and note references, the paragraph mark's run properties.
fn skipped(local: &str) -> bool {
    matches!(
        local,
        "drawing"
            | "pict"
            | "object"
            | "AlternateContent"
            | "instrText"
            | "delInstrText"
            | "rPr"
            | "sectPr"
            | "fldData"
    )
}

fn parse_document(
    part: &str,
    xml: &str,
    styles: &HashMap<String, Style>,
    limits: &ReadLimits,
) -> Result<Vec<Block>, DocsError> {
    let mut reader = Reader::from_str(xml);
    let mut blocks = Vec::new();
    let mut para: Option<Para> = None;
    let mut pending_ids: Vec<String> = Vec::new();
    let mut deleted = 0usize; // depth inside w:del / w:moveFrom
    let mut in_text = false; // inside w:t / w:delText
    let mut in_ppr = false;
    // Tables: (index, row, col) of each open table, innermost last.
    let mut tables: Vec<(u32, u32, u32)> = Vec::new();
    let mut next_table = 0u32;
    loop {
        let event = next(part, &mut reader)?;
        match event {
            Event::Start(e) => {
                let local = e.local_name();
                let local = local.as_ref();
                if skipped(local) {
                    reader.read_to_end(e.name()).map_err(|err| xml_err(part, &reader, err))?;
                    continue;
                }
                match local {
                    "p" => {
                        let mut p = Para::default();
                        p.chunk_ids.append(&mut pending_ids);
                        para = Some(p);
                    }
                    "pPr" => in_ppr = true,
                    "t" | "delText" => in_text = true,
                    "del" | "moveFrom" => deleted += 1,
                    "tbl" => {
                        tables.push((next_table, 0, 0));
                        next_table += 1;
                    }
                    "tr" => {
                        if let Some(t) = tables.last_mut() {
                            t.2 = 0;
                        }
                    }
                    _ => start_or_empty(&e, &mut para, &mut pending_ids, in_ppr, deleted),
                }
            }
            Event::Empty(e) => start_or_empty(&e, &mut para, &mut pending_ids, in_ppr, deleted),
            Event::Text(t) if in_text => {
                if let Some(p) = para.as_mut() {
                    let s = t.xml10_content();
                    if deleted > 0 {
                        p.rejected.push_str(&s)
                    } else {
                        p.text.push_str(&s)
                    }
                }
            }
            Event::GeneralRef(r) if in_text => {
                let s = entity(part, &reader, &r)?;
                if let Some(p) = para.as_mut() {
                    if deleted > 0 {
                        p.rejected.push_str(&s)
                    } else {
                        p.text.push_str(&s)
                    }
                }
            }
            Event::GeneralRef(r) => {
                entity(part, &reader, &r)?;
            }
            Event::End(e) => match e.local_name().as_ref() {
                "p" => {
                    if let Some(p) = para.take() {
                        let kind = block_kind(&p, styles, tables.last());
                        let text = crate::text::squash(&p.text);
                        if !text.is_empty() {
                            if blocks.len() >= limits.max_blocks {
                                return Err(DocsError::TooLarge(format!(
                                    "more than {} paragraphs",
                                    limits.max_blocks
                                )));
                            }
                            blocks.push(Block {
                                kind,
                                text,
                                chunk_ids: dedup(p.chunk_ids),
                                rejected: crate::text::squash(&p.rejected),
                            });
                        }
                    }
                }
                "pPr" => in_ppr = false,
                "t" | "delText" => in_text = false,
                "del" | "moveFrom" => deleted = deleted.saturating_sub(1),
                "tbl" => {
                    tables.pop();
                }
                "tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.1 += 1;
                    }
                }
                "tc" => {
                    if let Some(t) = tables.last_mut() {
                        t.2 += 1;
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(blocks)
}

/// Empty elements (and starts of containers) that matter: paragraph
/// properties, bookmarks, tabs and breaks.
fn start_or_empty(
    e: &BytesStart<'_>,
    para: &mut Option<Para>,
    pending: &mut Vec<String>,
    in_ppr: bool,
    deleted: usize,
) {
    let local = e.local_name();
    match local.as_ref() {
        "bookmarkStart" => {
            if let Some(id) = attr(e, "name").as_deref().and_then(chunk_id_of_bookmark) {
                match para.as_mut() {
                    Some(p) => p.chunk_ids.push(id.to_string()),
                    None => pending.push(id.to_string()),
                }
            }
        }
        _ => {
            let Some(p) = para.as_mut() else { return };
            match local.as_ref() {
                "pStyle" if in_ppr => p.style = attr(e, "val"),
                "outlineLvl" if in_ppr => {
                    p.outline = attr(e, "val")
                        .and_then(|v| v.parse::<u8>().ok())
                        .filter(|&l| l < 9)
                        .map(|l| l + 1)
                }
                "ilvl" if in_ppr => {
                    p.list_level = Some(attr(e, "val").and_then(|v| v.parse().ok()).unwrap_or(0))
                }
                "numId" if in_ppr => {
                    if attr(e, "val").is_some_and(|v| v != "0") {
                        p.list_level.get_or_insert(0);
                    } else {
                        p.list_level = None;
                    }
                }
                "tab" | "br" | "cr" if !in_ppr => {
                    if deleted > 0 {
                        p.rejected.push(' ')
                    } else {
                        p.text.push(' ')
                    }
                }
                "noBreakHyphen" if deleted == 0 => p.text.push('-'),
                _ => {}
            }
        }
    }
}

fn block_kind(
    p: &Para,
    styles: &HashMap<String, Style>,
    table: Option<&(u32, u32, u32)>,
) -> BlockKind {
    if let Some(&(table, row, col)) = table {
        return BlockKind::TableCell { table, row, col };
    }
    let style = p.style.as_ref().and_then(|s| styles.get(s));
    if let Some(level) = p.outline.or(style.and_then(|s| s.heading)) {
        return BlockKind::Heading { level };
    }
    match (p.list_level, style.is_some_and(|s| s.list)) {
        (Some(level), _) => BlockKind::ListItem { level },
        (None, true) => BlockKind::ListItem { level: 0 },
        _ => BlockKind::Paragraph,
    }
}

fn dedup(mut ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// The text of the `name` custom property.
fn custom_property(xml: &str, name: &str) -> Result<Option<String>, DocsError> {
    element_text_where(xml, "docProps/custom.xml", "property", |e| {
        attr(e, "name").as_deref() == Some(name)
    })
}

/// The text of the first element named `local`.
fn element_text(part: &str, xml: &str, local: &str) -> Result<Option<String>, DocsError> {
    element_text_where(xml, part, local, |_| true)
}

/// The whitespace-squashed text of the first element named `local` that
/// `wanted` accepts (`None` when there is none or it is empty).
fn element_text_where(
    xml: &str,
    part: &str,
    local: &str,
    wanted: impl Fn(&BytesStart<'_>) -> bool,
) -> Result<Option<String>, DocsError> {
    let mut reader = Reader::from_str(xml);
    let mut inside = false;
    let mut value = String::new();
    loop {
        match next(part, &mut reader)? {
            Event::Start(e) if e.local_name().as_ref() == local => inside = wanted(&e),
            Event::Text(t) if inside => value.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let s = entity(part, &reader, &r)?;
                if inside {
                    value.push_str(&s);
                }
            }
            Event::End(e) if e.local_name().as_ref() == local && inside => {
                let v = crate::text::squash(&value);
                return Ok((!v.is_empty()).then_some(v));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}
