//! Child process of the crash test: appends content and journal entries from several
//! threads until it is killed, and records every acknowledged entry in a side file.
//!
//! Usage: crash-writer DATA_DIR ACK_FILE THREADS SEED
//! With `AKTE_CRASH_RECORDS=1` it writes through the records model instead: each entry is
//! a document created with its first version in one call (issue 20's write path), its
//! bytes queued for the entry's flush as the gRPC one-call path stores them.
//! Each acknowledged entry is written as one line `seq leaf-hex content-hex` with a single
//! `write` to a file opened with O_APPEND: the line reaches the kernel before the next
//! append starts, so it survives SIGKILL of this process.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use akte_core::embedded::content::ContentOptions;
use akte_core::embedded::journal::JournalOptions;
use akte_core::embedded::EmbeddedOptions;
use akte_core::records::{
    NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion, Records, TenantRecords,
};
use akte_core::store::{Store, StoreOptions, Tenant};
use akte_tests::{append_document, Rng};

/// What one thread appends: a raw entry (content and metadata) or, in the records mode, a
/// document with its first version in `file`. Returns the entry's sequence number, leaf
/// and content digest.
enum Writer {
    Raw(Arc<Tenant>),
    Records(TenantRecords, uuid::Uuid),
}

impl Writer {
    fn append(&self, rng: &mut Rng) -> Result<(u64, String, String), String> {
        let len = rng.range(0, 12_000) as usize;
        let content = rng.bytes(len);
        match self {
            Writer::Raw(tenant) => {
                let meta_len = rng.range(1, 300) as usize;
                let meta = rng.bytes(meta_len);
                let a = append_document(tenant, "crash-writer", "object", &content, &meta)
                    .map_err(|e| e.to_string())?;
                Ok((
                    a.ticket.entry.seq,
                    a.ticket.leaf.to_string(),
                    a.ticket.entry.payloads[1].digest.to_string(),
                ))
            }
            Writer::Records(t, file) => {
                // As the one-call gRPC path stores them: queued for the entry's flush, so
                // an acknowledged document proves the journal's leader flushed its bytes.
                let put = t
                    .tenant()
                    .content()
                    .put_bytes_for_entry(&content, None, None)
                    .map_err(|e| e.to_string())?;
                let (doc, _) = t
                    .create_document_with_version(
                        "crash-writer",
                        NewDocument {
                            parent: *file,
                            subject: format!("Brief {}", rng.next_u64()),
                            ..NewDocument::default()
                        },
                        NewVersion {
                            comment: String::new(),
                            renditions: vec![NewRendition {
                                file_name: "brief.txt".into(),
                                media_type: "text/plain".into(),
                                sha256: put.digest,
                                size: put.size,
                            }],
                        },
                        None,
                    )
                    .map_err(|e| e.to_string())?;
                let seq = doc.created.seq;
                let leaf = t.tenant().entry(seq).map_err(|e| e.to_string())?.leaf;
                Ok((seq, leaf.to_string(), put.digest.to_string()))
            }
        }
    }

    fn checkpoint(&self) {
        let _ = match self {
            Writer::Raw(t) => t.checkpoint(),
            Writer::Records(t, _) => t.tenant().checkpoint(),
        };
    }
}

/// The records mode's tenant and file, made once and found again after a restart through
/// their idempotency keys.
fn records_target(records: &Records) -> Result<(TenantRecords, uuid::Uuid), String> {
    let t = match records.tenant("t") {
        Ok(t) => t,
        Err(_) => records.create_tenant("t").map_err(|e| e.to_string())?,
    };
    let unit = t
        .create_plan_unit(
            "crash-writer",
            NewPlanUnit {
                code: "1".into(),
                title: "Absturz".into(),
                ..NewPlanUnit::default()
            },
            Some("crash-unit"),
        )
        .map_err(|e| e.to_string())?;
    let file = t
        .create_file(
            "crash-writer",
            NewFile {
                plan_unit: unit.id,
                subject: "Absturz".into(),
                ..NewFile::default()
            },
            Some("crash-file"),
        )
        .map_err(|e| e.to_string())?;
    Ok((t, file.id))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: crash-writer DATA_DIR ACK_FILE THREADS SEED");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let ack_path = PathBuf::from(&args[2]);
    let threads: usize = args[3].parse().unwrap_or(4);
    let seed: u64 = args[4].parse().unwrap_or(1);
    let options = EmbeddedOptions {
        // Small segments and packs so that crashes also hit segment and pack changes.
        journal: JournalOptions {
            segment_max_bytes: 64 << 10,
        },
        content: ContentOptions {
            pack_max_bytes: 64 << 10,
            ..ContentOptions::default()
        },
    };
    let backend = match akte_core::embedded::open_with(&dir, options) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("crash-writer: open: {e}");
            std::process::exit(1);
        }
    };
    let records_mode = std::env::var_os("AKTE_CRASH_RECORDS").is_some();
    // Kept alive for the threads' whole life.
    let mut _records = None;
    let writers: Vec<Writer> = if records_mode {
        let records = Records::open(backend, StoreOptions::default()).unwrap_or_else(|e| {
            eprintln!("crash-writer: open records: {e}");
            std::process::exit(1);
        });
        let (t, file) = records_target(&records).unwrap_or_else(|e| {
            eprintln!("crash-writer: records setup: {e}");
            std::process::exit(1);
        });
        _records = Some(records);
        (0..threads)
            .map(|_| Writer::Records(t.clone(), file))
            .collect()
    } else {
        let store = match Store::open(backend, StoreOptions::default()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("crash-writer: open: {e}");
                std::process::exit(1);
            }
        };
        let tenant = match store.tenant("t") {
            Ok(t) => t,
            Err(_) => store.create_tenant("t").unwrap_or_else(|e| {
                eprintln!("crash-writer: create tenant: {e}");
                std::process::exit(1);
            }),
        };
        (0..threads).map(|_| Writer::Raw(tenant.clone())).collect()
    };
    let ack = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ack_path)
            .unwrap_or_else(|e| {
                eprintln!("crash-writer: ack file: {e}");
                std::process::exit(1);
            }),
    ));
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut handles = Vec::new();
    for (t, writer) in writers.into_iter().enumerate() {
        let ack = ack.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ ((t as u64 + 1) << 40));
            loop {
                match writer.append(&mut rng) {
                    Ok((seq, leaf, content)) => {
                        let line = format!("{seq} {leaf} {content}\n");
                        let mut f = ack.lock().unwrap_or_else(|p| p.into_inner());
                        if f.write_all(line.as_bytes()).is_err() {
                            std::process::exit(1);
                        }
                    }
                    Err(e) => {
                        eprintln!("crash-writer: append: {e}");
                        std::process::exit(1);
                    }
                }
                if rng.range(0, 50) == 0 {
                    writer.checkpoint();
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}
