//! What a document is to forja: blocks of text in reading order, each with
//! the hidden chunk ids that link it to where it came from.

/// The role of a block in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Body text.
    Paragraph,
    /// A heading; level 1 is the top (the document title is level 0).
    Heading {
        /// 0 (title) to 9.
        level: u8,
    },
    /// An item of a bulleted or numbered list.
    ListItem {
        /// Nesting level, 0 = outermost.
        level: u8,
    },
    /// A paragraph inside a table cell.
    TableCell {
        /// Which table of the document (0-based, in reading order).
        table: u32,
        /// Row within the table.
        row: u32,
        /// Cell within the row.
        col: u32,
    },
}

impl BlockKind {
    /// A short name: `paragraph`, `heading`, `list_item`, `table_cell`.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Paragraph => "paragraph",
            BlockKind::Heading { .. } => "heading",
            BlockKind::ListItem { .. } => "list_item",
            BlockKind::TableCell { .. } => "table_cell",
        }
    }
}

/// One paragraph-level block.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Its role.
    pub kind: BlockKind,
    /// The text with tracked changes accepted: insertions kept, deletions
    /// dropped. Runs are joined; tabs and line breaks become spaces.
    pub text: String,
    /// The chunk ids whose marks start in this block (usually zero or one;
    /// two or more when a reviewer merged paragraphs).
    pub chunk_ids: Vec<String>,
    /// Text that tracked changes deleted (the rejected side), kept as
    /// context; empty when the block has no tracked deletions.
    pub rejected: String,
}

impl Block {
    /// A body paragraph without chunk ids.
    pub fn paragraph(text: impl Into<String>) -> Block {
        Block {
            kind: BlockKind::Paragraph,
            text: text.into(),
            chunk_ids: Vec::new(),
            rejected: String::new(),
        }
    }

    /// This block with `id` as its chunk id.
    pub fn with_chunk(mut self, id: impl Into<String>) -> Block {
        self.chunk_ids.push(id.into());
        self
    }

    /// This block with another kind.
    pub fn with_kind(mut self, kind: BlockKind) -> Block {
        self.kind = kind;
        self
    }
}

/// A document as read back: its blocks and what forja wrote in its
/// properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// Blocks in reading order; empty paragraphs are left out.
    pub blocks: Vec<Block>,
    /// The `forja_document` custom property: the id of the generated
    /// document this file descends from, when forja wrote it.
    pub document_id: Option<String>,
    /// The core `dc:title` property, when set.
    pub title: Option<String>,
}
