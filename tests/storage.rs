//! Storage engine behaviour through the public API of akte-core: group commit, proofs and
//! checkpoints, index rebuild, verification, tampering and bad input.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use akte_core::backend::BackendError;
use akte_core::embedded::journal::JournalOptions;
use akte_core::embedded::EmbeddedOptions;
use akte_core::entry::Attachment;
use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::store::{Store, StoreError, StoreOptions, Tenant};
use akte_core::verify::{verify_store, ProblemKind, VerifyOptions, VerifyReport};
use akte_core::Digest;
use akte_tests::{append_document, Rng};

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        journal: JournalOptions {
            segment_max_bytes: 4 << 10,
        },
        ..EmbeddedOptions::default()
    }
}

/// Whether a problem is reported at the file `path` (the place may add a byte offset).
fn at(p: &akte_core::verify::Problem, path: &Path) -> bool {
    p.place
        .as_deref()
        .is_some_and(|place| place.starts_with(&path.display().to_string()))
}

fn fill(tenant: &Tenant, n: usize, rng: &mut Rng) -> Vec<Digest> {
    let mut contents = Vec::new();
    for i in 0..n {
        let len = rng.range(0, 3000) as usize;
        let body = rng.bytes(len);
        let a = append_document(
            tenant,
            "clerk:test",
            &format!("doc-{i}"),
            &body,
            format!("meta {i}").as_bytes(),
        )
        .unwrap();
        contents.push(a.ticket.entry.payloads[1].digest);
    }
    contents
}

fn index_dump(tenant: &Tenant) -> Vec<(Vec<u8>, Vec<u8>)> {
    tenant
        .index()
        .iter_all()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn kinds(report: &VerifyReport) -> Vec<ProblemKind> {
    report.problems().map(|p| p.kind).collect()
}

fn flip(path: &Path, pos: u64) {
    let mut bytes = fs::read(path).unwrap();
    let i = pos as usize % bytes.len();
    bytes[i] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn segments(tenant_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(tenant_dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn concurrent_appends_share_flushes_and_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("gemeinde-a").unwrap();
    let threads = 16;
    let per_thread = 40;
    let mut handles = Vec::new();
    for t in 0..threads {
        let tenant = tenant.clone();
        handles.push(std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for i in 0..per_thread {
                let a = append_document(&tenant, "clerk", "o", format!("{t}/{i}").as_bytes(), b"m")
                    .unwrap();
                seqs.push(a.ticket.entry.seq);
            }
            seqs
        }));
    }
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    let expected: Vec<u64> = (0..(threads * per_thread) as u64).collect();
    assert_eq!(all, expected, "sequence numbers are unique and contiguous");
    let stats = tenant.journal().stats();
    let flushes = stats.flushes.load(std::sync::atomic::Ordering::Relaxed);
    let entries = stats.entries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(entries, (threads * per_thread) as u64);
    assert!(flushes <= entries);
    println!("{entries} entries in {flushes} flushes");
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{:#?}", report);
    assert_eq!(report.tenants[0].entries, entries);
}

#[test]
fn checkpoints_and_proofs_verify_with_the_pure_functions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("amt-1").unwrap();
    let mut rng = Rng::new(7);
    fill(&tenant, 13, &mut rng);
    let old_note = tenant.checkpoint().unwrap();
    fill(&tenant, 30, &mut rng);
    let new_note = tenant.checkpoint().unwrap();
    let verifier = tenant.verifier();
    let (old, _) = Checkpoint::open(&old_note.to_bytes(), &verifier).unwrap();
    let (new, _) = Checkpoint::open(&new_note.to_bytes(), &verifier).unwrap();
    assert_eq!((old.size, new.size), (13, 43));
    assert_eq!(new.origin, "akte.local/amt-1");
    for seq in 0..new.size {
        let rec = tenant.entry(seq).unwrap();
        let proof = tenant.inclusion_proof(seq, new.size).unwrap();
        merkle::verify_inclusion(&rec.leaf, seq, new.size, &proof, &new.root).unwrap();
    }
    let proof = tenant.consistency_proof(old.size, new.size).unwrap();
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap();
    // The same size gives the stored checkpoint back.
    assert_eq!(tenant.checkpoint().unwrap().to_bytes(), new_note.to_bytes());
    // Beyond the journal is an error, not a panic.
    assert!(matches!(
        tenant.inclusion_proof(0, 44),
        Err(StoreError::BeyondJournal { .. })
    ));
    assert!(tenant.consistency_proof(44, 45).is_err());
    // The latest checkpoint survives a reopen and still verifies.
    drop(tenant);
    drop(store);
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let (latest, _) = store.tenant("amt-1").unwrap().latest_checkpoint().unwrap();
    assert_eq!(latest, new);
}

#[test]
fn rebuilt_index_equals_live_index_and_replay_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    let mut rng = Rng::new(11);
    fill(&tenant, 60, &mut rng);
    let live = index_dump(&tenant);
    assert_eq!(tenant.rebuild_index().unwrap(), 60);
    assert_eq!(index_dump(&tenant), live);
    // Appends after a rebuild continue the same tree.
    fill(&tenant, 5, &mut rng);
    let live = index_dump(&tenant);
    drop(tenant);
    drop(store);

    // Lose the whole index: reopening replays the journal into a fresh one.
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.tenant("t").unwrap();
    assert_eq!(index_dump(&tenant), live);
    assert!(verify_store(&store, VerifyOptions::default())
        .unwrap()
        .is_clean());
}

