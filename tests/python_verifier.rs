//! docs/FORMAT.md promises that a store is "verifiable without akte": an archivist's own
//! script can check it. `tools/verify_store.py` is such a script, written from FORMAT.md
//! alone with the Python standard library. This test holds both sides to the promise: on a
//! clean store the script must agree with akte's own `verify_store` (same entry,
//! checkpoint and content object counts), and for every class of damage both must report
//! a problem, the script naming the damaged file.
//!
//! Small objects are records in pack files (FORMAT.md, "Pack files"), larger ones files of
//! their own; the store holds both, with both codecs each, in several small packs. The
//! damage classes cover object files, journal segments, checkpoints and packs: a packed
//! raw and a packed zstd payload, a record header, a pack header, a removed record
//! (destruction) whose payload is no longer all zeros. A partial record appended to the
//! last pack is a torn tail: a warning for the script, and akte cuts it when it opens the
//! store and stays clean.
//!
//! Needs `python3` on PATH (CI has it) and, for zstd content, the `zstd` tool or the
//! `zstandard` module; without python3 the test fails and says so.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use akte_core::embedded::content::{ContentOptions, Place};
use akte_core::embedded::journal::JournalOptions;
use akte_core::embedded::EmbeddedOptions;
use akte_core::note::SignedNote;
use akte_core::records::*;
use akte_core::store::{Store, StoreOptions, Tenant};
use akte_core::verify::{verify_store, VerifyOptions, VerifyReport};
use akte_core::Digest;
use akte_tests::{append_document, Rng};
use chrono::NaiveDate;

/// Length of a pack file's header and of a record header (docs/FORMAT.md, "Pack files").
const PACK_HEADER_LEN: u64 = 24;
const PACK_RECORD_HEADER_LEN: u64 = 56;

/// Small segments and small packs, so that each tenant's journal and packed content span
/// several files and the damage test can hit a sealed (not the last) one.
fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        journal: JournalOptions {
            segment_max_bytes: 4096,
        },
        content: ContentOptions {
            pack_max_bytes: 16 << 10,
            ..ContentOptions::default()
        },
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_store.py")
}

/// The outcome of one run of the Python verifier.
struct PyRun {
    code: i32,
    stdout: String,
}

fn run_python(data_dir: &Path, extra: &[&str]) -> PyRun {
    assert!(script().is_file(), "{} is missing", script().display());
    let out = Command::new("python3")
        .arg(script())
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs python3 on PATH to run tools/verify_store.py \
                 (CI has it): cannot run python3: {e}"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A Python traceback means the script crashed, which is never an acceptable answer.
    assert!(
        !stderr.contains("Traceback"),
        "verify_store.py crashed:\n{stderr}"
    );
    PyRun {
        code: out.status.code().expect("python3 killed by a signal"),
        stdout,
    }
}

/// Reads the number after `"key": ` in the report block of `tenant` from the script's
/// `--json` output. The tests crate has no JSON parser; the script writes each tenant's
/// block as `"tenant": "<id>", "origin": ..., <counts>, "problems": [...]`.
fn json_count(json: &str, tenant: &str, key: &str) -> u64 {
    let block_start = json
        .find(&format!("\"tenant\": \"{tenant}\",\n      \"origin\""))
        .unwrap_or_else(|| panic!("no report for tenant {tenant} in:\n{json}"));
    let block = &json[block_start..];
    let block = &block[..block.find("\"problems\"").unwrap_or(block.len())];
    let at = block
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} for tenant {tenant} in:\n{json}"))
        + key.len()
        + 4;
    let digits: String = block[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

/// The digests of the documents `fill` appended, by how they are stored.
#[derive(Default)]
struct Filled {
    /// Random bytes, stored raw.
    raw: Vec<Digest>,
    /// Compressible text, stored with zstd.
    zstd: Vec<Digest>,
}

/// Appends `n` documents, alternating compressible text (stored with zstd) and random
/// bytes (stored raw); all are shorter than 1 MiB, so they are packed.
fn fill(tenant: &Tenant, n: usize, rng: &mut Rng) -> Filled {
    let mut out = Filled::default();
    for i in 0..n {
        let body = if i % 2 == 0 {
            let line = format!("Bescheid {i}: Antrag auf Baugenehmigung, Flurstück 47/11\n");
            line.repeat(rng.range(20, 200) as usize).into_bytes()
        } else {
            let len = rng.range(1, 5000) as usize;
            rng.bytes(len)
        };
        let meta = format!(
            "{{\"file_name\":\"doc-{i}.pdf\",\"salt\":\"{}\"}}",
            rng.next_u64()
        );
        let appended = append_document(
            tenant,
            "clerk:test",
            &format!("doc-{i}"),
            &body,
            meta.as_bytes(),
        )
        .unwrap();
        let digest = appended.ticket.entry.payloads[1].digest;
        if i % 2 == 1 {
            out.raw.push(digest);
        } else {
            out.zstd.push(digest);
        }
    }
    out
}

/// Copies a data directory (with the store closed), keeping file modes.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips bits of one byte with an ordinary write, as damage on disk would. Objects are
/// mode 0440 and packs 0640, so the file is made writable first.
fn flip(path: &Path, pos: usize, mask: u8) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[pos] ^= mask;
    fs::write(path, bytes).unwrap();
}

