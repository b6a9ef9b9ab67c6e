//! RSS and Atom feeds (feed-rs), from a file or an `http(s)://` URL: one
//! record per entry, the title as the first line and the text content (HTML
//! reduced to text) below it. The entry id is the record id and its group.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::fields::{origin, Mapper};
use super::{is_url, Item, Items};
use crate::{Body, DataError, Loc, Meta, Record, Rejected, Result};

/// Feeds larger than this are refused.
const MAX_FEED_BYTES: u64 = 64 << 20;

pub(super) fn open(path: &str, mapper: Mapper, skip: u64) -> Result<Items> {
    let bytes = if is_url(path) {
        fetch(path)?
    } else {
        std::fs::read(path).map_err(|e| DataError::io(path, e))?
    };
    Ok(Box::new(items(path, &bytes, &mapper)?.into_iter().skip(skip as usize).map(Ok)))
}

fn fetch(url: &str) -> Result<Vec<u8>> {
    let err = |message: String| DataError::Feed { source_name: url.into(), message };
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| err(format!("cannot fetch it ({e}); check the URL and the network")))?;
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_FEED_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("reading the response failed ({e})")))?;
    Ok(bytes)
}

/// The items of a feed document (also used by the fuzz targets). A document
/// that is not a feed fails: there is nothing to quarantine item by item.
pub fn items(source: &str, bytes: &[u8], mapper: &Mapper) -> Result<Vec<Item>> {
    let feed = feed_rs::parser::parse(bytes).map_err(|e| DataError::Feed {
        source_name: source.into(),
        message: format!("not an RSS/Atom/JSON feed ({e})"),
    })?;
    let source: Arc<str> = source.into();
    let license =
        feed.rights.as_ref().map(|t| t.content.clone()).or_else(|| mapper.default_license());
    let mut out = Vec::with_capacity(feed.entries.len());
    for (i, entry) in feed.entries.into_iter().enumerate() {
        let o = origin(&source, Loc::Entry(i as u64));
        let title = entry.title.map(|t| html_to_text(&t.content)).unwrap_or_default();
        let body = entry
            .content
            .and_then(|c| c.body)
            .or_else(|| entry.summary.map(|s| s.content))
            .map(|b| html_to_text(&b))
            .unwrap_or_default();
        let text = match (title.trim(), body.trim()) {
            ("", "") => {
                out.push(Item::Rejected(Rejected {
                    origin: o,
                    reason: "entry has neither title nor content".into(),
                }));
                continue;
            }
            (t, "") => t.to_string(),
            ("", b) => b.to_string(),
            (t, b) => format!("{t}\n\n{b}"),
        };
        let id = if entry.id.is_empty() { o.to_string() } else { entry.id };
        let meta = Meta {
            license: entry.rights.map(|r| r.content).or_else(|| license.clone()),
            lang: entry.language.clone().or_else(|| feed.language.clone()),
            group: Some(id.clone()),
            kind: mapper.kind_for(None, false),
            path: None,
        };
        out.push(Item::Record(Record { origin: o, id, body: Body::Text(text), meta }));
    }
    Ok(out)
}

/// Tags removed, block tags turned into line breaks, common entities decoded.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let Some(gt) = rest[lt..].find('>') else {
            out.push_str(&rest[lt..]);
            rest = "";
            break;
        };
        let tag = rest[lt + 1..lt + gt].trim_start_matches('/').to_ascii_lowercase();
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        if matches!(
            name,
            "p" | "br" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "tr" | "blockquote" | "pre"
        ) {
            out.push('\n');
        }
        rest = &rest[lt + gt + 1..];
    }
    out.push_str(rest);
    decode_entities(&out)
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest
            .char_indices()
            .take_while(|(i, _)| *i < 12)
            .find(|(_, c)| *c == ';')
            .map(|(i, _)| i);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::InputSpec;

    #[test]
    fn html_becomes_text() {
        for (html, want) in [
            ("<p>Hola <b>mundo</b></p>", "\nHola mundo\n"),
            ("a &amp; b &lt;c&gt; &#233;&#xE9; &bogus; &", "a & b <c> éé &bogus; &"),
            ("x<br/>y", "x\ny"),
            ("broken <tag", "broken <tag"),
            // Regression (fuzz): an entity-like run with multi-byte characters.
            ("&ééééééé;x", "&ééééééé;x"),
            ("&aaaaaaaaaaé", "&aaaaaaaaaaé"),
        ] {
            assert_eq!(html_to_text(html), want, "{html}");
        }
    }

    #[test]
    fn rss_entries_become_records() {
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><copyright>CC-BY-4.0</copyright>
            <item><guid>a1</guid><title>First</title><description>&lt;p&gt;Body one&lt;/p&gt;</description></item>
            <item><guid>a2</guid></item>
            <item><title>Only title</title></item></channel></rss>"#;
        let m = Mapper::new(&InputSpec::default());
        let items = items("feed.xml", rss.as_bytes(), &m).unwrap();
        let Item::Record(r) = &items[0] else { panic!("{items:?}") };
        assert_eq!((r.id.as_str(), r.body.joined().as_str()), ("a1", "First\n\nBody one"));
        assert_eq!(r.meta.license.as_deref(), Some("CC-BY-4.0"));
        assert!(matches!(&items[1], Item::Rejected(r) if r.reason.contains("neither title")));
        assert!(matches!(&items[2], Item::Record(r) if r.body.joined() == "Only title"));
        let err = super::items("x", b"<html>no</html>", &m).unwrap_err().to_string();
        assert!(err.starts_with("feed x: not an RSS/Atom/JSON feed"), "{err}");
    }
}