/// The index's files of Merkle nodes and record locations (`index/<tenant>/`) are derived: lost,
/// cut or lengthened they are rebuilt or cut back at open, and a changed byte is an index
/// difference that verify names and `rebuild_index` repairs.
#[test]
fn the_index_files_are_rebuilt_cut_back_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("index/t/nodes");
    let locations = dir.path().join("index/t/locations");
    let open = || {
        Store::open(
            akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap()
    };
    // More entries than one overlay flush holds, so redb and the files both have some.
    let (live, root, proof) = {
        let store = open();
        let tenant = store.create_tenant("t").unwrap();
        fill(&tenant, 700, &mut Rng::new(21));
        let size = tenant.size().unwrap();
        let proof = tenant.inclusion_proof(123, size).unwrap();
        (index_dump(&tenant), tenant.root(size).unwrap(), proof)
    };
    let check = |store: &Store, what: &str| {
        let tenant = store.tenant("t").unwrap();
        assert_eq!(index_dump(&tenant), live, "{what}");
        assert_eq!(tenant.root(700).unwrap(), root, "{what}");
        assert_eq!(tenant.inclusion_proof(123, 700).unwrap(), proof, "{what}");
        let leaf = tenant.entry(123).unwrap().leaf;
        merkle::verify_inclusion(&leaf, 123, 700, &proof, &root).unwrap();
        let report = verify_store(store, VerifyOptions::default()).unwrap();
        assert!(report.is_clean(), "{what}: {report:#?}");
    };
    let nodes_len = fs::metadata(&nodes).unwrap().len();
    assert_eq!(nodes_len, 32 * (2 * 700 - u64::from(700u64.count_ones())));

    fs::remove_file(&nodes).unwrap();
    fs::remove_file(&locations).unwrap();
    check(&open(), "files lost");

    let f = fs::OpenOptions::new().write(true).open(&nodes).unwrap();
    f.set_len(nodes_len - 100).unwrap();
    drop(f);
    check(&open(), "nodes file cut");

    let mut extra = fs::read(&locations).unwrap();
    extra.extend_from_slice(&[7u8; 40]);
    fs::write(&locations, extra).unwrap();
    check(&open(), "locations file lengthened");
    assert_eq!(fs::metadata(&locations).unwrap().len(), 20 * 700);

    // A changed node is found when the store opens, and the index rebuilt.
    flip(&nodes, 32 * 50 + 3);
    check(&open(), "a node changed while closed");

    // A node changed while the store runs: verify names the index and the node, and
    // rebuilding the index repairs it.
    let store = open();
    flip(&nodes, 32 * 60 + 3);
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    let index_dir = dir.path().join("index/t").display().to_string();
    assert!(
        report
            .problems()
            .any(|p| p.kind == ProblemKind::IndexMismatch
                && p.message.contains(&index_dir)
                && p.message.contains("Merkle node")),
        "{report:#?}"
    );
    store.rebuild_index().unwrap();
    check(&store, "after rebuild-index");
}

