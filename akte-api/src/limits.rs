//! Sizes the server and its clients agree on.

/// Largest chunk of an upload or download message.
pub const MAX_CHUNK: usize = 1 << 20;

/// Largest archive message (xdomea) ReceiveMessage accepts; clients allow this plus
/// framing for every message.
pub const MAX_RECEIVED_MESSAGE: usize = 16 << 20;
