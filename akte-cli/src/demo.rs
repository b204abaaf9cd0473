//! `akte demo`: what akte is for, in short steps on a new data directory.
//!
//! A building authority keeps a file plan and a file with two cases and their documents,
//! files a second version, closes the file, reads its history, signs a checkpoint and
//! proves an entry; retention makes the file due, the archive (the simulator's code, in
//! process) appraises the offer, takes the transfer and confirms the import, the agency
//! destroys what the archive has and what it appraised V, and a verification of the
//! whole store comes out clean. Everything goes through the records model of `akte-core`,
//! exactly as akted would do it; no server is needed.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use uuid::Uuid;

use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::records::{
    DisposalDecision, DisposalSettings, ListCode, NewCase, NewDocument, NewFile, NewPlanUnit,
    NewRendition, NewVersion, PageRequest, PartyIdentity, Records, Retention, TenantRecords,
};
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_core::xdomea::archive::{self, AppraisalRules, ArchiveIds, Packaging};
use akte_core::xdomea::{self, MessageType, Party, WriteStyle};

const TENANT: &str = "stadt-erfurt";
const REGISTRAR: &str = "registrar:weber";
const CLERK: &str = "clerk:schmidt";
const ARCHIVIST: &str = "archivist:lange";
/// Largest message XML the simulated archive reads.
const MAX_XML: u64 = 64 << 20;