#[test]
fn verify_is_clean_then_reports_each_tampered_byte_class() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    let mut rng = Rng::new(3);
    let contents = fill(&tenant, 40, &mut rng);
    tenant.checkpoint().unwrap();
    fill(&tenant, 10, &mut rng);
    tenant.checkpoint().unwrap();
    fill(&tenant, 10, &mut rng);
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.tenants[0].checkpoints, 2);
    let tdir = akte_tests::tenant_dir(dir.path(), tenant.id());
    let victim = contents[5];
    // Small objects are pack records: the last byte of the record is its payload's.
    let victim_place = akte_tests::content_view(dir.path(), "t")
        .place(&victim)
        .unwrap()
        .unwrap();
    let victim_path = victim_place.path.clone();
    let cps: Vec<(u64, PathBuf)> = tenant
        .checkpoint_files()
        .unwrap()
        .into_iter()
        .map(|(size, name)| (size, tdir.join(name)))
        .collect();
    drop(tenant);
    drop(store);

    // A content object.
    flip(&victim_path, victim_place.offset + victim_place.len - 1);
    // A sealed journal segment (not the last one: the last one is checked at open).
    let segs = segments(&tdir);
    assert!(segs.len() > 3, "small segments give several files");
    let seg = &segs[1];
    let seg_len = fs::metadata(seg).unwrap().len();
    flip(seg, seg_len / 2);
    // A checkpoint body and another checkpoint's signature.
    flip(&cps[0].1, 3);
    // Flip a bit of the signature itself (inside the base64, so the note still parses).
    let sig_file = &cps[1].1;
    let mut note = akte_core::note::SignedNote::parse(&fs::read(sig_file).unwrap()).unwrap();
    note.signatures[0].signature[17] ^= 0x01;
    fs::write(sig_file, note.to_bytes()).unwrap();

    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    let found = kinds(&report);
    println!(
        "{}",
        report
            .problems()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(found.contains(&ProblemKind::ContentCorrupt), "{found:?}");
    assert!(report
        .problems()
        .any(|p| p.digest == Some(victim) && at(p, &victim_path)));
    assert!(found.contains(&ProblemKind::JournalDamaged), "{found:?}");
    assert!(report.problems().any(|p| at(p, seg)));
    assert!(report.problems().any(|p| at(p, &cps[0].1)));
    assert!(
        report
            .problems()
            .any(|p| at(p, &cps[1].1) && p.kind == ProblemKind::CheckpointSignature),
        "{found:?}"
    );
}

#[test]
fn damage_in_the_last_segment_makes_the_tenant_unavailable_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    fill(&tenant, 20, &mut Rng::new(5));
    let tdir = akte_tests::tenant_dir(dir.path(), tenant.id());
    drop(tenant);
    drop(store);
    let seg = segments(&tdir).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    flip(&seg, len / 3);
    let err = tenant_error(dir.path(), "t");
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(err.contains("byte"), "{err}");
}

