//! Client commands for retention, holds and the xdomea disposal flow.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;
use sha2::Digest as _;

use akte_api::client::{unpack, wait_operation, Clients};
use akte_api::pb::akte::v1 as pb;

use super::{all_pages, parse_date, Ctx};
use crate::output::{api, print_json, usage};

/// Retention commands.
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Override retention and disposal decision of a file (registrar).
    Set {
        /// The file.
        file: String,
        /// Retention in years.
        #[arg(long, conflicts_with = "unlimited")]
        years: Option<u32>,
        /// Unlimited retention.
        #[arg(long)]
        unlimited: bool,
        /// Disposal decision: A (archive), V (destroy) or B (appraise).
        #[arg(long)]
        decision: Option<String>,
        /// Why (recorded in the journal).
        #[arg(long)]
        reason: String,
    },
    /// The disposal status of a file, case or document, with its explanation.
    Status {
        /// The object.
        name: String,
    },
    /// Files whose retention has ended.
    Due {
        /// Only files of this plan unit.
        #[arg(long)]
        plan_unit: Option<String>,
        /// Only files with this decision (A, V or B).
        #[arg(long)]
        decision: Option<String>,
        /// Only files whose retention ended on or before this day (YYYY-MM-DD).
        #[arg(long)]
        ended_by: Option<String>,
    },
}

/// Hold commands.
#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    /// Place a hold on a file, case or document (archivist).
    Place {
        /// The object (full name, or a file id with --tenant).
        object: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Reference of the matter, e.g. a court file number.
        #[arg(long, default_value = "")]
        reference: String,
    },
    /// Release a hold (archivist).
    Release {
        /// The hold.
        hold: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List holds.
    List {
        /// Also released ones.
        #[arg(long)]
        all: bool,
    },
}

/// The tenant's disposal settings: who the agency and its archive are in every message.
/// Each flag given replaces that setting; an empty value clears it; the others stay.
#[derive(Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// The agency's Behördenschlüssel (code), e.g. 16051000.
    #[arg(long)]
    pub agency_key: Option<String>,
    /// The name of that code in its list.
    #[arg(long)]
    pub agency_key_name: Option<String>,
    /// The list (listURI) of the agency's Behördenschlüssel.
    #[arg(long)]
    pub agency_key_list: Option<String>,
    /// The list's version (listVersionID).
    #[arg(long)]
    pub agency_key_list_version: Option<String>,
    /// The agency's Präfix (code), e.g. ags: (as the archive registered the agency).
    #[arg(long)]
    pub agency_prefix: Option<String>,
    /// The name of that Präfix in its list.
    #[arg(long)]
    pub agency_prefix_name: Option<String>,
    /// The list (listURI) of the Präfix.
    #[arg(long)]
    pub agency_prefix_list: Option<String>,
    /// The list's version (listVersionID).
    #[arg(long)]
    pub agency_prefix_list_version: Option<String>,
    /// The agency's name (Institution/Name), e.g. "Stadtverwaltung Erfurt".
    #[arg(long)]
    pub agency_name: Option<String>,
    /// The agency's short name (Institution/Kurzbezeichnung).
    #[arg(long)]
    pub agency_short_name: Option<String>,
    /// The archive's Behördenschlüssel (code).
    #[arg(long)]
    pub archive_key: Option<String>,
    /// The name of that code in its list.
    #[arg(long)]
    pub archive_key_name: Option<String>,
    /// The archive's Präfix (code).
    #[arg(long)]
    pub archive_prefix: Option<String>,
    /// The name of that Präfix in its list.
    #[arg(long)]
    pub archive_prefix_name: Option<String>,
    /// The archive's name (Institution/Name), e.g. "Landesarchiv Thüringen".
    #[arg(long)]
    pub archive_name: Option<String>,
    /// The archive's short name (Institution/Kurzbezeichnung).
    #[arg(long)]
    pub archive_short_name: Option<String>,
}

/// The settings commands.
#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Show the tenant's disposal settings.
    Show,
    /// Change the tenant's disposal settings (admin).
    Set(Box<SettingsArgs>),
}

fn set_text(slot: &mut String, v: &Option<String>) {
    if let Some(v) = v {
        *slot = v.clone();
    }
}

