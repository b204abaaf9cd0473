//! The error type of the xdomea module.

use std::fmt;

use uuid::Uuid;

use super::types::MessageType;
use akte_verify::digest::Digest;

/// Where in a received message a problem is: the element path and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Element path with local names and 1-based positions among equal siblings, e.g.
    /// `/Aussonderung.Bewertungsverzeichnis.0502/BewertetesObjekt[2]/ID`.
    pub path: String,
    /// 1-based line of the element's start tag.
    pub line: u32,
    /// 1-based column (in characters) of the element's start tag.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.path, self.line, self.column
        )
    }
}

/// Everything that can go wrong writing or reading an xdomea message.
///
/// Reading errors name the problem and where it is ([`Location`]); writing errors name the
/// object and field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdomeaError {
    /// Not well-formed XML (or not UTF-8, or with a DTD), at a line and column.
    #[error("malformed XML at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong.
        message: String,
    },
    /// The root element is not in an xdomea 3.x namespace, or an element is in a namespace
    /// other than the message's.
    #[error(
        "{location}: element {element} is in namespace {found}, expected {expected}",
        found = found.as_deref().unwrap_or("(none)")
    )]
    WrongNamespace {
        /// Where.
        location: Location,
        /// The element's local name.
        element: String,
        /// Its namespace URI, if any.
        found: Option<String>,
        /// What was expected.
        expected: String,
    },
    /// The root element is another message than the one asked for.
    #[error("expected message {expected}, found root element {found}")]
    WrongMessageType {
        /// The message asked for.
        expected: MessageType,
        /// The root element's local name.
        found: String,
    },
    /// Kopf/Nachrichtentyp does not match the root element.
    #[error("{location}: Nachrichtentyp code {found:?} does not match the message (expected {expected:?})")]
    MessageTypeCodeMismatch {
        /// Where.
        location: Location,
        /// The code the root element stands for.
        expected: &'static str,
        /// The code found.
        found: String,
    },
    /// A required element is missing.
    #[error("{location}: missing required element {element}")]
    Missing {
        /// The parent element.
        location: Location,
        /// The missing element's local name.
        element: String,
    },
    /// An element the schema does not allow here, or allows only once.
    #[error("{location}: unexpected element {element}: {reason}")]
    Unexpected {
        /// Where the unexpected element is.
        location: Location,
        /// Its local name.
        element: String,
        /// Why it is not allowed.
        reason: String,
    },
    /// A value that does not parse (UUID, boolean, date, code ...).
    #[error("{location}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// Where.
        location: Location,
        /// The value (at most 80 characters of it).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// An Aussonderungsart in an appraisal (0502) that is not A or V.
    #[error("{location}: unknown disposal decision {code:?}: {reason}")]
    UnknownDecision {
        /// Where.
        location: Location,
        /// The code found.
        code: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// An object ID listed twice in one message.
    #[error("{location}: object {id} appears more than once (first at line {first_line})")]
    DuplicateId {
        /// Where the second occurrence is.
        location: Location,
        /// The duplicated ID.
        id: Uuid,
        /// Line of the first occurrence.
        first_line: u32,
    },
    /// An appraisal of an object that was not offered as a file or case.
    #[error("appraisal for object {id}, which is not an offered file or case")]
    NotOffered {
        /// The appraised ID.
        id: Uuid,
    },
    /// Input data that cannot be written as a valid message.
    #[error("cannot write {field}{}: {reason}", object.map(|o| format!(" of object {o}")).unwrap_or_default())]
    InvalidInput {
        /// The object whose data it is, if any.
        object: Option<Uuid>,
        /// The field or element.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A primary file of a transfer given twice, or one that is not in the transfer.
    #[error("primary file for rendition {rendition}: {reason}")]
    PrimaryFile {
        /// The rendition's UUID.
        rendition: Uuid,
        /// What is wrong.
        reason: String,
    },
    /// A primary file whose bytes do not match its declared size or SHA-256.
    #[error(
        "primary file for rendition {rendition} does not match its metadata: \
         expected {expected_size} bytes with SHA-256 {expected_digest}, got {actual_size} bytes with SHA-256 {actual_digest}"
    )]
    PrimaryFileMismatch {
        /// The rendition's UUID.
        rendition: Uuid,
        /// Declared size.
        expected_size: u64,
        /// Streamed size.
        actual_size: u64,
        /// Declared digest.
        expected_digest: Digest,
        /// Digest of the streamed bytes.
        actual_digest: Digest,
    },
    /// `finish` of a transfer with primary files not yet added.
    #[error("transfer incomplete: {} primary file(s) not added, first: rendition {}", missing.len(), missing.first().map(|u| u.to_string()).unwrap_or_default())]
    IncompleteTransfer {
        /// The renditions whose files were not added.
        missing: Vec<Uuid>,
    },
    /// Reading a primary file from the caller's source failed.
    #[error("reading primary file for rendition {rendition}: {source}")]
    Source {
        /// The rendition's UUID.
        rendition: Uuid,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A ZIP container that does not hold the expected message.
    #[error("ZIP container: {0}")]
    Container(String),
    /// Writing or reading the ZIP container failed.
    #[error("ZIP: {0}")]
    Zip(#[from] ::zip::result::ZipError),
    /// Writing the output failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
