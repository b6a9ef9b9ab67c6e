//! Writes blocks as a minimal, valid DOCX package: document, styles,
//! numbering (bullets), core and custom properties. Every block with chunk
//! ids gets one hidden bookmark per id around its text.

use super::{valid_chunk_id, CHUNK_BOOKMARK_PREFIX};
use crate::{Block, BlockKind, DocsError};
use quick_xml::escape::escape;
use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use zip::write::SimpleFileOptions;

/// Document-level properties of a draft.
#[derive(Debug, Clone, Default)]
pub struct DraftMeta<'a> {
    /// `dc:title` in the core properties.
    pub title: Option<&'a str>,
    /// Written as the `forja_document` custom property, so an uploaded final
    /// version names the draft it came from.
    pub document_id: Option<&'a str>,
}

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

/// The DOCX bytes of `blocks`. Headings, paragraphs and list items are
/// written; table cells are refused (the writer has no tables).
pub fn write_docx(blocks: &[Block], meta: &DraftMeta<'_>) -> Result<Vec<u8>, DocsError> {
    let document = document_xml(blocks)?;
    if let Some(id) = meta.document_id {
        if id.is_empty() || id.len() > 100 || id.chars().any(char::is_control) {
            return Err(DocsError::Invalid(format!(
                "document id {id:?}: use 1 to 100 printable characters"
            )));
        }
    }
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let parts: [(&str, String); 8] = [
        ("[Content_Types].xml", CONTENT_TYPES.to_string()),
        ("_rels/.rels", PACKAGE_RELS.to_string()),
        ("word/_rels/document.xml.rels", DOCUMENT_RELS.to_string()),
        ("word/document.xml", document),
        ("word/styles.xml", STYLES.to_string()),
        ("word/numbering.xml", NUMBERING.to_string()),
        ("docProps/core.xml", core_xml(meta.title)),
        ("docProps/custom.xml", custom_xml(meta.document_id)),
    ];
    for (name, body) in parts {
        zip.start_file(name, opts).map_err(|e| DocsError::Write(e.to_string()))?;
        zip.write_all(body.as_bytes()).map_err(|e| DocsError::Write(e.to_string()))?;
    }
    let out = zip.finish().map_err(|e| DocsError::Write(e.to_string()))?;
    Ok(out.into_inner())
}

fn document_xml(blocks: &[Block]) -> Result<String, DocsError> {
    let mut x = String::with_capacity(256 + blocks.len() * 200);
    x.push_str(XML_DECL);
    let _ = write!(x, r#"<w:document xmlns:w="{W_NS}"><w:body>"#);
    let mut bookmark = 0usize;
    for (i, b) in blocks.iter().enumerate() {
        let ppr = match b.kind {
            BlockKind::Paragraph => String::new(),
            BlockKind::Heading { level: 0 } => r#"<w:pPr><w:pStyle w:val="Title"/></w:pPr>"#.into(),
            BlockKind::Heading { level } => {
                format!(r#"<w:pPr><w:pStyle w:val="Heading{}"/></w:pPr>"#, level.min(9))
            }
            BlockKind::ListItem { level } => format!(
                r#"<w:pPr><w:pStyle w:val="ListParagraph"/><w:numPr><w:ilvl w:val="{}"/><w:numId w:val="1"/></w:numPr></w:pPr>"#,
                level.min(2)
            ),
            BlockKind::TableCell { .. } => {
                return Err(DocsError::Invalid(format!(
                    "block {i}: the DOCX writer does not write tables"
                )))
            }
        };
        x.push_str("<w:p>");
        x.push_str(&ppr);
        let first = bookmark;
        for id in &b.chunk_ids {
            if !valid_chunk_id(id) {
                return Err(DocsError::Invalid(format!(
                    "block {i}: chunk id {id:?}: use 1 to 36 ASCII letters or digits"
                )));
            }
            let _ = write!(
                x,
                r#"<w:bookmarkStart w:id="{bookmark}" w:name="{CHUNK_BOOKMARK_PREFIX}{id}"/>"#
            );
            bookmark += 1;
        }
        runs(&mut x, &b.text);
        for id in first..bookmark {
            let _ = write!(x, r#"<w:bookmarkEnd w:id="{id}"/>"#);
        }
        x.push_str("</w:p>");
    }
    x.push_str(concat!(
        r#"<w:sectPr><w:pgSz w:w="11906" w:h="16838"/>"#,
        r#"<w:pgMar w:top="1417" w:right="1701" w:bottom="1417" w:left="1701" w:header="708" w:footer="708" w:gutter="0"/>"#,
        "</w:sectPr></w:body></w:document>"
    ));
    Ok(x)
}

/// One run per line of `text`, line breaks as `<w:br/>`.
fn runs(x: &mut String, text: &str) {
    x.push_str("<w:r>");
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            x.push_str("<w:br/>");
        }
        for (m, piece) in line.split('\t').enumerate() {
            if m > 0 {
                x.push_str("<w:tab/>");
            }
            if !piece.is_empty() {
                let _ = write!(
                    x,
                    r#"<w:t xml:space="preserve">{}</w:t>"#,
                    escape(xml_safe(piece).as_str())
                );
            }
        }
    }
    x.push_str("</w:r>");
}

/// Drops characters XML 1.0 cannot carry (control characters).
fn xml_safe(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            !(c < ' ' && c != '\t' && c != '\n' && c != '\r') && c != '\u{FFFE}' && c != '\u{FFFF}'
        })
        .collect()
}

