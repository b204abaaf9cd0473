//! Streaming uploads into the content store with bounded memory.
//!
//! The async side reads the client's chunks and passes them through a bounded channel to a
//! blocking `Read` that `ContentStore::put_expecting` consumes on a blocking thread, hashing
//! while it writes. At most [`CHANNEL_CHUNKS`] chunks of at most [`MAX_CHUNK`] bytes wait
//! in memory, whatever the size of the upload. A protocol error on the async side reaches
//! the reader as an I/O error, so the put fails and stores nothing.

use std::io::{self, Read};
use std::time::Duration;

use akte_core::backend::content::{ContentError, PutOutcome};
use akte_core::records::TenantRecords;
use akte_core::Digest;
use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Largest chunk a client may send (the contract's limit).
pub use akte_api::limits::MAX_CHUNK;
/// Largest first version CreateDocument takes inline (the contract's limit).
pub use akte_api::limits::MAX_INLINE_CONTENT;
/// Uploads declared shorter than this are received into memory before anything is stored
/// (they go to the content store's pack files anyway); longer ones stream.
pub const SMALL_UPLOAD: u64 = akte_core::embedded::pack::MAX_PACKED_LEN;
/// Chunks buffered between the network and the disk.
pub const CHANNEL_CHUNKS: usize = 4;
/// What a streamed upload may hold in memory: the chunks in the channel, the one being
/// decoded and the one being written.
pub const STREAMED_UPLOAD_MEMORY: u64 = (CHANNEL_CHUNKS as u64 + 2) * MAX_CHUNK as u64;

/// The memory all uploads together may buffer at once. Each upload reserves what it can
/// hold (a small one its size, a streamed one [`STREAMED_UPLOAD_MEMORY`]) before it reads
/// its first chunk, and waits while the budget is spent, so that 64 clients uploading at
/// once cost the budget, not 64 times a streamed upload's buffers; the HTTP/2 flow control
/// holds the waiting clients back meanwhile.
#[derive(Debug)]
pub struct UploadMemory {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
    total_kib: u32,
}

impl UploadMemory {
    /// A budget of `bytes` (at least one streamed upload's worth).
    pub fn new(bytes: u64) -> UploadMemory {
        let total_kib = (bytes.max(STREAMED_UPLOAD_MEMORY) >> 10).min(u32::MAX as u64) as u32;
        UploadMemory {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Reserves `bytes` (at most the whole budget) for one upload, waiting up to `wait`
    /// for other uploads to give some back.
    pub async fn reserve(
        &self,
        bytes: u64,
        wait: Duration,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        let kib = self.kib_of(bytes);
        match tokio::time::timeout(wait, self.kib.acquire_many(kib)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(ApiError::Internal("the upload budget was closed".into())),
            Err(_) => Err(ApiError::UploadsBusy((self.total_kib >> 10) as u64)),
        }
    }

    /// As [`UploadMemory::reserve`], for a reservation that moves to the worker storing
    /// the bytes and ends with it (CreateDocuments' documents in flight).
    pub async fn reserve_owned(
        &self,
        bytes: u64,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let kib = self.kib_of(bytes);
        match tokio::time::timeout(wait, self.kib.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(ApiError::Internal("the upload budget was closed".into())),
            Err(_) => Err(ApiError::UploadsBusy((self.total_kib >> 10) as u64)),
        }
    }

    fn kib_of(&self, bytes: u64) -> u32 {
        (bytes.div_ceil(1024)).clamp(1, self.total_kib as u64) as u32
    }
}

/// A blocking reader over chunks arriving on a channel.
pub struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    /// A reader over `rx`; it ends when the sender is dropped.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Something that yields the chunks of an upload, one message at a time.
pub trait ChunkSource {
    /// The next chunk; `None` at the end of the stream.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, ApiError>> + Send;
}

/// Streams the chunks of `source` into the tenant's content store, checking them against
/// the declared digest and size. Nothing is stored unless both match.
pub async fn receive_content<S: ChunkSource>(
    source: &mut S,
    records: TenantRecords,
    digest: Digest,
    size: u64,
    idle: Duration,
) -> Result<PutOutcome, ApiError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let put = tokio::task::spawn_blocking(move || {
        records
            .tenant()
            .content()
            .put(&mut ChunkReader::new(rx), Some(digest), Some(size))
    });
    let fed = feed(source, tx, idle).await;
    let put = put
        .await
        .map_err(|e| ApiError::Internal(format!("upload worker failed: {e}")))?;
    match (fed, put) {
        (Err(e), _) => Err(e),
        (Ok(()), r) => r.map_err(ApiError::from),
    }
}

/// Receives a whole small upload of the declared `size` into memory. Stops as soon as more
/// than `size` bytes arrived (the answer is then the size mismatch), so memory stays within
/// `size` plus one chunk. Digest and size are checked when the bytes are stored.
pub async fn receive_small<S: ChunkSource>(
    source: &mut S,
    size: u64,
    idle: Duration,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(size as usize);
    loop {
        let next = match tokio::time::timeout(idle, source.next_chunk()).await {
            Err(_) => return Err(ApiError::UploadIdle(idle.as_secs())),
            Ok(r) => r?,
        };
        let Some(chunk) = next else {
            return Ok(out);
        };
        check_chunk(&chunk)?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > size {
            return Err(ContentError::SizeMismatch {
                expected: size,
                actual: out.len() as u64,
            }
            .into());
        }
    }
}

fn check_chunk(chunk: &Bytes) -> Result<(), ApiError> {
    if chunk.is_empty() || chunk.len() > MAX_CHUNK {
        return Err(ApiError::UploadProtocol(format!(
            "a chunk of {} bytes; chunks are 1 byte to {MAX_CHUNK} bytes",
            chunk.len()
        )));
    }
    Ok(())
}

async fn feed<S: ChunkSource>(
    source: &mut S,
    tx: mpsc::Sender<io::Result<Bytes>>,
    idle: Duration,
) -> Result<(), ApiError> {
    loop {
        let next = match tokio::time::timeout(idle, source.next_chunk()).await {
            Err(_) => Err(ApiError::UploadIdle(idle.as_secs())),
            Ok(r) => r,
        };
        let chunk = match next {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => {
                // Make the put fail (it must not store a cut-off upload).
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                return Err(e);
            }
        };
        if let Err(e) = check_chunk(&chunk) {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            return Err(e);
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The store stopped reading (the upload is longer than declared): its error
            // is the answer.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_wait_for_the_memory_budget_and_give_up_after_the_idle_time() {
        let budget = UploadMemory::new(STREAMED_UPLOAD_MEMORY);
        let wait = Duration::from_millis(50);
        let held = budget.reserve(STREAMED_UPLOAD_MEMORY, wait).await.unwrap();
        let e = budget.reserve(1, wait).await.unwrap_err();
        assert!(matches!(e, ApiError::UploadsBusy(6)), "{e}");
        assert_eq!(crate::error::reason(&e.to_status()), "OVERLOADED");
        drop(held);
        // More than the budget is clamped to it, so it can still be had.
        let _all = budget.reserve(u64::MAX, wait).await.unwrap();
    }

    #[test]
    fn chunk_reader_reads_across_chunks_and_reports_errors() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"abc"))).unwrap();
        tx.try_send(Ok(Bytes::from_static(b"de"))).unwrap();
        drop(tx);
        let mut out = Vec::new();
        ChunkReader::new(rx).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcde");
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"abc"))).unwrap();
        tx.try_send(Err(io::Error::other("cut"))).unwrap();
        let mut out = Vec::new();
        assert!(ChunkReader::new(rx).read_to_end(&mut out).is_err());
    }
}
