//! The store-side tamper campaign: random damage to the bytes of a data directory must be
//! found, and the damaged object named, by both verifiers of a store: `akte verify` (this
//! crate's CLI, offline on `--data-dir`) and `tools/verify_store.py` (Python, written from
//! docs/FORMAT.md alone).
//!
//! One realistic store is built with akte-core's records model: two tenants, files, cases,
//! documents and versions whose renditions are of mixed sizes (short and long text stored
//! with zstd, one streamed through zstd at more than 1 MiB, random bytes stored raw), a
//! journal spread over several small segments, a checkpoint part-way and a final checkpoint
//! covering the whole journal (so that damage to the last record, which akte cuts back as a
//! torn tail, still shows as a signed entry that is missing). The first tenant's final
//! checkpoint carries the cosignature of a registered witness, so flips in a stored
//! checkpoint can hit a witness's line, which both verifiers check.
//!
//! Objects shorter than 1 MiB are records in the tenants' pack files (docs/FORMAT.md,
//! "Pack files"), so most content is there; the one large document per tenant is a
//! content object file of its own.
//!
//! For each class of bytes (a content object file, a pack file, a journal segment file, a
//! stored checkpoint file) every trial copies the store, XORs 1 to 3 distinct bytes at
//! random positions of one randomly chosen file of that class with random non-zero
//! values, runs `verify_store.py` and then `akte verify` (read-only: it reports a torn
//! tail and leaves it) on the copy, and requires both to fail and to name
//! the damaged file (its path under the data directory, which holds the digest, pack
//! number, segment or checkpoint name). A few dozen trials per class run normally;
//! `store_tamper_campaign_long` (ignored) runs 240 per class over four seeds, each with
//! its own store.
//!
//! A pack has no torn-tail position to hit: its last record is complete and indexed, and
//! akte cuts back a damaged last record of the last pack at open only beyond its index
//! marker, which a clean open leaves at the end. So damage to the last record is corrupt
//! (or missing) content for akte; the Python verifier reports it as a torn tail (a
//! warning) and, because the journal refers to the object, as a problem naming the pack.
//!
//! Damage that by design changes nothing verifiable (docs/FORMAT.md, "What store
//! verification leaves out, by design"): a zstd object, in an object file or a present
//! pack record, whose damaged payload is still one complete frame filling the payload
//! that decodes, within the 128 MiB window limit, to the original bytes (the frame
//! header's unused bit, a larger window size), with every header (object header, pack
//! header, record headers) unchanged. Such a trial is recognised by decoding the damaged
//! payload independently (the `zstd` crate, not akte's reader), must leave both
//! verifiers clean, and is counted as neutral, not as a detection;
//! `zstd_neutral_damage_leaves_both_verifiers_clean` checks those bits on purpose, in
//! object files and in pack records. Lines
//! of other keys in a stored checkpoint are not neutral: a line of an unknown key and a
//! changed witness line must be found (`checkpoint_lines_of_unknown_keys_and_changed_witness_lines_are_found`),
//! while the line of a witness removed later stays valid.
//!
//! Needs `python3` and a zstd decoder for the Python verifier: the `zstd` command-line tool
//! or the `zstandard` module. Without one the test fails and says so; it never skips.
//! Replay a campaign with `AKTE_TEST_SEED=<seed printed>`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use akte_core::embedded::journal::JournalOptions;
use akte_core::embedded::EmbeddedOptions;
use akte_core::keys::SigningKeyPair;
use akte_core::note::{cosign, Checkpoint};
use akte_core::records::*;
use akte_core::store::StoreOptions;
use uuid::Uuid;

const REG: &str = "registrar:weber";
const TENANTS: [&str; 2] = ["stadt-erfurt", "kreis-gotha"];
const OBJECT_HEADER_LEN: usize = 24;
const PACK_HEADER_LEN: usize = 24;
const PACK_RECORD_HEADER_LEN: usize = 56;
const SEGMENT_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 12;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The witness registered for the first tenant; its key is derived from a fixed seed.
const WITNESS: &str = "archiv.example/zeuge";

fn witness_key() -> SigningKeyPair {
    SigningKeyPair::from_seed(WITNESS, &[7; 32]).unwrap()
}

// --------------------------------------------------------------------------- RNG

/// A small seedable generator (xorshift64*), as in the workspace tests' support crate.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn seed_from_env() -> u64 {
        if let Some(v) = std::env::var("AKTE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return v;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        t ^ (u64::from(std::process::id()) << 32)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// --------------------------------------------------------------------------- the store

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        journal: JournalOptions {
            segment_max_bytes: 8192,
        },
        ..EmbeddedOptions::default()
    }
}

fn add_version(t: &TenantRecords, doc: Uuid, files: Vec<(&str, Vec<u8>)>) {
    let renditions = files
        .into_iter()
        .map(|(name, bytes)| {
            let put = t.put_content(&bytes[..]).unwrap();
            NewRendition {
                file_name: name.into(),
                media_type: if name.ends_with(".pdf") {
                    "application/pdf".into()
                } else {
                    "application/octet-stream".into()
                },
                sha256: put.digest,
                size: put.size,
            }
        })
        .collect();
    t.add_version(
        REG,
        doc,
        NewVersion {
            comment: "eingegangen".into(),
            renditions,
        },
        None,
    )
    .unwrap();
}

