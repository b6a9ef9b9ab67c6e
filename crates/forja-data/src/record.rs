//! The unit of curation: a [`Record`] (body + where it came from + metadata)
//! and a [`Rejected`] record (where, and why it was not kept).

use std::fmt;
use std::sync::Arc;

use forja_core::ChatMessage;

/// One example as read from an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where it came from.
    pub origin: Origin,
    /// A stable id: the record's own `id` field when it has one, else its origin.
    pub id: String,
    /// The content.
    pub body: Body,
    /// License, language, group and kind.
    pub meta: Meta,
}

/// The content of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Free text or code.
    Text(String),
    /// A conversation.
    Chat(Vec<ChatMessage>),
    /// An instruction and its answer.
    Pair {
        /// The instruction (with its input, if any).
        prompt: String,
        /// The answer.
        completion: String,
    },
}

impl Body {
    /// Every piece of text in the body, in order.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Body::Text(t) => vec![t],
            Body::Chat(m) => m.iter().map(|m| m.content.as_str()).collect(),
            Body::Pair { prompt, completion } => vec![prompt, completion],
        }
    }

    /// Every piece of text in the body, mutably, in the same order as [`Body::texts`].
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Body::Text(t) => vec![t],
            Body::Chat(m) => m.iter_mut().map(|m| &mut m.content).collect(),
            Body::Pair { prompt, completion } => vec![prompt, completion],
        }
    }

    /// The texts joined by newlines: what dedup and the text filters look at.
    pub fn joined(&self) -> String {
        self.texts().join("\n")
    }
}

/// What a record is: prose or source code (the quality filters differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Natural-language text.
    #[default]
    Text,
    /// Source code.
    Code,
}

/// Metadata carried from the input to the output and the manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// SPDX license id or expression, when the input says.
    pub license: Option<String>,
    /// Language code (ISO 639-1 for text, or a programming language), when known.
    pub lang: Option<String>,
    /// Group (document, session, repository): records of one group never
    /// land in two splits.
    pub group: Option<String>,
    /// Text or code.
    pub kind: Kind,
    /// File name or path of a code record (for comment syntax), when known.
    pub path: Option<String>,
}

/// Where a record came from: an input and a position in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The input file, directory entry or URL.
    pub source: Arc<str>,
    /// The position inside it.
    pub loc: Loc,
}

/// A position inside an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loc {
    /// 1-based line of a JSONL or CSV file.
    Line(u64),
    /// 0-based row of a Parquet file.
    Row(u64),
    /// 0-based entry of a feed.
    Entry(u64),
    /// The whole file (plain text).
    Whole,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.loc {
            Loc::Line(n) => write!(f, "{}:{n}", self.source),
            Loc::Row(n) => write!(f, "{} row {n}", self.source),
            Loc::Entry(n) => write!(f, "{} entry {n}", self.source),
            Loc::Whole => write!(f, "{}", self.source),
        }
    }
}

/// A record that could not be read, with where and why: it goes to the
/// quarantine file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Where it was.
    pub origin: Origin,
    /// Why it was rejected, phrased so the user knows what to fix.
    pub reason: String,
}
