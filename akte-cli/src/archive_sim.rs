//! `akte archive-sim`: the archive's side of a disposal, offline, so that an agency can
//! rehearse before it goes live with its archive. It answers an offer (0501) with a receipt
//! (0504) and an appraisal (0502), and takes a transfer (0503): checks it against the offer
//! and the appraisal and every primary file against the evidence, then writes the receipt
//! (0507) and the import confirmation (0506). The messages are shaped like those of the
//! Thuringian State Archive's intake software x-man: every appraisable object appraised,
//! every imported object confirmed, optional elements left out, local times without UTC
//! offset, and valid against the xdomea 3.1.0 schema.
//!
//! Exit codes: 0 answered; 1 the transfer has problems (the 0507 is written, no 0506);
//! 2 an input cannot be read.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use uuid::Uuid;

use akte_core::evidence;
use akte_core::xdomea::archive::{self, AppraisalRules, ArchiveIds, Packaging};
use akte_core::xdomea::{
    self, AppraisalDecision, MessageHeader, MessageType, ObjectList, Party, WriteStyle,
};

/// Largest message XML the simulator reads.
const MAX_XML: u64 = 64 << 20;

/// Who the simulated archive is in its messages.
#[derive(Args, Debug, Clone)]
pub struct ArchiveArgs {
    /// The archive's name (Institution/Name) in its messages.
    #[arg(long, default_value = "Landesarchiv (Simulation)")]
    pub archive_name: String,
    /// The archive's short name (Institution/Kurzbezeichnung).
    #[arg(long, default_value = "ARCHIV-SIM")]
    pub archive_short_name: String,
}

impl ArchiveArgs {
    fn party(&self) -> Party {
        Party {
            institution: Some(self.archive_name.clone()),
            institution_short: Some(self.archive_short_name.clone()),
            ..Party::default()
        }
    }
}

/// How the simulated archive packages what it imports.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackagingArg {
    /// One package per file: the 0506 names the file and everything in it.
    PerFile,
    /// One package per case, sub-file and the loose documents: the 0506 names them and
    /// their content, not the file itself.
    PerCase,
}