/// A text that zstd compresses well (stored with codec 1).
fn text(subject: &str, rng: &mut Rng, lines: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..rng.range(lines / 2 + 1, lines + 2) {
        s.push_str(&format!(
            "{subject}, Absatz {i}: Antrag auf Baugenehmigung, Flurstück {}/{}\n",
            rng.range(1, 99),
            rng.range(1, 30)
        ));
    }
    s.into_bytes()
}

/// One file with a case and documents; every version adds renditions of mixed kinds.
fn add_file(t: &TenantRecords, unit: Uuid, subject: &str, rng: &mut Rng) {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let c = t
        .create_case(
            REG,
            NewCase {
                parent: f.id,
                subject: "Antrag".into(),
                ..NewCase::default()
            },
            None,
        )
        .unwrap();
    let doc = |parent: Uuid, subject: &str| {
        t.create_document(
            REG,
            NewDocument {
                parent,
                subject: subject.into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap()
        .id
    };
    let antrag = doc(c.id, "Bauantrag");
    add_version(t, antrag, vec![("antrag.txt", text(subject, rng, 60))]);
    let random_len = rng.range(500, 6000) as usize;
    add_version(
        t,
        antrag,
        vec![
            ("antrag.pdf", rng.bytes(random_len)),
            ("antrag.txt", format!("Antrag {subject}").into_bytes()),
        ],
    );
    let bescheid = doc(f.id, "Bescheid");
    add_version(
        t,
        bescheid,
        vec![
            ("bescheid.txt", text(subject, rng, 15)),
            ("bescheid.pdf", {
                let n = rng.range(100, 2000) as usize;
                rng.bytes(n)
            }),
        ],
    );
    let plan = doc(bescheid, "Lageplan");
    add_version(t, plan, vec![("lageplan.tif", rng.bytes(1500))]);
}

/// Builds the store every trial copies; the records model is closed when this returns.
fn build_store(seed: u64) -> tempfile::TempDir {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    for (k, id) in TENANTS.iter().enumerate() {
        let t = records.create_tenant(id).unwrap();
        let unit = t
            .create_plan_unit(
                REG,
                NewPlanUnit {
                    code: "1".into(),
                    title: "Bauleitplanung".into(),
                    retention: Retention::Years(10),
                    disposal: DisposalDecision::Archive,
                    ..NewPlanUnit::default()
                },
                None,
            )
            .unwrap()
            .id;
        add_file(&t, unit, "Bebauungsplan Nord", &mut rng);
        t.tenant().checkpoint().unwrap();
        add_file(&t, unit, "Carport Süd", &mut rng);
        // One large document per tenant: 1 MiB or more is probed and then streamed, through
        // one zstd frame (compressible) or raw (random).
        let big = doc_in_new_file(&t, unit, "Gutachten");
        if k == 0 {
            let mut long = Vec::new();
            while long.len() < 1100 << 10 {
                long.extend_from_slice(&text("Gutachten", &mut rng, 200));
            }
            add_version(&t, big, vec![("gutachten.txt", long)]);
        } else {
            add_version(&t, big, vec![("scan.tif", rng.bytes(1040 << 10))]);
        }
        add_file(&t, unit, "Gewerbegebiet Ost", &mut rng);
        let note = t.tenant().checkpoint().unwrap();
        if k == 0 {
            // A registered witness cosigns the final checkpoint: one more signature line.
            let w = witness_key();
            t.tenant().add_witness(&w.verifier()).unwrap();
            let cp = Checkpoint::parse_body(&note.text).unwrap();
            let mut cosigned = note;
            cosigned
                .push_signature(cosign(&cp, &w, 1_700_000_000).unwrap())
                .unwrap();
            let out = t.tenant().add_cosignatures(&cosigned.to_bytes()).unwrap();
            assert_eq!(out.added, vec![WITNESS.to_owned()]);
        }
    }
    drop(records);
    dir
}

/// The stored checkpoint that carries the witness's line, and that line (with its LF).
fn cosigned_checkpoint(data: &Path) -> (PathBuf, String, String) {
    let files = files_of(data);
    let prefix = format!("\u{2014} {WITNESS} ");
    for rel in &files[&Class::Checkpoint] {
        let note = fs::read_to_string(data.join(rel)).unwrap();
        if let Some(line) = note.lines().find(|l| l.starts_with(&prefix)) {
            let line = format!("{line}\n");
            return (rel.clone(), note, line);
        }
    }
    panic!("no cosigned checkpoint in the store")
}

fn doc_in_new_file(t: &TenantRecords, unit: Uuid, subject: &str) -> Uuid {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    t.create_document(
        REG,
        NewDocument {
            parent: f.id,
            subject: subject.into(),
            ..NewDocument::default()
        },
        None,
    )
    .unwrap()
    .id
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Content,
    Pack,
    Segment,
    Checkpoint,
}

impl Class {
    const ALL: [Class; 4] = [
        Class::Content,
        Class::Pack,
        Class::Segment,
        Class::Checkpoint,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Content => "content object",
            Class::Pack => "pack file",
            Class::Segment => "journal segment",
            Class::Checkpoint => "stored checkpoint",
        }
    }
}

/// The files of each class in a store, as paths relative to the data directory.
fn files_of(data: &Path) -> BTreeMap<Class, Vec<PathBuf>> {
    let mut out: BTreeMap<Class, Vec<PathBuf>> = BTreeMap::new();
    for id in TENANTS {
        let t = Path::new("tenants").join(id);
        let list = |sub: &str| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = fs::read_dir(data.join(&t).join(sub))
                .unwrap()
                .map(|e| t.join(sub).join(e.unwrap().file_name()))
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect();
            v.sort();
            v
        };
        out.entry(Class::Segment)
            .or_default()
            .extend(list("journal"));
        out.entry(Class::Checkpoint)
            .or_default()
            .extend(list("checkpoints"));
        for fan in list("content/objects") {
            let fan = fan.strip_prefix(&t).unwrap().to_string_lossy().into_owned();
            out.entry(Class::Content).or_default().extend(list(&fan));
        }
        out.entry(Class::Pack)
            .or_default()
            .extend(list("content/packs"));
    }
    out
}

