//! Sizes the server and its clients agree on.

/// Largest chunk of an upload or download message.
pub const MAX_CHUNK: usize = 1 << 20;

/// Largest content CreateDocument takes inline as a document's first version (4 MiB, the
/// default message limit); larger content goes in chunks (CreateDocuments, AddVersion).
pub const MAX_INLINE_CONTENT: usize = 4 << 20;

/// What a CreateDocument message may hold besides its inline content: the document's
/// metadata (200 recipients of 256 characters, a subject of 1000) and the version comment
/// (20000 characters), each up to 4 bytes a character, with room to spare.
pub const CREATE_DOCUMENT_METADATA: usize = 1 << 20;

/// Largest archive message (xdomea) ReceiveMessage accepts; clients allow this plus
/// framing for every message.
pub const MAX_RECEIVED_MESSAGE: usize = 16 << 20;
