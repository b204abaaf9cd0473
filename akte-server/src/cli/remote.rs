//! The client commands of `akte`: they talk to a running akted over gRPC.
//!
//! Names: every command takes full resource names (`tenants/bauamt/files/<uuid>`); with
//! `--tenant` (or `AKTE_TENANT`) a bare id is enough.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sha2::Digest as _;
use tonic::Code;

use akte_server::client::{unpack, wait_operation, ClientTls, Clients};

#[path = "disposal.rs"]
mod disposal;
#[path = "metadata.rs"]
mod metadata;
#[path = "migration.rs"]
mod migration;
use akte_server::error::error_info;
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::r#type::Date;

/// Connection settings of the client commands.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// URL of akted (http:// on loopback, https:// otherwise).
    #[arg(
        long,
        global = true,
        env = "AKTE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Bearer token (prefer AKTE_TOKEN or --token-file: arguments are visible to other users).
    #[arg(long, global = true, env = "AKTE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (e.g. DATA_DIR/bootstrap-token).
    #[arg(long, global = true, env = "AKTE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Tenant for bare ids (`--tenant bauamt` turns `<uuid>` into `tenants/bauamt/files/<uuid>`).
    #[arg(long, global = true, env = "AKTE_TENANT")]
    pub tenant: Option<String>,
    /// CA certificate of the server (PEM), for https://.
    #[arg(long, global = true, env = "AKTE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, global = true, env = "AKTE_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long, global = true, env = "AKTE_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
}

/// Client commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Tenants and tokens (admin).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The file plan.
    PlanUnit {
        #[command(subcommand)]
        command: PlanUnitCommand,
    },
    /// Files (Akten).
    File {
        #[command(subcommand)]
        command: FileCommand,
    },
    /// Cases (Vorgänge).
    Case {
        #[command(subcommand)]
        command: CaseCommand,
    },
    /// Documents.
    Document {
        #[command(subcommand)]
        command: DocumentCommand,
    },
    /// Upload a file as a new version of a document (SHA-256 checked by the server).
    Upload {
        /// The document.
        #[arg(long)]
        document: String,
        /// Media type [default: guessed from the file name].
        #[arg(long)]
        media_type: Option<String>,
        /// File name to record [default: the file's name].
        #[arg(long)]
        name: Option<String>,
        /// Comment on the version.
        #[arg(long, default_value = "")]
        comment: String,
        /// Idempotency key: repeating the upload with it does not add a second version.
        #[arg(long)]
        request_id: Option<String>,
        /// The file.
        file: PathBuf,
    },
    /// Download a rendition (or a version's first rendition).
    Download {
        /// Version or rendition name.
        name: String,
        /// Output file [default: standard output].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The history of a plan unit, file, case or document.
    History {
        /// The object.
        name: String,
    },
    /// The history an imported object's source system recorded (its history in akte, which
    /// begins with the import, is `history`).
    OriginalHistory {
        /// The object.
        name: String,
    },
    /// The tenant's journal: checkpoints and proofs.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Retention: set, status, due list.
    Retention {
        #[command(subcommand)]
        command: disposal::RetentionCommand,
    },
    /// Holds (Aussonderungssperren).
    Hold {
        #[command(subcommand)]
        command: disposal::HoldCommand,
    },
    /// The xdomea disposal flow and destruction.
    Disposal {
        #[command(subcommand)]
        command: disposal::DisposalCommand,
    },
    /// Take over an xdomea package with its original metadata and history: a 0401 of
    /// another agency, or a 0503 a legacy system wrote of its stock (registrar). Writes
    /// the answers (0403, and 0402 for a 0401) beside the package or into --answers.
    /// Running it again resumes: what was imported is skipped. Exit 7 when objects were
    /// refused (listed with the rule they broke).
    ImportPackage {
        /// The package's ZIP.
        zip: PathBuf,
        /// Plan unit for files whose plan unit code the tenant does not have.
        #[arg(long)]
        plan_unit: Option<String>,
        /// Create the plan units the package names and the tenant lacks.
        #[arg(long)]
        create_plan_units: bool,
        /// Source system recorded on every object [default: the sender's agency key].
        #[arg(long)]
        source_system: Option<String>,
        /// Directory for the answers.
        #[arg(long)]
        answers: Option<PathBuf>,
    },
    /// Hand files over to another agency (Abgabe: 0401 out, 0403/0402 in).
    Handover {
        #[command(subcommand)]
        command: migration::HandoverCommand,
    },
    /// Exchange the file plan (xdomea 0301, receipt 0302).
    FilePlan {
        #[command(subcommand)]
        command: migration::FilePlanCommand,
    },
    /// Re-file a file, case or document (Umprotokollierung).
    Refile {
        #[command(subcommand)]
        command: migration::RefileCommand,
    },
    /// Run verification of the tenant on the server (archivist or admin).
    VerifyRemote {
        /// Only what is new since the last clean run.
        #[arg(long)]
        incremental: bool,
        /// Skip hashing content.
        #[arg(long)]
        skip_content: bool,
    },
}

/// Admin commands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a tenant.
    CreateTenant {
        /// Tenant id: a-z, 0-9 and '-'.
        id: String,
    },
    /// List tenants.
    Tenants,
    /// Create a token; prints the secret once.
    CreateToken {
        /// Principal name, e.g. clerk:schmidt.
        #[arg(long)]
        principal: String,
        /// Roles: reader, clerk, registrar, archivist, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// For all tenants instead of --tenant.
        #[arg(long)]
        all_tenants: bool,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// When the token stops working: RFC 3339 (2027-06-30T00:00:00Z) or a date
        /// (2027-06-30, meaning its start in UTC). Default: it does not expire.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens created through the API.
    Tokens {
        /// All-tenant tokens instead of --tenant's.
        #[arg(long)]
        all_tenants: bool,
    },
    /// Revoke a token.
    DeleteToken {
        /// Token name, tenants/{tenant}/tokens/{id}.
        name: String,
    },
    /// Register a witness of --tenant's journal (its verifier key, from `akte witness
    /// init`, obtained from the witness out of band).
    AddWitness {
        /// The witness's verifier key, or a file holding it (e.g. KEYFILE.pub).
        key: String,
    },
    /// List --tenant's witnesses.
    Witnesses,
    /// Remove a witness: its cosignatures stop counting, new ones are refused.
    DeleteWitness {
        /// tenants/{tenant}/witnesses/{fingerprint}, or the bare fingerprint.
        name: String,
    },
}