/// Runs the demo in `dir` (a new directory under the temporary directory if `None`).
pub fn run(dir: Option<&Path>) -> Result<()> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => fresh_dir()?,
    };
    if dir.join("FORMAT").exists() {
        return Err(crate::output::usage(format!(
            "{} holds a data directory already; the demo starts from a new one (give another \
             --data-dir, or none for one under the temporary directory)",
            dir.display()
        )));
    }
    let backend = akte_core::embedded::open(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let records = Records::open(backend, StoreOptions::default())?;
    let t = records.create_tenant(TENANT)?;
    step(&format!(
        "data directory {}, agency (tenant) {TENANT}\n   verifier key {}",
        dir.display(),
        t.tenant().verifier()
    ));
    settings(&t)?;

    // The file plan: the unit says how long its files are kept and what happens then.
    let unit = t.create_plan_unit(
        REGISTRAR,
        NewPlanUnit {
            code: "632.1".into(),
            title: "Baugenehmigungen".into(),
            retention: Retention::Years(5),
            disposal: DisposalDecision::Appraise,
            ..NewPlanUnit::default()
        },
        None,
    )?;
    step("file plan: 632.1 Baugenehmigungen, kept 5 years after closing, then appraised (B)");

    let file = t.create_file(
        REGISTRAR,
        NewFile {
            plan_unit: unit.id,
            subject: "Neubau Kita, Flurstück 7".into(),
            begin: Some(date(2012, 3, 1)?),
            end: Some(date(2015, 6, 30)?),
            lead_unit: "Bauordnungsamt".into(),
            ..NewFile::default()
        },
        None,
    )?;
    let permit = case(&t, file.id, "Baugenehmigung")?;
    let complaint = case(&t, file.id, "Nachbarbeschwerde")?;
    step(&format!(
        "file {} \"{}\" with case {} (Baugenehmigung) and case {} (Nachbarbeschwerde)",
        file.reference, file.subject, permit.number, complaint.number
    ));

    let application = document(&t, permit.id, "Bauantrag", "Kita gGmbH")?;
    let first = version(
        &t,
        application,
        "bauantrag.pdf",
        b"%PDF-1.7 Bauantrag Kita, Entwurf\n",
        "Eingang",
    )?;
    let second = version(
        &t,
        application,
        "bauantrag.pdf",
        b"%PDF-1.7 Bauantrag Kita, mit Statik\n",
        "Nachreichung mit Statik",
    )?;
    let complaint_doc = document(&t, complaint.id, "Beschwerde", "Nachbar Huber")?;
    version(
        &t,
        complaint_doc,
        "beschwerde.txt",
        b"Beschwerde ueber Baulaerm\n",
        "Eingang",
    )?;
    step(&format!(
        "documents: Bauantrag (versions {} and {}), Beschwerde (version 1), each version's \
         bytes stored by SHA-256",
        first.0, second.0
    ));

    t.close(REGISTRAR, file.id, None, Some(date(2015, 6, 30)?))?;
    step("closed the file (zdA) on 2015-06-30; nothing can be added to it now");

    step("history of the file and of the Bauantrag (journal entry, when, who, what):");
    for id in [file.id, application] {
        for h in t.history(id, &PageRequest::first(100))?.items {
            println!(
                "   #{:<3} {} {:<16} {}",
                h.seq,
                h.at.format("%Y-%m-%d %H:%M:%S UTC"),
                h.actor,
                h.action
            );
        }
    }

    let tenant = t.tenant();
    let note = tenant.checkpoint()?;
    let (cp, _) = Checkpoint::open(&note.to_bytes(), &tenant.verifier())?;
    let seq = second.1;
    let leaf = tenant.entry(seq)?.leaf;
    let proof = tenant.inclusion_proof(seq, cp.size)?;
    merkle::verify_inclusion(&leaf, seq, cp.size, &proof, &cp.root)?;
    step(&format!(
        "signed checkpoint: {} entries, root {}\n   proof: entry {seq} (version 2 of the \
         Bauantrag) is in it ({} hashes, checked)",
        cp.size,
        cp.root,
        proof.len()
    ));

    let status = t.disposal_status(file.id)?;
    step(&format!("retention: {}", status.explanation));

    let key = tenant.verifier().to_string();
    dispose(&t, file.id, complaint.id, &key)?;

    let report = verify_store(records.store(), VerifyOptions::default())?;
    let problems: usize = report.tenants.iter().map(|t| t.problems.len()).sum();
    if !report.is_clean() {
        bail!("verification found {problems} problems");
    }
    let entries: u64 = report.tenants.iter().map(|t| t.entries).sum();
    step(&format!(
        "verify: clean ({entries} journal entries, chain, checkpoints, content and index checked)"
    ));
    println!(
        "\nThe data directory stays for you to look at: `akte --data-dir {} verify`, \
         `akte --data-dir {} stats`.",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Offer, appraisal, transfer, import and destruction, with the archive simulated.
fn dispose(t: &TenantRecords, file: Uuid, appraised_v: Uuid, key: &str) -> Result<()> {
    let (process, offer) = t.offer(REGISTRAR, &[file], Cursor::new(Vec::new()))?;
    let offer = offer.into_inner();
    step(&format!(
        "offer (xdomea 0501, {} bytes) of the file to the archive",
        offer.len()
    ));

    // The archive: appraises the file A and the complaint case V.
    let offered = xdomea::read_0501(&message_xml(&offer, MessageType::Offer)?)?;
    let mut rules = AppraisalRules::default();
    rules.add("demo", &format!("{appraised_v}=V"))?;
    let appraisals = archive::appraise(&offered, &rules);
    let header = archive::answer_header(&offered.header, &archive_party(), "akte demo");
    t.receive_message(
        ARCHIVIST,
        &xdomea::write_0504_with(&header, WriteStyle::Archive)?,
    )?;
    let received = t.receive_message(
        ARCHIVIST,
        &xdomea::write_0502_with(&header, &appraisals, WriteStyle::Archive)?,
    )?;
    step(&format!(
        "the archive appraised the file A, the complaint case V (0504, 0502; the agency \
         answered with a 0505){}",
        if received.receipt.is_some() {
            ""
        } else {
            " [no receipt]"
        }
    ));

    let transfer = t
        .transfer(REGISTRAR, process, Cursor::new(Vec::new()))?
        .into_inner();
    let sent = xdomea::read_0503(&message_xml(&transfer, MessageType::Transfer)?)?;
    let evidence = akte_core::evidence::verify_package_bytes(&transfer, Some(key))
        .context("checking the transfer's evidence")?;
    if !evidence.is_clean() {
        bail!(
            "the transfer's evidence has problems: {:?}",
            evidence.problems
        );
    }
    step(&format!(
        "transfer (0503, {} bytes): the file without the case appraised V; the archive \
         checked every document's hash and proof against the agency's key",
        transfer.len()
    ));
    let header = archive::answer_header(&sent.header, &archive_party(), "akte demo");
    let results = archive::import_results(
        &sent,
        Packaging::PerCase,
        ArchiveIds::PerPackage,
        "SIM-",
        &HashMap::new(),
    );
    t.receive_message(
        ARCHIVIST,
        &xdomea::write_0507_with(&header, WriteStyle::Archive)?,
    )?;
    t.receive_message(
        ARCHIVIST,
        &xdomea::write_0506_with(&header, &results, WriteStyle::Archive)?,
    )?;
    step(&format!(
        "the archive confirmed receipt and import (0507, 0506): {}",
        t.disposal_status(file)?.explanation
    ));

    let (case_record, _) = t.destroy(
        REGISTRAR,
        &[appraised_v],
        "§ 18 ThürEGovG, Bewertung V",
        "Amtsleitung",
    )?;
    let (file_record, note) = t.destroy(
        REGISTRAR,
        &[file],
        "§ 18 ThürEGovG, vom Archiv übernommen",
        "Amtsleitung",
    )?;
    let objects: usize = file_record.files.iter().map(|f| f.objects.len()).sum();
    step(&format!(
        "destroyed the case appraised V (record {}), then the file the archive holds \
         ({objects} objects, record {}); each destruction record is signed with the \
         agency's key ({} signature)",
        case_record.id,
        file_record.id,
        note.signatures.len()
    ));
    Ok(())
}

/// Who the agency and its archive are in every message (an admin's setting).
fn settings(t: &TenantRecords) -> Result<()> {
    t.set_disposal_settings(
        "admin:demo",
        &DisposalSettings {
            agency: PartyIdentity {
                key: Some(ListCode {
                    code: "16051000".into(),
                    name: "Stadtverwaltung Erfurt".into(),
                    ..ListCode::default()
                }),
                prefix: Some(ListCode {
                    code: "ags:".into(),
                    ..ListCode::default()
                }),
                institution: "Stadtverwaltung Erfurt".into(),
                institution_short: "SV Erfurt".into(),
            },
            archive: PartyIdentity {
                institution: "Stadtarchiv Erfurt".into(),
                institution_short: "StA Erfurt".into(),
                ..PartyIdentity::default()
            },
        },
    )?;
    Ok(())
}

fn archive_party() -> Party {
    Party {
        institution: Some("Stadtarchiv Erfurt".into()),
        institution_short: Some("StA Erfurt".into()),
        ..Party::default()
    }
}

/// The XML of a message ZIP, as the archive's intake reads it.
fn message_xml(zip: &[u8], message: MessageType) -> Result<Vec<u8>> {
    Ok(xdomea::read_received_zip(Cursor::new(zip), &[message], MAX_XML)?.xml)
}

fn case(t: &TenantRecords, file: Uuid, subject: &str) -> Result<akte_core::records::Case> {
    Ok(t.create_case(
        REGISTRAR,
        NewCase {
            parent: file,
            subject: subject.into(),
            ..NewCase::default()
        },
        None,
    )?)
}

fn document(t: &TenantRecords, parent: Uuid, subject: &str, sender: &str) -> Result<Uuid> {
    Ok(t.create_document(
        CLERK,
        NewDocument {
            parent,
            subject: subject.into(),
            sender: sender.into(),
            ..NewDocument::default()
        },
        None,
    )?
    .id)
}

/// Stores `bytes` and adds them as a new version; returns its number and journal entry.
fn version(
    t: &TenantRecords,
    document: Uuid,
    name: &str,
    bytes: &[u8],
    comment: &str,
) -> Result<(u32, u64)> {
    let put = t.put_content(bytes)?;
    let media_type = if name.ends_with(".pdf") {
        "application/pdf"
    } else {
        "text/plain"
    };
    let v = t.add_version(
        CLERK,
        document,
        NewVersion {
            comment: comment.into(),
            renditions: vec![NewRendition {
                file_name: name.into(),
                media_type: media_type.into(),
                sha256: put.digest,
                size: put.size,
            }],
        },
        None,
    )?;
    Ok((v.number, v.created.seq))
}

fn date(y: i32, m: u32, d: u32) -> Result<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d).with_context(|| format!("{y}-{m}-{d} is no date"))
}

/// A new directory for the demo under the system's temporary directory.
fn fresh_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let dir = base.join(format!("akte-demo-{}", Uuid::new_v4().simple()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("could not make a new directory under {}", base.display())
}

/// Prints one step of the story.
fn step(text: &str) {
    println!("-> {text}");
}