/// A record of a pack file: where it starts, its codec, and where its payload is.
#[derive(Debug, Clone)]
struct PackRecord {
    offset: usize,
    codec: u8,
    payload: std::ops::Range<usize>,
}

/// The records of an undamaged pack file (docs/FORMAT.md, "Pack files"), front to back.
fn pack_records(pack: &[u8]) -> Vec<PackRecord> {
    assert_eq!(&pack[..8], b"AKTE-PAK");
    let mut out = Vec::new();
    let mut at = PACK_HEADER_LEN;
    while at < pack.len() {
        let h = &pack[at..at + PACK_RECORD_HEADER_LEN];
        assert_eq!(&h[..4], b"AKP1", "record at {at}");
        let len = u32::from_be_bytes(h[48..52].try_into().unwrap()) as usize;
        let start = at + PACK_RECORD_HEADER_LEN;
        out.push(PackRecord {
            offset: at,
            codec: h[5],
            payload: start..start + len,
        });
        at = start + len;
    }
    assert_eq!(at, pack.len(), "records end at the end of the pack");
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for item in fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            fs::copy(item.path(), &target).unwrap();
        }
    }
}

// --------------------------------------------------------------------------- the verifiers

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_store.py")
}

/// The Python verifier decodes zstd objects with the `zstandard` module or the `zstd`
/// tool; without either it only warns ("not checked"), so this campaign could not tell
/// damage inside a zstd frame. Fail, loudly, instead of skipping.
fn require_zstd_decoder() {
    let tool = Command::new("zstd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let module = Command::new("python3")
        .args(["-c", "import zstandard"])
        .output()
        .unwrap_or_else(|e| panic!("this test needs python3 on PATH (CI has it): {e}"))
        .status
        .success();
    assert!(
        tool || module,
        "tools/verify_store.py needs a zstd decoder to check zstd content objects, and this \
         test does not skip without one: install the `zstd` command-line tool (Debian: \
         apt-get install zstd; .ci/run does) or the Python module `zstandard`"
    );
}

/// What one verifier said about one store.
#[derive(Debug)]
struct Verdict {
    code: i32,
    /// Problems (and, for the Python verifier, warnings) as JSON text, one per finding;
    /// for a run that could not produce a report, its error output.
    findings: Vec<String>,
    problems: usize,
}

impl Verdict {
    fn detected(&self) -> bool {
        self.code != 0
    }

    fn names(&self, rel: &Path) -> bool {
        let rel = rel.to_string_lossy();
        self.findings.iter().any(|f| f.contains(&*rel))
    }
}

fn python_verdict(data: &Path) -> (Verdict, serde_json::Value) {
    let out = Command::new("python3")
        .arg(script())
        .arg(data)
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("this test needs python3 on PATH (CI has it): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Traceback"),
        "verify_store.py crashed on {}:\n{stderr}",
        data.display()
    );
    let code = out.status.code().expect("python3 killed by a signal");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from verify_store.py ({e}), exit {code}:\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut findings: Vec<String> = Vec::new();
    let mut problems = 0;
    for p in json["problems"].as_array().unwrap() {
        findings.push(p.to_string());
        problems += 1;
    }
    for t in json["tenants"].as_array().unwrap() {
        for p in t["problems"].as_array().unwrap() {
            findings.push(p.to_string());
            problems += 1;
        }
        for w in t["warnings"].as_array().unwrap() {
            findings.push(w.to_string());
        }
    }
    assert_eq!(
        json["clean"].as_bool(),
        Some(problems == 0),
        "clean flag and problems disagree"
    );
    assert_eq!(code, if problems == 0 { 0 } else { 1 }, "exit status");
    (
        Verdict {
            code,
            findings,
            problems,
        },
        json,
    )
}