/// Opens the store (which must succeed: other tenants stay available) and returns the
/// error of the damaged tenant; verify must report it too.
fn tenant_error(dir: &Path, id: &str) -> String {
    let store = Store::open(
        akte_core::embedded::open(dir).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let healthy = store.create_tenant("healthy-neighbour");
    assert!(healthy.is_ok() || store.tenant("healthy-neighbour").is_ok());
    let err = store.tenant(id).unwrap_err();
    assert!(matches!(err, StoreError::TenantUnavailable { .. }), "{err}");
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    let problem = report
        .problems()
        .find(|p| p.tenant == id && p.kind == ProblemKind::TenantUnavailable)
        .expect("verify reports the unavailable tenant");
    assert_eq!(problem.message, err.to_string().split_once(": ").unwrap().1);
    err.to_string()
}

#[test]
fn torn_tail_is_cut_back_and_logged_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    fill(&tenant, 10, &mut Rng::new(9));
    let tdir = akte_tests::tenant_dir(dir.path(), tenant.id());
    let leaf9 = tenant.entry(9).unwrap().leaf;
    drop(tenant);
    drop(store);
    let seg = segments(&tdir).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    // An interrupted write: a partial record, then zeros the file system left.
    let mut bytes = fs::read(&seg).unwrap();
    let last_record_start = {
        let store = Store::open(
            akte_core::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.tenant("t").unwrap();
        t.index().location(9).unwrap().unwrap().offset as usize
    };
    let partial = bytes[last_record_start..].to_vec();
    bytes.extend_from_slice(&partial[..partial.len() / 2]);
    bytes.extend_from_slice(&[0u8; 100]);
    fs::write(&seg, &bytes).unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.tenant("t").unwrap();
    assert_eq!(tenant.size().unwrap(), 10);
    assert_eq!(tenant.entry(9).unwrap().leaf, leaf9);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    assert!(verify_store(&store, VerifyOptions::default())
        .unwrap()
        .is_clean());
    // And appending continues the chain.
    fill(&tenant, 2, &mut Rng::new(10));
    assert!(verify_store(&store, VerifyOptions::default())
        .unwrap()
        .is_clean());
}

#[test]
fn incremental_verify_checks_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open_with(dir.path(), small_segments()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    let mut rng = Rng::new(21);
    fill(&tenant, 30, &mut rng);
    tenant.checkpoint().unwrap();
    let full = verify_store(&store, VerifyOptions::default()).unwrap();
    assert!(full.is_clean());
    fill(&tenant, 7, &mut rng);
    tenant.checkpoint().unwrap();
    let inc = VerifyOptions {
        incremental: true,
        ..VerifyOptions::default()
    };
    let r = verify_store(&store, inc).unwrap();
    assert!(r.is_clean(), "{r:#?}");
    assert_eq!(r.tenants[0].from_seq, 30);
    assert_eq!(r.tenants[0].entries, 7);
    assert_eq!(r.tenants[0].checkpoints, 1);
    // Damage to content of a new entry is found by the next incremental run.
    let fresh = fill(&tenant, 1, &mut rng);
    let fresh_place = akte_tests::content_view(dir.path(), "t")
        .place(&fresh[0])
        .unwrap()
        .unwrap();
    flip(&fresh_place.path, fresh_place.offset + fresh_place.len - 1);
    let r = verify_store(&store, inc).unwrap();
    assert_eq!(kinds(&r), vec![ProblemKind::ContentCorrupt]);
}

#[test]
fn bad_entries_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let tenant = store.create_tenant("t").unwrap();
    fill(&tenant, 3, &mut Rng::new(1));
    let before = index_dump(&tenant);
    let size = tenant.size().unwrap();
    let draft = |payloads: Vec<Payload>| EntryDraft {
        actor: "clerk".into(),
        kind: "document.version".into(),
        object: "x".into(),
        payloads,
    };
    // Content that was never stored.
    let err = tenant
        .append(
            draft(vec![Payload {
                kind: PayloadKind::Content,
                role: "rendition".into(),
                size: 3,
                digest: Digest::of(b"abc"),
            }]),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::ContentMissing { .. }), "{err}");
    // Stored content with a wrong declared size.
    let put = tenant.put_content(&b"abcdef"[..]).unwrap();
    let err = tenant
        .append(
            draft(vec![Payload {
                kind: PayloadKind::Content,
                role: "rendition".into(),
                size: 5,
                digest: put.digest,
            }]),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::ContentSize { .. }), "{err}");
    // An inline payload without its attachment, and an attachment with other bytes.
    let a = Attachment::new(b"meta".to_vec());
    let inline = Payload {
        kind: PayloadKind::Inline,
        role: "meta".into(),
        size: 4,
        digest: a.digest,
    };
    assert!(tenant.append(draft(vec![inline.clone()]), vec![]).is_err());
    let other = Attachment {
        digest: a.digest,
        bytes: Some(b"metb".to_vec()),
        len: 4,
    };
    assert!(tenant.append(draft(vec![inline]), vec![other]).is_err());
    // Invalid fields.
    let mut d = draft(vec![]);
    d.kind = "Not Valid".into();
    assert!(tenant
        .append(d, vec![])
        .unwrap_err()
        .to_string()
        .contains("kind"));
    let mut d = draft(vec![]);
    d.actor = String::new();
    assert!(tenant.append(d, vec![]).is_err());

    assert_eq!(tenant.size().unwrap(), size);
    assert_eq!(index_dump(&tenant), before);
    assert!(verify_store(&store, VerifyOptions::default())
        .unwrap()
        .is_clean());
}

