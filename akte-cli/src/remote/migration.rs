//! Client commands for migration and exchange: taking over xdomea packages (0401, legacy
//! 0503) with a progress bar, handing files over (0401 out, 0402/0403 in), the file plan
//! exchange (0301/0302), and re-filing.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use serde_json::{json, Value};

use akte_api::client::{unpack, Clients};
use akte_api::pb::akte::v1 as pb;
use akte_api::pb::google::longrunning as lro;

use super::disposal::{print_zip, save_zip};
use super::Ctx;

/// A civil date as JSON (`YYYY-MM-DD`), or null.
fn date(d: &Option<akte_api::pb::google::r#type::Date>) -> Value {
    match d {
        Some(d) if d.year != 0 => json!(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
        _ => Value::Null,
    }
}

/// Chunk size of a package upload.
const CHUNK: usize = 1 << 20;

/// Handover (Abgabe) commands.
#[derive(Subcommand, Debug)]
pub enum HandoverCommand {
    /// Hand files over to another agency: writes the 0401 ZIP (registrar).
    Export {
        /// The top-level files.
        #[arg(required = true)]
        files: Vec<String>,
        /// The receiving agency's key (Behördenkennung).
        #[arg(long)]
        to_code: Option<String>,
        /// Its name.
        #[arg(long)]
        to_name: Option<String>,
        /// Its institution (when it has no key).
        #[arg(long)]
        to_institution: Option<String>,
        /// Output file [default: the xdomea file name in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read the receiving agency's answer, 0403 or 0402 (registrar).
    Answer {
        /// The answer's ZIP.
        message: PathBuf,
        /// The receiving agency's reference of a file: FILE=REFERENCE (repeatable).
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Show a handover process.
    Show {
        /// The process (`tenants/{t}/handoverProcesses/{id}` or its id).
        process: String,
    },
}

/// File plan exchange commands.
#[derive(Subcommand, Debug)]
pub enum FilePlanCommand {
    /// Write the tenant's file plan as a 0301 ZIP (registrar).
    Export {
        /// Bezeichnung of the plan.
        #[arg(long)]
        name: String,
        /// Its version.
        #[arg(long)]
        version: String,
        /// The receiver's key (Behördenkennung).
        #[arg(long)]
        to_code: Option<String>,
        /// The receiver's institution.
        #[arg(long)]
        to_institution: Option<String>,
        /// Output file [default: the xdomea file name in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Take over a file plan (0301 ZIP): create and update units; writes the 0302 receipt
    /// beside it (registrar).
    Import {
        /// The 0301 ZIP.
        message: PathBuf,
    },
}

/// Re-filing commands (Umprotokollierung, registrar).
#[derive(Subcommand, Debug)]
pub enum RefileCommand {
    /// Move a top-level file to another plan unit: new reference, the old one kept.
    File {
        /// The file.
        file: String,
        /// The new plan unit.
        #[arg(long)]
        plan_unit: String,
        /// The etag the change is based on [default: the current one].
        #[arg(long)]
        etag: Option<String>,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Move a case into another file or case.
    Case {
        /// The case.
        case: String,
        /// The file or case to move it into (full name).
        #[arg(long)]
        into: String,
        /// The etag the change is based on [default: the current one].
        #[arg(long)]
        etag: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Move a document into another file or case.
    Document {
        /// The document.
        document: String,
        /// The file or case to move it into (full name).
        #[arg(long)]
        into: String,
        /// The etag the change is based on [default: the current one].
        #[arg(long)]
        etag: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn agency(
    code: &Option<String>,
    name: &Option<String>,
    institution: &Option<String>,
) -> Result<pb::Agency> {
    if code.is_none() && institution.is_none() {
        bail!("name the receiver with --to-code (its Behördenkennung) or --to-institution");
    }
    Ok(pb::Agency {
        code: code.clone().unwrap_or_default(),
        name: name.clone().unwrap_or_default(),
        institution: institution.clone().unwrap_or_default(),
    })
}

fn write_beside(of: &Path, file_name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let dir = of
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join(file_name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Takes over a package: uploads it, then follows the operation with a progress bar.
#[allow(clippy::too_many_arguments)]
pub async fn import_package(
    ctx: &Ctx<'_>,
    c: &mut Clients,
    zip: &Path,
    plan_unit: Option<&str>,
    create_plan_units: bool,
    source_system: Option<&str>,
    answers: Option<&Path>,
) -> Result<u8> {
    let mut f = std::fs::File::open(zip).with_context(|| format!("opening {}", zip.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let options = pb::ImportPackageOptions {
        parent: ctx.tenant_name()?,
        plan_unit: match plan_unit {
            Some(u) => ctx.name(u, "planUnits")?,
            None => String::new(),
        },
        create_plan_units,
        source_system: source_system.unwrap_or_default().to_owned(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportPackageRequest>(4);
    let upload = super::disposal::progress(size, "upload");
    let sender = tokio::spawn(async move {
        let first = pb::ImportPackageRequest {
            message: Some(pb::import_package_request::Message::Options(options)),
        };
        if tx.send(first).await.is_err() {
            return Ok::<_, anyhow::Error>(());
        }
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = f.read(&mut buf).context("reading the package")?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sent += n as u64;
            if let Some(b) = &upload {
                b.set_position(sent);
            }
            let m = pb::ImportPackageRequest {
                message: Some(pb::import_package_request::Message::Chunk(Bytes::from(buf))),
            };
            if tx.send(m).await.is_err() {
                break;
            }
        }
        if let Some(b) = &upload {
            b.finish_and_clear();
        }
        Ok(())
    });
    let op = c
        .migration
        .import_package(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    sender.await.map_err(|e| anyhow!("upload task: {e}"))??;
    let any = follow(c, op).await?;
    let r: pb::ImportPackageResult = unpack(&any)?;
    let dir = answers.map(Path::to_path_buf).unwrap_or_else(|| {
        zip.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    });
    let mut written = Vec::new();
    for (name, bytes) in [
        (&r.receipt_file_name, &r.receipt_zip),
        (&r.confirmation_file_name, &r.confirmation_zip),
    ] {
        if !name.is_empty() && !bytes.is_empty() {
            let p = dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            written.push(p.display().to_string());
        }
    }
    let items: Vec<Value> = r
        .items
        .iter()
        .map(|i| {
            json!({"source_id": i.source_id, "kind": i.kind, "status": i.status,
                   "object": i.object, "rule": i.rule, "error": i.error, "warnings": i.warnings})
        })
        .collect();
    ctx.print(
        json!({"message_type": r.message_type, "process_id": r.process_id,
               "sha256": hex::encode(&r.sha256), "source_system": r.source_system,
               "imported": r.imported, "already_imported": r.already_imported,
               "failed": r.failed, "warned": r.warned, "items": items, "answers": written}),
        || {
            let mut out = format!(
                "{} {} (SHA-256 {}) from {}: {} imported, {} imported before, {} refused, {} with warnings",
                r.message_type,
                r.process_id,
                hex::encode(&r.sha256),
                r.source_system,
                r.imported,
                r.already_imported,
                r.failed,
                r.warned
            );
            for i in &r.items {
                if i.status == "failed" {
                    out.push_str(&format!("\nrefused {} {} [{}]: {}", i.kind, i.source_id, i.rule, i.error));
                }
                for w in &i.warnings {
                    out.push_str(&format!("\nwarning {} {}: {w}", i.kind, i.source_id));
                }
            }
            for w in &written {
                out.push_str(&format!("\nwrote {w}"));
            }
            out
        },
    );
    // Exit 7 (request refused) when objects were refused, so scripts notice.
    Ok(if r.failed > 0 { 7 } else { 0 })
}

/// Waits for an operation, showing its progress (objects done) on a terminal.
async fn follow(c: &mut Clients, mut op: lro::Operation) -> Result<prost_types::Any> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
            b.set_style(style);
        }
        b
    });
    while !op.done {
        op = c
            .operations
            .wait_operation(lro::WaitOperationRequest {
                name: op.name.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            })
            .await?
            .into_inner();
        if let (Some(b), Some(meta)) = (&bar, &op.metadata) {
            if let Ok(m) = unpack::<pb::OperationMetadata>(meta) {
                b.set_message(format!("{} objects, {}", m.processed, m.status_message));
                b.tick();
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match op.result {
        Some(lro::operation::Result::Response(any)) => Ok(any),
        Some(lro::operation::Result::Error(s)) => {
            Err(tonic::Status::new(tonic::Code::from(s.code), s.message.clone()).into())
        }
        None => bail!("operation {} is done without a result", op.name),
    }
}

fn process_json(p: &pb::HandoverProcess) -> Value {
    json!({"name": p.name, "receiver": p.receiver, "files": p.files,
           "sent": date(&p.sent_date), "receipt": date(&p.receipt_date),
           "confirmed": date(&p.confirmed_date),
           "failed": p.failed.iter().map(|f| json!({"object": f.object_id, "reasons": f.reasons})).collect::<Vec<_>>()})
}

fn show_process(p: &pb::HandoverProcess) -> String {
    let mut out = format!(
        "{}\tto {}\tsent {}\treceipt {}\tconfirmed {}",
        p.name,
        p.receiver,
        date(&p.sent_date),
        date(&p.receipt_date),
        date(&p.confirmed_date)
    );
    for f in &p.files {
        out.push_str(&format!("\nfile {f}"));
    }
    for f in &p.failed {
        out.push_str(&format!(
            "\nnot taken over: {} ({})",
            f.object_id,
            f.reasons.join("; ")
        ));
    }
    out
}

/// Runs a handover command.
pub async fn handover(ctx: &Ctx<'_>, c: &mut Clients, command: &HandoverCommand) -> Result<()> {
    match command {
        HandoverCommand::Export {
            files,
            to_code,
            to_name,
            to_institution,
            output,
        } => {
            let s = c
                .migration
                .export_handover(pb::ExportHandoverRequest {
                    parent: ctx.tenant_name()?,
                    files: files
                        .iter()
                        .map(|f| ctx.name(f, "files"))
                        .collect::<Result<_>>()?,
                    sender: None,
                    receiver: Some(agency(to_code, to_name, to_institution)?),
                })
                .await?
                .into_inner();
            let (info, path) = save_zip(s, output.as_deref()).await?;
            print_zip(ctx, &info, &path)?;
        }
        HandoverCommand::Answer {
            message,
            references,
        } => {
            let bytes =
                std::fs::read(message).with_context(|| format!("reading {}", message.display()))?;
            let mut refs = std::collections::HashMap::new();
            for r in references {
                let (file, reference) = r
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--reference {r:?} is not FILE=REFERENCE"))?;
                refs.insert(ctx.name(file, "files")?, reference.to_owned());
            }
            let p = c
                .migration
                .receive_handover_answer(pb::ReceiveHandoverAnswerRequest {
                    parent: ctx.tenant_name()?,
                    message: Bytes::from(bytes),
                    receiving_references: refs,
                })
                .await?
                .into_inner();
            ctx.print(process_json(&p), || show_process(&p));
        }
        HandoverCommand::Show { process } => {
            let p = c
                .migration
                .get_handover_process(pb::GetHandoverProcessRequest {
                    name: ctx.name(process, "handoverProcesses")?,
                })
                .await?
                .into_inner();
            ctx.print(process_json(&p), || show_process(&p));
        }
    }
    Ok(())
}

/// Runs a file plan command.
pub async fn file_plan(ctx: &Ctx<'_>, c: &mut Clients, command: &FilePlanCommand) -> Result<()> {
    match command {
        FilePlanCommand::Export {
            name,
            version,
            to_code,
            to_institution,
            output,
        } => {
            let r = c
                .migration
                .export_file_plan(pb::ExportFilePlanRequest {
                    parent: ctx.tenant_name()?,
                    plan_name: name.clone(),
                    version: version.clone(),
                    sender: None,
                    receiver: Some(agency(to_code, &None, to_institution)?),
                })
                .await?
                .into_inner();
            let path = output
                .clone()
                .unwrap_or_else(|| PathBuf::from(&r.file_name));
            std::fs::write(&path, &r.zip).with_context(|| format!("writing {}", path.display()))?;
            ctx.print(
                json!({"file": path.display().to_string(), "size": r.zip.len()}),
                || format!("{}\t{} bytes", path.display(), r.zip.len()),
            );
        }
        FilePlanCommand::Import { message } => {
            let bytes =
                std::fs::read(message).with_context(|| format!("reading {}", message.display()))?;
            let r = c
                .migration
                .import_file_plan(pb::ImportFilePlanRequest {
                    parent: ctx.tenant_name()?,
                    message: Bytes::from(bytes),
                })
                .await?
                .into_inner();
            let receipt = write_beside(message, &r.receipt_file_name, &r.receipt_zip)?;
            ctx.print(
                json!({"created": r.created, "updated": r.updated, "unchanged": r.unchanged,
                       "failed": r.failed.iter().map(|f| json!({"code": f.code, "reason": f.reason})).collect::<Vec<_>>(),
                       "receipt": receipt.display().to_string()}),
                || {
                    let mut out = format!(
                        "created {}, updated {}, unchanged {}, refused {}",
                        r.created.len(),
                        r.updated.len(),
                        r.unchanged.len(),
                        r.failed.len()
                    );
                    for f in &r.failed {
                        out.push_str(&format!("\nrefused {}: {}", f.code, f.reason));
                    }
                    out.push_str(&format!("\nwrote {}", receipt.display()));
                    out
                },
            );
        }
    }
    Ok(())
}

/// Runs a re-filing command.
pub async fn refile(ctx: &Ctx<'_>, c: &mut Clients, command: &RefileCommand) -> Result<()> {
    match command {
        RefileCommand::File {
            file,
            plan_unit,
            etag,
            reason,
        } => {
            let name = ctx.name(file, "files")?;
            let etag = match etag {
                Some(e) => e.clone(),
                None => {
                    c.files
                        .get_file(pb::GetFileRequest { name: name.clone() })
                        .await?
                        .into_inner()
                        .etag
                }
            };
            let f = c
                .migration
                .refile_file(pb::RefileFileRequest {
                    name,
                    etag,
                    plan_unit: ctx.name(plan_unit, "planUnits")?,
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.print(
                json!({"name": f.name, "reference": f.reference, "plan_unit": f.plan_unit,
                       "previous_references": f.previous_references, "etag": f.etag}),
                || {
                    format!(
                        "{}\t{}\t(before: {})",
                        f.name,
                        f.reference,
                        f.previous_references.join(", ")
                    )
                },
            );
        }
        RefileCommand::Case {
            case,
            into,
            etag,
            reason,
        } => {
            let name = ctx.name(case, "cases")?;
            let etag = match etag {
                Some(e) => e.clone(),
                None => {
                    c.cases
                        .get_case(pb::GetCaseRequest { name: name.clone() })
                        .await?
                        .into_inner()
                        .etag
                }
            };
            let k = c
                .migration
                .refile_case(pb::RefileCaseRequest {
                    name,
                    etag,
                    target: into.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.print(
                json!({"name": k.name, "file": k.file, "parent_case": k.parent_case, "number": k.number}),
                || format!("{}\tin {}\tnumber {}", k.name, k.file, k.number),
            );
        }
        RefileCommand::Document {
            document,
            into,
            etag,
            reason,
        } => {
            let name = ctx.name(document, "documents")?;
            let etag = match etag {
                Some(e) => e.clone(),
                None => {
                    c.documents
                        .get_document(pb::GetDocumentRequest { name: name.clone() })
                        .await?
                        .into_inner()
                        .etag
                }
            };
            let d = c
                .migration
                .refile_document(pb::RefileDocumentRequest {
                    name,
                    etag,
                    target: into.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.print(json!({"name": d.name, "parent": d.parent}), || {
                format!("{}\tin {}", d.name, d.parent)
            });
        }
    }
    Ok(())
}

/// Prints the history an imported object's source recorded.
pub async fn original_history(ctx: &Ctx<'_>, c: &mut Clients, name: &str) -> Result<()> {
    let r = c
        .migration
        .list_original_history(pb::ListOriginalHistoryRequest {
            name: name.to_owned(),
        })
        .await?
        .into_inner();
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    };
    let v: Vec<Value> = r
        .entries
        .iter()
        .map(|e| {
            json!({"time": time(&e.time), "actor": e.actor, "action": e.action,
                   "field": e.field, "old": e.old_value, "new": e.new_value, "remark": e.remark})
        })
        .collect();
    ctx.print(Value::Array(v), || {
        r.entries
            .iter()
            .map(|e| {
                let mut line = format!("{}\t{}\t{}", time(&e.time), e.actor, e.action);
                if !e.field.is_empty() {
                    line.push_str(&format!(
                        "\n\t{}: {} -> {}",
                        e.field, e.old_value, e.new_value
                    ));
                }
                if !e.remark.is_empty() {
                    line.push_str(&format!("\n\t({})", e.remark));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