fn akte_verdict(data: &Path) -> (Verdict, Option<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_akte"))
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "verify"])
        .env_remove("AKTE_LOG")
        .env_remove("AKTE_DATA_DIR")
        .output()
        .expect("running akte");
    let code = out.status.code().expect("akte killed by a signal");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "akte verify panicked on {}:\n{stderr}",
        data.display()
    );
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(json) => {
            let mut findings = Vec::new();
            for t in json["tenants"].as_array().unwrap() {
                for p in t["problems"].as_array().unwrap() {
                    findings.push(p.to_string());
                }
            }
            let problems = findings.len();
            for r in json["torn_tails"].as_array().into_iter().flatten() {
                findings.push(r.to_string());
            }
            assert_eq!(code, if problems == 0 { 0 } else { 1 }, "exit status");
            (
                Verdict {
                    code,
                    findings,
                    problems,
                },
                Some(json),
            )
        }
        Err(_) => {
            // No report: the store could not be opened or verified at all.
            assert_ne!(code, 0, "akte verify succeeded without a report:\n{stderr}");
            (
                Verdict {
                    code,
                    findings: vec![stderr],
                    problems: 1,
                },
                None,
            )
        }
    }
}

// --------------------------------------------------------------------------- damage

/// Which part of a zstd frame the byte at `at` is in.
fn zstd_region(payload: &[u8], at: usize) -> &'static str {
    let fhd = payload[4];
    let single = (fhd >> 5) & 1;
    let header_len = 5
        + usize::from(single == 0)
        + [0, 1, 2, 4][usize::from(fhd & 3)]
        + [usize::from(single), 2, 4, 8][usize::from(fhd >> 6)];
    if at < 4 {
        "zstd magic"
    } else if at == 4 {
        "zstd frame header descriptor"
    } else if at < header_len {
        "zstd window/size fields"
    } else if fhd & 4 != 0 && at >= payload.len() - 4 {
        "zstd content checksum"
    } else {
        "zstd blocks"
    }
}

/// Which part of its file the (first) damaged byte is in, for the summary.
fn region(class: Class, original: &[u8], at: usize) -> &'static str {
    match class {
        Class::Content => {
            if at < OBJECT_HEADER_LEN {
                return "object header";
            }
            if original[9] == 0 {
                return "raw payload";
            }
            zstd_region(&original[OBJECT_HEADER_LEN..], at - OBJECT_HEADER_LEN)
        }
        Class::Pack => {
            if at < PACK_HEADER_LEN {
                return "pack header";
            }
            let r = pack_records(original)
                .into_iter()
                .find(|r| r.offset <= at && at < r.payload.end)
                .expect("every byte after the pack header is in a record");
            if at < r.payload.start {
                "record header"
            } else if r.codec == 0 {
                "raw payload"
            } else {
                "zstd payload"
            }
        }
        Class::Segment => {
            if at < SEGMENT_HEADER_LEN {
                return "segment header";
            }
            let mut pos = SEGMENT_HEADER_LEN;
            while pos < original.len() {
                let len = u32::from_be_bytes(original[pos + 4..pos + 8].try_into().unwrap());
                let end = pos + RECORD_HEADER_LEN + len as usize;
                if at < end {
                    return if at < pos + RECORD_HEADER_LEN {
                        "record framing"
                    } else {
                        "record body"
                    };
                }
                pos = end;
            }
            unreachable!("offset {at} beyond the records")
        }
        Class::Checkpoint => {
            let text_end = original.windows(2).position(|w| w == b"\n\n").unwrap() + 1;
            let first_line_end = text_end
                + 1
                + original[text_end + 1..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap();
            if at < text_end {
                "checkpoint text"
            } else if at <= first_line_end {
                "tenant's signature line"
            } else {
                "witness's signature line"
            }
        }
    }
}

/// Whether akte cuts the damage back as a torn tail: it is in the tenant's last segment,
/// past its header, and every record from the first damaged one to the end of the file is
/// damaged (nothing valid follows). Only the final checkpoint then shows the loss.
fn torn_tail(rel: &Path, original: &[u8], flips: &[(usize, u8)], all: &[PathBuf]) -> bool {
    let dir = rel.parent().unwrap();
    let last = all
        .iter()
        .filter(|p| p.parent() == Some(dir))
        .max()
        .unwrap();
    if last != rel || flips[0].0 < SEGMENT_HEADER_LEN {
        return false;
    }
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < original.len() {
        let len = u32::from_be_bytes(original[pos + 4..pos + 8].try_into().unwrap());
        let end = pos + RECORD_HEADER_LEN + len as usize;
        records.push(pos..end);
        pos = end;
    }
    let damaged = |r: &std::ops::Range<usize>| flips.iter().any(|(at, _)| r.contains(at));
    let first = records.iter().position(damaged).unwrap();
    records[first..].iter().all(damaged)
}

/// Decodes a zstd payload (of an object file or a pack record) as docs/FORMAT.md requires
/// (one complete zstd frame, nothing after it, window at most 2^27), independently of
/// akte's reader.
fn zstd_original(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return None;
    }
    if zstd::zstd_safe::find_frame_compressed_size(payload).ok()? != payload.len() {
        return None;
    }
    let mut d = zstd::stream::read::Decoder::with_buffer(payload)
        .ok()?
        .single_frame();
    d.window_log_max(27).ok()?;
    let mut out = Vec::new();
    d.read_to_end(&mut out).ok()?;
    Some(out)
}