#[test]
fn tenants_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let a = store.create_tenant("a").unwrap();
    let b = store.create_tenant("b").unwrap();
    let put = a.put_content(&b"only in a"[..]).unwrap();
    assert!(
        !b.content().contains(&put.digest).unwrap(),
        "no dedup across tenants"
    );
    assert_ne!(a.verifier().to_string(), b.verifier().to_string());
    fill(&a, 3, &mut Rng::new(2));
    assert_eq!(b.size().unwrap(), 0);
    assert!(matches!(
        store.create_tenant("a"),
        Err(StoreError::TenantExists(_))
    ));
    for bad in ["", "A", "a/b", "-a", "ä", &"x".repeat(64), ".."] {
        assert!(
            matches!(
                store.create_tenant(bad),
                Err(StoreError::InvalidTenantId { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        store.tenant("zzz"),
        Err(StoreError::UnknownTenant(_))
    ));
}

#[test]
fn bad_data_directories_give_clear_errors() {
    // Another format version.
    let dir = tempfile::tempdir().unwrap();
    drop(
        Store::open(
            akte_core::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap(),
    );
    fs::write(dir.path().join("FORMAT"), "akte-store 3\n").unwrap();
    let err = akte_core::embedded::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, BackendError::UnsupportedFormat { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("akte-store 3"));

    // Format 1 (before pack files) opens and is marked as format 2 from then on.
    fs::write(dir.path().join("FORMAT"), "akte-store 1\n").unwrap();
    drop(
        Store::open(
            akte_core::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap(),
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        "akte-store 2\n"
    );

    // A directory with other files.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(
        akte_core::embedded::open(dir.path()),
        Err(BackendError::NotAStore { .. })
    ));

    // A second process (here: a second open) is locked out.
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        akte_core::embedded::open(dir.path()),
        Err(BackendError::Locked { .. })
    ));
    drop(first);
}

fn store_with_tenant() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let t = store.create_tenant("t").unwrap();
    fill(&t, 5, &mut Rng::new(4));
    let tdir = akte_tests::tenant_dir(dir.path(), t.id());
    (dir, tdir)
}

#[test]
fn bad_key_files_give_clear_errors() {
    let (dir, tdir) = store_with_tenant();
    let key = tdir.join("keys/checkpoint.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = tenant_error(dir.path(), "t");
    assert!(err.contains("checkpoint.key"), "{err}");

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&key, "PRIVATE+KEY+garbage\n").unwrap();
    let err = tenant_error(dir.path(), "t");
    assert!(err.contains("checkpoint.key"), "{err}");

    fs::remove_file(&key).unwrap();
    let err = tenant_error(dir.path(), "t");
    assert!(err.contains("checkpoint.key"), "{err}");
}

#[test]
fn bad_segment_files_give_clear_errors_and_no_panic() {
    let mut rng = Rng::new(99);
    type Damage = Box<dyn Fn(&Path, &mut Rng)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "zero-filled",
            Box::new(|p: &Path, _: &mut Rng| {
                let len = fs::metadata(p).unwrap().len() as usize;
                fs::write(p, vec![0u8; len]).unwrap();
            }),
        ),
        (
            "random",
            Box::new(|p: &Path, r: &mut Rng| {
                let len = fs::metadata(p).unwrap().len() as usize;
                fs::write(p, r.bytes(len)).unwrap();
            }),
        ),
        (
            "truncated into the header",
            Box::new(|p: &Path, _: &mut Rng| {
                let bytes = fs::read(p).unwrap();
                fs::write(p, &bytes[..10]).unwrap();
            }),
        ),
    ];
    for (name, damage) in cases {
        let (dir, tdir) = store_with_tenant();
        let seg = segments(&tdir).pop().unwrap();
        damage(&seg, &mut rng);
        let msg = tenant_error(dir.path(), "t");
        assert!(msg.contains(&seg.display().to_string()), "{name}: {msg}");
    }
    // A segment cut inside a record is a torn tail: opens, keeps the complete records.
    let (dir, tdir) = store_with_tenant();
    let seg = segments(&tdir).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    fs::write(&seg, &bytes[..bytes.len() - 7]).unwrap();
    let store = Store::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(store.tenant("t").unwrap().size().unwrap(), 4);
    assert!(verify_store(&store, VerifyOptions::default())
        .unwrap()
        .is_clean());
}

