//! The derived index heals itself: whatever happens to a tenant's index files (a changed
//! byte, a cut, a deleted file), opening the store sets aside what it cannot use,
//! rebuilds from the journal, and verification is clean, without anyone deleting
//! anything by hand. Other tenants are not touched.
//!
//! `AKTE_INDEX_DAMAGE_TRIALS` sets the number of damaged copies (default 40); the ignored
//! `index_damage_long` runs 200. `AKTE_TEST_SEED` replays a run.

use std::fs;
use std::path::{Path, PathBuf};

use akte_core::records::{NewDocument, NewFile, NewPlanUnit, PageRequest, Query, Records};
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::{copy_tree, Rng};

fn build(data: &Path) {
    let records = Records::open(
        akte_core::embedded::open(data).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    for name in ["amt-a", "amt-b"] {
        let t = records.create_tenant(name).unwrap();
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
        for i in 0..120 {
            let f = t
                .create_file(
                    "registrar:r",
                    NewFile {
                        plan_unit: unit.id,
                        subject: format!("Akte {i}"),
                        ..NewFile::default()
                    },
                    None,
                )
                .unwrap();
            t.create_document(
                "clerk:c",
                NewDocument {
                    parent: f.id,
                    subject: format!("Schreiben {i}"),
                    ..NewDocument::default()
                },
                None,
            )
            .unwrap();
        }
        t.tenant().checkpoint().unwrap();
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for item in fs::read_dir(dir).unwrap().flatten() {
        if item.file_type().unwrap().is_dir() {
            files_under(&item.path(), out);
        } else {
            out.push(item.path());
        }
    }
}

fn damage(rng: &mut Rng, data: &Path) -> String {
    let mut files = Vec::new();
    files_under(&data.join("index").join("amt-a"), &mut files);
    files.sort();
    let victim = files[rng.range(0, files.len() as u64) as usize].clone();
    let len = fs::metadata(&victim).unwrap().len();
    let what = match rng.range(0, 4) {
        0 | 1 if len > 0 => {
            let mut bytes = fs::read(&victim).unwrap();
            let flips = rng.range(1, 4);
            for _ in 0..flips {
                let at = rng.range(0, len) as usize;
                bytes[at] ^= 1 << rng.range(0, 8);
            }
            fs::write(&victim, bytes).unwrap();
            format!("{flips} bit flips")
        }
        2 if len > 0 => {
            let keep = rng.range(0, len);
            fs::OpenOptions::new()
                .write(true)
                .open(&victim)
                .unwrap()
                .set_len(keep)
                .unwrap();
            format!("cut to {keep} of {len} bytes")
        }
        _ => {
            fs::remove_file(&victim).unwrap();
            "deleted".to_owned()
        }
    };
    format!("{what} in {}", victim.strip_prefix(data).unwrap().display())
}

fn campaign(trials: usize) {
    let seed = Rng::seed_from_env();
    println!("index damage seed {seed} (set AKTE_TEST_SEED to replay)");
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let pristine = work.path().join("pristine");
    build(&pristine);
    let mut healed = 0;
    for i in 0..trials {
        let data = work.path().join(format!("trial-{i}"));
        copy_tree(&pristine, &data);
        let what = damage(&mut rng, &data);
        let records = Records::open(
            akte_core::embedded::open(&data).unwrap(),
            StoreOptions::default(),
        )
        .unwrap_or_else(|e| panic!("trial {i} ({what}): open: {e}"));
        let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
        assert!(
            report.is_clean(),
            "trial {i} ({what}): {:#?}",
            report.problems().collect::<Vec<_>>()
        );
        for name in ["amt-a", "amt-b"] {
            let t = records.tenant(name).unwrap();
            assert_eq!(t.tenant().size().unwrap(), 241, "trial {i} ({what})");
            let query = Query {
                subject_words: vec!["akte".into()],
                ..Query::default()
            };
            let found = t.query(&query, &PageRequest::default()).unwrap();
            assert!(
                !found.items.is_empty(),
                "trial {i} ({what}): the word index finds nothing"
            );
        }
        healed += 1;
        drop(records);
        fs::remove_dir_all(&data).unwrap();
    }
    println!("{healed} of {trials} damaged indexes healed to a clean verify");
}

#[test]
fn a_damaged_index_heals_at_open() {
    let n = std::env::var("AKTE_INDEX_DAMAGE_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    campaign(n);
}

#[test]
#[ignore = "long: 200 damaged indexes; run with --ignored"]
fn index_damage_long() {
    campaign(200);
}