/// True if a damaged zstd payload is, by every rule of docs/FORMAT.md, the same content:
/// it is still one frame filling the payload that decodes to the original's bytes.
fn zstd_unchanged(original: &[u8], damaged: &[u8]) -> bool {
    let decoded = zstd_original(damaged);
    decoded.is_some() && decoded == zstd_original(original)
}

/// True if the damaged object still holds, by every rule of docs/FORMAT.md, the same
/// original bytes: the header is untouched and the damaged zstd frame decodes to them.
fn content_unchanged(original: &[u8], damaged: &[u8]) -> bool {
    original[..OBJECT_HEADER_LEN] == damaged[..OBJECT_HEADER_LEN]
        && original[9] == 1
        && zstd_unchanged(
            &original[OBJECT_HEADER_LEN..],
            &damaged[OBJECT_HEADER_LEN..],
        )
}

/// True if the damaged pack still holds, by every rule of docs/FORMAT.md, the same
/// objects: the pack header and every record header are untouched, and every changed
/// payload is a zstd payload that still decodes to its original bytes.
fn pack_unchanged(original: &[u8], damaged: &[u8]) -> bool {
    if original.len() != damaged.len() || original[..PACK_HEADER_LEN] != damaged[..PACK_HEADER_LEN]
    {
        return false;
    }
    pack_records(original).into_iter().all(|r| {
        let header = r.offset..r.payload.start;
        let (before, after) = (&original[r.payload.clone()], &damaged[r.payload.clone()]);
        original[header.clone()] == damaged[header]
            && (before == after || (r.codec == 1 && zstd_unchanged(before, after)))
    })
}

/// One damaged copy: which file, which bytes, and what must be found.
#[derive(Debug, Clone)]
struct Spec {
    class: Class,
    /// The damaged file, relative to the data directory.
    rel: PathBuf,
    /// (offset, XOR value), distinct offsets, values non-zero.
    flips: Vec<(usize, u8)>,
}

fn make_spec(
    class: Class,
    files: &BTreeMap<Class, Vec<PathBuf>>,
    base: &Path,
    rng: &mut Rng,
) -> Spec {
    let list = &files[&class];
    let rel = list[rng.range(0, list.len() as u64) as usize].clone();
    let len = fs::metadata(base.join(&rel)).unwrap().len();
    let n = rng.range(1, 4).min(len);
    let mut flips: Vec<(usize, u8)> = Vec::new();
    while (flips.len() as u64) < n {
        let at = rng.range(0, len) as usize;
        let x = rng.range(1, 256) as u8;
        if flips.iter().all(|&(o, _)| o != at) {
            flips.push((at, x));
        }
    }
    flips.sort();
    Spec { class, rel, flips }
}

struct Outcome {
    spec: Spec,
    region: &'static str,
    torn_tail: bool,
    neutral: bool,
    python: Verdict,
    akte: Verdict,
}

impl Outcome {
    fn ok(&self) -> bool {
        if self.neutral {
            !self.python.detected() && !self.akte.detected()
        } else {
            self.python.detected()
                && self.akte.detected()
                && self.python.names(&self.spec.rel)
                && self.akte.names(&self.spec.rel)
        }
    }
}

fn run_trial(base: &Path, all: &BTreeMap<Class, Vec<PathBuf>>, spec: Spec) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    copy_dir(base, &data);
    let path = data.join(&spec.rel);
    let original = fs::read(&path).unwrap();
    let mut damaged = original.clone();
    for &(at, x) in &spec.flips {
        damaged[at] ^= x;
    }
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, &damaged).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    let first = spec.flips[0].0;
    let neutral = match spec.class {
        Class::Content => content_unchanged(&original, &damaged),
        Class::Pack => pack_unchanged(&original, &damaged),
        Class::Segment | Class::Checkpoint => false,
    };
    let torn = spec.class == Class::Segment
        && torn_tail(&spec.rel, &original, &spec.flips, &all[&Class::Segment]);
    // Python first (the order once mattered: `akte verify` used to cut a torn tail).
    let (python, _) = python_verdict(&data);
    let (akte, _) = akte_verdict(&data);
    Outcome {
        region: region(spec.class, &original, first),
        torn_tail: torn,
        neutral,
        spec,
        python,
        akte,
    }
}

#[derive(Default)]
struct Tally {
    trials: usize,
    neutral: usize,
    python_detected: usize,
    python_named: usize,
    akte_detected: usize,
    akte_named: usize,
    torn_tail: usize,
    regions: BTreeMap<&'static str, usize>,
    akte_codes: BTreeMap<i32, usize>,
}

