//! Evidence in every transfer, checked by two independent verifiers: akte's own
//! (`akte_core::evidence::verify_package`) and `tools/verify_transfer.py`, written from
//! docs/FORMAT.md alone. On good packages both must be clean; on damaged ones both must
//! find the damage, name the damaged object, and give identical verdicts (the set of
//! subject, name and problem code).
//!
//! The tamper campaign flips bytes at random positions in each class of bytes: a primary
//! file's content, a primary file's compressed bytes in the ZIP as stored, the XML, the
//! evidence file, a proof hash, the checkpoint body and its signature. A few dozen trials
//! per class run normally; `tamper_campaign_long` (ignored) runs 250 per class. Changes
//! that by design change nothing verifiable (entry order, timestamps, comments, compression
//! method, deflate padding bits) are checked separately to leave both verifiers clean, and
//! a raw flip that leaves an entry's inflated bytes unchanged is counted as such, not as a
//! detection (docs/FORMAT.md, "What verification leaves out, by design").
//!
//! Needs `python3` and `xmllint` on PATH (CI has both).

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use akte_core::evidence::{
    consistency_evidence, format_proof, verify_consistency, verify_consistency_files,
    verify_evidence_dir, verify_package, verify_package_bytes, Evidence, EvidenceKind,
};
use akte_core::keys::{KeyFile, VerifierKey};
use akte_core::note::SignedNote;
use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_tests::Rng;
use chrono::NaiveDate;
use uuid::Uuid;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const REG: &str = "registrar:weber";
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/xdomea/schemas/3.1.0/xdomea.xsd"
);

