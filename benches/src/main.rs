//! akte's benchmark binary: every figure beside a baseline measured in the same run.
//!
//! `cargo run --release -p akte-bench -- [store|journal|proofs|verify|rebuild|index-scale|grpc|grpc-scale|small|handover|memory|postgres|fulltext|ingest|all]
//! [--quick]`; without a part it runs them all (about 6 minutes on 2 cores).
//!
//! Prints one table: figure, value, baseline, baseline value, ratio. The machines are shared
//! and noisy, so ratios against a baseline measured moments before are what to compare
//! across runs, not absolute numbers. Temporary stores go to `AKTE_BENCH_DIR` (default: the
//! system's temporary directory; the full run needs about 4 GB there for a moment).
//!
//! The `memory` part runs the daemon in a child process: this binary re-executed with a
//! hidden first argument (see `memory.rs`).

// gRPC request literals end in `..Default::default()`, so that a field added to a message in
// `proto/` does not break the benchmarks' build.
#![allow(clippy::needless_update)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod fulltext;
mod grpc;
mod grpc_scale;
mod index_scale;
mod memory;
mod peers;
mod postgres;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use akte_core::entry::Attachment;
use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::merkle::{self, MemoryTree};
use akte_core::store::{Store, StoreOptions, Tenant};
use akte_core::Digest;

pub(crate) struct Row {
    figure: String,
    value: f64,
    unit: &'static str,
    baseline: String,
    baseline_value: f64,
}

impl Row {
    fn ratio(&self) -> f64 {
        if self.baseline_value > 0.0 {
            self.value / self.baseline_value
        } else {
            f64::NAN
        }
    }
}

fn print_table(rows: &[Row]) {
    let value = |v: f64, unit: &str| format!("{v:.1} {unit}");
    let ratio = |r: f64| format!("{r:.2}");
    let w0 = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| value(r.value, r.unit).chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let w2 = rows
        .iter()
        .map(|r| r.baseline.chars().count())
        .max()
        .unwrap_or(0)
        .max(19);
    let w3 = rows
        .iter()
        .map(|r| value(r.baseline_value, r.unit).chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "\n| {:<w0$} | {:>w1$} | {:<w2$} | {:>w3$} | {:>7} |",
        "figure", "value", "baseline (same run)", "baseline", "ratio"
    );
    println!(
        "|{:-<a$}|{:-<b$}|{:-<c$}|{:-<d$}|{:-<9}|",
        "",
        "",
        "",
        "",
        "",
        a = w0 + 2,
        b = w1 + 2,
        c = w2 + 2,
        d = w3 + 2
    );
    for r in rows {
        println!(
            "| {:<w0$} | {:>w1$} | {:<w2$} | {:>w3$} | {:>7} |",
            r.figure,
            value(r.value, r.unit),
            r.baseline,
            value(r.baseline_value, r.unit),
            ratio(r.ratio())
        );
    }
}

/// Deterministic pseudo-random bytes (incompressible).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// German-like administrative text (compresses roughly 3-4x with zstd).
pub(crate) fn text_bytes(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "Antrag",
        "Bescheid",
        "Baugenehmigung",
        "Flurstück",
        "Gemarkung",
        "gemäß",
        "§",
        "Abs.",
        "der",
        "die",
        "das",
        "und",
        "wird",
        "hiermit",
        "erteilt",
        "Stadtverwaltung",
        "Erfurt",
        "Widerspruch",
        "Frist",
        "Monat",
        "Bekanntgabe",
        "Verwaltungsakt",
        "Anlage",
        "Az.",
    ];
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 32);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        v.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
        if x.is_multiple_of(17) {
            v.extend_from_slice(format!("{}", x % 100000).as_bytes());
        }
    }
    v.truncate(n);
    v
}

/// CPU time this process (all threads) has used so far, in seconds: user plus system, from
/// `/proc/self/stat` (0 where that cannot be read). The gRPC figures report it as cores
/// busy, since client and server share the machine.
pub(crate) fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

pub(crate) fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Runs `f` repeatedly for at least `min` and returns total bytes and elapsed time.
fn timed<F: FnMut() -> Result<u64>>(min: Duration, mut f: F) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut bytes = 0;
    while start.elapsed() < min {
        bytes += f()?;
    }
    Ok((bytes, start.elapsed()))
}

