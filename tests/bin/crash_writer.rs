//! Child process of the crash test: appends content and journal entries from several
//! threads until it is killed, and records every acknowledged entry in a side file.
//!
//! Usage: crash-writer DATA_DIR ACK_FILE THREADS SEED
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
use akte_core::store::{Store, StoreOptions};
use akte_tests::{append_document, Rng};

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
    let opened = akte_core::embedded::open_with(&dir, options)
        .map_err(akte_core::store::StoreError::from)
        .and_then(|backend| Store::open(backend, StoreOptions::default()));
    let store = match opened {
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
    for t in 0..threads {
        let tenant = tenant.clone();
        let ack = ack.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ ((t as u64 + 1) << 40));
            loop {
                let len = rng.range(0, 12_000) as usize;
                let content = rng.bytes(len);
                let meta_len = rng.range(1, 300) as usize;
                let meta = rng.bytes(meta_len);
                match append_document(&tenant, "crash-writer", "object", &content, &meta) {
                    Ok(a) => {
                        let content_digest = a.ticket.entry.payloads[1].digest;
                        let line = format!(
                            "{} {} {}\n",
                            a.ticket.entry.seq, a.ticket.leaf, content_digest
                        );
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
                    let _ = tenant.checkpoint();
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}