/// The simulator's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Answer an offer (0501): write the receipt (0504) and the appraisal (0502) of every
    /// file, sub-file, case and sub-case.
    Appraise {
        /// The 0501 ZIP (or its XML).
        offer: PathBuf,
        /// A rule file: one rule per line, `SELECTOR A` or `SELECTOR V`; the selector is
        /// `default`, `plan-unit:CODE`, `ref:REFERENCE` (a file's or case's Kennzeichen),
        /// or an object's id or resource name. `#` starts a comment.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// One more rule, `SELECTOR=A` or `SELECTOR=V` (repeatable; after the rule file).
        #[arg(long = "set", value_name = "SELECTOR=A|V")]
        set: Vec<String>,
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Where to write the answers [default: the offer's directory].
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Take a transfer (0503): check it, write the receipt (0507) and, when it is
    /// complete and every file matches the evidence, the import confirmation (0506).
    Import {
        /// The 0503 ZIP.
        transfer: PathBuf,
        /// The 0501 it answers (for the completeness check; left out for a two-stage
        /// transfer).
        #[arg(long, requires = "appraisal")]
        offer: Option<PathBuf>,
        /// The 0502 the simulator wrote for it.
        #[arg(long, requires = "offer")]
        appraisal: Option<PathBuf>,
        /// The agency's verifier key (`name+keyid+base64`), obtained out of band; without
        /// it only the package's integrity is checked.
        #[arg(long)]
        key: Option<String>,
        /// How the archive packages what it imports, which decides the ids its 0506 names.
        #[arg(long, value_enum, default_value = "per-case")]
        packaging: PackagingArg,
        /// Leave Archivkennung out of the 0506 (it is optional).
        #[arg(long)]
        no_archive_ids: bool,
        /// Prefix of the archive ids, numbered per package.
        #[arg(long, default_value = "SIM-")]
        archive_id_prefix: String,
        /// Fail the import of an object: its id or name, with `=REASON` (repeatable).
        #[arg(long = "fail", value_name = "ID[=REASON]")]
        fail: Vec<String>,
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Where to write the answers [default: the transfer's directory].
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Reads a message file: a ZIP (its one message entry) or the XML itself.
fn read_message(path: &Path, message: MessageType) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"PK\x03\x04") {
        let z = xdomea::read_received_zip(Cursor::new(&bytes), &[message], MAX_XML)
            .with_context(|| format!("{} is no {} ZIP", path.display(), message.code()))?;
        Ok((bytes, z.xml))
    } else {
        Ok((bytes.clone(), bytes))
    }
}

fn out_dir(given: Option<&Path>, input: &Path) -> PathBuf {
    match given {
        Some(d) => d.to_path_buf(),
        None => input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    }
}

/// Writes a message as its ZIP into `dir`; returns the path.
fn write(dir: &Path, header: &MessageHeader, message: MessageType, xml: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let zip =
        xdomea::write_message_zip(Cursor::new(Vec::new()), header, message, xml)?.into_inner();
    let path = dir.join(xdomea::message_zip_name(header.process_id, message));
    std::fs::write(&path, zip).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn code(d: AppraisalDecision) -> &'static str {
    d.code()
}

/// Runs a simulator command; prints what it did and returns the exit code.
pub fn run(command: &Command, json: bool) -> ExitCode {
    let result = match command {
        Command::Appraise {
            offer,
            rules,
            set,
            archive,
            out_dir: dir,
        } => appraise(offer, rules.as_deref(), set, archive, dir.as_deref(), json),
        Command::Import {
            transfer,
            offer,
            appraisal,
            key,
            packaging,
            no_archive_ids,
            archive_id_prefix,
            fail,
            archive,
            out_dir: dir,
        } => import(
            transfer,
            offer.as_deref().zip(appraisal.as_deref()),
            key.as_deref(),
            ImportOptions {
                packaging: match packaging {
                    PackagingArg::PerFile => Packaging::PerFile,
                    PackagingArg::PerCase => Packaging::PerCase,
                },
                ids: if *no_archive_ids {
                    ArchiveIds::None
                } else {
                    ArchiveIds::PerPackage
                },
                prefix: archive_id_prefix,
                fail,
            },
            archive,
            dir.as_deref(),
            json,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => crate::output::report_cannot_check(&format!("archive-sim: {e:#}"), json),
    }
}

fn appraise(
    offer: &Path,
    rules_file: Option<&Path>,
    set: &[String],
    archive: &ArchiveArgs,
    dir: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let (_, xml) = read_message(offer, MessageType::Offer)?;
    let list = xdomea::read_0501(&xml).with_context(|| format!("reading {}", offer.display()))?;
    let mut rules = match rules_file {
        Some(p) => AppraisalRules::parse(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => AppraisalRules::default(),
    };
    for (i, rule) in set.iter().enumerate() {
        rules.add(&format!("--set #{}", i + 1), rule)?;
    }
    let appraisals = archive::appraise(&list, &rules);
    let header = archive::answer_header(&list.header, &archive.party(), "akte archive-sim");
    let dir = out_dir(dir, offer);
    let receipt = write(
        &dir,
        &header,
        MessageType::OfferReceipt,
        &xdomea::write_0504_with(&header, WriteStyle::Archive)?,
    )?;
    let answer = write(
        &dir,
        &header,
        MessageType::Appraisal,
        &xdomea::write_0502_with(&header, &appraisals, WriteStyle::Archive)?,
    )?;
    let labels: HashMap<Uuid, String> =
        list.walk().iter().map(|(o, _)| (o.id, o.label())).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "process": list.header.process_id,
                "appraisals": appraisals.iter().map(|a| json!({"id": a.id, "decision": code(a.decision),
                    "object": labels.get(&a.id)})).collect::<Vec<_>>(),
                "receipt": receipt, "appraisal": answer,
            }))?
        );
    } else {
        for a in &appraisals {
            println!(
                "{}\t{}",
                code(a.decision),
                labels.get(&a.id).cloned().unwrap_or_default()
            );
        }
        println!("wrote {}", receipt.display());
        println!("wrote {}", answer.display());
    }
    Ok(ExitCode::SUCCESS)
}

