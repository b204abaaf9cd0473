//! docs/FORMAT.md promises that a store is "verifiable without akte": an archivist's own
//! script can check it. `tools/verify_store.py` is such a script, written from FORMAT.md
//! alone with the Python standard library. This test holds both sides to the promise: on a
//! clean store the script must agree with akte's own `verify_store` (same entry and
//! checkpoint counts), and for every class of damage both must report a problem, the
//! script naming the damaged file.
//!
//! Needs `python3` on PATH (CI has it); without it the test fails and says so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use akte_core::journal::JournalOptions;
use akte_core::note::SignedNote;
use akte_core::store::{Store, StoreOptions, Tenant};
use akte_core::verify::{verify_store, VerifyOptions, VerifyReport};
use akte_core::Digest;
use akte_tests::{append_document, Rng};

/// Small segments, so that each tenant's journal spans several files and the damage test
/// can hit a sealed (not the last) one.
fn small_segments() -> StoreOptions {
    StoreOptions {
        journal: JournalOptions {
            segment_max_bytes: 4096,
        },
        ..StoreOptions::default()
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

/// Appends `n` documents, alternating compressible text (stored with zstd) and random
/// bytes (stored raw); returns the digests of the random ones.
fn fill(tenant: &Tenant, n: usize, rng: &mut Rng) -> Vec<Digest> {
    let mut raw = Vec::new();
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
        if i % 2 == 1 {
            raw.push(appended.ticket.entry.payloads[1].digest);
        }
    }
    raw
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
/// mode 0440, so the file is made writable first.
fn flip(path: &Path, pos: usize, mask: u8) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[pos] ^= mask;
    fs::write(path, bytes).unwrap();
}

/// Damages one file in place.
type Damage = fn(&Path);

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
    let mut v: Vec<_> = fs::read_dir(tenant_dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn akte_verify(data_dir: &Path) -> VerifyReport {
    let store = Store::open(data_dir, small_segments()).unwrap();
    verify_store(&store, VerifyOptions::default()).unwrap()
}

/// The files the damage cases hit, relative to the data directory.
struct Victims {
    raw_object: PathBuf,
    sealed_segment: PathBuf,
    checkpoint_body: PathBuf,
    checkpoint_signature: PathBuf,
}

/// Two tenants, 60 entries, compressible and incompressible content, a duplicate, an
/// empty document, and checkpoints at several sizes (0 included).
fn build_store(dir: &Path) -> Victims {
    let store = Store::open(dir, small_segments()).unwrap();
    let mut rng = Rng::new(0x5eed_2024);
    let a = store.create_tenant("stadt-erfurt").unwrap();
    let b = store.create_tenant("kreis-gotha").unwrap();
    b.checkpoint().unwrap();
    let raw = fill(&a, 16, &mut rng);
    a.checkpoint().unwrap();
    fill(&b, 12, &mut rng);
    b.checkpoint().unwrap();
    fill(&a, 14, &mut rng);
    append_document(&a, "clerk:test", "empty", b"", b"{}").unwrap();
    let twice = rng.bytes(777); // stored once, referred to twice
    append_document(&a, "clerk:test", "copy", &twice, b"{}").unwrap();
    append_document(&a, "clerk:test", "duplicate", &twice, b"{}").unwrap();
    a.checkpoint().unwrap();
    fill(&b, 15, &mut rng);
    b.checkpoint().unwrap();
    a.checkpoint().unwrap(); // the same size again: still one file per size

    let rel = |p: &Path| p.strip_prefix(dir).unwrap().to_path_buf();
    let segs = segments(a.dir());
    assert!(
        segs.len() >= 3,
        "small segments give several files: {segs:?}"
    );
    let cps = a.checkpoint_files().unwrap();
    assert!(cps.len() >= 2, "{cps:?}");
    let raw_object = a.content().path_of(&raw[2]);
    assert_eq!(fs::read(&raw_object).unwrap()[9], 0, "a raw object");
    Victims {
        raw_object: rel(&raw_object),
        sealed_segment: rel(&segs[1]),
        checkpoint_body: rel(&cps[0].1),
        checkpoint_signature: rel(&cps[cps.len() - 1].1),
    }
}

#[test]
fn python_verifier_agrees_with_akte_and_finds_each_damage_class() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    let victims = build_store(&clean);

    // Both codecs are on disk, so both object paths of the script are exercised.
    let codecs: Vec<u8> = walk_objects(&clean)
        .iter()
        .map(|p| fs::read(p).unwrap()[9])
        .collect();
    assert!(codecs.contains(&0) && codecs.contains(&1), "{codecs:?}");

    // Clean: exit 0 and the same counts as akte.
    let report = akte_verify(&clean);
    assert!(report.is_clean(), "{report:#?}");
    let py = run_python(&clean, &["--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);
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
        assert_eq!(
            count("objects_checked") + count("objects_not_checked"),
            t.content_objects,
            "tenant {}",
            t.tenant
        );
        assert_eq!(count("objects_unreferenced"), t.unreferenced_objects);
    }
    assert_eq!(
        report.tenants.iter().map(|t| t.entries).sum::<u64>(),
        60,
        "the store has 60 entries"
    );
    // One tenant alone, in the text form.
    let one = run_python(&clean, &["--tenant", "kreis-gotha"]);
    assert_eq!(one.code, 0, "{}", one.stdout);
    assert!(one.stdout.contains("tenant kreis-gotha") && !one.stdout.contains("stadt-erfurt"));
    // Usage errors are exit status 2.
    assert_eq!(run_python(&clean, &["--tenant", "nobody"]).code, 2);
    assert_eq!(run_python(&base.path().join("missing"), &[]).code, 2);

    // Each damage class on its own fresh copy.
    let cases: [(&str, &Path, Damage); 4] = [
        ("content object byte", &victims.raw_object, flip_last_byte),
        (
            "sealed journal segment byte",
            &victims.sealed_segment,
            flip_middle_byte,
        ),
        (
            "checkpoint body byte",
            &victims.checkpoint_body,
            flip_origin_byte,
        ),
        (
            "checkpoint signature bit",
            &victims.checkpoint_signature,
            flip_signature_bit,
        ),
    ];
    for (i, (what, victim, damage)) in cases.iter().enumerate() {
        let copy = base.path().join(format!("damaged-{i}"));
        copy_tree(&clean, &copy);
        let path = copy.join(victim);
        damage(&path);

        let py = run_python(&copy, &[]);
        assert_eq!(
            py.code, 1,
            "{what}: the script must report it:\n{}",
            py.stdout
        );
        assert!(
            py.stdout.contains(&format!("path={}", path.display())),
            "{what}: the script must name {}:\n{}",
            path.display(),
            py.stdout
        );
        let report = akte_verify(&copy);
        assert!(
            report
                .problems()
                .any(|p| p.path.as_deref() == Some(path.as_path())),
            "{what}: akte must report {} too: {report:#?}",
            path.display()
        );
    }
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
        let store = Store::open(&dir, small_segments()).unwrap();
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