/// Runs `per_class` trials of every class on the store built from `seed`, on all cores;
/// adds to `tally` and returns the failures.
fn campaign(seed: u64, per_class: usize, tally: &mut BTreeMap<Class, Tally>) -> Vec<String> {
    let base_dir = build_store(seed);
    let base = base_dir.path();
    let files = files_of(base);
    for class in Class::ALL {
        assert!(
            !files[&class].is_empty(),
            "no {} in the store",
            class.name()
        );
    }
    let mut rng = Rng::new(seed);
    let specs: Vec<Spec> = Class::ALL
        .iter()
        .flat_map(|&class| (0..per_class).map(move |_| class))
        .map(|class| make_spec(class, &files, base, &mut rng))
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let o = run_trial(base, &files, spec.clone());
                outcomes.lock().unwrap().push((i, o));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    for (i, o) in outcomes {
        let n = tally.entry(o.spec.class).or_default();
        n.trials += 1;
        *n.regions.entry(o.region).or_default() += 1;
        *n.akte_codes.entry(o.akte.code).or_default() += 1;
        if o.neutral {
            n.neutral += 1;
        } else {
            n.python_detected += usize::from(o.python.detected());
            n.python_named += usize::from(o.python.detected() && o.python.names(&o.spec.rel));
            n.akte_detected += usize::from(o.akte.detected());
            n.akte_named += usize::from(o.akte.detected() && o.akte.names(&o.spec.rel));
            n.torn_tail += usize::from(o.torn_tail);
        }
        if !o.ok() {
            failures.push(format!(
                "seed {seed} ({per_class} per class) trial {i}: {} {} flips {:?} ({}{}, \
                 neutral: {}): Python exit {} {:?}; akte exit {} {:?}",
                o.spec.class.name(),
                o.spec.rel.display(),
                o.spec.flips,
                o.region,
                if o.torn_tail { ", torn tail" } else { "" },
                o.neutral,
                o.python.code,
                o.python.findings,
                o.akte.code,
                o.akte.findings
            ));
        }
    }
    failures
}

fn print_summary(tally: &BTreeMap<Class, Tally>) {
    println!(
        "{:<18} {:>6} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "class", "trials", "neutral", "Python det.", "Python named", "akte det.", "akte named"
    );
    for (class, n) in tally {
        let of = |k: usize| format!("{k}/{}", n.trials - n.neutral);
        println!(
            "{:<18} {:>6} {:>7} {:>12} {:>12} {:>12} {:>12}",
            class.name(),
            n.trials,
            n.neutral,
            of(n.python_detected),
            of(n.python_named),
            of(n.akte_detected),
            of(n.akte_named)
        );
    }
    for (class, n) in tally {
        let regions: Vec<String> = n.regions.iter().map(|(r, k)| format!("{r} ×{k}")).collect();
        let codes: Vec<String> = n
            .akte_codes
            .iter()
            .map(|(c, k)| format!("{c} ×{k}"))
            .collect();
        println!(
            "  {}: {}{}; akte exit codes {}",
            class.name(),
            regions.join(", "),
            if *class == Class::Segment {
                format!(
                    " (torn tail, found through the checkpoint: {})",
                    n.torn_tail
                )
            } else {
                String::new()
            },
            codes.join(", ")
        );
    }
}