/// Best of three runs of coreutils `sha256sum` over a file (page-cached after the first).
fn sha256sum_rate(path: &Path, bytes: u64) -> Result<f64> {
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .context("running sha256sum")?;
        if !out.status.success() {
            bail!("sha256sum failed");
        }
        best = best.max(mbps(bytes, start.elapsed()));
    }
    Ok(best)
}

fn bench_store(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let min = Duration::from_millis(if quick { 300 } else { 1500 });
    let dir = tempfile::tempdir_in(bench_dir())?;
    let store = Store::open(
        akte_core::embedded::open(&dir.path().join("data"))?,
        StoreOptions::default(),
    )?;
    let tenant = store.create_tenant("bench")?;
    let cases: [(&str, usize); 3] = [("5 KB", 5_000), ("200 KB", 200_000), ("50 MB", 50_000_000)];
    for (label, size) in cases {
        for (kind, data) in [
            ("text", text_bytes(size, 1)),
            ("random", random_bytes(size, 2)),
        ] {
            // Baseline: the sha2 crate over the same buffer.
            let (b, d) = timed(min, || {
                std::hint::black_box(Sha256::digest(&data));
                Ok(data.len() as u64)
            })?;
            let sha_rate = mbps(b, d);
            // Baseline: write + fsync of the same bytes to a new file.
            let mut n = 0u64;
            let (b, d) = timed(min, || {
                n += 1;
                let p = dir.path().join(format!("plain-{n}"));
                let mut f = File::create(&p)?;
                f.write_all(&data)?;
                f.sync_all()?;
                std::fs::remove_file(&p)?;
                Ok(data.len() as u64)
            })?;
            let fsync_rate = mbps(b, d);
            // Baseline: zstd level 3 compression of the buffer.
            let (b, d) = timed(min, || {
                std::hint::black_box(zstd::bulk::compress(&data, 3)?);
                Ok(data.len() as u64)
            })?;
            let zstd_rate = mbps(b, d);
            // akte put: each round stores new bytes (a counter prefix defeats dedup).
            let mut i = 0u64;
            let (b, d) = timed(min, || {
                i += 1;
                let prefix = i.to_le_bytes();
                let reader = (&prefix[..]).chain(&data[..]);
                let out = tenant.put_content(reader)?;
                Ok(out.size)
            })?;
            let put_rate = mbps(b, d);
            // akte get (verifying) of the last stored object.
            let prefix = i.to_le_bytes();
            let digest = Digest::of(&[&prefix[..], &data[..]].concat());
            let (b, d) = timed(min, || {
                let mut r = tenant.content().get(&digest)?;
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                loop {
                    let k = r.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    total += k as u64;
                }
                Ok(total)
            })?;
            let get_rate = mbps(b, d);
            let fig = format!("put {label} {kind}");
            rows.push(Row {
                figure: fig.clone(),
                value: put_rate,
                unit: "MB/s",
                baseline: "sha2 crate, same buffer".into(),
                baseline_value: sha_rate,
            });
            rows.push(Row {
                figure: fig.clone(),
                value: put_rate,
                unit: "MB/s",
                baseline: "write+fsync, same bytes".into(),
                baseline_value: fsync_rate,
            });
            if kind == "text" {
                rows.push(Row {
                    figure: fig,
                    value: put_rate,
                    unit: "MB/s",
                    baseline: "zstd -3, same buffer".into(),
                    baseline_value: zstd_rate,
                });
            }
            rows.push(Row {
                figure: format!("get {label} {kind} (verified)"),
                value: get_rate,
                unit: "MB/s",
                baseline: "sha2 crate, same buffer".into(),
                baseline_value: sha_rate,
            });
            if size >= 1_000_000 {
                let p = dir.path().join("sha256sum-input");
                std::fs::write(&p, &data)?;
                let rate = sha256sum_rate(&p, data.len() as u64)?;
                rows.push(Row {
                    figure: format!("get {label} {kind} (verified)"),
                    value: get_rate,
                    unit: "MB/s",
                    baseline: "sha256sum, same bytes (file)".into(),
                    baseline_value: rate,
                });
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

fn append_one(tenant: &Tenant, i: u64) -> Result<()> {
    let meta = format!("{{\"n\":{i}}}").into_bytes();
    let att = Attachment::new(meta);
    tenant.append(
        EntryDraft {
            actor: "bench".into(),
            kind: "bench.append".into(),
            object: String::new(),
            payloads: vec![Payload {
                kind: PayloadKind::Inline,
                role: "meta".into(),
                size: att.bytes.as_ref().map_or(0, |b| b.len() as u64),
                digest: att.digest,
            }],
        },
        vec![att],
    )?;
    Ok(())
}

fn bench_journal(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let min = Duration::from_millis(if quick { 500 } else { 3000 });
    let dir = tempfile::tempdir_in(bench_dir())?;
    // Baseline: one write + fdatasync per append, single writer, records of the same size.
    let p = dir.path().join("raw.log");
    let mut f = OpenOptions::new().create(true).append(true).open(&p)?;
    let record = vec![0x5au8; 200];
    let (n, d) = timed(min, || {
        f.write_all(&record)?;
        f.sync_data()?;
        Ok(1)
    })?;
    let raw_rate = n as f64 / d.as_secs_f64();
    let store = Arc::new(Store::open(
        akte_core::embedded::open(&dir.path().join("data"))?,
        StoreOptions::default(),
    )?);
    for writers in [1usize, 4, 16, 64] {
        let tenant = store.create_tenant(&format!("w{writers}"))?;
        let start = Instant::now();
        let deadline = start + min;
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let tenant = tenant.clone();
                std::thread::spawn(move || -> Result<u64> {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        append_one(&tenant, (w as u64) << 32 | n)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        let flushes = tenant
            .journal()
            .stats()
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed);
        rows.push(Row {
            figure: format!(
                "journal appends, {writers} writers ({:.1}/flush)",
                total as f64 / flushes.max(1) as f64
            ),
            value: rate,
            unit: "/s",
            baseline: "write+fdatasync per append, 1 writer".into(),
            baseline_value: raw_rate,
        });
    }
    Ok(())
}

/// Bytes of one proof hash.
const HASH_BYTES: f64 = 32.0;

/// `ceil(log2 n)`: the tree's height, one hash per level.
fn height(n: u64) -> u64 {
    64 - (n - 1).leading_zeros() as u64
}

fn bench_proofs(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let sizes: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let mut tree = MemoryTree::new();
        for i in 0..n {
            tree.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        let root = merkle::root(&tree, n)?;
        let reps = 20_000u64;
        let start = Instant::now();
        let mut proof = Vec::new();
        let mut hashes = 0usize;
        for k in 0..reps {
            proof = merkle::inclusion_proof(&tree, (k * 7919) % n, n)?;
            hashes += proof.len();
        }
        let make_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let inclusion_bytes = hashes as f64 * HASH_BYTES / reps as f64;
        let idx = ((reps - 1) * 7919) % n;
        let leaf = merkle::leaf_hash(&idx.to_be_bytes());
        let start = Instant::now();
        for _ in 0..reps {
            merkle::verify_inclusion(&leaf, idx, n, &proof, &root)?;
        }
        let verify_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        // Baseline: one SHA-256 of 65 bytes (a node hash), times the proof length.
        let start = Instant::now();
        let buf = [7u8; 65];
        for _ in 0..reps {
            std::hint::black_box(Sha256::digest(buf));
        }
        let one_hash_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let hash_us = one_hash_us * proof.len() as f64;
        rows.push(Row {
            figure: format!("inclusion proof make, n={n} ({} hashes)", proof.len()),
            value: make_us,
            unit: "µs",
            baseline: "proof-length node hashes".into(),
            baseline_value: hash_us,
        });
        rows.push(Row {
            figure: format!("inclusion proof verify, n={n}"),
            value: verify_us,
            unit: "µs",
            baseline: "proof-length node hashes".into(),
            baseline_value: hash_us,
        });

        // Consistency proofs from old sizes spread over the tree to n (a client that last saw
        // an older checkpoint), against roots computed once beforehand.
        let olds: Vec<(u64, Digest)> = (0..64u64)
            .map(|k| {
                let m = 1 + (k * 104_729 + 7) % (n - 1);
                Ok((m, merkle::root(&tree, m)?))
            })
            .collect::<Result<_>>()?;
        let start = Instant::now();
        let mut proofs = Vec::with_capacity(olds.len());
        let mut hashes = 0usize;
        for k in 0..reps {
            let (m, _) = olds[(k % olds.len() as u64) as usize];
            let p = merkle::consistency_proof(&tree, m, n)?;
            hashes += p.len();
            if proofs.len() < olds.len() {
                proofs.push(p);
            }
        }
        let make_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let consistency_bytes = hashes as f64 * HASH_BYTES / reps as f64;
        let mean_len = hashes as f64 / reps as f64;
        let start = Instant::now();
        for k in 0..reps as usize {
            let (m, old_root) = &olds[k % olds.len()];
            merkle::verify_consistency(*m, n, old_root, &root, &proofs[k % olds.len()])?;
        }
        let verify_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let hash_us = one_hash_us * mean_len;
        rows.push(Row {
            figure: format!("consistency proof make, n={n} ({mean_len:.1} hashes)"),
            value: make_us,
            unit: "µs",
            baseline: "proof-length node hashes".into(),
            baseline_value: hash_us,
        });
        rows.push(Row {
            figure: format!("consistency proof verify, n={n}"),
            value: verify_us,
            unit: "µs",
            baseline: "proof-length node hashes".into(),
            baseline_value: hash_us,
        });
        for (kind, bytes) in [
            ("inclusion", inclusion_bytes),
            ("consistency", consistency_bytes),
        ] {
            rows.push(Row {
                figure: format!("{kind} proof size, n={n} (mean)"),
                value: bytes,
                unit: "B",
                baseline: "32 B per tree level, ceil(log2 n)".into(),
                baseline_value: HASH_BYTES * height(n) as f64,
            });
        }
    }
    Ok(())
}

/// Runs `f` over `items` on `threads` threads (item i on thread i mod threads).
fn on_threads<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || {
                for item in items.iter().skip(t).step_by(threads) {
                    f(item);
                }
            });
        }
    });
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Verify throughput over a store of mixed documents, beside hashing the same original
/// bytes with the sha2 crate on one core and on all cores, and beside the work verify cannot
/// avoid (zstd decoding where the object is compressed, plus hashing) on all cores. Each
/// figure is the best of three rounds, taken in turn, so a busy moment on the shared machine
/// hits all of them alike.
fn bench_verify(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let store = Store::open(
        akte_core::embedded::open(&dir.path().join("data"))?,
        StoreOptions::default(),
    )?;
    let tenant = store.create_tenant("verify")?;
    let docs = if quick { 100 } else { 600 };
    let mut originals: Vec<Vec<u8>> = Vec::with_capacity(docs);
    for i in 0..docs {
        // About 55 % compressible text, 45 % incompressible, 20 KB to 1 MB.
        let size = 20_000 + (i * 7919) % 1_000_000;
        let data = if i % 20 < 11 {
            text_bytes(size, i as u64 + 7)
        } else {
            random_bytes(size, i as u64 + 7)
        };
        let put = tenant.put_content(&data[..])?;
        tenant.append(
            EntryDraft {
                actor: "bench".into(),
                kind: "bench.document".into(),
                object: String::new(),
                payloads: vec![Payload {
                    kind: PayloadKind::Content,
                    role: "rendition".into(),
                    size: put.size,
                    digest: put.digest,
                }],
            },
            vec![],
        )?;
        originals.push(data);
    }
    tenant.checkpoint()?;
    let total: u64 = originals.iter().map(|d| d.len() as u64).sum();
    // The objects as the store keeps them: zstd where that is smaller, raw otherwise.
    let stored: Vec<(bool, Vec<u8>)> = originals
        .iter()
        .map(|d| {
            let z = zstd::bulk::compress(d, 3)?;
            Ok(if z.len() < d.len() * 9 / 10 {
                (true, z)
            } else {
                (false, d.clone())
            })
        })
        .collect::<Result<_>>()?;
    let n = cores();
    let (mut sha1, mut sha_n, mut decode_n, mut verify) = (0f64, 0f64, 0f64, 0f64);
    let mut content_only = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        for d in &originals {
            std::hint::black_box(Sha256::digest(d));
        }
        sha1 = sha1.max(mbps(total, start.elapsed()));
        let start = Instant::now();
        on_threads(&originals, n, |d| {
            std::hint::black_box(Sha256::digest(d));
        });
        sha_n = sha_n.max(mbps(total, start.elapsed()));
        let start = Instant::now();
        on_threads(&stored, n, |(z, bytes)| {
            if *z {
                let mut h = Sha256::new();
                let mut dec = zstd::stream::read::Decoder::new(&bytes[..]).expect("decoder");
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let k = dec.read(&mut buf).expect("zstd decode");
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                }
                std::hint::black_box(h.finalize());
            } else {
                std::hint::black_box(Sha256::digest(bytes));
            }
        });
        decode_n = decode_n.max(mbps(total, start.elapsed()));
        let start = Instant::now();
        let report =
            akte_core::verify::verify_store(&store, akte_core::verify::VerifyOptions::default())?;
        verify = verify.max(mbps(total, start.elapsed()));
        if !report.is_clean() {
            bail!("verify found problems in the benchmark store");
        }
        let start = Instant::now();
        akte_core::verify::verify_store(
            &store,
            akte_core::verify::VerifyOptions {
                index: false,
                ..Default::default()
            },
        )?;
        content_only = content_only.max(mbps(total, start.elapsed()));
    }
    let fig = format!("full verify, {docs} docs, {} MB", total / 1_000_000);
    for (baseline, value) in [
        ("sha2 crate, same bytes, 1 core".to_owned(), sha1),
        (format!("sha2 crate, same bytes, {n} cores"), sha_n),
        (format!("zstd decode + sha2, {n} cores"), decode_n),
    ] {
        rows.push(Row {
            figure: fig.clone(),
            value: verify,
            unit: "MB/s",
            baseline,
            baseline_value: value,
        });
    }
    rows.push(Row {
        figure: "verify without the index rebuild".into(),
        value: content_only,
        unit: "MB/s",
        baseline: format!("zstd decode + sha2, {n} cores"),
        baseline_value: decode_n,
    });
    Ok(())
}