/// Plan unit commands.
#[derive(Subcommand, Debug)]
pub enum PlanUnitCommand {
    /// Create a plan unit.
    Create {
        /// Code, e.g. 632.1.
        #[arg(long)]
        code: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// Parent unit [default: top of the plan].
        #[arg(long)]
        parent: Option<String>,
        /// Retention in years [default: 10].
        #[arg(long, conflicts_with = "unlimited")]
        retention_years: Option<u32>,
        /// Unlimited retention.
        #[arg(long)]
        unlimited: bool,
        /// Disposal decision: A (archive), V (destroy), B (appraise).
        #[arg(long)]
        disposal: Option<String>,
    },
    /// Show a plan unit.
    Get {
        /// The unit.
        name: String,
    },
    /// List units under a unit (or the top level).
    List {
        /// Parent unit.
        #[arg(long)]
        parent: Option<String>,
    },
}

/// File commands.
#[derive(Subcommand, Debug)]
pub enum FileCommand {
    /// Create a file under a plan unit (or a sub-file under a file).
    Create {
        /// Plan unit or parent file.
        #[arg(long)]
        parent: String,
        /// Subject (Betreff).
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        fields: metadata::FileFields,
    },
    /// Change a file's metadata: the fields given, exactly (an empty value clears one).
    Update {
        /// The file.
        name: String,
        /// New subject (Betreff).
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        fields: metadata::FileFields,
        /// Why (recorded in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show a file.
    Get {
        /// The file.
        name: String,
    },
    /// Find a file by its reference (Aktenzeichen).
    Lookup {
        /// The reference.
        reference: String,
    },
    /// List files of a plan unit or sub-files of a file.
    List {
        /// Plan unit or file.
        #[arg(long)]
        parent: String,
    },
    /// Close a file (zdA).
    Close {
        /// The file.
        name: String,
        /// Closing date YYYY-MM-DD [default: today].
        #[arg(long)]
        date: Option<String>,
        /// Etag to check.
        #[arg(long, default_value = "")]
        etag: String,
    },
    /// Reopen a closed file.
    Reopen {
        /// The file.
        name: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Case commands.
#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Create a case in a file (or a sub-case in a case).
    Create {
        /// File or case.
        #[arg(long)]
        parent: String,
        /// Subject.
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        fields: metadata::CaseFields,
    },
    /// Change a case's metadata: the fields given, exactly (an empty value clears one).
    Update {
        /// The case.
        name: String,
        /// New subject.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        fields: metadata::CaseFields,
        /// Why (recorded in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List cases of a file or case.
    List {
        /// File or case.
        #[arg(long)]
        parent: String,
    },
    /// Close a case.
    Close {
        /// The case.
        name: String,
    },
    /// Reopen a case.
    Reopen {
        /// The case.
        name: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Document commands.
#[derive(Subcommand, Debug)]
pub enum DocumentCommand {
    /// Create a document in a file or case (or an attachment under a document).
    Create {
        /// File, case or document.
        #[arg(long)]
        parent: String,
        /// Subject.
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        fields: metadata::DocumentFields,
    },
    /// Change a document's metadata: the fields given, exactly (an empty value clears one).
    Update {
        /// The document.
        name: String,
        /// New subject.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        fields: metadata::DocumentFields,
        /// Why (recorded in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show a document with its versions.
    Get {
        /// The document.
        name: String,
    },
    /// List documents of a file, case or document.
    List {
        /// File, case or document.
        #[arg(long)]
        parent: String,
    },
}

/// Journal commands.
#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Sign a checkpoint now.
    Checkpoint,
    /// Show the latest checkpoint (the signed note, with any witness cosignatures).
    Latest {
        /// The newest checkpoint a registered witness has cosigned instead.
        #[arg(long)]
        cosigned: bool,
    },
    /// Show an entry.
    Entry {
        /// Sequence number.
        seq: u64,
    },
    /// Fetch and check an inclusion proof of an entry.
    Prove {
        /// Sequence number.
        seq: u64,
        /// Tree size [default: the latest checkpoint's].
        #[arg(long, default_value_t = 0)]
        size: u64,
    },
    /// Store a witness's cosigned checkpoint note (from `akte witness cosign --checkpoint
    /// ... --out FILE`) with the tenant's checkpoint (archivist or admin).
    AddCosignature {
        /// The cosigned note.
        file: PathBuf,
    },
    /// Fetch and check a consistency proof between two tree sizes.
    Consistency {
        /// Smaller size.
        old: u64,
        /// Larger size.
        new: u64,
        /// Also write the proof as a consistency proof file (one base64 hash per line,
        /// docs/FORMAT.md), as `akte verify-consistency` and `akte witness cosign --proof`
        /// read it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Every item of a paged List call: `$call` sends the request for the page `$token`.
macro_rules! all_pages {
    ($items:ident, |$token:ident| $call:expr) => {{
        let mut $token = String::new();
        let mut all = Vec::new();
        loop {
            let page = $call.await?.into_inner();
            all.extend(page.$items);
            if page.next_page_token.is_empty() {
                break all;
            }
            $token = page.next_page_token;
        }
    }};
}
pub(crate) use all_pages;

/// Exit code of a failed call, from its gRPC status (documented in the README).
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => 4,
        Code::Unauthenticated | Code::PermissionDenied => 5,
        Code::NotFound => 6,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange => 7,
        Code::DataLoss => 8,
        _ => 3,
    }
}

/// A one-line description of a failed call.
pub fn describe(s: &tonic::Status) -> String {
    match error_info(s) {
        Some(i) => format!("{:?} ({}): {}", s.code(), i.reason, s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

struct Ctx<'a> {
    r: &'a Remote,
    json: bool,
}

impl Ctx<'_> {
    fn tenant(&self) -> Result<String> {
        self.r
            .tenant
            .clone()
            .ok_or_else(|| anyhow!("--tenant (or AKTE_TENANT) is required for this command"))
    }

    fn tenant_name(&self) -> Result<String> {
        Ok(format!("tenants/{}", self.tenant()?))
    }

    /// A full name, or a bare id expanded with --tenant and the collection.
    fn name(&self, arg: &str, collection: &str) -> Result<String> {
        if arg.starts_with("tenants/") {
            return Ok(arg.to_owned());
        }
        Ok(format!("tenants/{}/{collection}/{arg}", self.tenant()?))
    }

    /// A parent that may be of several kinds: full names only (or plan units by id).
    fn any_name(&self, arg: &str, default_collection: &str) -> Result<String> {
        self.name(arg, default_collection)
    }

    fn print(&self, v: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            println!("{}", text());
        }
    }
}

fn date(d: &Option<Date>) -> Value {
    match d {
        Some(d) if d.year != 0 => json!(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
        _ => Value::Null,
    }
}

/// A token expiry: RFC 3339, or a date meaning its start in UTC.
fn parse_expiry(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| {
        format!("--expires {s:?} is neither RFC 3339 (2027-06-30T00:00:00Z) nor a date YYYY-MM-DD")
    })?;
    Ok(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

fn parse_date(s: &str) -> Result<Date> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is not a date YYYY-MM-DD"))?;
    use chrono::Datelike;
    Ok(Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    })
}

fn stamp(s: &Option<pb::AuditStamp>) -> Value {
    match s {
        Some(s) => json!({
            "actor": s.actor,
            "time": s.time.as_ref().map(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32).map(|d| d.to_rfc3339()).unwrap_or_default()),
            "journal_seq": s.journal_seq,
        }),
        None => Value::Null,
    }
}

fn state(v: i32) -> &'static str {
    match pb::State::try_from(v) {
        Ok(pb::State::Open) => "open",
        Ok(pb::State::Closed) => "closed",
        _ => "unspecified",
    }
}

fn plan_unit_json(u: &pb::PlanUnit) -> Value {
    let retention = match u.retention.as_ref().and_then(|r| r.period.as_ref()) {
        Some(pb::retention::Period::Years(y)) => json!({ "years": y }),
        Some(pb::retention::Period::Unlimited(_)) => json!("unlimited"),
        None => Value::Null,
    };
    json!({
        "name": u.name, "parent": u.parent, "code": u.code, "title": u.title,
        "description": u.description, "retention": retention,
        "disposal": pb::DisposalDecision::try_from(u.disposal).map(|d| d.as_str_name()).unwrap_or(""),
        "active": u.active, "etag": u.etag, "created": stamp(&u.created), "updated": stamp(&u.updated),
    })
}

fn file_json(f: &pb::File) -> Value {
    json!({
        "name": f.name, "plan_unit": f.plan_unit, "parent_file": f.parent_file,
        "reference": f.reference, "subject": f.subject, "begin": date(&f.begin), "end": date(&f.end),
        "confidentiality": pb::Confidentiality::try_from(f.confidentiality).map(|c| c.as_str_name()).unwrap_or(""),
        "medium": pb::Medium::try_from(f.medium).map(|m| m.as_str_name()).unwrap_or(""),
        "lead_unit": f.lead_unit, "notes": f.notes, "state": state(f.state),
        "close_date": date(&f.close_date), "etag": f.etag,
        "created": stamp(&f.created), "updated": stamp(&f.updated),
        "previous_references": f.previous_references,
        "origin": f.origin.as_ref().map(|o| json!({
            "source_system": o.source_system, "source_id": o.source_id,
            "package_sha256": hex::encode(&o.package_sha256), "reference": o.reference,
            "create_date": date(&o.create_date), "creator": o.creator,
            "reference_nonconforming": o.reference_nonconforming,
        })),
        "handover": f.handover.as_ref().map(|h| json!({
            "process": h.process, "receiver": h.receiver, "date": date(&h.date),
            "receiving_reference": h.receiving_reference,
        })),
    })
}

fn case_json(c: &pb::Case) -> Value {
    json!({
        "name": c.name, "file": c.file, "parent_case": c.parent_case, "number": c.number,
        "subject": c.subject, "state": state(c.state), "close_date": date(&c.close_date),
        "etag": c.etag, "created": stamp(&c.created), "updated": stamp(&c.updated),
    })
}

fn document_json(d: &pb::Document) -> Value {
    json!({
        "name": d.name, "parent": d.parent, "file": d.file, "subject": d.subject,
        "letter_date": date(&d.letter_date), "received_on": date(&d.received_on),
        "sent_on": date(&d.sent_on), "sender": d.sender, "recipients": d.recipients,
        "clerk": d.clerk, "external_reference": d.external_reference,
        "version_count": d.version_count, "etag": d.etag,
        "created": stamp(&d.created), "updated": stamp(&d.updated),
    })
}

fn rendition_json(r: &pb::Rendition) -> Value {
    json!({"name": r.name, "file_name": r.file_name, "media_type": r.media_type, "size": r.size, "sha256": hex::encode(&r.sha256)})
}

fn version_json(v: &pb::Version) -> Value {
    json!({
        "name": v.name, "number": v.number, "comment": v.comment,
        "renditions": v.renditions.iter().map(rendition_json).collect::<Vec<_>>(),
        "created": stamp(&v.created),
    })
}

fn checkpoint_json(c: &pb::Checkpoint) -> Value {
    json!({
        "name": c.name, "origin": c.origin, "tree_size": c.tree_size,
        "root_hash": hex::encode(&c.root_hash),
        "signed_note": String::from_utf8_lossy(&c.signed_note),
        "verifier_key": c.verifier_key,
        "cosignatures": c.cosignatures.iter().map(|w| json!({
            "verifier_key": w.verifier_key,
            "cosign_time": w.cosign_time.as_ref().map(|t| t.seconds),
        })).collect::<Vec<_>>(),
    })
}

fn guess_media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "xml" => "application/xml",
        "json" => "application/json",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "odt" => "application/vnd.oasis.opendocument.text",
        "eml" => "message/rfc822",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn digest(b: &[u8]) -> Result<akte_core::Digest> {
    akte_core::Digest::from_slice(b)
        .ok_or_else(|| anyhow!("the server sent a hash of {} bytes", b.len()))
}

/// Connects to akted with the token and TLS settings of `remote`.
pub async fn connect(remote: &Remote) -> Result<Clients> {
    let token = match (&remote.token, &remote.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let tls = ClientTls {
        ca: remote.ca_cert.clone(),
        cert: remote.client_cert.clone(),
        key: remote.client_key.clone(),
        domain: None,
    };
    Ok(Clients::connect(&remote.server, token.as_deref(), &tls).await?)
}

/// Connects and runs a client command.
pub async fn run(remote: &Remote, json_out: bool, command: &Command) -> Result<u8> {
    let mut c = connect(remote).await?;
    let ctx = Ctx {
        r: remote,
        json: json_out,
    };
    match command {
        Command::Admin { command } => admin(&ctx, &mut c, command).await?,
        Command::PlanUnit { command } => plan_unit(&ctx, &mut c, command).await?,
        Command::File { command } => file(&ctx, &mut c, command).await?,
        Command::Case { command } => case(&ctx, &mut c, command).await?,
        Command::Retention { command } => disposal::retention(&ctx, &mut c, command).await?,
        Command::Hold { command } => disposal::hold(&ctx, &mut c, command).await?,
        Command::Disposal { command } => disposal::disposal(&ctx, &mut c, command).await?,
        Command::ImportPackage {
            zip,
            plan_unit,
            create_plan_units,
            source_system,
            answers,
        } => {
            return migration::import_package(
                &ctx,
                &mut c,
                zip,
                plan_unit.as_deref(),
                *create_plan_units,
                source_system.as_deref(),
                answers.as_deref(),
            )
            .await
        }
        Command::Handover { command } => migration::handover(&ctx, &mut c, command).await?,
        Command::OriginalHistory { name } => {
            migration::original_history(&ctx, &mut c, &ctx.any_name(name, "files")?).await?
        }
        Command::FilePlan { command } => migration::file_plan(&ctx, &mut c, command).await?,
        Command::Refile { command } => migration::refile(&ctx, &mut c, command).await?,
        Command::Document { command } => document(&ctx, &mut c, command).await?,
        Command::Upload {
            document,
            media_type,
            name,
            comment,
            request_id,
            file,
        } => {
            let document = ctx.name(document, "documents")?;
            let v = upload(
                &mut c,
                &document,
                file,
                media_type.as_deref(),
                name.as_deref(),
                comment,
                request_id.as_deref(),
            )
            .await?;
            ctx.print(version_json(&v), || {
                let r = &v.renditions[0];
                format!(
                    "{}\t{} bytes\tsha256 {}\n{}",
                    v.name,
                    r.size,
                    hex::encode(&r.sha256),
                    r.name
                )
            });
        }
        Command::Download { name, output } => {
            let name = ctx.name(name, "documents")?;
            let r = download(&mut c, &name, output.as_deref()).await?;
            if output.is_some() {
                ctx.print(rendition_json(&r), || {
                    format!(
                        "{}\t{} bytes\tsha256 {} (checked)",
                        r.file_name,
                        r.size,
                        hex::encode(&r.sha256)
                    )
                });
            }
        }
        Command::History { name } => {
            let parent = ctx.any_name(name, "files")?;
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = c
                    .history
                    .list_history(pb::ListHistoryRequest {
                        parent: parent.clone(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.entries);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            let v: Vec<Value> = all
                .iter()
                .map(|h| {
                    json!({
                        "journal_seq": h.journal_seq,
                        "time": h.time.as_ref().map(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32).map(|d| d.to_rfc3339()).unwrap_or_default()),
                        "actor": h.actor, "action": h.action, "reason": h.reason,
                        "changes": h.changes.iter().map(|c| json!({"field": c.field, "old": c.old_value, "new": c.new_value})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            ctx.print(Value::Array(v.clone()), || {
                let mut out = String::new();
                for (h, j) in all.iter().zip(&v) {
                    out.push_str(&format!(
                        "#{}\t{}\t{}\t{}\n",
                        h.journal_seq,
                        j["time"].as_str().unwrap_or(""),
                        h.actor,
                        h.action
                    ));
                    for ch in &h.changes {
                        out.push_str(&format!(
                            "\t{}: {} -> {}\n",
                            ch.field, ch.old_value, ch.new_value
                        ));
                    }
                }
                out.trim_end().to_owned()
            });
        }
        Command::Journal { command } => journal(&ctx, &mut c, command).await?,
        Command::VerifyRemote {
            incremental,
            skip_content,
        } => {
            let op = c
                .verification
                .verify_tenant(pb::VerifyTenantRequest {
                    name: ctx.tenant_name()?,
                    incremental: *incremental,
                    skip_content: *skip_content,
                })
                .await?
                .into_inner();
            let done = wait_operation(&mut c.operations, op).await?;
            let r: pb::VerificationReport = unpack(&done)?;
            let problems: Vec<Value> = r
                .problems
                .iter()
                .map(|p| json!({"kind": p.kind, "seq": p.seq, "digest": hex::encode(&p.digest), "message": p.message}))
                .collect();
            ctx.print(
                json!({"tenant": r.tenant, "clean": r.clean, "from_seq": r.from_seq,
                    "entries_checked": r.entries_checked, "checkpoints_checked": r.checkpoints_checked,
                    "content_objects": r.content_objects, "content_bytes": r.content_bytes,
                    "unreferenced_objects": r.unreferenced_objects, "problems": problems}),
                || {
                    let mut s = format!(
                        "{}: entries {}..{} checked, {} checkpoints, {} content objects ({} bytes), {} problems",
                        r.tenant, r.from_seq, r.from_seq + r.entries_checked, r.checkpoints_checked,
                        r.content_objects, r.content_bytes, r.problems.len()
                    );
                    for p in &r.problems {
                        s.push_str(&format!("\n  PROBLEM {} {}", p.kind, p.message));
                    }
                    s.push_str(if r.clean { "\nverify: clean" } else { "\nverify: PROBLEMS FOUND" });
                    s
                },
            );
            if !r.clean {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

async fn admin(ctx: &Ctx<'_>, c: &mut Clients, command: &AdminCommand) -> Result<()> {
    let token_json = |t: &pb::Token| {
        json!({"name": t.name, "principal": t.principal, "tenant": t.tenant,
            "roles": t.roles.iter().map(|r| pb::Role::try_from(*r).map(|r| r.as_str_name()).unwrap_or("")).collect::<Vec<_>>(),
            "description": t.description,
            "expire_time": t.expire_time.as_ref().and_then(|e| chrono::DateTime::from_timestamp(e.seconds, e.nanos as u32)).map(|d| d.to_rfc3339())})
    };
    match command {
        AdminCommand::CreateTenant { id } => {
            let t = c
                .tenants
                .create_tenant(pb::CreateTenantRequest {
                    tenant_id: id.clone(),
                })
                .await?
                .into_inner();
            ctx.print(
                json!({"name": t.name, "origin": t.origin, "verifier_key": t.verifier_key}),
                || {
                    format!(
                        "{}\norigin {}\nverifier key {}",
                        t.name, t.origin, t.verifier_key
                    )
                },
            );
        }
        AdminCommand::Tenants => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = c
                    .tenants
                    .list_tenants(pb::ListTenantsRequest {
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.tenants);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            ctx.print(
                Value::Array(
                    all.iter()
                        .map(|t| json!({"name": t.name, "journal_size": t.journal_size, "origin": t.origin}))
                        .collect(),
                ),
                || {
                    all.iter()
                        .map(|t| format!("{}\t{} entries\t{}", t.name, t.journal_size, t.origin))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        AdminCommand::CreateToken {
            principal,
            roles,
            all_tenants,
            description,
            expires,
        } => {
            let expire_time =
                expires
                    .as_deref()
                    .map(parse_expiry)
                    .transpose()?
                    .map(|t| prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: t.timestamp_subsec_nanos() as i32,
                    });
            let parent = if *all_tenants {
                "tenants/-".to_owned()
            } else {
                ctx.tenant_name()?
            };
            let roles = roles
                .iter()
                .map(|r| {
                    pb::Role::from_str_name(&format!("ROLE_{}", r.to_uppercase()))
                        .map(|r| r as i32)
                        .ok_or_else(|| {
                            anyhow!(
                                "unknown role {r:?}: reader, clerk, registrar, archivist or admin"
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let r = c
                .tenants
                .create_token(pb::CreateTokenRequest {
                    parent,
                    principal: principal.clone(),
                    roles,
                    description: description.clone(),
                    expire_time,
                })
                .await?
                .into_inner();
            let t = r.token.unwrap_or_default();
            let mut v = token_json(&t);
            v["secret"] = json!(r.secret);
            ctx.print(v, || {
                format!("{}\nsecret (shown once): {}", t.name, r.secret)
            });
        }
        AdminCommand::Tokens { all_tenants } => {
            let parent = if *all_tenants {
                "tenants/-".to_owned()
            } else {
                ctx.tenant_name()?
            };
            let tokens = all_pages!(tokens, |page_token| c.tenants.list_tokens(
                pb::ListTokensRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            ctx.print(
                Value::Array(tokens.iter().map(token_json).collect()),
                || {
                    tokens
                        .iter()
                        .map(|t| format!("{}\t{}\t{}", t.name, t.principal, token_json(t)["roles"]))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        AdminCommand::DeleteToken { name } => {
            let name = ctx.name(name, "tokens")?;
            c.tenants
                .delete_token(pb::DeleteTokenRequest { name: name.clone() })
                .await?;
            ctx.print(json!({"deleted": name}), || format!("deleted {name}"));
        }
        AdminCommand::AddWitness { key } => {
            // A key string has '+' in it; anything else is taken as a file holding one.
            let key = if key.contains('+') {
                key.clone()
            } else {
                std::fs::read_to_string(key)
                    .with_context(|| format!("reading the witness key file {key}"))?
                    .trim_end_matches('\n')
                    .to_owned()
            };
            let w = c
                .journal
                .add_witness(pb::AddWitnessRequest {
                    parent: ctx.tenant_name()?,
                    verifier_key: key,
                })
                .await?
                .into_inner();
            ctx.print(witness_json(&w), || {
                format!(
                    "{}
{}",
                    w.name, w.verifier_key
                )
            });
        }
        AdminCommand::Witnesses => {
            let parent = ctx.tenant_name()?;
            let witnesses = all_pages!(witnesses, |page_token| c.journal.list_witnesses(
                pb::ListWitnessesRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            ctx.print(
                Value::Array(witnesses.iter().map(witness_json).collect()),
                || {
                    witnesses
                        .iter()
                        .map(|w| format!("{}\t{}", w.name, w.verifier_key))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        AdminCommand::DeleteWitness { name } => {
            let name = ctx.name(name, "witnesses")?;
            c.journal
                .delete_witness(pb::DeleteWitnessRequest { name: name.clone() })
                .await?;
            ctx.print(json!({"deleted": name}), || format!("deleted {name}"));
        }
    }
    Ok(())
}

fn witness_json(w: &pb::Witness) -> Value {
    json!({"name": w.name, "verifier_key": w.verifier_key, "key_name": w.key_name})
}

async fn plan_unit(ctx: &Ctx<'_>, c: &mut Clients, command: &PlanUnitCommand) -> Result<()> {
    let show = |u: &pb::PlanUnit| format!("{}\t{}\t{}", u.name, u.code, u.title);
    match command {
        PlanUnitCommand::Create {
            code,
            title,
            parent,
            retention_years,
            unlimited,
            disposal,
        } => {
            let parent = match parent {
                Some(p) => ctx.name(p, "planUnits")?,
                None => ctx.tenant_name()?,
            };
            let retention = match (retention_years, unlimited) {
                (_, true) => Some(pb::retention::Period::Unlimited(true)),
                (Some(y), false) => Some(pb::retention::Period::Years(*y)),
                (None, false) => None,
            };
            let disposal = match disposal.as_deref() {
                None => pb::DisposalDecision::Unspecified,
                Some("A") | Some("a") => pb::DisposalDecision::Archive,
                Some("V") | Some("v") => pb::DisposalDecision::Destroy,
                Some("B") | Some("b") => pb::DisposalDecision::Appraise,
                Some(o) => bail!("--disposal {o:?}: A (archive), V (destroy) or B (appraise)"),
            };
            let u = c
                .plan
                .create_plan_unit(pb::CreatePlanUnitRequest {
                    parent,
                    plan_unit: Some(pb::PlanUnit {
                        code: code.clone(),
                        title: title.clone(),
                        retention: retention.map(|p| pb::Retention { period: Some(p) }),
                        disposal: disposal as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            ctx.print(plan_unit_json(&u), || show(&u));
        }
        PlanUnitCommand::Get { name } => {
            let u = c
                .plan
                .get_plan_unit(pb::GetPlanUnitRequest {
                    name: ctx.name(name, "planUnits")?,
                })
                .await?
                .into_inner();
            ctx.print(plan_unit_json(&u), || show(&u));
        }
        PlanUnitCommand::List { parent } => {
            let parent = match parent {
                Some(p) => ctx.name(p, "planUnits")?,
                None => ctx.tenant_name()?,
            };
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = c
                    .plan
                    .list_plan_units(pb::ListPlanUnitsRequest {
                        parent: parent.clone(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.plan_units);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            ctx.print(
                Value::Array(all.iter().map(plan_unit_json).collect()),
                || all.iter().map(show).collect::<Vec<_>>().join("\n"),
            );
        }
    }
    Ok(())
}

async fn file(ctx: &Ctx<'_>, c: &mut Clients, command: &FileCommand) -> Result<()> {
    let show = |f: &pb::File| {
        format!(
            "{}\t{}\t{}\t{}",
            f.name,
            f.reference,
            state(f.state),
            f.subject
        )
    };
    let f = match command {
        FileCommand::Create {
            parent,
            subject,
            fields,
        } => {
            let mut file = pb::File {
                subject: subject.clone(),
                ..Default::default()
            };
            fields.apply(&mut file)?;
            c.files
                .create_file(pb::CreateFileRequest {
                    parent: ctx.any_name(parent, "planUnits")?,
                    file: Some(file),
                    ..Default::default()
                })
                .await?
                .into_inner()
        }
        FileCommand::Update {
            name,
            subject,
            fields,
            reason,
        } => {
            let mut file = pb::File {
                name: ctx.name(name, "files")?,
                ..Default::default()
            };
            let mut mask = fields.apply(&mut file)?;
            if let Some(s) = subject {
                file.subject = s.clone();
                mask.push("subject".into());
            }
            if mask.is_empty() {
                bail!("nothing to change: give at least one field");
            }
            c.files
                .update_file(pb::UpdateFileRequest {
                    file: Some(file),
                    update_mask: Some(prost_types::FieldMask { paths: mask }),
                    etag: String::new(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner()
        }
        FileCommand::Get { name } => c
            .files
            .get_file(pb::GetFileRequest {
                name: ctx.name(name, "files")?,
            })
            .await?
            .into_inner(),
        FileCommand::Lookup { reference } => c
            .files
            .lookup_file(pb::LookupFileRequest {
                parent: ctx.tenant_name()?,
                reference: reference.clone(),
            })
            .await?
            .into_inner(),
        FileCommand::List { parent } => {
            let parent = ctx.any_name(parent, "planUnits")?;
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = c
                    .files
                    .list_files(pb::ListFilesRequest {
                        parent: parent.clone(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.files);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            ctx.print(Value::Array(all.iter().map(file_json).collect()), || {
                all.iter().map(show).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        FileCommand::Close { name, date, etag } => c
            .files
            .close_file(pb::CloseFileRequest {
                name: ctx.name(name, "files")?,
                etag: etag.clone(),
                close_date: date.as_deref().map(parse_date).transpose()?,
            })
            .await?
            .into_inner(),
        FileCommand::Reopen { name, reason } => c
            .files
            .reopen_file(pb::ReopenFileRequest {
                name: ctx.name(name, "files")?,
                etag: String::new(),
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
    };
    ctx.print(file_json(&f), || show(&f));
    Ok(())
}

async fn case(ctx: &Ctx<'_>, c: &mut Clients, command: &CaseCommand) -> Result<()> {
    let show = |k: &pb::Case| {
        format!(
            "{}\t#{}\t{}\t{}",
            k.name,
            k.number,
            state(k.state),
            k.subject
        )
    };
    let k = match command {
        CaseCommand::Create {
            parent,
            subject,
            fields,
        } => {
            let mut case = pb::Case {
                subject: subject.clone(),
                ..Default::default()
            };
            fields.apply(&mut case)?;
            c.cases
                .create_case(pb::CreateCaseRequest {
                    parent: ctx.any_name(parent, "files")?,
                    case: Some(case),
                    ..Default::default()
                })
                .await?
                .into_inner()
        }
        CaseCommand::Update {
            name,
            subject,
            fields,
            reason,
        } => {
            let mut case = pb::Case {
                name: ctx.name(name, "cases")?,
                ..Default::default()
            };
            let mut mask = fields.apply(&mut case)?;
            if let Some(s) = subject {
                case.subject = s.clone();
                mask.push("subject".into());
            }
            if mask.is_empty() {
                bail!("nothing to change: give at least one field");
            }
            c.cases
                .update_case(pb::UpdateCaseRequest {
                    case: Some(case),
                    update_mask: Some(prost_types::FieldMask { paths: mask }),
                    etag: String::new(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner()
        }
        CaseCommand::List { parent } => {
            let r = c
                .cases
                .list_cases(pb::ListCasesRequest {
                    parent: ctx.any_name(parent, "files")?,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            ctx.print(
                Value::Array(r.cases.iter().map(case_json).collect()),
                || r.cases.iter().map(show).collect::<Vec<_>>().join("\n"),
            );
            return Ok(());
        }
        CaseCommand::Close { name } => c
            .cases
            .close_case(pb::CloseCaseRequest {
                name: ctx.name(name, "cases")?,
                ..Default::default()
            })
            .await?
            .into_inner(),
        CaseCommand::Reopen { name, reason } => c
            .cases
            .reopen_case(pb::ReopenCaseRequest {
                name: ctx.name(name, "cases")?,
                etag: String::new(),
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
    };
    ctx.print(case_json(&k), || show(&k));
    Ok(())
}

async fn document(ctx: &Ctx<'_>, c: &mut Clients, command: &DocumentCommand) -> Result<()> {
    let show =
        |d: &pb::Document| format!("{}\t{} versions\t{}", d.name, d.version_count, d.subject);
    match command {
        DocumentCommand::Create {
            parent,
            subject,
            fields,
        } => {
            let mut document = pb::Document {
                subject: subject.clone(),
                ..Default::default()
            };
            fields.apply(&mut document)?;
            let d = c
                .documents
                .create_document(pb::CreateDocumentRequest {
                    parent: ctx.any_name(parent, "files")?,
                    document: Some(document),
                    ..Default::default()
                })
                .await?
                .into_inner();
            ctx.print(document_json(&d), || show(&d));
        }
        DocumentCommand::Update {
            name,
            subject,
            fields,
            reason,
        } => {
            let mut document = pb::Document {
                name: ctx.name(name, "documents")?,
                ..Default::default()
            };
            let mut mask = fields.apply(&mut document)?;
            if let Some(s) = subject {
                document.subject = s.clone();
                mask.push("subject".into());
            }
            if mask.is_empty() {
                bail!("nothing to change: give at least one field");
            }
            let d = c
                .documents
                .update_document(pb::UpdateDocumentRequest {
                    document: Some(document),
                    update_mask: Some(prost_types::FieldMask { paths: mask }),
                    etag: String::new(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            ctx.print(document_json(&d), || show(&d));
        }
        DocumentCommand::Get { name } => {
            let name = ctx.name(name, "documents")?;
            let d = c
                .documents
                .get_document(pb::GetDocumentRequest { name: name.clone() })
                .await?
                .into_inner();
            let versions = all_pages!(versions, |page_token| c.documents.list_versions(
                pb::ListVersionsRequest {
                    parent: name.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let mut v = document_json(&d);
            v["versions"] = Value::Array(versions.iter().map(version_json).collect());
            ctx.print(v, || {
                let mut s = show(&d);
                for v in &versions {
                    for r in &v.renditions {
                        s.push_str(&format!(
                            "\n  {}\t{}\t{} bytes\t{}",
                            r.name,
                            r.file_name,
                            r.size,
                            hex::encode(&r.sha256)
                        ));
                    }
                }
                s
            });
        }
        DocumentCommand::List { parent } => {
            let r = c
                .documents
                .list_documents(pb::ListDocumentsRequest {
                    parent: ctx.any_name(parent, "files")?,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            ctx.print(
                Value::Array(r.documents.iter().map(document_json).collect()),
                || r.documents.iter().map(show).collect::<Vec<_>>().join("\n"),
            );
        }
    }
    Ok(())
}

async fn journal(ctx: &Ctx<'_>, c: &mut Clients, command: &JournalCommand) -> Result<()> {
    let tenant = ctx.tenant_name()?;
    match command {
        JournalCommand::Checkpoint | JournalCommand::Latest { .. } => {
            let cp = match command {
                JournalCommand::Latest { cosigned } => c
                    .journal
                    .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
                        parent: tenant,
                        cosigned: *cosigned,
                    })
                    .await?
                    .into_inner(),
                _ => c
                    .journal
                    .create_checkpoint(pb::CreateCheckpointRequest { parent: tenant })
                    .await?
                    .into_inner(),
            };
            let verifier = akte_core::keys::VerifierKey::parse(&cp.verifier_key)?;
            akte_core::note::Checkpoint::open(&cp.signed_note, &verifier)
                .context("the checkpoint's signature does not verify with the tenant's key")?;
            ctx.print(checkpoint_json(&cp), || {
                String::from_utf8_lossy(&cp.signed_note)
                    .trim_end()
                    .to_owned()
            });
        }
        JournalCommand::Entry { seq } => {
            let e = c
                .journal
                .get_entry(pb::GetEntryRequest {
                    name: format!("{tenant}/entries/{seq}"),
                })
                .await?
                .into_inner();
            let leaf = akte_core::merkle::leaf_hash(&e.encoded_entry);
            if leaf.as_bytes().as_slice() != &e.leaf_hash[..] {
                bail!("entry {seq}: the leaf hash does not match the encoded entry");
            }
            let v = json!({
                "name": e.name, "seq": e.seq, "actor": e.actor, "kind": e.kind, "object": e.object,
                "leaf_hash": hex::encode(&e.leaf_hash), "prev_leaf_hash": hex::encode(&e.prev_leaf_hash),
                "payloads": e.payloads.iter().map(|p| json!({"kind": p.kind, "role": p.role, "size": p.size, "sha256": hex::encode(&p.sha256)})).collect::<Vec<_>>(),
            });
            ctx.print(v, || {
                format!(
                    "entry {} {} by {} on {}\nleaf {}",
                    e.seq,
                    e.kind,
                    e.actor,
                    e.object,
                    hex::encode(&e.leaf_hash)
                )
            });
        }
        JournalCommand::Prove { seq, size } => {
            let p = c
                .journal
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    parent: tenant,
                    seq: *seq,
                    tree_size: *size,
                })
                .await?
                .into_inner();
            let hashes = p
                .hashes
                .iter()
                .map(|h| digest(h))
                .collect::<Result<Vec<_>>>()?;
            akte_core::merkle::verify_inclusion(
                &digest(&p.leaf_hash)?,
                p.seq,
                p.tree_size,
                &hashes,
                &digest(&p.root_hash)?,
            )
            .context("the inclusion proof does not verify")?;
            if let Some(cp) = &p.checkpoint {
                let verifier = akte_core::keys::VerifierKey::parse(&cp.verifier_key)?;
                akte_core::note::Checkpoint::open(&cp.signed_note, &verifier)
                    .context("the checkpoint's signature does not verify")?;
                if cp.root_hash != p.root_hash {
                    bail!("the proof's root is not the checkpoint's");
                }
            }
            let v = json!({"seq": p.seq, "tree_size": p.tree_size, "leaf_hash": hex::encode(&p.leaf_hash),
                "root_hash": hex::encode(&p.root_hash), "proof": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(), "verified": true});
            ctx.print(v, || {
                let mut s = format!(
                    "entry {} leaf {}\ntree size {} root {}\nproof ({} hashes):",
                    p.seq,
                    hex::encode(&p.leaf_hash),
                    p.tree_size,
                    hex::encode(&p.root_hash),
                    p.hashes.len()
                );
                for h in &p.hashes {
                    s.push_str(&format!("\n  {}", hex::encode(h)));
                }
                s.push_str("\ninclusion proof verified");
                s
            });
        }
        JournalCommand::AddCosignature { file } => {
            let note = std::fs::read(file)
                .with_context(|| format!("reading the cosigned note {}", file.display()))?;
            let cp = c
                .journal
                .add_cosignature(pb::AddCosignatureRequest {
                    parent: tenant,
                    cosigned_note: note.into(),
                })
                .await?
                .into_inner();
            ctx.print(checkpoint_json(&cp), || {
                let mut s = format!(
                    "{}: {} witness cosignature(s) stored",
                    cp.name,
                    cp.cosignatures.len()
                );
                for w in &cp.cosignatures {
                    s.push_str(&format!("\n  {}", w.verifier_key));
                }
                s
            });
        }
        JournalCommand::Consistency { old, new, out } => {
            let p = c
                .journal
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    parent: tenant,
                    first_tree_size: *old,
                    second_tree_size: *new,
                })
                .await?
                .into_inner();
            let hashes = p
                .hashes
                .iter()
                .map(|h| digest(h))
                .collect::<Result<Vec<_>>>()?;
            akte_core::merkle::verify_consistency(
                p.first_tree_size,
                p.second_tree_size,
                &digest(&p.first_root_hash)?,
                &digest(&p.second_root_hash)?,
                &hashes,
            )
            .context("the consistency proof does not verify")?;
            if let Some(path) = out {
                akte_core::embedded::fsutil::write_file_atomic(
                    path,
                    akte_core::evidence::format_proof(&hashes).as_bytes(),
                    0o644,
                )
                .with_context(|| format!("writing the proof file {}", path.display()))?;
            }
            let v = json!({"first_tree_size": p.first_tree_size, "second_tree_size": p.second_tree_size,
                "first_root_hash": hex::encode(&p.first_root_hash), "second_root_hash": hex::encode(&p.second_root_hash),
                "proof": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(), "verified": true});
            ctx.print(v, || {
                format!(
                    "tree {} root {}\ntree {} root {}\nconsistency proof of {} hashes verified",
                    p.first_tree_size,
                    hex::encode(&p.first_root_hash),
                    p.second_tree_size,
                    hex::encode(&p.second_root_hash),
                    p.hashes.len()
                )
            });
        }
    }
    Ok(())
}

/// Files at least this large are uploaded through an upload session, which resumes after
/// a broken connection; smaller ones in one AddVersion call.
const RESUMABLE_FROM: u64 = 16 << 20;
/// Attempts of one resumable upload or download before giving up.
const ATTEMPTS: u32 = 8;

/// Whether a failed call may succeed when repeated (the connection broke, the server
/// restarted, another write took the session over).
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Aborted
    )
}

/// The chunks of a file from `offset` on, 1 MiB each, as messages made by `wrap`.
async fn file_chunks<M: Send + 'static>(
    path: &Path,
    offset: u64,
    wrap: fn(Bytes) -> M,
) -> Result<impl futures_util::Stream<Item = M>> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(futures_util::stream::unfold(
        Some(file),
        move |state| async move {
            use tokio::io::AsyncReadExt;
            let mut file = state?;
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    // A read error ends the stream early; the server then refuses the upload
                    // (SIZE_MISMATCH, or an incomplete session) and records nothing.
                    Err(_) => return None,
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            Some((wrap(Bytes::from(buf)), Some(file)))
        },
    ))
}

/// Uploads a file as a new version: one pass to hash it, then AddVersion, or for large files
/// an upload session that resumes where the server's bytes end after a broken connection.
async fn upload(
    c: &mut Clients,
    document: &str,
    path: &Path,
    media_type: Option<&str>,
    name: Option<&str>,
    comment: &str,
    request_id: Option<&str>,
) -> Result<pb::Version> {
    let p = path.to_path_buf();
    let (sha, size) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, u64)> {
        let mut f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        let mut h = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)
                .with_context(|| format!("reading {}", p.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok((h.finalize().to_vec(), size))
    })
    .await??;
    let file_name = match name {
        Some(n) => n.to_owned(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{} has no file name; give --name", path.display()))?,
    };
    let rendition = pb::RenditionUpload {
        file_name,
        media_type: media_type
            .unwrap_or_else(|| guess_media_type(path))
            .to_owned(),
        sha256: sha.into(),
        size,
    };
    if size >= RESUMABLE_FROM {
        return upload_resumable(c, document, path, rendition, comment, request_id).await;
    }
    let header = pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(
            pb::AddVersionHeader {
                parent: document.to_owned(),
                comment: comment.to_owned(),
                upload: Some(rendition),
                staged_renditions: vec![],
                request_id: request_id.unwrap_or_default().to_owned(),
            },
        )),
    };
    let chunks = file_chunks(path, 0, |b| pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Chunk(b)),
    })
    .await?;
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter([header]), chunks);
    Ok(c.documents.add_version(stream).await?.into_inner())
}

/// The upload session way: create, write (resuming from the server's `persisted_size`
/// after a broken connection), import as an operation and wait for the version.
async fn upload_resumable(
    c: &mut Clients,
    document: &str,
    path: &Path,
    rendition: pb::RenditionUpload,
    comment: &str,
    request_id: Option<&str>,
) -> Result<pb::Version> {
    let size = rendition.size;
    let mut session = c
        .documents
        .create_upload_session(pb::CreateUploadSessionRequest {
            parent: document.to_owned(),
            upload_session: Some(pb::UploadSession {
                rendition: Some(rendition),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let mut attempt = 0;
    while session.persisted_size < size {
        let header = pb::WriteUploadSessionRequest {
            message: Some(pb::write_upload_session_request::Message::Header(
                pb::WriteUploadSessionHeader {
                    name: session.name.clone(),
                    offset: session.persisted_size,
                },
            )),
        };
        let chunks = file_chunks(path, session.persisted_size, |b| {
            pb::WriteUploadSessionRequest {
                message: Some(pb::write_upload_session_request::Message::Chunk(b)),
            }
        })
        .await?;
        let stream = futures_util::StreamExt::chain(futures_util::stream::iter([header]), chunks);
        match c.documents.write_upload_session(stream).await {
            Ok(s) => session = s.into_inner(),
            Err(e) if transient(&e) && attempt + 1 < ATTEMPTS => {
                attempt += 1;
                tracing::warn!(session = %session.name, "upload interrupted ({}); resuming", e.message());
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                session = c
                    .documents
                    .get_upload_session(pb::GetUploadSessionRequest {
                        name: session.name.clone(),
                    })
                    .await?
                    .into_inner();
            }
            Err(e) => return Err(e.into()),
        }
    }
    let op = c
        .documents
        .import_upload_session(pb::ImportUploadSessionRequest {
            name: session.name.clone(),
            comment: comment.to_owned(),
            staged_renditions: vec![],
            request_id: request_id.unwrap_or_default().to_owned(),
        })
        .await?
        .into_inner();
    let done = wait_operation(&mut c.operations, op).await?;
    Ok(unpack(&done)?)
}

/// Downloads to a file or stdout. A file is written beside it (`.part`), checked against
/// the SHA-256 and renamed when complete; after a broken connection the `.part` is kept and
/// the download resumes from its end (a range), here or when the command is run again.
async fn download(c: &mut Clients, name: &str, output: Option<&Path>) -> Result<pb::Rendition> {
    let Some(output) = output else {
        return download_to(
            c,
            name,
            0,
            &mut std::io::stdout().lock(),
            &mut sha2::Sha256::new(),
        )
        .await
        .and_then(|(r, hasher, received)| check_download(r, hasher, received));
    };
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let mut attempt = 0;
    loop {
        // What an earlier attempt left: hashed again, then continued from its end.
        let (mut hasher, offset) = {
            let mut h = sha2::Sha256::new();
            let mut n = 0u64;
            if let Ok(mut f) = std::fs::File::open(&tmp) {
                n = std::io::copy(&mut f, &mut HashWriter(&mut h))
                    .with_context(|| format!("reading {}", tmp.display()))?;
            }
            (h, n)
        };
        let mut sink = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&tmp)
                .with_context(|| format!("opening {}", tmp.display()))?,
        );
        let got = download_to(c, name, offset, &mut sink, &mut hasher).await;
        sink.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(sink);
        match got {
            Ok((r, hasher, received)) => {
                return match check_download(r, hasher, offset + received) {
                    Ok(r) => {
                        std::fs::rename(&tmp, output)
                            .with_context(|| format!("renaming to {}", output.display()))?;
                        Ok(r)
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                };
            }
            Err(e) => {
                let retry = e
                    .downcast_ref::<tonic::Status>()
                    .is_some_and(|s| transient(s) && s.code() != Code::Aborted);
                if retry && attempt + 1 < ATTEMPTS {
                    attempt += 1;
                    tracing::warn!(name, "download interrupted ({e}); resuming");
                    tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                    continue;
                }
                if !retry {
                    let _ = std::fs::remove_file(&tmp);
                }
                return Err(e);
            }
        }
    }
}

/// Feeds what is written into a hash.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams a rendition from `offset` into `sink`, hashing what arrives.
async fn download_to(
    c: &mut Clients,
    name: &str,
    offset: u64,
    sink: &mut dyn Write,
    hasher: &mut sha2::Sha256,
) -> Result<(pb::Rendition, sha2::Sha256, u64)> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: name.to_owned(),
            offset,
            length: 0,
        })
        .await?
        .into_inner();
    let mut meta: Option<pb::Rendition> = None;
    let mut received = 0u64;
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::download_rendition_response::Message::Rendition(r)) => meta = Some(r),
            Some(pb::download_rendition_response::Message::Chunk(b)) => {
                hasher.update(&b);
                received += b.len() as u64;
                sink.write_all(&b)?;
            }
            None => {}
        }
    }
    let r = meta.ok_or_else(|| anyhow!("the server sent no rendition metadata"))?;
    Ok((r, hasher.clone(), received))
}

/// The rendition, if all its bytes arrived and hash to its SHA-256.
fn check_download(r: pb::Rendition, hasher: sha2::Sha256, received: u64) -> Result<pb::Rendition> {
    if hasher.finalize().as_slice() != &r.sha256[..] || received != r.size {
        bail!("the downloaded bytes do not match the rendition's SHA-256 and size");
    }
    Ok(r)
}