/// Applies code flags to a code: the code flag creates or (empty) removes it.
fn set_code(
    slot: &mut Option<pb::ListCode>,
    code: &Option<String>,
    name: &Option<String>,
    list: &Option<String>,
    version: &Option<String>,
) {
    if let Some(c) = code {
        if c.is_empty() {
            *slot = None;
            return;
        }
        slot.get_or_insert_with(pb::ListCode::default).code = c.clone();
    }
    if let Some(c) = slot.as_mut() {
        set_text(&mut c.name, name);
        set_text(&mut c.list_uri, list);
        set_text(&mut c.list_version_id, version);
    }
}

impl SettingsArgs {
    fn apply(&self, s: &mut pb::DisposalSettings) {
        let agency = s.agency.get_or_insert_with(Default::default);
        set_code(
            &mut agency.key,
            &self.agency_key,
            &self.agency_key_name,
            &self.agency_key_list,
            &self.agency_key_list_version,
        );
        set_code(
            &mut agency.prefix,
            &self.agency_prefix,
            &self.agency_prefix_name,
            &self.agency_prefix_list,
            &self.agency_prefix_list_version,
        );
        set_text(&mut agency.institution, &self.agency_name);
        set_text(&mut agency.institution_short, &self.agency_short_name);
        let archive = s.archive.get_or_insert_with(Default::default);
        set_code(
            &mut archive.key,
            &self.archive_key,
            &self.archive_key_name,
            &None,
            &None,
        );
        set_code(
            &mut archive.prefix,
            &self.archive_prefix,
            &self.archive_prefix_name,
            &None,
            &None,
        );
        set_text(&mut archive.institution, &self.archive_name);
        set_text(&mut archive.institution_short, &self.archive_short_name);
    }
}

fn show_settings(s: &pb::DisposalSettings) -> String {
    let code = |c: &Option<pb::ListCode>| match c {
        None => "(not set)".to_owned(),
        Some(c) if c.name.is_empty() => c.code.clone(),
        Some(c) => format!("{} ({})", c.code, c.name),
    };
    let side = |label: &str, p: &Option<pb::PartyIdentity>| {
        let p = p.clone().unwrap_or_default();
        format!(
            "{label}: Behördenschlüssel {}, Präfix {}, Institution {:?}, Kurzbezeichnung {:?}",
            code(&p.key),
            code(&p.prefix),
            p.institution,
            p.institution_short
        )
    };
    format!(
        "{}\n{}",
        side("agency", &s.agency),
        side("archive", &s.archive)
    )
}