fn core_xml(title: Option<&str>) -> String {
    let title = title
        .map(|t| format!("<dc:title>{}</dc:title>", escape(xml_safe(t).as_str())))
        .unwrap_or_default();
    format!(
        r#"{XML_DECL}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">{title}<dc:creator>forja</dc:creator></cp:coreProperties>"#
    )
}

fn custom_xml(document_id: Option<&str>) -> String {
    let prop = document_id
        .map(|id| {
            format!(
                r#"<property fmtid="{{D5CDD505-2E9C-101B-9397-08002B2CF9AE}}" pid="2" name="forja_document"><vt:lpwstr>{}</vt:lpwstr></property>"#,
                escape(id)
            )
        })
        .unwrap_or_default();
    format!(
        r#"{XML_DECL}<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">{prop}</Properties>"#
    )
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";

const CONTENT_TYPES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">"#,
    r#"<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>"#,
    r#"<Default Extension="xml" ContentType="application/xml"/>"#,
    r#"<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>"#,
    r#"<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>"#,
    r#"<Override PartName="/word/numbering.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.numbering+xml"/>"#,
    r#"<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>"#,
    r#"<Override PartName="/docProps/custom.xml" ContentType="application/vnd.openxmlformats-officedocument.custom-properties+xml"/>"#,
    "</Types>"
);

const PACKAGE_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>"#,
    r#"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>"#,
    r#"<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/custom-properties" Target="docProps/custom.xml"/>"#,
    "</Relationships>"
);

const DOCUMENT_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>"#,
    r#"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/numbering" Target="numbering.xml"/>"#,
    "</Relationships>"
);

const STYLES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    r#"<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">"#,
    r#"<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/><w:pPr><w:spacing w:after="120"/><w:jc w:val="both"/></w:pPr><w:rPr><w:sz w:val="22"/></w:rPr></w:style>"#,
    r#"<w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:pPr><w:jc w:val="center"/><w:outlineLvl w:val="0"/></w:pPr><w:rPr><w:b/><w:sz w:val="32"/></w:rPr></w:style>"#,
    r#"<w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:pPr><w:keepNext/><w:outlineLvl w:val="0"/></w:pPr><w:rPr><w:b/><w:sz w:val="28"/></w:rPr></w:style>"#,
    r#"<w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:pPr><w:keepNext/><w:outlineLvl w:val="1"/></w:pPr><w:rPr><w:b/><w:sz w:val="24"/></w:rPr></w:style>"#,
    r#"<w:style w:type="paragraph" w:styleId="Heading3"><w:name w:val="heading 3"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:pPr><w:keepNext/><w:outlineLvl w:val="2"/></w:pPr><w:rPr><w:b/><w:i/></w:rPr></w:style>"#,
    r#"<w:style w:type="paragraph" w:styleId="ListParagraph"><w:name w:val="List Paragraph"/><w:basedOn w:val="Normal"/><w:pPr><w:ind w:left="720"/></w:pPr></w:style>"#,
    "</w:styles>"
);

const NUMBERING: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    r#"<w:numbering xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">"#,
    r#"<w:abstractNum w:abstractNumId="0">"#,
    r#"<w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="bullet"/><w:lvlText w:val="•"/><w:lvlJc w:val="left"/><w:pPr><w:ind w:left="720" w:hanging="360"/></w:pPr></w:lvl>"#,
    r#"<w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="bullet"/><w:lvlText w:val="◦"/><w:lvlJc w:val="left"/><w:pPr><w:ind w:left="1440" w:hanging="360"/></w:pPr></w:lvl>"#,
    r#"<w:lvl w:ilvl="2"><w:start w:val="1"/><w:numFmt w:val="bullet"/><w:lvlText w:val="▪"/><w:lvlJc w:val="left"/><w:pPr><w:ind w:left="2160" w:hanging="360"/></w:pPr></w:lvl>"#,
    "</w:abstractNum>",
    r#"<w:num w:numId="1"><w:abstractNumId w:val="0"/></w:num>"#,
    "</w:numbering>"
);