/// Damages one file in place.
type Damage = Box<dyn Fn(&Path)>;

/// Flips a bit of the byte at `pos`.
fn flip_at(pos: u64) -> Damage {
    Box::new(move |path| flip(path, pos as usize, 0x20))
}

fn flip_last_byte(path: &Path) {
    let len = fs::metadata(path).unwrap().len() as usize;
    flip(path, len - 1, 0x20)
}

fn flip_middle_byte(path: &Path) {
    let len = fs::metadata(path).unwrap().len() as usize;
    flip(path, len / 2, 0x20)
}

/// Byte 3 of a checkpoint is inside its origin line: the note still parses, but its
/// signature no longer verifies.
fn flip_origin_byte(path: &Path) {
    flip(path, 3, 0x01)
}

/// Flips a bit of the signature itself (re-encoded, so the note still parses).
fn flip_signature_bit(path: &Path) {
    let mut note = SignedNote::parse(&fs::read(path).unwrap()).unwrap();
    note.signatures[0].signature[17] ^= 0x01;
    fs::write(path, note.to_bytes()).unwrap();
}

fn segments(tenant_dir: &Path) -> Vec<PathBuf> {
    list(&tenant_dir.join("journal"))
}

/// The files of a directory, sorted (names starting with `.` left out).
fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// One record of a pack file, read with the layout of docs/FORMAT.md ("Record").
#[derive(Debug, Clone, Copy)]
struct PackRecord {
    offset: u64,
    state: u8,
    codec: u8,
    payload_len: u64,
}

/// Every record of a well-formed pack, front to back.
fn pack_records(path: &Path) -> Vec<PackRecord> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"AKTE-PAK", "{}", path.display());
    let mut out = Vec::new();
    let mut at = PACK_HEADER_LEN as usize;
    while at < bytes.len() {
        let h = &bytes[at..at + PACK_RECORD_HEADER_LEN as usize];
        assert_eq!(&h[..4], b"AKP1", "{} at {at}", path.display());
        let payload_len = u64::from(u32::from_be_bytes(h[48..52].try_into().unwrap()));
        out.push(PackRecord {
            offset: at as u64,
            state: h[4],
            codec: h[5],
            payload_len,
        });
        at += (PACK_RECORD_HEADER_LEN + payload_len) as usize;
    }
    assert_eq!(at, bytes.len(), "{}", path.display());
    out
}

/// Every pack file of every tenant.
fn walk_packs(data_dir: &Path) -> Vec<PathBuf> {
    list(&data_dir.join("tenants"))
        .iter()
        .flat_map(|t| list(&t.join("content/packs")))
        .collect()
}

