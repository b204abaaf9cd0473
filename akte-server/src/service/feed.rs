//! The change feed of JournalService: ListEntries (a range of the journal, paged) and
//! WatchEntries (a server stream from a position, following the journal as it grows).
//!
//! The journal offers no notification of new durable entries, so a watcher looks at the
//! durable size every [`POLL`] (a read of one number) and reads what is new. A watcher
//! holds no permit of the call limit (see `metrics`), but one of [`super::MAX_WATCHERS`].

use std::time::Duration;

use akte_core::entry::PayloadKind;
use akte_core::journal::Record;
use akte_core::records::TenantRecords;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use crate::convert::{digest_bytes, timestamp};
use crate::error::ApiError;
use crate::pb::akte::v1 as pb;

use super::blocking;

/// How often a watcher looks for new entries.
pub const POLL: Duration = Duration::from_millis(100);
/// A message without entries after this much quiet.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// Entries per WatchEntries message.
pub const BATCH: u64 = 100;

/// The stream of WatchEntries.
pub type WatchStream = ReceiverStream<Result<pb::WatchEntriesResponse, Status>>;

/// The message of a journal entry.
pub fn entry_msg(tenant: &str, rec: &Record) -> pb::JournalEntry {
    let e = &rec.entry;
    pb::JournalEntry {
        name: format!("tenants/{tenant}/entries/{}", e.seq),
        seq: e.seq,
        time: Some(timestamp(&e.time)),
        prev_leaf_hash: digest_bytes(&e.prev),
        actor: e.actor.clone(),
        kind: e.kind.clone(),
        object: e.object.clone(),
        payloads: e
            .payloads
            .iter()
            .map(|p| pb::EntryPayload {
                kind: match p.kind {
                    PayloadKind::Content => "content",
                    PayloadKind::Inline => "inline",
                    PayloadKind::Reference => "reference",
                }
                .to_owned(),
                role: p.role.clone(),
                size: p.size,
                sha256: digest_bytes(&p.digest),
            })
            .collect(),
        encoded_entry: bytes::Bytes::from(e.encode()),
        leaf_hash: digest_bytes(&rec.leaf),
    }
}

/// Entries `from..to` (to is exclusive, within the durable size).
pub fn read_entries(
    t: &TenantRecords,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<pb::JournalEntry>, ApiError> {
    let mut out = Vec::new();
    for seq in from..to {
        let rec = t.tenant().entry(seq)?;
        // Entries about an object the caller may not see are left out (the sequence
        // numbers show a gap, nothing of the object).
        if let Ok(id) = uuid::Uuid::parse_str(&rec.entry.object) {
            if !t.may_see_id(id)? {
                continue;
            }
        }
        out.push(entry_msg(tenant, &rec));
    }
    Ok(out)
}

/// Streams the entries from `start` on until the client goes away or the server drains.
pub fn watch(
    t: TenantRecords,
    tenant: String,
    start: u64,
    mut draining: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response<WatchStream> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let _permit = permit;
        let mut next = start;
        let mut quiet = Duration::ZERO;
        loop {
            // A size that cannot be read now is tried again at the next poll.
            let size = t.tenant().size().unwrap_or(next);
            if next < size {
                let to = size.min(next + BATCH);
                let (tc, tn) = (t.clone(), tenant.clone());
                let msg = blocking(move || read_entries(&tc, &tn, next, to))
                    .await
                    .map(|entries| pb::WatchEntriesResponse {
                        entries,
                        journal_size: size,
                    });
                let failed = msg.is_err();
                if tx.send(msg.map_err(Status::from)).await.is_err() || failed {
                    return;
                }
                next = to;
                quiet = Duration::ZERO;
                continue;
            }
            if quiet >= HEARTBEAT {
                let beat = pb::WatchEntriesResponse {
                    entries: Vec::new(),
                    journal_size: size,
                };
                if tx.send(Ok(beat)).await.is_err() {
                    return;
                }
                quiet = Duration::ZERO;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => quiet += POLL,
                _ = tx.closed() => return,
                _ = async { let _ = draining.wait_for(|d| *d).await; } => {
                    let _ = tx.send(Err(ApiError::ShuttingDown.to_status())).await;
                    return;
                }
            }
        }
    });
    Response::new(ReceiverStream::new(rx))
}
