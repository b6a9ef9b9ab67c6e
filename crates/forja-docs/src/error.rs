//! The crate's one error type: why a document could not be read or written.
//! A paragraph that changed is data (see [`crate::diff`]), never an error.

/// Everything that stops reading or writing a document. Each message says
/// what to do about it, in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocsError {
    /// The bytes are not a Word document (not a zip, or a zip without a
    /// main document part).
    #[error("not a DOCX document ({0}); save it from Word or LibreOffice as .docx")]
    NotDocx(String),
    /// A password-protected document (an OLE container or encrypted zip
    /// entries) or a legacy binary `.doc`.
    #[error(
        "the document is encrypted or a legacy .doc ({0}); save it as .docx without a password"
    )]
    Encrypted(String),
    /// Over a size or count limit (zip bombs, huge parts, too many entries).
    #[error("the document is too large: {0}")]
    TooLarge(String),
    /// A part is not well-formed XML, or uses a DOCTYPE or an undefined entity.
    #[error("{part}: malformed XML near byte {position}: {message}")]
    Xml {
        /// The zip entry, e.g. `word/document.xml`.
        part: String,
        /// Byte offset into the part.
        position: u64,
        /// What the parser said.
        message: String,
    },
    /// An argument the caller controls is invalid (a chunk id with spaces,
    /// a paragraph kind the writer does not produce).
    #[error("{0}")]
    Invalid(String),
    /// Building the zip failed (only on I/O errors of the sink).
    #[error("writing the document failed: {0}")]
    Write(String),
}