type Verdict = Vec<(String, String, String)>;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn assert_valid_xml(xml: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.xml");
    std::fs::write(&p, xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(&p)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "the 0503 does not validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct World {
    _dir: tempfile::TempDir,
    t: TenantRecords,
    unit: Uuid,
    documents: Vec<Uuid>,
}

fn add_version(t: &TenantRecords, doc: Uuid, files: &[(&str, Vec<u8>)]) {
    let renditions = files
        .iter()
        .map(|(name, bytes)| {
            let put = t.put_content(&bytes[..]).unwrap();
            NewRendition {
                file_name: (*name).into(),
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
            comment: String::new(),
            renditions,
        },
        None,
    )
    .unwrap();
}

/// A closed file with a case, two documents (one with two versions, one with an
/// attachment); renditions of various sizes, some random (incompressible).
fn due_file(w: &mut World, subject: &str, rng: &mut Rng) -> Uuid {
    let t = &w.t;
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: w.unit,
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
    let random_len = 3000 + rng.range(0, 2000) as usize;
    add_version(
        t,
        antrag,
        &[(
            "antrag.pdf",
            format!("%PDF-1.7 {subject} ").repeat(40).into_bytes(),
        )],
    );
    add_version(
        t,
        antrag,
        &[
            ("antrag.pdf", rng.bytes(random_len)),
            ("antrag.txt", format!("Antrag {subject}").into_bytes()),
        ],
    );
    let bescheid = doc(f.id, "Bescheid");
    add_version(t, bescheid, &[("bescheid.pdf", rng.bytes(700))]);
    let plan = doc(bescheid, "Lageplan");
    add_version(t, plan, &[("lageplan.tif", rng.bytes(1500))]);
    w.documents.extend([antrag, bescheid, plan]);
    t.close(REG, f.id, None, Some(d(2010, 6, 30))).unwrap();
    f.id
}

fn world(rng: &mut Rng) -> (World, Vec<Uuid>) {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let t = records.create_tenant("stadt-erfurt").unwrap();
    akte_tests::configure_disposal(&t);
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
        .unwrap();
    let mut w = World {
        _dir: dir,
        t,
        unit: unit.id,
        documents: Vec::new(),
    };
    let files = vec![
        due_file(&mut w, "Bebauungsplan Nord", rng),
        due_file(&mut w, "Carport Süd", rng),
    ];
    (w, files)
}

fn transfer(w: &World, files: &[Uuid]) -> (Uuid, Vec<u8>) {
    let (process, zip) =
        w.t.transfer_two_stage(REG, files, Cursor::new(Vec::new()))
            .unwrap();
    (process, zip.into_inner())
}

// ------------------------------------------------------------------ the two verifiers

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_transfer.py")
}

struct PyRun {
    code: i32,
    stdout: String,
}

fn python(args: &[&str]) -> PyRun {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs python3 on PATH to run tools/verify_transfer.py: {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Traceback"),
        "verify_transfer.py crashed:\n{stderr}"
    );
    PyRun {
        code: out.status.code().expect("python3 killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Runs the Python verifier once over `paths` (with `--json`) and returns each verdict.
fn python_verdicts(paths: &[PathBuf], key: Option<&str>) -> Vec<Verdict> {
    let mut args: Vec<String> = vec!["--json".into()];
    if let Some(k) = key {
        args.push("--key".into());
        args.push(k.into());
    }
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = python(&arg_refs);
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("bad JSON from verify_transfer.py ({e}):\n{}", run.stdout));
    let results = json["results"].as_array().expect("results");
    assert_eq!(results.len(), paths.len());
    let verdicts: Vec<Verdict> = results.iter().map(verdict_of).collect();
    let all_clean = verdicts.iter().all(Vec::is_empty);
    assert_eq!(run.code, if all_clean { 0 } else { 1 }, "exit status");
    verdicts
}

fn verdict_of(result: &serde_json::Value) -> Verdict {
    let mut v: Verdict = result["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (s("subject"), s("name"), s("code"))
        })
        .collect();
    v.sort();
    assert_eq!(
        result["clean"].as_bool(),
        Some(v.is_empty()),
        "clean flag and problems disagree"
    );
    v
}

fn rust_verdict(zip: &[u8], key: Option<&str>) -> Verdict {
    verify_package_bytes(zip, key).unwrap().verdict()
}

// ---------------------------------------------------------------------- ZIP surgery

struct ZipEntry {
    name: String,
    data: Vec<u8>,
    method: CompressionMethod,
}

fn entries(zip: &[u8]) -> Vec<ZipEntry> {
    let mut z = ZipArchive::new(Cursor::new(zip)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            ZipEntry {
                name: f.name().to_owned(),
                data,
                method: f.compression(),
            }
        })
        .collect()
}

fn rezip(entries: &[ZipEntry], time: zip::DateTime, comment: Option<&str>) -> Vec<u8> {
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    for e in entries {
        let options = SimpleFileOptions::default()
            .compression_method(e.method)
            .last_modified_time(time);
        z.start_file(e.name.as_str(), options).unwrap();
        z.write_all(&e.data).unwrap();
    }
    if let Some(c) = comment {
        z.set_comment(c).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn fixed_time() -> zip::DateTime {
    zip::DateTime::from_date_and_time(2030, 1, 2, 3, 4, 6).unwrap()
}

/// The byte range of an entry's stored (compressed) data in the ZIP.
fn data_range(zip: &[u8], name: &str) -> std::ops::Range<usize> {
    let mut z = ZipArchive::new(Cursor::new(zip)).unwrap();
    let f = z.by_name(name).unwrap();
    let start = f.data_start().unwrap() as usize;
    start..start + f.compressed_size() as usize
}

/// The inflated bytes of an entry, if the (possibly damaged) ZIP still reads them cleanly.
fn read_back(zip: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut z = ZipArchive::new(Cursor::new(zip)).ok()?;
    let mut f = z.by_name(name).ok()?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).ok()?;
    Some(out)
}

fn evidence_index(es: &[ZipEntry]) -> usize {
    es.iter()
        .position(|e| e.name.ends_with("_akte-evidence.json"))
        .unwrap()
}

fn xml_index(es: &[ZipEntry]) -> usize {
    es.iter()
        .position(|e| e.name.ends_with("_Aussonderung.Aussonderung.0503.xml"))
        .unwrap()
}

fn flip(rng: &mut Rng, byte: &mut u8) {
    *byte ^= rng.range(1, 256) as u8;
}

// -------------------------------------------------------------------------- the tests

#[test]
fn good_transfer_is_clean_in_both_verifiers() {
    let mut rng = Rng::new(7);
    let (w, files) = world(&mut rng);
    let (process, zip) = transfer(&w, &files);
    let es = entries(&zip);

    // The XML is still valid xdomea, and the evidence is the last, unreferenced entry.
    let xml = &es[xml_index(&es)].data;
    assert_valid_xml(xml);
    let ev_name = format!("{process}_akte-evidence.json");
    assert_eq!(es.last().unwrap().name, ev_name);
    assert!(!xml.windows(ev_name.len()).any(|w| w == ev_name.as_bytes()));
    let evidence = Evidence::from_json(&es.last().unwrap().data).unwrap();
    assert_eq!(evidence.kind, EvidenceKind::Transfer);
    assert_eq!(evidence.process_id, Some(process));
    assert_eq!(
        evidence.objects.len(),
        es.len() - 2,
        "one object per primary file"
    );
    for o in &evidence.objects {
        let e = es.iter().find(|e| e.name == o.name).unwrap();
        assert_eq!(e.data.len() as u64, o.size);
        assert_eq!(akte_core::Digest::of(&e.data), o.sha256);
        let entry = akte_core::entry::Entry::decode(&o.entry).unwrap();
        assert_eq!(entry.kind, "version.add");
        assert_eq!(entry.seq, o.seq);
    }

    // Both verifiers: clean, without a key and with the tenant's key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(format!("{process}_Aussonderung.Aussonderung.0503.zip"));
    std::fs::write(&path, &zip).unwrap();
    let key = w.t.tenant().verifier().to_string();
    let report = verify_package(&path, None).unwrap();
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    assert!(!report.key_given);
    assert_eq!(report.objects.len(), evidence.objects.len());
    assert!(verify_package(&path, Some(&key)).unwrap().is_clean());
    let text = python(&[path.to_str().unwrap()]);
    println!("{}", text.stdout);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("CLEAN"));
    assert_eq!(
        python_verdicts(std::slice::from_ref(&path), Some(&key)),
        vec![Vec::<(String, String, String)>::new()]
    );

    // Another tenant's key: both refuse the package, with the same verdict.
    let other = akte_core::keys::SigningKeyPair::generate("akte.local/stadt-erfurt")
        .unwrap()
        .verifier()
        .to_string();
    let rust = verify_package(&path, Some(&other)).unwrap().verdict();
    let py = python_verdicts(std::slice::from_ref(&path), Some(&other));
    assert_eq!(
        rust,
        vec![
            ("checkpoint".into(), String::new(), "signature".into()),
            ("key".into(), String::new(), "mismatch".into()),
        ]
    );
    assert_eq!(py, vec![rust]);

    // A malformed key is a usage error for both.
    assert!(verify_package(&path, Some("not a key")).is_err());
    assert_eq!(
        python(&["--key", "not a key", path.to_str().unwrap()]).code,
        2
    );
    assert_eq!(python(&[]).code, 2);
}

#[test]
fn document_evidence_standalone_and_as_package() {
    let mut rng = Rng::new(11);
    let (w, _) = world(&mut rng);
    let doc = w.documents[0];
    let evidence = w.t.document_evidence(doc).unwrap();
    assert_eq!(evidence.kind, EvidenceKind::Document);
    assert_eq!(evidence.document_id, Some(doc));
    assert_eq!(
        evidence.objects.len(),
        3,
        "version 1 with one, version 2 with two"
    );
    // Files under their evidence names, with the evidence beside them.
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for v in w.t.versions(doc).unwrap() {
        for r in &v.renditions {
            let name = format!("{}_{}", r.id, r.file_name);
            let mut bytes = Vec::new();
            w.t.tenant()
                .content()
                .get(&r.sha256)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            std::fs::write(files.join(name), bytes).unwrap();
        }
    }
    let ev_path = dir.path().join("evidence.json");
    std::fs::write(&ev_path, evidence.to_json()).unwrap();
    let ev = ev_path.to_str().unwrap();
    let fdir = files.to_str().unwrap();
    let report = verify_evidence_dir(&ev_path, &files, None).unwrap();
    assert!(report.is_clean(), "{report}");
    let py = python(&["--evidence", ev, fdir, "--json"]);
    assert_eq!(py.code, 0, "{}", py.stdout);

    // Damage one file: both name it.
    let victim = &evidence.objects[1].name;
    let mut bytes = std::fs::read(files.join(victim)).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(files.join(victim), bytes).unwrap();
    let rust = verify_evidence_dir(&ev_path, &files, None)
        .unwrap()
        .verdict();
    assert_eq!(
        rust,
        vec![("object".into(), victim.clone(), "sha256".into())]
    );
    let py = python(&["--evidence", ev, fdir, "--json"]);
    assert_eq!(py.code, 1);
    let json: serde_json::Value = serde_json::from_str(&py.stdout).unwrap();
    assert_eq!(verdict_of(&json["results"][0]), rust);
    // A missing file.
    std::fs::remove_file(files.join(victim)).unwrap();
    let rust = verify_evidence_dir(&ev_path, &files, None)
        .unwrap()
        .verdict();
    assert_eq!(
        rust,
        vec![("object".into(), victim.clone(), "missing".into())]
    );
    let json: serde_json::Value =
        serde_json::from_str(&python(&["--evidence", ev, fdir, "--json"]).stdout).unwrap();
    assert_eq!(verdict_of(&json["results"][0]), rust);

    // The same as one ZIP: clean in both.
    let zip =
        w.t.document_evidence_package(doc, Cursor::new(Vec::new()))
            .unwrap()
            .into_inner();
    let zpath = dir.path().join("document.zip");
    std::fs::write(&zpath, &zip).unwrap();
    assert!(verify_package(&zpath, None).unwrap().is_clean());
    assert_eq!(python_verdicts(&[zpath], None), vec![Verdict::new()]);
}

#[test]
fn consistency_between_transfers() {
    let mut rng = Rng::new(13);
    let (mut w, files) = world(&mut rng);
    let (_, first) = transfer(&w, &files[..1]);
    // The journal grows; a second transfer follows.
    let more = due_file(&mut w, "Nachtrag", &mut rng);
    let (_, second) = transfer(&w, &[files[1], more]);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("first.zip");
    let new = dir.path().join("second.zip");
    std::fs::write(&old, &first).unwrap();
    std::fs::write(&new, &second).unwrap();
    let note = |zip: &[u8]| {
        let es = entries(zip);
        Evidence::from_json(&es[evidence_index(&es)].data)
            .unwrap()
            .checkpoint
    };
    let key = w.t.tenant().verifier();
    let size = |n: &str| n.lines().nth(1).unwrap().parse::<u64>().unwrap();
    let (old_note, new_note) = (note(&first), note(&second));
    let proof =
        w.t.tenant()
            .consistency_proof(size(&old_note), size(&new_note))
            .unwrap();
    let report =
        verify_consistency(old_note.as_bytes(), new_note.as_bytes(), &proof, &key).unwrap();
    println!("{report}");
    let proof_path = dir.path().join("proof.txt");
    std::fs::write(&proof_path, format_proof(&proof)).unwrap();
    // From the ZIPs themselves; the key from the old one, or given.
    verify_consistency_files(&old, &new, &proof_path, None).unwrap();
    verify_consistency_files(&old, &new, &proof_path, Some(&key.to_string())).unwrap();
    let args = |o: &Path, n: &Path| {
        vec![
            "--consistency".to_owned(),
            o.display().to_string(),
            n.display().to_string(),
            proof_path.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| python(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let ok = run(args(&old, &new));
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(ok.stdout.starts_with("CONSISTENT"));
    // Swapped: the journal would have shrunk. Both refuse.
    assert!(verify_consistency_files(&new, &old, &proof_path, None).is_err());
    assert_eq!(run(args(&new, &old)).code, 1);
    // A damaged proof: both refuse.
    let mut bad = proof.clone();
    bad[0].0[0] ^= 1;
    std::fs::write(&proof_path, format_proof(&bad)).unwrap();
    assert!(verify_consistency_files(&old, &new, &proof_path, None).is_err());
    assert_eq!(run(args(&old, &new)).code, 1);

    // The agency's side: a fresh checkpoint and proof for the archive's old checkpoint.
    let (fresh, proof) = consistency_evidence(w.t.tenant(), old_note.as_bytes()).unwrap();
    let fresh_path = dir.path().join("fresh.note");
    std::fs::write(&fresh_path, fresh.to_bytes()).unwrap();
    std::fs::write(&proof_path, format_proof(&proof)).unwrap();
    verify_consistency_files(&old, &fresh_path, &proof_path, None).unwrap();
    assert_eq!(run(args(&old, &fresh_path)).code, 0);
    // A note signed by another key is refused by the agency.
    let stranger = akte_core::keys::SigningKeyPair::generate("akte.local/stadt-erfurt").unwrap();
    let forged =
        akte_core::note::Checkpoint::new("akte.local/stadt-erfurt", 1, akte_core::Digest::ZERO)
            .sign(&stranger)
            .unwrap();
    assert!(consistency_evidence(w.t.tenant(), &forged.to_bytes()).is_err());
    let _: VerifierKey = key;
}

#[test]
fn neutral_changes_leave_both_verifiers_clean() {
    let mut rng = Rng::new(17);
    let (w, files) = world(&mut rng);
    let (_, zip) = transfer(&w, &files);
    let dir = tempfile::tempdir().unwrap();
    let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut es = entries(&zip);
    es.reverse();
    variants.push(("entries in reverse order", rezip(&es, fixed_time(), None)));
    es.reverse();
    variants.push((
        "other timestamps",
        rezip(&es, zip::DateTime::default(), None),
    ));
    variants.push((
        "an archive comment",
        rezip(&es, fixed_time(), Some("Übergabe an das Landesarchiv")),
    ));
    let mut prefixed =
        b"#!/bin/sh\n# data before the ZIP, as in self-extracting archives\n".to_vec();
    prefixed.extend_from_slice(&zip);
    variants.push(("data before the ZIP", prefixed));
    for e in &mut es {
        e.method = CompressionMethod::Stored;
    }
    variants.push(("every entry stored", rezip(&es, fixed_time(), None)));
    let mut paths = Vec::new();
    for (i, (what, bytes)) in variants.iter().enumerate() {
        assert!(
            rust_verdict(bytes, None).is_empty(),
            "{what}: {}",
            verify_package_bytes(bytes, None).unwrap()
        );
        let p = dir.path().join(format!("neutral-{i}.zip"));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    for (i, v) in python_verdicts(&paths, None).iter().enumerate() {
        assert!(v.is_empty(), "{}: {v:?}", variants[i].0);
    }
}

/// Damage to the container and to the package's make-up, each with the one verdict the
/// algorithm gives; both verifiers must give it.
#[test]
fn structural_damage_gives_identical_verdicts() {
    let mut rng = Rng::new(19);
    let (w, files) = world(&mut rng);
    let (_, zip) = transfer(&w, &files);
    let es = entries(&zip);
    let ev = evidence_index(&es);
    let primary = es
        .iter()
        .position(|e| !e.name.ends_with(".xml") && !e.name.ends_with(".json"))
        .unwrap();
    let pname = es[primary].name.clone();
    let s = |x: &str| x.to_owned();
    let mut cases: Vec<(String, Vec<u8>, Verdict)> = Vec::new();

    let without = |skip: usize| -> Vec<ZipEntry> {
        entries(&zip)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, e)| e)
            .collect()
    };
    cases.push((
        s("a primary file removed"),
        rezip(&without(primary), fixed_time(), None),
        vec![(s("object"), pname.clone(), s("missing"))],
    ));
    cases.push((
        s("the evidence removed"),
        rezip(&without(ev), fixed_time(), None),
        vec![(s("evidence"), s(""), s("missing"))],
    ));
    let mut extra = entries(&zip);
    extra.push(ZipEntry {
        name: "notiz.txt".into(),
        data: b"untergeschoben".to_vec(),
        method: CompressionMethod::Deflated,
    });
    cases.push((
        s("an entry added"),
        rezip(&extra, fixed_time(), None),
        vec![(s("entry"), s("notiz.txt"), s("unlisted"))],
    ));
    let mut twice = entries(&zip);
    twice.push(ZipEntry {
        name: format!("{}_akte-evidence.json", Uuid::new_v4()),
        data: twice[ev].data.clone(),
        method: CompressionMethod::Deflated,
    });
    cases.push((
        s("a second evidence file"),
        rezip(&twice, fixed_time(), None),
        vec![(s("evidence"), s(""), s("ambiguous"))],
    ));
    cases.push((
        s("not a ZIP"),
        b"%PDF-1.7 kein ZIP".to_vec(),
        vec![(s("package"), s(""), s("unreadable"))],
    ));
    cases.push((
        s("truncated"),
        zip[..zip.len() / 2].to_vec(),
        vec![(s("package"), s(""), s("unreadable"))],
    ));
    // Raw edits of headers. Offsets: local header flags at +6, method at +8; central
    // directory entry flags at +8, method at +10.
    let find_all = |needle: &[u8]| -> Vec<usize> {
        zip.windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect()
    };
    let name_at = find_all(pname.as_bytes());
    assert_eq!(
        name_at.len(),
        2,
        "the name in the local header and the directory"
    );
    let (local, central) = (name_at[0] - 30, name_at[1] - 46);
    let mut encrypted = zip.clone();
    encrypted[local + 6] |= 1;
    encrypted[central + 8] |= 1;
    cases.push((
        s("flagged as encrypted"),
        encrypted,
        vec![(s("object"), pname.clone(), s("unreadable"))],
    ));
    let mut bzip = zip.clone();
    bzip[central + 10] = 12;
    cases.push((
        s("method bzip2 in the directory"),
        bzip,
        vec![(s("object"), pname.clone(), s("unreadable"))],
    ));
    let mut renamed = zip.clone();
    renamed[name_at[0]] ^= 0x01;
    cases.push((
        s("local header names another file"),
        renamed,
        vec![(s("object"), pname.clone(), s("unreadable"))],
    ));
    // A ZIP bomb in place of a file: 20 MB of zeros whose headers state the real size.
    // Both verifiers stop one byte past the stated size.
    let mut bomb_entries = entries(&zip);
    let real_size = bomb_entries[primary].data.len() as u32;
    bomb_entries[primary].data = vec![0u8; 20 << 20];
    let mut bomb = rezip(&bomb_entries, fixed_time(), None);
    let bomb_name_at: Vec<usize> = bomb
        .windows(pname.len())
        .enumerate()
        .filter(|(_, w)| *w == pname.as_bytes())
        .map(|(i, _)| i)
        .collect();
    bomb[bomb_name_at[0] - 30 + 22..bomb_name_at[0] - 30 + 26]
        .copy_from_slice(&real_size.to_le_bytes());
    bomb[bomb_name_at[1] - 46 + 24..bomb_name_at[1] - 46 + 28]
        .copy_from_slice(&real_size.to_le_bytes());
    cases.push((
        s("a ZIP bomb in place of a file"),
        bomb,
        vec![(s("object"), pname.clone(), s("unreadable"))],
    ));
    // Two entries of the same name: give the second primary the first one's name (the
    // names have the same length when the original names do).
    let same_len = es
        .iter()
        .enumerate()
        .find(|(i, e)| {
            *i != primary
                && e.name != pname
                && e.name.len() == pname.len()
                && !e.name.ends_with(".json")
                && !e.name.ends_with(".xml")
        })
        .map(|(_, e)| e.name.clone());
    if let Some(other) = same_len {
        let mut dup = zip.clone();
        for at in find_all(other.as_bytes()) {
            dup[at..at + other.len()].copy_from_slice(pname.as_bytes());
        }
        cases.push((
            s("two entries with one name"),
            dup,
            vec![(s("package"), s(""), s("duplicate-names"))],
        ));
    }

    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (what, bytes, expected)) in cases.iter().enumerate() {
        assert_eq!(&rust_verdict(bytes, None), expected, "Rust, {what}");
        let p = dir.path().join(format!("case-{i}.zip"));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    for (i, v) in python_verdicts(&paths, None).iter().enumerate() {
        assert_eq!(v, &cases[i].2, "Python, {}", cases[i].0);
    }
    println!("{} structural cases, identical verdicts", cases.len());
}

// ------------------------------------------------------------------- tamper campaign

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Primary,
    PrimaryStored,
    Xml,
    Evidence,
    ProofHash,
    CheckpointBody,
    Signature,
}

impl Class {
    const ALL: [Class; 7] = [
        Class::Primary,
        Class::PrimaryStored,
        Class::Xml,
        Class::Evidence,
        Class::ProofHash,
        Class::CheckpointBody,
        Class::Signature,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Primary => "primary file (content)",
            Class::PrimaryStored => "primary file (ZIP bytes as stored)",
            Class::Xml => "XML (content)",
            Class::Evidence => "evidence file (any byte)",
            Class::ProofHash => "proof hash",
            Class::CheckpointBody => "checkpoint body",
            Class::Signature => "checkpoint signature",
        }
    }
}

/// One damaged package and what must be found.
struct Trial {
    class: Class,
    zip: Vec<u8>,
    /// Subject and name that the verdict must contain; `None`: any problem will do
    /// (damage to the evidence can show as any part of it).
    expect: Option<(String, String)>,
    /// True if the damage left every file's bytes unchanged (a raw flip of deflate
    /// padding): then both verifiers must stay clean, and the trial is counted as neutral.
    neutral: bool,
}

fn with_evidence(es: &mut [ZipEntry], f: impl FnOnce(&mut Evidence)) -> Vec<u8> {
    let i = evidence_index(es);
    let mut ev = Evidence::from_json(&es[i].data).unwrap();
    f(&mut ev);
    es[i].data = ev.to_json();
    rezip(es, fixed_time(), None)
}

fn make_trial(class: Class, zip: &[u8], rng: &mut Rng) -> Trial {
    let mut es = entries(zip);
    let primaries: Vec<usize> = (0..es.len())
        .filter(|&i| !es[i].name.ends_with(".xml") && !es[i].name.ends_with(".json"))
        .collect();
    let pick = |rng: &mut Rng, v: &[usize]| v[rng.range(0, v.len() as u64) as usize];
    let s = |x: &str| x.to_owned();
    match class {
        Class::Primary => {
            let i = pick(rng, &primaries);
            let at = rng.range(0, es[i].data.len() as u64) as usize;
            flip(rng, &mut es[i].data[at]);
            Trial {
                class,
                expect: Some((s("object"), es[i].name.clone())),
                zip: rezip(&es, fixed_time(), None),
                neutral: false,
            }
        }
        Class::PrimaryStored => {
            let i = pick(rng, &primaries);
            let name = es[i].name.clone();
            let range = data_range(zip, &name);
            let mut damaged = zip.to_vec();
            let at = rng.range(range.start as u64, range.end as u64) as usize;
            flip(rng, &mut damaged[at]);
            let neutral = read_back(&damaged, &name).as_deref() == Some(&es[i].data[..]);
            Trial {
                class,
                expect: Some((s("object"), name)),
                zip: damaged,
                neutral,
            }
        }
        Class::Xml => {
            let i = xml_index(&es);
            let at = rng.range(0, es[i].data.len() as u64) as usize;
            flip(rng, &mut es[i].data[at]);
            Trial {
                class,
                expect: Some((s("message"), es[i].name.clone())),
                zip: rezip(&es, fixed_time(), None),
                neutral: false,
            }
        }
        Class::Evidence => {
            let i = evidence_index(&es);
            let at = rng.range(0, es[i].data.len() as u64) as usize;
            flip(rng, &mut es[i].data[at]);
            Trial {
                class,
                expect: None,
                zip: rezip(&es, fixed_time(), None),
                neutral: false,
            }
        }
        Class::ProofHash => {
            let mut name = String::new();
            let zip = with_evidence(&mut es, |ev| {
                let candidates: Vec<usize> = (0..ev.objects.len())
                    .filter(|&o| !ev.objects[o].proof.is_empty())
                    .collect();
                let o = pick(rng, &candidates);
                let h = rng.range(0, ev.objects[o].proof.len() as u64) as usize;
                let b = rng.range(0, 32) as usize;
                flip(rng, &mut ev.objects[o].proof[h].0[b]);
                name = ev.objects[o].name.clone();
            });
            Trial {
                class,
                expect: Some((s("object"), name)),
                zip,
                neutral: false,
            }
        }
        Class::CheckpointBody => {
            let zip = with_evidence(&mut es, |ev| {
                let text_len = ev.checkpoint.rfind("\n\n").unwrap() + 1;
                let mut bytes = ev.checkpoint.clone().into_bytes();
                let at = rng.range(0, text_len as u64) as usize;
                // The body is ASCII; stay in ASCII so the note remains a JSON string.
                bytes[at] ^= rng.range(1, 128) as u8;
                ev.checkpoint = String::from_utf8(bytes).unwrap();
            });
            Trial {
                class,
                expect: Some((s("checkpoint"), s(""))),
                zip,
                neutral: false,
            }
        }
        Class::Signature => {
            let zip = with_evidence(&mut es, |ev| {
                if rng.range(0, 2) == 0 {
                    // A byte of the decoded key id or signature.
                    let mut note = SignedNote::parse(ev.checkpoint.as_bytes()).unwrap();
                    let sig = &mut note.signatures[0];
                    let at = rng.range(0, 4 + sig.signature.len() as u64) as usize;
                    if at < 4 {
                        flip(rng, &mut sig.key_id[at]);
                    } else {
                        flip(rng, &mut sig.signature[at - 4]);
                    }
                    ev.checkpoint = String::from_utf8(note.to_bytes()).unwrap();
                } else {
                    // A character of the signature line's base64 (staying ASCII).
                    let start = ev.checkpoint.rfind(' ').unwrap() + 1;
                    let end = ev.checkpoint.len() - 1;
                    let mut bytes = ev.checkpoint.clone().into_bytes();
                    let at = rng.range(start as u64, end as u64) as usize;
                    bytes[at] ^= rng.range(1, 128) as u8;
                    ev.checkpoint = String::from_utf8(bytes).unwrap();
                }
            });
            Trial {
                class,
                expect: Some((s("checkpoint"), s(""))),
                zip,
                neutral: false,
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    /// How often each (subject, code) was reported, by either verifier.
    codes: BTreeMap<String, usize>,
    trials: usize,
    neutral: usize,
    rust_detected: usize,
    python_detected: usize,
    named: usize,
    identical: usize,
}

fn campaign(per_class: usize) {
    let seed = Rng::seed_from_env();
    println!("tamper campaign seed {seed} (replay with AKTE_TEST_SEED={seed})");
    let mut rng = Rng::new(seed);
    let (w, files) = world(&mut Rng::new(seed ^ 0x5eed));
    let (_, zip) = transfer(&w, &files);
    assert!(rust_verdict(&zip, None).is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut trials = Vec::new();
    let mut paths = Vec::new();
    let mut rust = Vec::new();
    for class in Class::ALL {
        for i in 0..per_class {
            let trial = make_trial(class, &zip, &mut rng);
            let p = dir.path().join(format!("{class:?}-{i}.zip"));
            std::fs::write(&p, &trial.zip).unwrap();
            rust.push(rust_verdict(&trial.zip, None));
            paths.push(p);
            trials.push(trial);
        }
    }
    let python = python_verdicts(&paths, None);
    let mut tally: BTreeMap<Class, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        let (r, p) = (&rust[i], &python[i]);
        let n = tally.entry(t.class).or_default();
        n.trials += 1;
        let ok = if t.neutral {
            n.neutral += 1;
            r.is_empty() && p.is_empty()
        } else {
            let named = |v: &Verdict| match &t.expect {
                None => !v.is_empty(),
                Some((subject, name)) => v.iter().any(|(s, nm, _)| s == subject && nm == name),
            };
            n.rust_detected += usize::from(!r.is_empty());
            n.python_detected += usize::from(!p.is_empty());
            n.named += usize::from(named(r) && named(p));
            !r.is_empty() && !p.is_empty() && named(r) && named(p) && r == p
        };
        n.identical += usize::from(r == p);
        for (subject, _, code) in r {
            *n.codes.entry(format!("{subject} {code}")).or_default() += 1;
        }
        if !ok {
            failures.push(format!(
                "{} trial {}: expected {:?} (neutral: {}), Rust {r:?}, Python {p:?}; kept as {}",
                t.class.name(),
                i,
                t.expect,
                t.neutral,
                paths[i].display()
            ));
        }
    }
    println!(
        "{:<36} {:>6} {:>7} {:>10} {:>12} {:>7} {:>10}",
        "class", "trials", "neutral", "Rust det.", "Python det.", "named", "identical"
    );
    for (class, n) in &tally {
        println!(
            "{:<36} {:>6} {:>7} {:>10} {:>12} {:>7} {:>10}",
            class.name(),
            n.trials,
            n.neutral,
            format!("{}/{}", n.rust_detected, n.trials - n.neutral),
            format!("{}/{}", n.python_detected, n.trials - n.neutral),
            n.named,
            n.identical
        );
    }
    for (class, n) in &tally {
        let codes: Vec<String> = n.codes.iter().map(|(c, k)| format!("{c} ×{k}")).collect();
        println!("  {}: {}", class.name(), codes.join(", "));
    }
    if !failures.is_empty() {
        let keep = dir.keep();
        panic!(
            "{} trial(s) failed (packages kept in {}):\n{}",
            failures.len(),
            keep.display(),
            failures.join("\n")
        );
    }
}

#[test]
fn tamper_campaign() {
    campaign(30);
}

#[test]
#[ignore = "long: 250 trials per class (cargo test -p akte-tests --test evidence -- --ignored)"]
fn tamper_campaign_long() {
    campaign(250);
}

/// The example in docs/FORMAT.md ("Evidence", "Example") is a real evidence file: it is in
/// canonical form, its checkpoint verifies with its key, and every proof holds.
#[test]
fn format_md_example_verifies() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md"))
            .unwrap();
    let section = &doc[doc.find("## Evidence").unwrap()..];
    let start = section.find("```json\n").unwrap() + "```json\n".len();
    let end = start + section[start..].find("```\n").unwrap();
    let json = &section[start..end];
    let ev = Evidence::from_json(json.as_bytes()).unwrap();
    let key = VerifierKey::parse(&ev.verifier_key).unwrap();
    assert_eq!(key.fingerprint(), ev.key_fingerprint);
    let (cp, _) = akte_core::note::Checkpoint::open(ev.checkpoint.as_bytes(), &key).unwrap();
    for o in &ev.objects {
        let entry = akte_core::entry::Entry::decode(&o.entry).unwrap();
        assert_eq!(entry.seq, o.seq);
        akte_core::merkle::verify_inclusion(
            &akte_core::merkle::leaf_hash(&o.entry),
            o.seq,
            cp.size,
            &o.proof,
            &cp.root,
        )
        .unwrap();
    }
    assert_eq!(
        akte_core::Digest::of(b"%PDF-1.7 Satzung v2"),
        ev.objects[1].sha256
    );
}

/// A checkpoint cosigned by a witness: both verifiers check listed witnesses' cosignatures
/// and name a witness whose cosignature is missing, damaged or whose key is malformed.
#[test]
fn witness_cosignatures() {
    let mut rng = Rng::new(23);
    let (w, files) = world(&mut rng);
    let (_, zip) = transfer(&w, &files);
    let witness = akte_core::keys::SigningKeyPair::generate("archiv.thueringen.de/zeuge").unwrap();
    let wkey = witness.cosignature_verifier().to_string();
    let cosigned = |ev: &mut Evidence, keys: Vec<String>, damage: bool| {
        let mut note = SignedNote::parse(ev.checkpoint.as_bytes()).unwrap();
        let cp = akte_core::note::Checkpoint::parse_body(&note.text).unwrap();
        let mut sig = akte_core::note::cosign(&cp, &witness, 1_767_225_600).unwrap();
        if damage {
            sig.signature[20] ^= 4;
        }
        note.push_signature(sig).unwrap();
        ev.checkpoint = String::from_utf8(note.to_bytes()).unwrap();
        ev.witnesses = keys;
    };
    let s = |x: &str| x.to_owned();
    let name = s("archiv.thueringen.de/zeuge");
    let cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        (
            "cosigned and listed",
            with_evidence(&mut entries(&zip), |ev| {
                cosigned(ev, vec![wkey.clone()], false)
            }),
            vec![],
        ),
        (
            "cosigned, not listed (ignored)",
            with_evidence(&mut entries(&zip), |ev| cosigned(ev, vec![], false)),
            vec![],
        ),
        (
            "listed, not cosigned",
            with_evidence(&mut entries(&zip), |ev| ev.witnesses = vec![wkey.clone()]),
            vec![(s("witness"), name.clone(), s("missing"))],
        ),
        (
            "damaged cosignature",
            with_evidence(&mut entries(&zip), |ev| {
                cosigned(ev, vec![wkey.clone()], true)
            }),
            vec![(s("witness"), name.clone(), s("cosignature"))],
        ),
        (
            "malformed witness key",
            with_evidence(&mut entries(&zip), |ev| {
                cosigned(ev, vec![s("zeuge+00000000+AAAA")], false)
            }),
            vec![(s("witness"), s("zeuge+00000000+AAAA"), s("malformed"))],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (what, bytes, expected)) in cases.iter().enumerate() {
        let report = verify_package_bytes(bytes, None).unwrap();
        assert_eq!(&report.verdict(), expected, "Rust, {what}");
        if i == 0 {
            assert_eq!(report.witnesses.len(), 1);
            assert_eq!(report.witnesses[0].timestamp, 1_767_225_600);
        }
        let p = dir.path().join(format!("witness-{i}.zip"));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    for (i, v) in python_verdicts(&paths, None).iter().enumerate() {
        assert_eq!(v, &cases[i].2, "Python, {}", cases[i].0);
    }
}

/// Witnesses registered with the tenant: once one has cosigned a stored checkpoint that
/// covers everything a transfer (or a document's evidence) needs, the evidence uses that
/// checkpoint, carries the cosignature in the note and lists the witness; both verifiers
/// accept it and both find a tampered cosignature. A checkpoint that does not cover the
/// files is not used: then the evidence is as without witnesses.
#[test]
fn evidence_uses_the_newest_witnessed_checkpoint() {
    let mut rng = Rng::new(29);
    let (mut w, files) = world(&mut rng);
    let witness = akte_core::keys::SigningKeyPair::generate("archiv.thueringen.de/zeuge").unwrap();
    let wkey = witness.cosignature_verifier().to_string();
    let wname = "archiv.thueringen.de/zeuge".to_owned();
    let key = w.t.tenant().verifier().to_string();
    w.t.tenant()
        .add_witness(&witness.cosignature_verifier())
        .unwrap();

    // The witness cosigns the agency's checkpoint of now; the agency stores the line.
    let note = w.t.tenant().checkpoint().unwrap();
    let cp = akte_core::note::Checkpoint::parse_body(&note.text).unwrap();
    let mut cosigned = note.clone();
    cosigned
        .push_signature(akte_core::note::cosign(&cp, &witness, 1_767_225_600).unwrap())
        .unwrap();
    w.t.tenant().add_cosignatures(&cosigned.to_bytes()).unwrap();

    // A transfer of the first file: the witnessed checkpoint, with the witness listed.
    let (process, zip) = transfer(&w, &files[..1]);
    let es = entries(&zip);
    let ev = Evidence::from_json(&es[evidence_index(&es)].data).unwrap();
    assert_eq!(ev.checkpoint.as_bytes(), cosigned.to_bytes().as_slice());
    assert_eq!(ev.witnesses, vec![wkey.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join(format!("{process}_good.zip"));
    std::fs::write(&good, &zip).unwrap();
    let report = verify_package(&good, Some(&key)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.witnesses.len(), 1);
    assert_eq!(report.witnesses[0].name, wname);
    assert_eq!(report.witnesses[0].timestamp, 1_767_225_600);
    let py = python(&["--key", &key, good.to_str().unwrap()]);
    assert_eq!(py.code, 0, "{}", py.stdout);
    assert!(
        py.stdout.contains("archiv.thueringen.de/zeuge"),
        "{}",
        py.stdout
    );

    // A tampered cosignature (one bit of its signature), and one whose timestamp was moved:
    // both verifiers name the witness.
    let tampered = |at: usize| {
        with_evidence(&mut entries(&zip), |ev| {
            let mut n = SignedNote::parse(ev.checkpoint.as_bytes()).unwrap();
            let line = n.signatures.iter_mut().find(|s| s.name == wname).unwrap();
            line.signature[at] ^= 0x10;
            ev.checkpoint = String::from_utf8(n.to_bytes()).unwrap();
        })
    };
    let expected = vec![(
        "witness".to_owned(),
        wname.clone(),
        "cosignature".to_owned(),
    )];
    let mut paths = Vec::new();
    for (i, at) in [40usize, 7].into_iter().enumerate() {
        let bytes = tampered(at);
        assert_eq!(
            rust_verdict(&bytes, Some(&key)),
            expected,
            "Rust, byte {at}"
        );
        let p = dir.path().join(format!("tampered-{i}.zip"));
        std::fs::write(&p, &bytes).unwrap();
        paths.push(p);
    }
    for v in python_verdicts(&paths, Some(&key)) {
        assert_eq!(v, expected, "Python");
    }

    // A document's evidence (standalone and as a package) uses it as well.
    let doc = w.documents[3];
    let dev = w.t.document_evidence(doc).unwrap();
    assert_eq!(dev.checkpoint, ev.checkpoint);
    assert_eq!(dev.witnesses, vec![wkey.clone()]);
    let dzip =
        w.t.document_evidence_package(doc, Cursor::new(Vec::new()))
            .unwrap()
            .into_inner();
    let dpath = dir.path().join("document.zip");
    std::fs::write(&dpath, &dzip).unwrap();
    assert!(verify_package(&dpath, Some(&key)).unwrap().is_clean());
    assert_eq!(python_verdicts(&[dpath], Some(&key)), vec![Verdict::new()]);

    // New documents after the witnessed checkpoint: it does not cover them, so a
    // checkpoint is signed now and no witness is listed (and still both are clean).
    let more = due_file(&mut w, "Nachtrag", &mut rng);
    let (_, zip) = transfer(&w, &[files[1], more]);
    let es = entries(&zip);
    let ev2 = Evidence::from_json(&es[evidence_index(&es)].data).unwrap();
    assert!(ev2.witnesses.is_empty());
    assert_ne!(ev2.checkpoint, ev.checkpoint);
    let p = dir.path().join("uncovered.zip");
    std::fs::write(&p, &zip).unwrap();
    assert!(verify_package(&p, Some(&key)).unwrap().is_clean());
    assert_eq!(python_verdicts(&[p], Some(&key)), vec![Verdict::new()]);
}

// ------------------------------------------------------------------ fuzz seeds

/// Writes the seed corpus of the fuzz targets (`fuzz/corpus/`) from a real store: a
/// transfer ZIP and a document evidence package with their evidence JSON, a journal
/// segment and the entries in it, checkpoint notes, keys and an 0504. Run it when a
/// format changes:
/// `AKTE_FUZZ_SEEDS=fuzz/corpus cargo test -p akte-tests --test evidence -- --ignored write_fuzz_seeds`
#[test]
#[ignore = "writes the fuzz seed corpus; run on purpose with AKTE_FUZZ_SEEDS set"]
fn write_fuzz_seeds() {
    let Some(out) = std::env::var_os("AKTE_FUZZ_SEEDS").map(PathBuf::from) else {
        panic!("set AKTE_FUZZ_SEEDS to the corpus directory (fuzz/corpus)");
    };
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = out.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let mut rng = Rng::new(17);
    let (w, files) = world(&mut rng);
    let (_, transfer_zip) = transfer(&w, &files[..1]);
    put("evidence", "transfer-0503.zip", &transfer_zip);
    put("xdomea_zip", "transfer-0503.zip", &transfer_zip);
    let doc = w.documents[0];
    let package =
        w.t.document_evidence_package(doc, Cursor::new(Vec::new()))
            .unwrap()
            .into_inner();
    put("evidence", "document.zip", &package);
    let ev = w.t.document_evidence(doc).unwrap();
    put("evidence", "document-evidence.json", &ev.to_json());

    // The store's own files.
    let tenant = w._dir.path().join("tenants/stadt-erfurt");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(tenant.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let seg = &segments[0];
    let bytes = std::fs::read(seg).unwrap();
    put("segment_reader", "segment", &bytes);
    let mut r = akte_core::embedded::segment::SegmentReader::open(seg).unwrap();
    let mut n = 0;
    while let Some((seq, rec)) = r.next_record().unwrap() {
        if n < 8 {
            put("entry", &format!("entry-{seq}"), &rec.entry_bytes);
            let body =
                akte_core::embedded::segment::encode_record(&rec.entry_bytes, &rec.attachments);
            put("segment_record", &format!("record-{seq}"), &body);
            put(
                "segment_record",
                &format!("body-{seq}"),
                &body[akte_core::embedded::segment::RECORD_HEADER_LEN..],
            );
        }
        n += 1;
    }
    for e in std::fs::read_dir(tenant.join("checkpoints"))
        .unwrap()
        .take(4)
    {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        put("note", &name, &std::fs::read(&p).unwrap());
    }
    let key =
        akte_core::keys::SigningKeyPair::from_seed("akte.local/stadt-erfurt", &[3; 32]).unwrap();
    put("keys", "verifier", key.verifier().to_string().as_bytes());
    let dir = tempfile::tempdir().unwrap();
    key.save(&dir.path().join("k")).unwrap();
    put(
        "keys",
        "private",
        &std::fs::read(dir.path().join("k")).unwrap(),
    );
    let header = akte_core::xdomea::MessageHeader {
        process_id: Uuid::nil(),
        created: chrono::Utc::now().fixed_offset(),
        sender: akte_core::xdomea::Party::agency("LATh", "Landesarchiv Thüringen"),
        receiver: akte_core::xdomea::Party::agency("16051000", "Stadtverwaltung Erfurt"),
        system: None,
        note: None,
        receipt_requested: false,
        archive_id_requested: false,
    };
    put(
        "xdomea_0504",
        "0504.xml",
        &akte_core::xdomea::write_0504(&header).unwrap(),
    );
    put(
        "xdomea_0507",
        "0507-written.xml",
        &akte_core::xdomea::write_0507(&header).unwrap(),
    );
}