fn akte_verify(data_dir: &Path) -> VerifyReport {
    let store = Store::open(
        akte_core::embedded::open_with(data_dir, small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    verify_store(&store, VerifyOptions::default()).unwrap()
}

/// The files the damage cases hit, relative to the data directory, and where in them.
struct Victims {
    raw_object: PathBuf,
    sealed_segment: PathBuf,
    checkpoint_body: PathBuf,
    checkpoint_signature: PathBuf,
    /// A raw packed object's record.
    packed_raw: Place,
    /// A zstd packed object's record.
    packed_zstd: Place,
    /// The record whose header the damage hits (another raw object's).
    record_header: Place,
    /// A pack of the other tenant, for its header.
    pack_header: PathBuf,
    /// The last pack of the first tenant, for a torn tail.
    last_pack: PathBuf,
}

/// Two tenants, 62 entries, compressible and incompressible content (packed, and two
/// documents of more than 1 MiB in object files), a duplicate, an empty document, and
/// checkpoints at several sizes (0 included).
fn build_store(dir: &Path) -> Victims {
    let store = Store::open(
        akte_core::embedded::open_with(dir, small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let mut rng = Rng::new(0x5eed_2024);
    let a = store.create_tenant("stadt-erfurt").unwrap();
    let b = store.create_tenant("kreis-gotha").unwrap();
    b.checkpoint().unwrap();
    let filled = fill(&a, 16, &mut rng);
    a.checkpoint().unwrap();
    fill(&b, 12, &mut rng);
    b.checkpoint().unwrap();
    fill(&a, 14, &mut rng);
    append_document(&a, "clerk:test", "empty", b"", b"{}").unwrap();
    let twice = rng.bytes(777); // stored once, referred to twice
    append_document(&a, "clerk:test", "copy", &twice, b"{}").unwrap();
    append_document(&a, "clerk:test", "duplicate", &twice, b"{}").unwrap();
    // 1 MiB and more: files of their own, random bytes raw, text through zstd.
    let scan = rng.bytes(1100 << 10);
    let scan = append_document(&a, "clerk:test", "scan", &scan, b"{}")
        .unwrap()
        .ticket
        .entry
        .payloads[1]
        .digest;
    let report: Vec<u8> = (0..24000)
        .flat_map(|i| format!("Gutachten, Absatz {i}: Standsicherheit geprüft\n").into_bytes())
        .collect();
    assert!(report.len() >= 1 << 20);
    append_document(&a, "clerk:test", "gutachten", &report, b"{}").unwrap();
    a.checkpoint().unwrap();
    fill(&b, 15, &mut rng);
    b.checkpoint().unwrap();
    a.checkpoint().unwrap(); // the same size again: still one file per size

    let rel = |p: &Path| p.strip_prefix(dir).unwrap().to_path_buf();
    let a_dir = akte_tests::tenant_dir(dir, a.id());
    let segs = segments(&a_dir);
    assert!(
        segs.len() >= 3,
        "small segments give several files: {segs:?}"
    );
    let cps = a.checkpoint_files().unwrap();
    assert!(cps.len() >= 2, "{cps:?}");
    let a_content = akte_tests::content_view(dir, a.id());
    let place = |d: &Digest| {
        let mut p = a_content.place(d).unwrap().expect("stored");
        p.path = rel(&p.path);
        p
    };
    let raw_object = place(&scan);
    assert!(!raw_object.packed, "{raw_object:?}");
    assert_eq!(
        fs::read(dir.join(&raw_object.path)).unwrap()[9],
        0,
        "a raw object"
    );
    let codec_of = |p: &Place| fs::read(dir.join(&p.path)).unwrap()[p.offset as usize + 5];
    let packed_raw = place(&filled.raw[2]);
    let packed_zstd = place(&filled.zstd[3]);
    let record_header = place(&filled.raw[0]);
    for (p, codec) in [(&packed_raw, 0), (&packed_zstd, 1), (&record_header, 0)] {
        assert!(p.packed, "{p:?}");
        assert_eq!(codec_of(p), codec, "{p:?}");
    }
    let a_packs = list(&a_dir.join("content/packs"));
    let b_packs = list(&akte_tests::tenant_dir(dir, b.id()).join("content/packs"));
    assert!(
        a_packs.len() >= 3 && b_packs.len() >= 2,
        "small packs give several files: {a_packs:?} {b_packs:?}"
    );
    // Damage to a record header of a sealed pack is damage inside history, not a torn tail.
    assert_ne!(record_header.path, rel(a_packs.last().unwrap()));
    Victims {
        raw_object: raw_object.path,
        sealed_segment: rel(&segs[1]),
        checkpoint_body: rel(&a_dir.join(&cps[0].1)),
        checkpoint_signature: rel(&a_dir.join(&cps[cps.len() - 1].1)),
        packed_raw,
        packed_zstd,
        record_header,
        pack_header: rel(&b_packs[0]),
        last_pack: rel(a_packs.last().unwrap()),
    }
}

/// Runs both verifiers on a damaged copy, the script first (opening the store for akte's
/// `verify_store` may cut a torn tail): both must report a problem, the script naming
/// `path` and akte reporting a problem with it.
fn assert_both_find(what: &str, copy: &Path, path: &Path, akte: impl Fn(&Path) -> VerifyReport) {
    let py = run_python(copy, &[]);
    assert_eq!(
        py.code, 1,
        "{what}: the script must report it:\n{}",
        py.stdout
    );
    assert!(
        py.stdout
            .lines()
            .any(|l| l.contains("PROBLEM") && l.contains(&format!("path={}", path.display()))),
        "{what}: the script must name {}:\n{}",
        path.display(),
        py.stdout
    );
    let akte = akte(copy);
    assert!(
        akte.problems().any(|p| p
            .place
            .as_deref()
            .is_some_and(|place| place.starts_with(&path.display().to_string()))),
        "{what}: akte must report {} too: {akte:#?}",
        path.display()
    );
}

#[test]
fn python_verifier_agrees_with_akte_and_finds_each_damage_class() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    let victims = build_store(&clean);

    // Both codecs are on disk, in object files and in pack records, so every object path
    // of the script is exercised.
    let codecs: Vec<u8> = walk_objects(&clean)
        .iter()
        .map(|p| fs::read(p).unwrap()[9])
        .collect();
    assert!(codecs.contains(&0) && codecs.contains(&1), "{codecs:?}");
    let packs = walk_packs(&clean);
    let records: Vec<PackRecord> = packs.iter().flat_map(|p| pack_records(p)).collect();
    assert!(records.iter().all(|r| r.state == 1), "nothing destroyed");
    for codec in [0, 1] {
        assert!(records.iter().any(|r| r.codec == codec), "{records:?}");
    }

    // Clean: exit 0 and the same counts as akte.
    let report = akte_verify(&clean);
    assert!(report.is_clean(), "{report:#?}");
    let py = run_python(&clean, &["--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert!(!py.stdout.contains("\"warnings\": [\n"), "{}", py.stdout);
    assert_eq!(report.tenants.len(), 2);
    for t in &report.tenants {
        let count = |key| json_count(&py.stdout, &t.tenant, key);
        assert_eq!(count("entries"), t.entries, "tenant {}", t.tenant);
        assert_eq!(
            count("checkpoints_verified"),
            t.checkpoints,
            "tenant {}",
            t.tenant
        );
        assert_eq!(count("checkpoints"), t.checkpoints, "tenant {}", t.tenant);
        assert_eq!(count("objects_not_checked"), 0, "zstd decoder missing?");
        assert_eq!(
            count("objects_checked") + count("objects_not_checked"),
            t.content_objects,
            "tenant {}",
            t.tenant
        );
        assert_eq!(count("objects_unreferenced"), t.unreferenced_objects);
        let tenant_packs = clean.join("tenants").join(&t.tenant).join("content/packs");
        let tenant_packs = list(&tenant_packs);
        assert_eq!(count("packs"), tenant_packs.len() as u64);
        assert_eq!(
            count("pack_records"),
            tenant_packs
                .iter()
                .map(|p| pack_records(p).len() as u64)
                .sum::<u64>()
        );
    }
    assert_eq!(
        report.tenants.iter().map(|t| t.entries).sum::<u64>(),
        62,
        "the store has 62 entries"
    );
    // One tenant alone, in the text form.
    let one = run_python(&clean, &["--tenant", "kreis-gotha"]);
    assert_eq!(one.code, 0, "{}", one.stdout);
    assert!(one.stdout.contains("tenant kreis-gotha") && !one.stdout.contains("stadt-erfurt"));
    // Usage errors are exit status 2.
    assert_eq!(run_python(&clean, &["--tenant", "nobody"]).code, 2);
    assert_eq!(run_python(&base.path().join("missing"), &[]).code, 2);

    // Each damage class on its own fresh copy.
    let payload_middle =
        |p: &Place| p.offset + PACK_RECORD_HEADER_LEN + (p.len - PACK_RECORD_HEADER_LEN) / 2;
    let cases: [(&str, &Path, Damage); 9] = [
        (
            "content object file byte",
            &victims.raw_object,
            Box::new(flip_last_byte),
        ),
        (
            "sealed journal segment byte",
            &victims.sealed_segment,
            Box::new(flip_middle_byte),
        ),
        (
            "checkpoint body byte",
            &victims.checkpoint_body,
            Box::new(flip_origin_byte),
        ),
        (
            "checkpoint signature bit",
            &victims.checkpoint_signature,
            Box::new(flip_signature_bit),
        ),
        (
            "payload byte of a packed raw object",
            &victims.packed_raw.path,
            flip_at(payload_middle(&victims.packed_raw)),
        ),
        (
            "payload byte of a packed zstd object",
            &victims.packed_zstd.path,
            flip_at(payload_middle(&victims.packed_zstd)),
        ),
        (
            "record header byte (the digest) in a sealed pack",
            &victims.record_header.path,
            flip_at(victims.record_header.offset + 20),
        ),
        (
            "record header byte (the payload length) in a sealed pack",
            &victims.record_header.path,
            flip_at(victims.record_header.offset + 50),
        ),
        (
            "pack header byte (the pack number)",
            &victims.pack_header,
            flip_at(19),
        ),
    ];
    for (i, (what, victim, damage)) in cases.iter().enumerate() {
        let copy = base.path().join(format!("damaged-{i}"));
        copy_tree(&clean, &copy);
        let path = copy.join(victim);
        damage(&path);
        assert_both_find(what, &copy, &path, akte_verify);
    }

    // A partial record at the end of the last pack, as a crash during an upload leaves it:
    // never acknowledged, so a warning for the script; akte cuts it when it opens the
    // store and then finds nothing wrong.
    let copy = base.path().join("torn-pack-tail");
    copy_tree(&clean, &copy);
    let last_pack = copy.join(&victims.last_pack);
    let clean_len = fs::metadata(&last_pack).unwrap().len();
    let donor = fs::read(copy.join(&victims.packed_zstd.path)).unwrap();
    let start = victims.packed_zstd.offset as usize;
    let partial = &donor[start..start + PACK_RECORD_HEADER_LEN as usize + 3];
    fs::OpenOptions::new()
        .append(true)
        .open(&last_pack)
        .unwrap()
        .write_all(partial)
        .unwrap();
    let py = run_python(&copy, &[]);
    assert_eq!(py.code, 0, "a torn pack tail is no problem:\n{}", py.stdout);
    assert!(
        py.stdout.lines().any(|l| l.contains("WARNING")
            && l.contains("torn tail")
            && l.contains(&format!("path={}", last_pack.display()))),
        "the script must warn of the torn tail of {}:\n{}",
        last_pack.display(),
        py.stdout
    );
    let report = akte_verify(&copy);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        fs::metadata(&last_pack).unwrap().len(),
        clean_len,
        "akte cuts the torn tail when it opens the store"
    );
    let py = run_python(&copy, &[]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert!(!py.stdout.contains("WARNING"), "{}", py.stdout);
}

/// Destruction zeroes a packed object's payload and marks its record removed (FORMAT.md,
/// "Record"): the script must accept such a store as akte does, and a non-zero byte in a
/// removed record's payload is damage that both find.
#[test]
fn python_verifier_checks_removed_pack_records() {
    const REG: &str = "registrar:weber";
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    let destroyed = {
        let records = Records::open(
            akte_core::embedded::open_with(&clean, small_segments()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.create_tenant("amt").unwrap();
        let unit = t
            .create_plan_unit(
                REG,
                NewPlanUnit {
                    code: "1".into(),
                    title: "Massenakten".into(),
                    retention: Retention::Years(5),
                    disposal: DisposalDecision::Destroy,
                    ..NewPlanUnit::default()
                },
                None,
            )
            .unwrap();
        let mut digests = Vec::new();
        let mut files = Vec::new();
        for (subject, closed) in [("Alt", 2015), ("Neu", 2025)] {
            let f = t
                .create_file(
                    REG,
                    NewFile {
                        plan_unit: unit.id,
                        subject: subject.into(),
                        ..NewFile::default()
                    },
                    None,
                )
                .unwrap();
            let doc = t
                .create_document(
                    REG,
                    NewDocument {
                        parent: f.id,
                        subject: format!("Antrag {subject}"),
                        ..NewDocument::default()
                    },
                    None,
                )
                .unwrap();
            for bytes in [
                format!("Antrag {subject}, Seite 1\n")
                    .repeat(40)
                    .into_bytes(), // zstd
                Rng::new(closed).bytes(3000), // raw
            ] {
                let put = t.put_content(&bytes[..]).unwrap();
                digests.push(put.digest);
                t.add_version(
                    REG,
                    doc.id,
                    NewVersion {
                        comment: String::new(),
                        renditions: vec![NewRendition {
                            file_name: "a.pdf".into(),
                            media_type: "application/pdf".into(),
                            sha256: put.digest,
                            size: put.size,
                        }],
                    },
                    None,
                )
                .unwrap();
            }
            let date = NaiveDate::from_ymd_opt(closed as i32, 3, 1).unwrap();
            t.close(REG, f.id, None, Some(date)).unwrap();
            files.push(f.id);
        }
        t.destroy(REG, &files[..1], "§ 18 ThürEGovG", "Amtsleitung")
            .unwrap();
        t.tenant().checkpoint().unwrap();
        digests.truncate(2);
        digests
    };
    let akte_verify_records = |dir: &Path| {
        let records = Records::open(
            akte_core::embedded::open_with(dir, small_segments()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        verify_store(records.store(), VerifyOptions::default()).unwrap()
    };

    let packs = walk_packs(&clean);
    let removed: Vec<(PathBuf, PackRecord)> = packs
        .iter()
        .flat_map(|p| pack_records(p).into_iter().map(move |r| (p.clone(), r)))
        .filter(|(_, r)| r.state == 2)
        .collect();
    assert_eq!(removed.len(), destroyed.len(), "{removed:?}");
    for (path, r) in &removed {
        let bytes = fs::read(path).unwrap();
        let start = (r.offset + PACK_RECORD_HEADER_LEN) as usize;
        assert!(bytes[start..start + r.payload_len as usize]
            .iter()
            .all(|&b| b == 0));
    }
    let report = akte_verify_records(&clean);
    assert!(report.is_clean(), "{report:#?}");
    let py = run_python(&clean, &["--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert_eq!(json_count(&py.stdout, "amt", "pack_records_removed"), 2);
    assert_eq!(
        json_count(&py.stdout, "amt", "objects_checked"),
        report.tenants[0].content_objects
    );

    for (i, (path, r)) in removed.iter().enumerate() {
        let copy = base.path().join(format!("damaged-{i}"));
        copy_tree(&clean, &copy);
        let victim = copy.join(path.strip_prefix(&clean).unwrap());
        flip(
            &victim,
            (r.offset + PACK_RECORD_HEADER_LEN + r.payload_len / 2) as usize,
            0x01,
        );
        assert_both_find(
            "a non-zero byte in a removed record",
            &copy,
            &victim,
            akte_verify_records,
        );
    }
}

/// A version-1 data directory ("akte-store 1", no `content/packs/`, every object a file)
/// is valid: the script accepts it, and akte opens it (and rewrites FORMAT to version 2).
/// A FORMAT of an unknown version is a problem.
#[test]
fn python_verifier_reads_a_version_1_store() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    {
        let options = EmbeddedOptions {
            content: ContentOptions {
                pack_below: 0,
                ..ContentOptions::default()
            },
            ..small_segments()
        };
        let store = Store::open(
            akte_core::embedded::open_with(&dir, options).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.create_tenant("stadt-erfurt").unwrap();
        fill(&t, 6, &mut Rng::new(0x5eed_0001));
        t.checkpoint().unwrap();
    }
    let tenant = dir.join("tenants/stadt-erfurt");
    fs::remove_dir_all(tenant.join("content/packs")).unwrap();
    fs::write(dir.join("FORMAT"), "akte-store 1\n").unwrap();
    assert_eq!(walk_objects(&dir).len(), 6);

    let py = run_python(&dir, &["--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert_eq!(json_count(&py.stdout, "stadt-erfurt", "objects_checked"), 6);
    assert_eq!(json_count(&py.stdout, "stadt-erfurt", "packs"), 0);

    let unknown = base.path().join("unknown");
    copy_tree(&dir, &unknown);
    fs::write(unknown.join("FORMAT"), "akte-store 3\n").unwrap();
    let py = run_python(&unknown, &[]);
    assert_eq!(py.code, 1, "{}", py.stdout);
    assert!(py.stdout.contains("FORMAT"), "{}", py.stdout);

    let report = akte_verify(&dir);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(fs::read(dir.join("FORMAT")).unwrap(), b"akte-store 2\n");
    let py = run_python(&dir, &[]);
    assert_eq!(py.code, 0, "after akte upgraded it:\n{}", py.stdout);
}

/// Every object file of every tenant.
fn walk_objects(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for tenant in fs::read_dir(data_dir.join("tenants")).unwrap() {
        let objects = tenant.unwrap().path().join("content/objects");
        for fan in fs::read_dir(objects).unwrap() {
            for obj in fs::read_dir(fan.unwrap().path()).unwrap() {
                out.push(obj.unwrap().path());
            }
        }
    }
    out
}

/// Witness cosignatures are extra signature lines of the stored checkpoint notes
/// (docs/FORMAT.md, "Cosignature"): the independent verifier must accept such notes as it
/// accepts any note with lines by keys it does not know, and agree with akte's counts.
#[test]
fn python_verifier_accepts_checkpoints_with_cosignatures() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    {
        let store = Store::open(
            akte_core::embedded::open_with(&dir, small_segments()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let mut rng = Rng::new(0x5eed_2025);
        let t = store.create_tenant("stadt-erfurt").unwrap();
        let w1 = akte_core::keys::SigningKeyPair::generate("archiv.example/w1").unwrap();
        let w2 = akte_core::keys::SigningKeyPair::generate("archiv.example/w2").unwrap();
        t.add_witness(&w1.cosignature_verifier()).unwrap();
        t.add_witness(&w2.cosignature_verifier()).unwrap();
        for (round, witnesses) in [vec![&w1], vec![&w1, &w2], vec![]].into_iter().enumerate() {
            fill(&t, 7, &mut rng);
            let mut note: SignedNote = t.checkpoint().unwrap();
            if witnesses.is_empty() {
                continue;
            }
            let cp = akte_core::note::Checkpoint::parse_body(&note.text).unwrap();
            for w in witnesses {
                note.push_signature(
                    akte_core::note::cosign(&cp, w, 1_700_000_000 + round as u64).unwrap(),
                )
                .unwrap();
            }
            let out = t.add_cosignatures(&note.to_bytes()).unwrap();
            assert_eq!(out.stored.note, note);
        }
        let cosigned = t.newest_cosigned_checkpoint().unwrap().unwrap();
        assert_eq!(cosigned.witnesses.len(), 2);
        assert_eq!(cosigned.note.signatures.len(), 3, "log and two witnesses");
    }
    let report = akte_verify(&dir);
    assert!(report.is_clean(), "{report:#?}");
    let py = run_python(&dir, &["--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert!(!py.stdout.contains("WARNING"), "{}", py.stdout);
    let t = &report.tenants[0];
    assert_eq!(t.checkpoints, 3);
    assert_eq!(
        json_count(&py.stdout, "stadt-erfurt", "checkpoints_verified"),
        3
    );
    assert_eq!(json_count(&py.stdout, "stadt-erfurt", "entries"), t.entries);
    let text = run_python(&dir, &[]);
    assert_eq!(text.code, 0, "{}", text.stdout);
    assert!(!text.stdout.contains("WARNING"), "{}", text.stdout);
}