struct ImportOptions<'a> {
    packaging: Packaging,
    ids: ArchiveIds,
    prefix: &'a str,
    fail: &'a [String],
}

/// `ID[=REASON]`, the id also as a resource name ending in it.
fn failures(fail: &[String]) -> Result<HashMap<Uuid, String>> {
    let mut out = HashMap::new();
    for f in fail {
        let (who, why) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let id = who.rsplit('/').next().unwrap_or(who);
        let id = Uuid::try_parse(id.trim())
            .map_err(|_| anyhow!("--fail {f:?}: {who:?} is no object id or name"))?;
        let why = if why.trim().is_empty() {
            "Import fehlgeschlagen (Simulation)".to_owned()
        } else {
            why.trim().to_owned()
        };
        out.insert(id, why);
    }
    Ok(out)
}

fn import(
    transfer: &Path,
    appraised: Option<(&Path, &Path)>,
    key: Option<&str>,
    options: ImportOptions<'_>,
    archive: &ArchiveArgs,
    dir: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let (zip, xml) = read_message(transfer, MessageType::Transfer)?;
    if !zip.starts_with(b"PK\x03\x04") {
        bail!(
            "{} is no ZIP: a transfer travels as a ZIP with its primary files",
            transfer.display()
        );
    }
    let list =
        xdomea::read_0503(&xml).with_context(|| format!("reading {}", transfer.display()))?;
    let failures = failures(options.fail)?;
    let mut problems = Vec::new();
    if let Some((offer_path, appraisal_path)) = appraised {
        let (_, offer_xml) = read_message(offer_path, MessageType::Offer)?;
        let offer: ObjectList = xdomea::read_0501(&offer_xml)
            .with_context(|| format!("reading {}", offer_path.display()))?;
        let (_, appraisal_xml) = read_message(appraisal_path, MessageType::Appraisal)?;
        let appraisal = xdomea::read_0502(&appraisal_xml)
            .with_context(|| format!("reading {}", appraisal_path.display()))?;
        for (what, pid) in [
            ("offer", offer.header.process_id),
            ("appraisal", appraisal.header.process_id),
        ] {
            if pid != list.header.process_id {
                bail!(
                    "the {what} belongs to process {pid}, the transfer to {}",
                    list.header.process_id
                );
            }
        }
        problems.extend(archive::check_transfer(
            &offer,
            &appraisal.appraisals,
            &list,
        ));
    }
    for id in failures.keys() {
        if !list.walk().iter().any(|(o, _)| o.id == *id) {
            bail!("--fail {id}: no such object in the transfer");
        }
    }
    let report = evidence::verify_package_bytes(&zip, key)
        .map_err(|e| anyhow!("checking the evidence of {}: {e}", transfer.display()))?;
    for p in &report.problems {
        problems.push(format!("evidence: {p}"));
    }
    let header = archive::answer_header(&list.header, &archive.party(), "akte archive-sim");
    let dir = out_dir(dir, transfer);
    let receipt = write(
        &dir,
        &header,
        MessageType::TransferReceipt,
        &xdomea::write_0507_with(&header, WriteStyle::Archive)?,
    )?;
    let mut confirmation = None;
    if problems.is_empty() {
        let results = archive::import_results(
            &list,
            options.packaging,
            options.ids,
            options.prefix,
            &failures,
        );
        confirmation = Some(write(
            &dir,
            &header,
            MessageType::ImportConfirmation,
            &xdomea::write_0506_with(&header, &results, WriteStyle::Archive)?,
        )?);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "process": list.header.process_id,
                "objects": list.walk().len(),
                "primary_files": report.objects.len(),
                "key_fingerprint": report.key_fingerprint,
                "problems": problems,
                "receipt": receipt,
                "import_confirmation": confirmation,
            }))?
        );
    } else {
        for p in &problems {
            println!("PROBLEM {p}");
        }
        println!(
            "{} objects, {} primary files checked against the evidence (key {})",
            list.walk().len(),
            report.objects.len(),
            report.key_fingerprint.as_deref().unwrap_or("?")
        );
        println!("wrote {}", receipt.display());
        match &confirmation {
            Some(c) => println!("wrote {}", c.display()),
            None => println!("no import confirmation (0506): the transfer has problems"),
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
