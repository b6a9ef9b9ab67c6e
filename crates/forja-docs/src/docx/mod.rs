//! DOCX (Office Open XML) in and out. Both sides use the `zip` crate for the
//! package and `quick-xml` for the parts; nothing here parses zip or XML by
//! hand.
//!
//! The chunk id of a generated paragraph travels as a hidden bookmark named
//! `_fj_<chunk id>` around the paragraph's text. Word and LibreOffice keep
//! bookmarks through editing and saving, move them with cut and paste, and
//! hide names starting with `_` from the bookmark list, so a secretary never
//! sees them (`tests/it/libreoffice.rs` proves the round trip: LibreOffice
//! 7.4 keeps them through Find & Replace, paragraph splits, page breaks
//! and cut/paste, and names a copied one `_fj_<id>_Copy_1`).

mod read;
mod write;

pub use read::{read_docx, ReadLimits};
pub use write::{write_docx, DraftMeta};

/// Bookmark name prefix that marks a forja chunk id.
pub const CHUNK_BOOKMARK_PREFIX: &str = "_fj_";

/// Longest chunk id: Word truncates bookmark names at 40 characters.
pub const MAX_CHUNK_ID_LEN: usize = 40 - CHUNK_BOOKMARK_PREFIX.len();

/// A valid chunk id: 1 to 36 ASCII letters or digits. Word bookmark names
/// may also hold underscores, but LibreOffice renames a copied bookmark
/// `<name>_Copy_<n>`, so ids leave `_` out and the reader cuts a name at
/// its first other character.
pub fn valid_chunk_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CHUNK_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The chunk id in a bookmark name, if it is one of ours. Anything after
/// the id's characters (an editor's suffix on a copied bookmark, such as
/// LibreOffice's `_Copy_1`) is dropped, so a copy maps back to its source.
pub fn chunk_id_of_bookmark(name: &str) -> Option<&str> {
    let id = name.strip_prefix(CHUNK_BOOKMARK_PREFIX)?;
    let id = id.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
    (!id.is_empty()).then_some(id)
}