fn run_campaign(seeds: &[u64], per_class: usize) {
    require_zstd_decoder();
    let mut tally = BTreeMap::new();
    let mut failures = Vec::new();
    for &seed in seeds {
        println!("store tamper campaign seed {seed} (replay with AKTE_TEST_SEED={seed}), {per_class} trials per class");
        failures.extend(campaign(seed, per_class, &mut tally));
    }
    print_summary(&tally);
    assert!(
        failures.is_empty(),
        "{} trial(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// --------------------------------------------------------------------------- the tests

/// The undamaged store is clean in both verifiers, and the Python verifier really
/// decoded every zstd object (a missing decoder would only be a warning there), packed
/// ones included: it checked as many objects as akte.
#[test]
fn undamaged_store_is_clean_in_both_verifiers() {
    require_zstd_decoder();
    let base = build_store(1);
    let files = files_of(base.path());
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    let (python, json) = python_verdict(work.path());
    assert_eq!(python.problems, 0, "Python: {:?}", python.findings);
    assert!(
        python.findings.is_empty(),
        "Python warns: {:?}",
        python.findings
    );
    let (akte, akte_json) = akte_verdict(work.path());
    assert_eq!(akte.code, 0, "akte: {:?}", akte.findings);
    let akte_json = akte_json.expect("akte's report");
    let mut checked = 0;
    for t in json["tenants"].as_array().unwrap() {
        assert_eq!(t["objects_not_checked"], 0, "zstd objects left unchecked");
        let a = akte_json["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["tenant"] == t["tenant"])
            .unwrap_or_else(|| panic!("akte has no report of {}", t["tenant"]));
        assert_eq!(
            t["objects_checked"], a["content_objects"],
            "{}",
            t["tenant"]
        );
        assert_eq!(
            t["objects_unreferenced"], a["unreferenced_objects"],
            "{}",
            t["tenant"]
        );
        checked += t["objects_checked"].as_u64().unwrap();
    }
    // Most content is packed; the large documents are object files.
    let packed: Vec<(PathBuf, PackRecord)> = files[&Class::Pack]
        .iter()
        .flat_map(|p| {
            pack_records(&fs::read(base.path().join(p)).unwrap())
                .into_iter()
                .map(move |r| (p.clone(), r))
        })
        .collect();
    assert_eq!(
        checked as usize,
        files[&Class::Content].len() + packed.len(),
        "every object file and every pack record is a referenced object"
    );
    assert!(
        packed.len() > 2 * files[&Class::Content].len(),
        "{packed:?}"
    );

    // The store is what the campaign needs: several segments per tenant, both codecs in
    // object files and in packs, a zstd frame with a window descriptor (streamed) and a
    // single-segment one in a pack, a checkpoint of the whole journal.
    let codecs: Vec<u8> = files[&Class::Content]
        .iter()
        .map(|p| fs::read(base.path().join(p)).unwrap()[9])
        .collect();
    assert!(codecs.contains(&0) && codecs.contains(&1), "{codecs:?}");
    for codec in [0, 1] {
        assert!(packed.iter().any(|(_, r)| r.codec == codec), "{packed:?}");
    }
    assert!(files[&Class::Content]
        .iter()
        .any(|p| window_descriptor_at(&fs::read(base.path().join(p)).unwrap()).is_some()));
    assert!(single_segment_packed(base.path(), &files).is_some());
    for id in TENANTS {
        let segs = files[&Class::Segment]
            .iter()
            .filter(|p| p.starts_with(Path::new("tenants").join(id)))
            .count();
        assert!(segs >= 3, "{id}: {segs} segments");
    }
    assert_eq!(files[&Class::Checkpoint].len(), 2 * TENANTS.len());
    let (_, note, _) = cosigned_checkpoint(base.path());
    assert_eq!(
        note.lines().filter(|l| l.starts_with('\u{2014}')).count(),
        2
    );
}

/// The offset of the window descriptor byte in an object file, if its zstd frame has one.
fn window_descriptor_at(file: &[u8]) -> Option<usize> {
    (file[9] == 1 && (file[OBJECT_HEADER_LEN + 4] >> 5) & 1 == 0).then_some(OBJECT_HEADER_LEN + 5)
}

/// A pack and the offset of the frame header descriptor of a zstd record in it whose frame
/// is single-segment.
fn single_segment_packed(
    base: &Path,
    files: &BTreeMap<Class, Vec<PathBuf>>,
) -> Option<(PathBuf, usize)> {
    files[&Class::Pack].iter().find_map(|p| {
        let pack = fs::read(base.join(p)).unwrap();
        pack_records(&pack)
            .into_iter()
            .find(|r| r.codec == 1 && (pack[r.payload.start + 4] >> 5) & 1 == 1)
            .map(|r| (p.clone(), r.payload.start + 4))
    })
}

/// docs/FORMAT.md lists damage to a zstd object that changes nothing verifiable, in an
/// object file or a pack record: both verifiers must stay clean. Damage next to it (the
/// reserved bit, a window above the 128 MiB limit) must be found by both.
#[test]
fn zstd_neutral_damage_leaves_both_verifiers_clean() {
    require_zstd_decoder();
    let base = build_store(2);
    let files = files_of(base.path());
    // Objects below 1 MiB are packed, with single-segment frames; the streamed one is a
    // file with a window descriptor.
    let (pack, packed_fhd) =
        single_segment_packed(base.path(), &files).expect("a single-segment zstd frame");
    let streamed = files[&Class::Content]
        .iter()
        .find(|p| window_descriptor_at(&fs::read(base.path().join(p)).unwrap()).is_some())
        .expect("a zstd frame with a window descriptor");
    let wd = window_descriptor_at(&fs::read(base.path().join(streamed)).unwrap()).unwrap();
    let original_window = fs::read(base.path().join(streamed)).unwrap()[wd];

    // (what, class, file, offset, the byte's new value, neutral?)
    type Change = fn(u8) -> u8;
    let fhd = OBJECT_HEADER_LEN + 4;
    let cases: Vec<(&str, Class, &PathBuf, usize, Change, bool)> = vec![
        (
            "unused bit, single-segment frame in a pack",
            Class::Pack,
            &pack,
            packed_fhd,
            |b| b ^ 0x10,
            true,
        ),
        (
            "unused bit, streamed frame",
            Class::Content,
            streamed,
            fhd,
            |b| b ^ 0x10,
            true,
        ),
        (
            "window 1 step larger",
            Class::Content,
            streamed,
            wd,
            |b| b + 1,
            true,
        ),
        (
            "window 128 MiB",
            Class::Content,
            streamed,
            wd,
            |_| 17 << 3,
            true,
        ),
        (
            "window above 128 MiB",
            Class::Content,
            streamed,
            wd,
            |_| (17 << 3) | 1,
            false,
        ),
        (
            "reserved bit, single-segment frame in a pack",
            Class::Pack,
            &pack,
            packed_fhd,
            |b| b ^ 0x08,
            false,
        ),
        (
            "reserved bit, streamed",
            Class::Content,
            streamed,
            fhd,
            |b| b ^ 0x08,
            false,
        ),
    ];
    assert!(original_window < 17 << 3, "window {original_window:#x}");
    for (what, class, rel, at, change, neutral) in cases {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let path = work.path().join(rel);
        let original = fs::read(&path).unwrap();
        let mut damaged = original.clone();
        damaged[at] = change(damaged[at]);
        assert_ne!(damaged, original, "{what}");
        let unchanged = match class {
            Class::Pack => pack_unchanged(&original, &damaged),
            _ => content_unchanged(&original, &damaged),
        };
        assert_eq!(
            unchanged, neutral,
            "{what}: the independent decoder disagrees with docs/FORMAT.md"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, &damaged).unwrap();
        let (python, _) = python_verdict(work.path());
        let (akte, _) = akte_verdict(work.path());
        if neutral {
            assert!(!python.detected(), "{what}: Python {:?}", python.findings);
            assert!(!akte.detected(), "{what}: akte {:?}", akte.findings);
        } else {
            assert!(
                python.detected() && python.names(rel),
                "{what}: Python {:?}",
                python.findings
            );
            assert!(
                akte.detected() && akte.names(rel),
                "{what}: akte {:?}",
                akte.findings
            );
        }
    }
}

/// docs/FORMAT.md ("Witnesses in the data directory"): every signature line of a stored
/// checkpoint must be by the tenant's key or a registered-or-removed witness, and verify.
/// A line of an unknown key, a witness line changed in its signature, key id or name, and
/// a line whose syntax is broken are all found by both verifiers, naming the checkpoint
/// file. The line of a witness removed later stays valid: both stay clean.
#[test]
fn checkpoint_lines_of_unknown_keys_and_changed_witness_lines_are_found() {
    require_zstd_decoder();
    let base = build_store(3);
    let (rel, note, witness_line) = cosigned_checkpoint(base.path());
    let tenant_line = note.lines().find(|l| l.starts_with('\u{2014}')).unwrap();
    let b64 = tenant_line.rsplit(' ').next().unwrap();
    assert!(b64.len() == 92 && b64.ends_with('='), "{tenant_line}");
    // A line by another key: another name, bytes of the right length for a signature.
    let other = format!("\u{2014} witness.example/w1 {b64}\n");
    let swap = |line: &str, at: usize| {
        let mut b = line.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let sig_start = witness_line.rfind(' ').unwrap() + 1;
    let name_start = "\u{2014} ".len();
    let without_witness = note.replace(&witness_line, "");
    assert_ne!(without_witness, note);
    // (what, the note's new text)
    let cases = [
        ("an added line by an unknown key", format!("{note}{other}")),
        (
            "the witness's signature changed",
            format!("{without_witness}{}", swap(&witness_line, sig_start + 40)),
        ),
        (
            "the witness's timestamp changed",
            format!("{without_witness}{}", swap(&witness_line, sig_start + 8)),
        ),
        (
            "the witness's key id changed",
            format!("{without_witness}{}", swap(&witness_line, sig_start + 1)),
        ),
        (
            "the witness's name changed",
            format!("{without_witness}{}", swap(&witness_line, name_start + 3)),
        ),
        (
            "an added line with broken base64",
            format!("{note}{}", other.replace(&b64[..8], "!!!!!!!!")),
        ),
        (
            "an added line with a broken em dash",
            format!("{note}{}", other.replacen('\u{2014}', "-", 1)),
        ),
    ];
    for (what, text) in cases {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        fs::write(work.path().join(&rel), text).unwrap();
        let (python, _) = python_verdict(work.path());
        assert!(
            python.detected() && python.names(&rel),
            "{what}: Python {:?}",
            python.findings
        );
        // Needs `akte verify` to check witness lines (Tenant::verify_stored_cosignatures).
        let (akte, _) = akte_verdict(work.path());
        assert!(
            akte.detected() && akte.names(&rel),
            "{what}: akte {:?}",
            akte.findings
        );
    }

    // The witness is removed: its stored line stays, verifiable with keys/witnesses-removed.
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    {
        let records = Records::open(
            akte_core::embedded::open_with(work.path(), small_segments()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.tenant(TENANTS[0]).unwrap();
        t.tenant()
            .remove_witness(&witness_key().cosignature_verifier().fingerprint())
            .unwrap();
        assert!(t.tenant().witnesses().unwrap().is_empty());
    }
    assert!(work
        .path()
        .join("tenants")
        .join(TENANTS[0])
        .join("keys/witnesses-removed")
        .is_file());
    assert_eq!(fs::read_to_string(work.path().join(&rel)).unwrap(), note);
    let (python, _) = python_verdict(work.path());
    assert!(
        !python.detected(),
        "removed witness: Python {:?}",
        python.findings
    );
    let (akte, _) = akte_verdict(work.path());
    assert!(
        !akte.detected(),
        "removed witness: akte {:?}",
        akte.findings
    );
    // Without the removed list its line is one of an unknown key.
    fs::remove_file(
        work.path()
            .join("tenants")
            .join(TENANTS[0])
            .join("keys/witnesses-removed"),
    )
    .unwrap();
    let (python, _) = python_verdict(work.path());
    assert!(
        python.detected() && python.names(&rel),
        "removed list gone: Python {:?}",
        python.findings
    );
    // Needs the verify.rs hook, as above.
    let (akte, _) = akte_verdict(work.path());
    assert!(
        akte.detected() && akte.names(&rel),
        "removed list gone: akte {:?}",
        akte.findings
    );
}

#[test]
fn store_tamper_campaign() {
    run_campaign(&[Rng::seed_from_env()], 24);
}

#[test]
#[ignore = "long: 240 trials per class over 4 seeds (cargo test -p akte-server --test store_tamper -- --ignored --nocapture)"]
fn store_tamper_campaign_long() {
    let seed = Rng::seed_from_env();
    let seeds: Vec<u64> = (0..4).map(|i| seed.wrapping_add(i)).collect();
    run_campaign(&seeds, 60);
}