/// Checkpoints and proofs taken while other threads append must always find every node
/// of the tree they cover: an entry can be durable a moment before the index has it (a
/// leader's flush takes entries other writers have queued but not yet applied), so the
/// size they use is what the index has applied, never more. The records model's
/// projection makes applying slow enough for the race to show.
#[test]
fn checkpoints_beside_appends_never_miss_a_node() {
    use akte_core::records::{NewFile, NewPlanUnit, Records};
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(
        akte_core::embedded::open(dir.path()).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let t = records.create_tenant("t").unwrap();
    let unit = t
        .create_plan_unit(
            "registrar:r",
            NewPlanUnit {
                code: "1".into(),
                title: "Allgemeines".into(),
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let tenant = t.tenant().clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (checkpoints, failures) = std::thread::scope(|s| {
        for w in 0..8u64 {
            let t = &t;
            let stop = &stop;
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    t.create_file(
                        "registrar:r",
                        NewFile {
                            plan_unit: unit.id,
                            subject: format!("Akte {w}/{i}"),
                            ..NewFile::default()
                        },
                        None,
                    )
                    .unwrap();
                    i += 1;
                }
            });
        }
        let checker = {
            let tenant = tenant.clone();
            s.spawn(move || {
                // AKTE_CHECKPOINT_CALLS raises the number of calls (issue 19: 100,000).
                let calls: u32 = std::env::var("AKTE_CHECKPOINT_CALLS")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(4000);
                let (mut ok, mut failed) = (0u32, Vec::new());
                while ok + (failed.len() as u32) < calls {
                    match tenant.checkpoint() {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                    let size = tenant.size().unwrap();
                    if size > 1 {
                        if let Err(e) = tenant.inclusion_proof(size - 1, size) {
                            failed.push(e.to_string());
                        }
                    }
                }
                (ok, failed)
            })
        };
        let result = checker.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    println!("{checkpoints} checkpoints beside appends");
    assert!(checkpoints > 0);
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
}

/// A tmpfs of `size`, mounted for the test and unmounted after it (needs root; `None`
/// where it cannot be mounted).
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        fs::create_dir(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A full disk is an answer (StorageFull), not an outage: reads go on, acknowledged
/// entries stay, and once space is free again writes resume without reopening the store.
#[test]
fn a_full_disk_is_reported_and_writes_resume_without_a_restart() {
    use akte_core::backend::FaultKind;
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("skipped: no tmpfs can be mounted here (needs root)");
        return;
    };
    let data = disk.path.join("data");
    let store = Store::open(
        akte_core::embedded::open(&data).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    store.create_tenant("t").unwrap();
    let mut rng = Rng::new(17);
    let mut acked = Vec::new();
    for _ in 0..20 {
        let body = rng.bytes(20_000);
        let t = store.tenant("t").unwrap();
        acked.push(
            append_document(&t, "clerk:c", "x", &body, b"{}")
                .unwrap()
                .ticket,
        );
    }
    // Fill what is left.
    let junk = disk.path.join("junk");
    {
        use std::io::Write;
        let mut f = fs::File::create(&junk).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
    }
    let mut refused = None;
    for _ in 0..50 {
        let body = rng.bytes(20_000);
        let t = store.tenant("t").unwrap();
        match append_document(&t, "clerk:c", "x", &body, b"{}") {
            Ok(a) => acked.push(a.ticket),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the disk filled up");
    assert_eq!(e.kind(), FaultKind::StorageFull, "{e}");
    // Reads go on while the disk is full.
    let t = store.tenant("t").unwrap();
    for a in &acked {
        assert_eq!(t.entry(a.entry.seq).unwrap().leaf, a.leaf);
    }
    // Space comes back: after the heal interval the tenant writes again, same store.
    fs::remove_file(&junk).unwrap();
    std::thread::sleep(akte_core::store::HEAL_INTERVAL + std::time::Duration::from_millis(100));
    let t = store.tenant("t").unwrap();
    assert_eq!(t.fenced(), None);
    let body = rng.bytes(20_000);
    let a = append_document(&t, "clerk:c", "x", &body, b"{}").unwrap();
    acked.push(a.ticket);
    for a in &acked {
        assert_eq!(t.entry(a.entry.seq).unwrap().leaf, a.leaf);
    }
    let report = verify_store(&store, VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    drop(t);
    drop(store);
}

/// Without an outside anchor a store can only be checked against itself: a replaced key
/// with re-signed checkpoints, or a journal cut back together with its checkpoints, looks
/// clean. With the key the archivist trusts and a checkpoint they hold, both are found.
#[test]
fn verification_against_a_trusted_key_and_checkpoint_finds_forgery_and_rollback() {
    use akte_core::keys::{KeyFile, SigningKeyPair};
    use akte_core::note::Checkpoint;
    use akte_core::verify::{verify_store_trusting, Trust};
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Store::open(
            akte_core::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap()
    };
    let (trusted_key, held, cut_at) = {
        let store = open();
        let t = store.create_tenant("t").unwrap();
        let mut rng = Rng::new(23);
        fill(&t, 30, &mut rng);
        t.checkpoint().unwrap();
        fill(&t, 30, &mut rng);
        let cut_at = t.index().location(30).unwrap();
        let held = t.checkpoint().unwrap().to_bytes();
        (t.verifier(), held, cut_at)
    };
    let trust = |checkpoint: bool| {
        vec![Trust {
            tenant: "t".into(),
            key: Some(trusted_key.clone()),
            checkpoint: checkpoint.then(|| held.clone()),
        }]
    };
    let tdir = akte_tests::tenant_dir(dir.path(), "t");
    {
        let store = open();
        let clean = verify_store_trusting(&store, VerifyOptions::default(), &trust(true)).unwrap();
        assert!(clean.is_clean(), "{clean:#?}");
    }

    // A rollback: the last 30 entries cut from the journal, their checkpoint deleted.
    let cut = cut_at.unwrap();
    let seg = tdir.join(format!("journal/{:020}.seg", cut.segment));
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut.offset)
        .unwrap();
    fs::remove_file(tdir.join(format!("checkpoints/{:020}.note", 60))).unwrap();
    {
        let store = open();
        assert_eq!(store.tenant("t").unwrap().size().unwrap(), 30);
        let alone = verify_store(&store, VerifyOptions::default()).unwrap();
        assert!(alone.is_clean(), "the store alone cannot tell: {alone:#?}");
        let anchored =
            verify_store_trusting(&store, VerifyOptions::default(), &trust(true)).unwrap();
        assert_eq!(
            kinds(&anchored),
            vec![ProblemKind::AnchorMismatch],
            "{anchored:#?}"
        );
    }

    // A forged key: both key files replaced, every stored checkpoint signed again.
    let origin = fs::read_to_string(tdir.join("ORIGIN")).unwrap();
    let forger = SigningKeyPair::generate(origin.trim_end()).unwrap();
    forger.save(&tdir.join("keys/checkpoint.key")).unwrap();
    forger
        .verifier()
        .save(&tdir.join("keys/checkpoint.pub"))
        .unwrap();
    for item in fs::read_dir(tdir.join("checkpoints")).unwrap() {
        let path = item.unwrap().path();
        let note = akte_core::note::SignedNote::parse(&fs::read(&path).unwrap()).unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        fs::write(&path, cp.sign(&forger).unwrap().to_bytes()).unwrap();
    }
    let store = open();
    let alone = verify_store(&store, VerifyOptions::default()).unwrap();
    assert!(alone.is_clean(), "the store alone cannot tell: {alone:#?}");
    let trusted = verify_store_trusting(&store, VerifyOptions::default(), &trust(false)).unwrap();
    let found = kinds(&trusted);
    assert!(found.contains(&ProblemKind::UntrustedKey), "{trusted:#?}");
    assert!(
        found.contains(&ProblemKind::CheckpointSignature),
        "{trusted:#?}"
    );

    // A stored verifier key that does not match the signing key is a problem by itself.
    fs::write(tdir.join("keys/checkpoint.pub"), format!("{trusted_key}\n")).unwrap();
    let alone = verify_store(&store, VerifyOptions::default()).unwrap();
    assert_eq!(kinds(&alone), vec![ProblemKind::UntrustedKey], "{alone:#?}");
}