/// Disposal commands.
#[derive(Subcommand, Debug)]
pub enum DisposalCommand {
    /// Offer files to the archive: writes the 0501 ZIP (registrar).
    Offer {
        /// The files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output file [default: the xdomea file name in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read a message of the archive (0502, 0504, 0506 or 0507; ZIP or XML) (archivist).
    /// A 0502 is answered with the 0505 receipt, written as its xdomea ZIP.
    Receive {
        /// The message file.
        message: PathBuf,
        /// Where to write the 0505 of a 0502: a directory, or a file name [default: the
        /// message's directory, under the 0505's xdomea name].
        #[arg(long)]
        receipt: Option<PathBuf>,
    },
    /// Transfer what the archive appraised A: writes the 0503 ZIP (registrar).
    Transfer {
        /// The process.
        process: String,
        /// Output file [default: the xdomea file name in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write the package of an already transferred process again (after a lost
        /// download); refused once the archive has sent its receipt.
        #[arg(long)]
        resend: bool,
    },
    /// Transfer files with decision A directly (two stages): writes the 0503 ZIP.
    TransferTwoStage {
        /// The files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output file [default: the xdomea file name in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Show a disposal process.
    Process {
        /// The process.
        name: String,
    },
    /// Destroy files, or parts of files the archive appraised V (registrar or admin);
    /// prints the destruction record (its signed note is in the --json output).
    Destroy {
        /// Files (a bare id is a file), or sub-files and cases by their full names
        /// (tenants/T/files/ID, tenants/T/cases/ID).
        #[arg(required = true)]
        files: Vec<String>,
        /// The legal basis.
        #[arg(long)]
        legal_basis: String,
        /// Who authorised the destruction.
        #[arg(long)]
        authorised_by: String,
    },
    /// Show a destruction record (or list them without a name).
    DestructionRecord {
        /// The record.
        name: Option<String>,
    },
    /// The tenant's disposal settings: the agency's Behördenkennung and name and the
    /// archive's, as every message names them.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
}

fn decision(field: &str, s: Option<&str>) -> Result<i32> {
    Ok(match s.map(str::to_ascii_uppercase).as_deref() {
        None => 0,
        Some("A") => pb::DisposalDecision::Archive as i32,
        Some("V") => pb::DisposalDecision::Destroy as i32,
        Some("B") => pb::DisposalDecision::Appraise as i32,
        Some(other) => return Err(usage(format!("--{field} {other:?}: expected A, V or B"))),
    })
}

fn show_status(s: &pb::DisposalStatus) -> String {
    let mut out = format!("{}\t{}\t{}", s.file, s.reference, s.explanation);
    if s.object != s.file {
        out = format!("{}\t{}", s.object, s.explanation);
    }
    for p in &s.parts {
        let decision = pb::DisposalDecision::try_from(p.decision)
            .map(|d| match d {
                pb::DisposalDecision::Archive => "A",
                pb::DisposalDecision::Destroy => "V",
                pb::DisposalDecision::Appraise => "B",
                pb::DisposalDecision::Unspecified => "-",
            })
            .unwrap_or("-");
        out.push_str(&format!("\n  {}\t{decision}\t{}", p.object, p.explanation));
    }
    out
}

/// Waits for a transfer operation and downloads the package it wrote.
async fn fetch_package(
    c: &mut Clients,
    op: akte_api::pb::google::longrunning::Operation,
    output: Option<&Path>,
) -> Result<(pb::MessageInfo, PathBuf)> {
    let done = wait_operation(&mut c.operations, op).await?;
    let package: pb::TransferPackage = unpack(&done)?;
    let s = c
        .disposal
        .download_transfer_package(pb::DownloadTransferPackageRequest {
            name: package.name,
            offset: 0,
            length: 0,
        })
        .await?
        .into_inner();
    save_zip(s, output).await
}

/// Writes a streamed ZIP to `output` (or its xdomea name), via a `.part` file renamed when
/// complete. Returns the info and the path.
pub(super) async fn save_zip(
    mut s: tonic::Streaming<pb::MessageChunk>,
    output: Option<&Path>,
) -> Result<(pb::MessageInfo, PathBuf)> {
    let first = s
        .message()
        .await?
        .ok_or_else(|| anyhow!("the server sent nothing"))?;
    let Some(pb::message_chunk::Message::Info(info)) = first.message else {
        bail!("the server's first message is not the ZIP's description");
    };
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => PathBuf::from(&info.file_name),
    };
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let mut received = 0u64;
    let mut hasher = sha2::Sha256::new();
    let bar = progress(info.size, &info.file_name);
    let result: Result<()> = async {
        while let Some(m) = s.message().await? {
            if let Some(pb::message_chunk::Message::Chunk(b)) = m.message {
                received += b.len() as u64;
                hasher.update(&b);
                f.write_all(&b)?;
                if let Some(bar) = &bar {
                    bar.set_position(received);
                }
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        f.flush()?;
        if received != info.size {
            bail!("received {received} bytes of {}", info.size);
        }
        if hasher.finalize().as_slice() != &info.sha256[..] {
            bail!("the received ZIP does not hash to the SHA-256 the server gave");
        }
        Ok(())
    }
    .await;
    drop(f);
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("renaming to {}", out.display()))?;
            Ok((info, out))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A progress bar on standard error for a download of `size` bytes, only when standard
/// output is a terminal (scripts and pipes see no bar).
pub(super) fn progress(size: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    Some(bar)
}

/// A message ZIP written: the server's description of it and where it is now.
pub(super) fn print_zip(ctx: &Ctx<'_>, info: &pb::MessageInfo, path: &Path) -> Result<()> {
    if ctx.json {
        let mut v = api(info)?;
        v["file"] = json!(path.display().to_string());
        print_json(&v);
    } else {
        println!(
            "wrote {} ({} bytes, sha256 {}) for {}",
            path.display(),
            info.size,
            hex::encode(&info.sha256),
            info.process
        );
    }
    Ok(())
}

/// A process for people: stage, files and what the archive decided and confirmed.
fn show_process(p: &pb::DisposalProcess) -> String {
    let stage = pb::ProcessStage::try_from(p.stage)
        .map(|x| {
            x.as_str_name()
                .trim_start_matches("PROCESS_STAGE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let mut out = format!(
        "{}\t{}{}",
        p.name,
        stage,
        if p.two_stage { " (two-stage)" } else { "" }
    );
    for f in &p.files {
        out.push_str(&format!("\n  file {f}"));
    }
    for d in &p.object_decisions {
        out.push_str(&format!(
            "\n  appraised {}\t{}",
            letter(d.decision),
            d.object
        ));
    }
    if p.sent_objects > 0 {
        out.push_str(&format!("\n  sent {} objects", p.sent_objects));
    }
    for r in &p.import_results {
        if r.success {
            out.push_str(&format!("\n  imported {}\t{}", r.object, r.archive_id));
        } else {
            out.push_str(&format!(
                "\n  NOT imported {}\t{}",
                r.object,
                r.errors.join("; ")
            ));
        }
    }
    out
}

/// A destruction record for people; the signed note is in the JSON and on the server.
fn show_record(r: &pb::DestructionRecord) -> String {
    let mut out = format!(
        "{}\tdestroyed {} by {}, authorised by {}, legal basis {}",
        r.name,
        crate::output::time(r.destroy_time.as_ref()),
        r.actor,
        r.authorised_by,
        r.legal_basis
    );
    for f in &r.files {
        out.push_str(&format!(
            "\n  {}\t{}\t{} objects\tjournal entry {}",
            if f.object.is_empty() {
                &f.file
            } else {
                &f.object
            },
            f.reference,
            f.objects,
            f.seq
        ));
    }
    out
}

fn letter(decision: i32) -> &'static str {
    match pb::DisposalDecision::try_from(decision) {
        Ok(pb::DisposalDecision::Archive) => "A",
        Ok(pb::DisposalDecision::Destroy) => "V",
        Ok(pb::DisposalDecision::Appraise) => "B",
        _ => "-",
    }
}

fn files(ctx: &Ctx<'_>, files: &[String]) -> Result<Vec<String>> {
    files.iter().map(|f| ctx.name(f, "files")).collect()
}

/// Runs a retention command.
pub async fn retention(ctx: &Ctx<'_>, c: &mut Clients, command: &RetentionCommand) -> Result<()> {
    match command {
        RetentionCommand::Set {
            file,
            years,
            unlimited,
            decision: d,
            reason,
        } => {
            let retention = match (years, unlimited) {
                (Some(y), _) => Some(pb::Retention {
                    period: Some(pb::retention::Period::Years(*y)),
                }),
                (None, true) => Some(pb::Retention {
                    period: Some(pb::retention::Period::Unlimited(true)),
                }),
                (None, false) => None,
            };
            let s = c
                .retention
                .set_retention(pb::SetRetentionRequest {
                    name: ctx.name(file, "files")?,
                    retention,
                    disposal: decision("decision", d.as_deref())?,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.show(&s, || {
                let what = match (years, unlimited) {
                    (Some(y), _) => format!("retention set to {y} years"),
                    (None, true) => "retention set to unlimited".to_owned(),
                    (None, false) => "retention unchanged".to_owned(),
                };
                let decision = match d {
                    Some(d) => format!(", decision {}", d.to_ascii_uppercase()),
                    None => String::new(),
                };
                format!("{what}{decision}; now:\n{}", show_status(&s))
            })?;
        }
        RetentionCommand::Status { name } => {
            let s = c
                .retention
                .get_disposal_status(pb::GetDisposalStatusRequest {
                    name: ctx.name(name, "files")?,
                })
                .await?
                .into_inner();
            ctx.show(&s, || show_status(&s))?;
        }
        RetentionCommand::Due {
            plan_unit,
            decision: d,
            ended_by,
        } => {
            let mut request = pb::ListDueFilesRequest {
                parent: ctx.tenant_name()?,
                plan_unit: match plan_unit {
                    Some(u) => ctx.name(u, "planUnits")?,
                    None => String::new(),
                },
                decision: decision("decision", d.as_deref())?,
                ended_by: ended_by.as_deref().map(parse_date).transpose()?,
                page_size: 1000,
                page_token: String::new(),
            };
            let mut files = Vec::new();
            loop {
                let page = c
                    .retention
                    .list_due_files(request.clone())
                    .await?
                    .into_inner();
                files.extend(page.files);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            let response = pb::ListDueFilesResponse {
                files,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.files,
                show_status,
                "no files are due (none closed whose retention has ended, with these filters)",
            )?;
        }
    }
    Ok(())
}

/// Runs a hold command.
pub async fn hold(ctx: &Ctx<'_>, c: &mut Clients, command: &HoldCommand) -> Result<()> {
    let show = |h: &pb::Hold| {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            h.name,
            if h.active { "active" } else { "released" },
            h.object,
            h.reason,
            h.reference
        )
    };
    match command {
        HoldCommand::Place {
            object,
            reason,
            reference,
        } => {
            let h = c
                .holds
                .place_hold(pb::PlaceHoldRequest {
                    object: ctx.name(object, "files")?,
                    reason: reason.clone(),
                    reference: reference.clone(),
                })
                .await?
                .into_inner();
            ctx.show(&h, || show(&h))?;
        }
        HoldCommand::Release { hold, reason } => {
            let h = c
                .holds
                .release_hold(pb::ReleaseHoldRequest {
                    name: ctx.name(hold, "holds")?,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.show(&h, || show(&h))?;
        }
        HoldCommand::List { all } => {
            let parent = ctx.tenant_name()?;
            let filter = if *all { "" } else { "active = true" };
            let holds = all_pages!(holds, |page_token| c.holds.list_holds(
                pb::ListHoldsRequest {
                    parent: parent.clone(),
                    filter: filter.to_owned(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListHoldsResponse {
                holds,
                ..Default::default()
            };
            let empty = if *all { "no holds" } else { "no active holds" };
            ctx.list(&response, &response.holds, show, empty)?;
        }
    }
    Ok(())
}

/// Where the 0505 of a 0502 goes: `--receipt` (a directory, or a file), else the
/// message's directory; in a directory, under its xdomea name.
fn receipt_path(message: &Path, receipt: Option<&Path>, file_name: &str) -> PathBuf {
    match receipt {
        Some(p) if p.is_dir() => p.join(file_name),
        Some(p) => p.to_path_buf(),
        None => message
            .parent()
            .map_or_else(|| PathBuf::from(file_name), |d| d.join(file_name)),
    }
}

/// What a re-sent package means for the archive, printed with it.
fn resend_note(info: &pb::MessageInfo) -> String {
    format!(
        "note: this is a re-sent package; it has the name of the first one ({}). An archive \
         that has already read a 0503 of this process may ignore a second file of that name \
         (intake software such as x-man remembers the names it processed): tell the archive \
         it replaces the first package, which it must remove from its intake (or discard) \
         before it takes this one.",
        info.file_name
    )
}

/// Runs a disposal command.
pub async fn disposal(ctx: &Ctx<'_>, c: &mut Clients, command: &DisposalCommand) -> Result<()> {
    match command {
        DisposalCommand::Offer { files: f, output } => {
            let s = c
                .disposal
                .offer(pb::OfferRequest {
                    parent: ctx.tenant_name()?,
                    files: files(ctx, f)?,
                    parties: None,
                })
                .await?
                .into_inner();
            let (info, path) = save_zip(s, output.as_deref()).await?;
            print_zip(ctx, &info, &path)?;
        }
        DisposalCommand::Receive { message, receipt } => {
            let bytes =
                std::fs::read(message).with_context(|| format!("reading {}", message.display()))?;
            let r = c
                .disposal
                .receive_message(pb::ReceiveMessageRequest {
                    parent: ctx.tenant_name()?,
                    message: Bytes::from(bytes),
                    parties: None,
                })
                .await?
                .into_inner();
            let mut r = r;
            let mut written = None;
            if !r.receipt_zip.is_empty() {
                let path = receipt_path(message, receipt.as_deref(), &r.receipt_file_name);
                akte_core::embedded::fsutil::write_file_atomic(&path, &r.receipt_zip, 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
                written = Some(path);
            }
            if ctx.json {
                // The receipt's bytes are in the file written; the JSON says where.
                r.receipt = Bytes::new();
                r.receipt_zip = Bytes::new();
                let mut v = api(&r)?;
                if let Some(w) = &written {
                    v["receiptFile"] = json!(w.display().to_string());
                }
                print_json(&v);
            } else {
                let p = r.process.clone().unwrap_or_default();
                println!("received {} for {}", r.message_type, show_process(&p));
                if let Some(w) = &written {
                    println!(
                        "0505 receipt written to {}; send it to the archive",
                        w.display()
                    );
                }
            }
        }
        DisposalCommand::Transfer {
            process,
            output,
            resend,
        } => {
            let op = c
                .disposal
                .transfer(pb::TransferRequest {
                    name: ctx.name(process, "disposalProcesses")?,
                    parties: None,
                    resend: *resend,
                })
                .await?
                .into_inner();
            let (info, path) = fetch_package(c, op, output.as_deref()).await?;
            print_zip(ctx, &info, &path)?;
            if *resend {
                eprintln!("{}", resend_note(&info));
            }
        }
        DisposalCommand::TransferTwoStage { files: f, output } => {
            let op = c
                .disposal
                .transfer_two_stage(pb::TransferTwoStageRequest {
                    parent: ctx.tenant_name()?,
                    files: files(ctx, f)?,
                    parties: None,
                })
                .await?
                .into_inner();
            let (info, path) = fetch_package(c, op, output.as_deref()).await?;
            print_zip(ctx, &info, &path)?;
        }
        DisposalCommand::Process { name } => {
            let p = c
                .disposal
                .get_process(pb::GetProcessRequest {
                    name: ctx.name(name, "disposalProcesses")?,
                })
                .await?
                .into_inner();
            ctx.show(&p, || show_process(&p))?;
        }
        DisposalCommand::Destroy {
            files: f,
            legal_basis,
            authorised_by,
        } => {
            let op = c
                .disposal
                .destroy(pb::DestroyRequest {
                    parent: ctx.tenant_name()?,
                    files: files(ctx, f)?,
                    legal_basis: legal_basis.clone(),
                    authorised_by: authorised_by.clone(),
                })
                .await?
                .into_inner();
            let done = wait_operation(&mut c.operations, op).await?;
            let r: pb::DestructionRecord = unpack(&done)?;
            ctx.show(&r, || show_record(&r))?;
        }
        DisposalCommand::DestructionRecord { name: Some(name) } => {
            let r = c
                .disposal
                .get_destruction_record(pb::GetDestructionRecordRequest {
                    name: ctx.name(name, "destructionRecords")?,
                })
                .await?
                .into_inner();
            ctx.show(&r, || show_record(&r))?;
        }
        DisposalCommand::DestructionRecord { name: None } => {
            let parent = ctx.tenant_name()?;
            let records = all_pages!(destruction_records, |page_token| c
                .disposal
                .list_destruction_records(pb::ListDestructionRecordsRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }));
            let response = pb::ListDestructionRecordsResponse {
                destruction_records: records,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.destruction_records,
                show_record,
                "no destruction records",
            )?;
        }
        DisposalCommand::Settings { command } => {
            let name = format!("{}/disposalSettings", ctx.tenant_name()?);
            let mut current = c
                .disposal
                .get_disposal_settings(pb::GetDisposalSettingsRequest { name: name.clone() })
                .await?
                .into_inner();
            if let SettingsCommand::Set(args) = command {
                args.apply(&mut current);
                current.name = name;
                current = c
                    .disposal
                    .update_disposal_settings(pb::UpdateDisposalSettingsRequest {
                        settings: Some(current),
                    })
                    .await?
                    .into_inner();
            }
            let changed = matches!(command, SettingsCommand::Set(_));
            ctx.show(&current, || {
                let s = show_settings(&current);
                if changed {
                    format!("disposal settings changed; now:\n{s}")
                } else {
                    s
                }
            })?;
        }
    }
    Ok(())
}
