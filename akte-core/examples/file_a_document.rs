//! Files a document the way agency software would, then reads it back and proves it.
//!
//! `cargo run -p akte-core --example file_a_document [DATA_DIR]`

use std::io::Read;

use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::records::{
    DisposalDecision, NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion, PageRequest,
    Records, Retention,
};
use akte_core::store::StoreOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let records = Records::open(
        akte_core::embedded::open(&dir).unwrap(),
        StoreOptions::default(),
    )?;
    let agency = match records.tenant("bauamt-erfurt") {
        Ok(t) => t,
        Err(_) => records.create_tenant("bauamt-erfurt")?,
    };

    // The registrar keeps the file plan; the unit carries the retention defaults.
    let unit = match agency.plan_unit_by_code("632.1") {
        Ok(u) => u,
        Err(_) => agency.create_plan_unit(
            "registrar:weber",
            NewPlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                retention: Retention::Years(30),
                disposal: DisposalDecision::Archive,
                ..NewPlanUnit::default()
            },
            None,
        )?,
    };
    let file = agency.create_file(
        "registrar:weber",
        NewFile {
            plan_unit: unit.id,
            subject: "Neubau Einfamilienhaus, Flurstück 12/3".into(),
            ..NewFile::default()
        },
        None,
    )?;
    println!("file {} ({})", file.reference, file.id);

    // A clerk files the application: first the bytes, then the document and its version.
    let pdf = b"%PDF-1.7\n% Bauantrag Familie Meier\n".repeat(100);
    let put = agency.put_content(&pdf[..])?;
    let doc = agency.create_document(
        "clerk:schmidt",
        NewDocument {
            parent: file.id,
            subject: "Bauantrag".into(),
            sender: "Familie Meier".into(),
            ..NewDocument::default()
        },
        Some("dms-4711"),
    )?;
    let version = agency.add_version(
        "clerk:schmidt",
        doc.id,
        NewVersion {
            comment: "Eingang per Post, gescannt".into(),
            renditions: vec![NewRendition {
                file_name: "bauantrag.pdf".into(),
                media_type: "application/pdf".into(),
                sha256: put.digest,
                size: put.size,
            }],
        },
        None,
    )?;
    println!(
        "document {} version {} sha256 {}",
        doc.id, version.number, put.digest
    );

    // Read it back: the reader checks the SHA-256 when it reaches the end.
    let mut bytes = Vec::new();
    agency
        .open_rendition(&version.renditions[0])?
        .read_to_end(&mut bytes)?;
    assert_eq!(bytes, pdf);
    for item in agency.history(doc.id, &PageRequest::first(10))?.items {
        println!(
            "history: entry {} {} by {}",
            item.seq, item.action, item.actor
        );
    }

    // Prove that the version's journal entry is in the signed log.
    let tenant = agency.tenant();
    let note = tenant.checkpoint()?;
    let (checkpoint, _) = Checkpoint::open(&note.to_bytes(), &tenant.verifier())?;
    let seq = version.created.seq;
    let leaf = tenant.entry(seq)?.leaf;
    let proof = tenant.inclusion_proof(seq, checkpoint.size)?;
    merkle::verify_inclusion(&leaf, seq, checkpoint.size, &proof, &checkpoint.root)?;
    println!(
        "entry {seq} is in checkpoint of size {} (proof of {} hashes)",
        checkpoint.size,
        proof.len()
    );
    Ok(())
}