/// Index rebuild per 100,000 entries, beside a plain scan of the same journal.
fn bench_rebuild(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let store = Arc::new(Store::open(
        akte_core::embedded::open(&dir.path().join("data"))?,
        StoreOptions::default(),
    )?);
    let tenant = store.create_tenant("rebuild")?;
    let n: u64 = if quick { 20_000 } else { 100_000 };
    let writers = 32u64;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let tenant = tenant.clone();
            std::thread::spawn(move || -> Result<()> {
                for i in (w..n).step_by(writers as usize) {
                    append_one(&tenant, i)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let size = tenant.size()?;
    let start = Instant::now();
    let mut count = 0u64;
    for rec in tenant.journal().iter(None, size)? {
        std::hint::black_box(rec?);
        count += 1;
    }
    let scan = start.elapsed().as_secs_f64() * 100_000.0 / count as f64;
    let start = Instant::now();
    let rebuilt = tenant.rebuild_index()?;
    let rebuild = start.elapsed().as_secs_f64() * 100_000.0 / rebuilt as f64;
    rows.push(Row {
        figure: format!("index rebuild per 100,000 entries (of {rebuilt})"),
        value: rebuild,
        unit: "s",
        baseline: "journal scan (read, CRC, decode)".into(),
        baseline_value: scan,
    });
    // Proofs from the tenant's index at this size and, on full runs, after growing the tenant
    // to 10^6 entries, beside the same proofs from an in-memory tree.
    index_proofs(rows, &tenant, size)?;
    if !quick {
        let target = 1_000_000u64;
        let from = tenant.size()?;
        let writers = 64u64;
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let tenant = tenant.clone();
                std::thread::spawn(move || -> Result<()> {
                    for i in (from + w..target).step_by(writers as usize) {
                        append_one(&tenant, i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        index_proofs(rows, &tenant, tenant.size()?)?;
    }
    Ok(())
}

/// Inclusion and consistency proofs from a tenant's index (perfect nodes read from its
/// nodes file, upper levels cached as proofs read them), beside the same proofs from a
/// `MemoryTree` of the same leaves.
fn index_proofs(rows: &mut Vec<Row>, tenant: &Tenant, size: u64) -> Result<()> {
    let reps = 20_000u64;
    let mut tree = MemoryTree::new();
    for seq in 0..size {
        tree.push(tenant.entry(seq)?.leaf);
    }
    let old = |k: u64| 1 + (k * 104_729 + 7) % (size - 1);
    let start = Instant::now();
    for k in 0..reps {
        std::hint::black_box(tenant.inclusion_proof((k * 7919) % size, size)?);
    }
    let index_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let start = Instant::now();
    for k in 0..reps {
        std::hint::black_box(merkle::inclusion_proof(&tree, (k * 7919) % size, size)?);
    }
    let mem_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
    rows.push(Row {
        figure: format!("inclusion proof from the index, n={size}"),
        value: index_us,
        unit: "µs",
        baseline: "same proof from an in-memory tree".into(),
        baseline_value: mem_us,
    });
    let start = Instant::now();
    for k in 0..reps {
        std::hint::black_box(tenant.consistency_proof(old(k), size)?);
    }
    let index_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let start = Instant::now();
    for k in 0..reps {
        std::hint::black_box(merkle::consistency_proof(&tree, old(k), size)?);
    }
    let mem_us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
    rows.push(Row {
        figure: format!("consistency proof from the index, n={size}"),
        value: index_us,
        unit: "µs",
        baseline: "same proof from an in-memory tree".into(),
        baseline_value: mem_us,
    });
    Ok(())
}

/// A plan unit and a file in it, where a library-level bench files its documents.
pub(crate) fn sample_file(
    t: &akte_core::records::TenantRecords,
) -> Result<akte_core::records::File> {
    use akte_core::records::{DisposalDecision, NewFile, NewPlanUnit, Retention};
    let unit = t.create_plan_unit(
        "bench",
        NewPlanUnit {
            id: None,
            parent: None,
            code: "1".into(),
            title: "Allgemeines".into(),
            description: String::new(),
            retention: Retention::Years(10),
            disposal: DisposalDecision::Destroy,
        },
        None,
    )?;
    Ok(t.create_file(
        "bench",
        NewFile {
            plan_unit: unit.id,
            subject: "Sammelakte".into(),
            ..NewFile::default()
        },
        None,
    )?)
}

pub(crate) fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("AKTE_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(memory::CHILD_ARG) {
        let dir = args.get(1).context("data directory for the daemon child")?;
        return memory::child_main(Path::new(dir));
    }
    if args.first().map(String::as_str) == Some(index_scale::CHILD_ARG) {
        let dir = args
            .get(1)
            .context("data directory for the rebuild child")?;
        return index_scale::child_main(Path::new(dir));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let what = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    type Part = fn(&mut Vec<Row>, bool) -> Result<()>;
    let parts: [(&str, Part); 14] = [
        ("store", bench_store),
        ("journal", bench_journal),
        ("proofs", bench_proofs),
        ("verify", bench_verify),
        ("rebuild", bench_rebuild),
        ("index-scale", index_scale::bench_index_scale),
        ("grpc", grpc::bench_grpc),
        ("grpc-scale", grpc_scale::bench_grpc_scale),
        ("small", grpc::bench_small),
        ("handover", grpc::bench_handover),
        ("memory", memory::bench_memory),
        ("postgres", postgres::bench_postgres),
        ("fulltext", fulltext::bench_fulltext),
        ("ingest", peers::bench_ingest),
    ];
    let chosen: Vec<&(&str, Part)> = match what {
        "all" => parts.iter().collect(),
        one => match parts.iter().find(|(name, _)| *name == one) {
            Some(p) => vec![p],
            None => bail!(
                "unknown benchmark {one:?}: use store, journal, proofs, verify, rebuild, index-scale, grpc, grpc-scale, \
                 small, handover, memory, postgres, ingest, fulltext or all"
            ),
        },
    };
    let mut rows = Vec::new();
    let started = Instant::now();
    let mut times = Vec::new();
    for (name, part) in chosen {
        let t = Instant::now();
        part(&mut rows, quick)?;
        times.push(format!("{name} {:.0} s", t.elapsed().as_secs_f64()));
    }
    print_table(&rows);
    println!(
        "\n{} cores, ran {:.0} s ({})",
        cores(),
        started.elapsed().as_secs_f64(),
        times.join(", ")
    );
    Ok(())
}
