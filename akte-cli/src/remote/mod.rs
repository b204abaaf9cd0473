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

use akte_api::client::{unpack, wait_operation, ClientTls, Clients};

mod access;
mod disposal;
mod metadata;
mod migration;
mod search;
use crate::output::{api, print_json, time, usage, NoToken};
use akte_api::pb::akte::v1 as pb;
use akte_api::pb::google::r#type::Date;

/// Connection settings of the client commands.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// URL of akted (http:// on loopback, https:// otherwise).
    #[arg(
        long,
        global = true,
        env = "AKTE_SERVER",
        default_value = "http://127.0.0.1:50051",
        help_heading = crate::output::GLOBAL
    )]
    pub server: String,
    /// Bearer token (prefer AKTE_TOKEN or --token-file: arguments are visible to other users).
    #[arg(long, global = true, env = "AKTE_TOKEN", hide_env_values = true, help_heading = crate::output::GLOBAL)]
    pub token: Option<String>,
    /// File holding the bearer token (e.g. DATA_DIR/bootstrap-token).
    #[arg(long, global = true, env = "AKTE_TOKEN_FILE", help_heading = crate::output::GLOBAL)]
    pub token_file: Option<PathBuf>,
    /// Tenant for bare ids (`--tenant bauamt` turns `<uuid>` into `tenants/bauamt/files/<uuid>`).
    #[arg(long, global = true, env = "AKTE_TENANT", help_heading = crate::output::GLOBAL)]
    pub tenant: Option<String>,
    /// CA certificate of the server (PEM), for https://.
    #[arg(long, global = true, env = "AKTE_CA_CERT", help_heading = crate::output::GLOBAL)]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, global = true, env = "AKTE_CLIENT_CERT", help_heading = crate::output::GLOBAL)]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long, global = true, env = "AKTE_CLIENT_KEY", help_heading = crate::output::GLOBAL)]
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
    /// Organisational units (Organisationseinheiten) and their members.
    Unit {
        #[command(subcommand)]
        command: access::UnitCommand,
    },
    /// Clearances of principals for confidentiality levels.
    Clearance {
        #[command(subcommand)]
        command: access::ClearanceCommand,
    },
    /// Who may see a file, case or document: lead unit, shares, level, access log.
    Access {
        #[command(subcommand)]
        command: access::AccessCommand,
    },
    /// Custom field definitions (agency metadata).
    Field {
        #[command(subcommand)]
        command: access::FieldCommand,
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
    /// Search metadata and the full text of documents (one page; what the caller may not
    /// see is not there).
    Search(search::SearchArgs),
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
        /// A file to store as the first version, in the same call (one journal entry).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The first version's media type [default: guessed from the file name].
        #[arg(long, requires = "file")]
        media_type: Option<String>,
        /// Comment on the first version.
        #[arg(long, default_value = "", requires = "file")]
        comment: String,
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

struct Ctx<'a> {
    r: &'a Remote,
    json: bool,
}

impl Ctx<'_> {
    fn tenant(&self) -> Result<String> {
        self.r
            .tenant
            .clone()
            .ok_or_else(|| usage("--tenant (or AKTE_TENANT) is required for this command"))
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

    /// Prints a result of the CLI's own (a written file, a deletion) as a JSON object or
    /// as text.
    fn print(&self, v: Value, text: impl FnOnce() -> String) {
        if self.json {
            print_json(&v);
        } else {
            println!("{}", text());
        }
    }

    /// Prints an API object: its proto3 JSON (as grpcurl would), or text for people.
    fn show<M: prost::Message + prost::Name>(
        &self,
        m: &M,
        text: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.json {
            print_json(&api(m)?);
        } else {
            println!("{}", text());
        }
        Ok(())
    }

    /// Prints a List response holding every page's items: its proto3 JSON, or one line
    /// per item, or `empty` when there are none (so that no command prints nothing).
    fn list<M: prost::Message + prost::Name, T>(
        &self,
        response: &M,
        items: &[T],
        line: impl Fn(&T) -> String,
        empty: &str,
    ) -> Result<()> {
        if self.json {
            print_json(&api(response)?);
        } else if items.is_empty() {
            println!("{empty}");
        } else {
            for i in items {
                println!("{}", line(i));
            }
        }
        Ok(())
    }
}

/// A token expiry: RFC 3339, or a date meaning its start in UTC.
fn parse_expiry(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        usage(format!(
            "--expires {s:?} is neither RFC 3339 (2027-06-30T00:00:00Z) nor a date YYYY-MM-DD"
        ))
    })?;
    Ok(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

fn parse_date(s: &str) -> Result<Date> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| usage(format!("{s:?} is not a date YYYY-MM-DD")))?;
    use chrono::Datelike;
    Ok(Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    })
}

fn state(v: i32) -> &'static str {
    match pb::State::try_from(v) {
        Ok(pb::State::Open) => "open",
        Ok(pb::State::Closed) => "closed",
        _ => "unspecified",
    }
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
        (None, None) => return Err(NoToken.into()),
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
        Command::Unit { command } => access::unit(&ctx, &mut c, command).await?,
        Command::Clearance { command } => access::clearance(&ctx, &mut c, command).await?,
        Command::Access { command } => access::access(&ctx, &mut c, command).await?,
        Command::Field { command } => access::field(&ctx, &mut c, command).await?,
        Command::Disposal { command } => disposal::disposal(&ctx, &mut c, command).await?,
        Command::Search(args) => search::search(&ctx, &mut c, args).await?,
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
            ctx.show(&v, || {
                let mut s = format!("{} uploaded", v.name);
                for r in &v.renditions {
                    s.push_str(&format!(
                        "\n  {}\t{}\t{} bytes\tsha256 {}",
                        r.name,
                        r.file_name,
                        r.size,
                        hex::encode(&r.sha256)
                    ));
                }
                s
            })?;
        }
        Command::Download { name, output } => {
            let name = ctx.name(name, "documents")?;
            let r = download(&mut c, &name, output.as_deref()).await?;
            if output.is_some() {
                ctx.show(&r, || {
                    format!(
                        "{}\t{} bytes\tsha256 {} (checked)",
                        r.file_name,
                        r.size,
                        hex::encode(&r.sha256)
                    )
                })?;
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
            let response = pb::ListHistoryResponse {
                entries: all,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.entries,
                |h| {
                    let mut line = format!(
                        "#{}\t{}\t{}\t{}",
                        h.journal_seq,
                        time(h.time.as_ref()),
                        h.actor,
                        h.action
                    );
                    if !h.reason.is_empty() {
                        line.push_str(&format!(" ({})", h.reason));
                    }
                    // A change that changes nothing (an empty field at creation) is noise.
                    let unchanged = |c: &pb::FieldChange| {
                        c.old_value == c.new_value
                            || (c.old_value == "null" && c.new_value == "\"\"")
                    };
                    for ch in h.changes.iter().filter(|c| !unchanged(c)) {
                        line.push_str(&format!(
                            "\n\t{}: {} -> {}",
                            ch.field, ch.old_value, ch.new_value
                        ));
                    }
                    line
                },
                "no history",
            )?;
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
            ctx.show(&r, || {
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
            })?;
            if !r.clean {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// A token's roles as people write them (`clerk, registrar`).
fn roles_text(t: &pb::Token) -> String {
    t.roles
        .iter()
        .map(|r| {
            pb::Role::try_from(*r)
                .map(|r| {
                    r.as_str_name()
                        .trim_start_matches("ROLE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| r.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn admin(ctx: &Ctx<'_>, c: &mut Clients, command: &AdminCommand) -> Result<()> {
    let token_line = |t: &pb::Token| {
        let expires = match &t.expire_time {
            Some(e) => format!("expires {}", time(Some(e))),
            None => "does not expire".to_owned(),
        };
        format!("{}\t{}\t{}\t{expires}", t.name, t.principal, roles_text(t))
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
            ctx.show(&t, || {
                format!(
                    "created {}\norigin {}\nverifier key {}",
                    t.name, t.origin, t.verifier_key
                )
            })?;
        }
        AdminCommand::Tenants => {
            let tenants = all_pages!(tenants, |page_token| c.tenants.list_tenants(
                pb::ListTenantsRequest {
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListTenantsResponse {
                tenants,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.tenants,
                |t| format!("{}\t{} entries\t{}", t.name, t.journal_size, t.origin),
                "no tenants",
            )?;
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
                            usage(format!(
                                "unknown role {r:?}: reader, clerk, registrar, archivist or admin"
                            ))
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
                    org_units: Vec::new(),
                })
                .await?
                .into_inner();
            ctx.show(&r, || {
                let t = r.token.clone().unwrap_or_default();
                format!(
                    "created {}\nsecret (shown once): {}",
                    token_line(&t),
                    r.secret
                )
            })?;
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
            let response = pb::ListTokensResponse {
                tokens,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.tokens,
                token_line,
                "no tokens made through the API",
            )?;
        }
        AdminCommand::DeleteToken { name } => {
            let name = ctx.name(name, "tokens")?;
            c.tenants
                .delete_token(pb::DeleteTokenRequest { name: name.clone() })
                .await?;
            ctx.print(json!({ "deleted": name }), || format!("revoked {name}"));
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
            ctx.show(&w, || {
                format!("registered witness {}\n{}", w.name, w.verifier_key)
            })?;
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
            let response = pb::ListWitnessesResponse {
                witnesses,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.witnesses,
                |w| format!("{}\t{}", w.name, w.verifier_key),
                "no witnesses registered",
            )?;
        }
        AdminCommand::DeleteWitness { name } => {
            let name = ctx.name(name, "witnesses")?;
            c.journal
                .delete_witness(pb::DeleteWitnessRequest { name: name.clone() })
                .await?;
            ctx.print(json!({ "deleted": name }), || {
                format!("removed witness {name}")
            });
        }
    }
    Ok(())
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
                Some(o) => {
                    return Err(usage(format!(
                        "--disposal {o:?}: A (archive), V (destroy) or B (appraise)"
                    )))
                }
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
            ctx.show(&u, || show(&u))?;
        }
        PlanUnitCommand::Get { name } => {
            let u = c
                .plan
                .get_plan_unit(pb::GetPlanUnitRequest {
                    name: ctx.name(name, "planUnits")?,
                })
                .await?
                .into_inner();
            ctx.show(&u, || show(&u))?;
        }
        PlanUnitCommand::List { parent } => {
            let parent = match parent {
                Some(p) => ctx.name(p, "planUnits")?,
                None => ctx.tenant_name()?,
            };
            let plan_units = all_pages!(plan_units, |page_token| c.plan.list_plan_units(
                pb::ListPlanUnitsRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListPlanUnitsResponse {
                plan_units,
                ..Default::default()
            };
            ctx.list(&response, &response.plan_units, show, "no plan units here")?;
        }
    }
    Ok(())
}

/// A file or case message as the create and update commands fill it: a name, a subject
/// and the flags of its kind ([`metadata::Flags`]).
trait Titled: Default {
    fn set_name(&mut self, name: String);
    fn set_subject(&mut self, subject: String);
    fn set_custom_fields(&mut self, values: Vec<pb::CustomFieldValue>);
}

impl Titled for pb::File {
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_subject(&mut self, subject: String) {
        self.subject = subject;
    }
    fn set_custom_fields(&mut self, values: Vec<pb::CustomFieldValue>) {
        self.custom_fields = values;
    }
}

impl Titled for pb::Case {
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn set_subject(&mut self, subject: String) {
        self.subject = subject;
    }
    fn set_custom_fields(&mut self, values: Vec<pb::CustomFieldValue>) {
        self.custom_fields = values;
    }
}

/// The message of a create command under `parent`: the subject and the flags given.
async fn new_object<M: Titled>(
    c: &mut Clients,
    parent: &str,
    subject: &str,
    fields: &impl metadata::Flags<M>,
) -> Result<M> {
    let mut m = M::default();
    m.set_subject(subject.to_owned());
    fields.apply(&mut m)?;
    let (values, _) = access::field_values(c, &access::tenant_of(parent)?, fields.custom()).await?;
    m.set_custom_fields(values);
    Ok(m)
}

/// The message and field mask of an update command: exactly the fields given.
async fn changed_object<M: Titled>(
    c: &mut Clients,
    name: String,
    subject: &Option<String>,
    fields: &impl metadata::Flags<M>,
) -> Result<(M, prost_types::FieldMask)> {
    let (values, paths) =
        access::field_values(c, &access::tenant_of(&name)?, fields.custom()).await?;
    let mut m = M::default();
    m.set_name(name);
    let mut mask = fields.apply(&mut m)?;
    if let Some(s) = subject {
        m.set_subject(s.clone());
        mask.push("subject".into());
    }
    m.set_custom_fields(values);
    mask.extend(paths);
    if mask.is_empty() {
        return Err(usage("nothing to change: give at least one field"));
    }
    Ok((m, prost_types::FieldMask { paths: mask }))
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
            let parent = ctx.any_name(parent, "planUnits")?;
            let file = new_object(c, &parent, subject, fields).await?;
            c.files
                .create_file(pb::CreateFileRequest {
                    parent,
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
            let (file, mask) = changed_object(c, ctx.name(name, "files")?, subject, fields).await?;
            c.files
                .update_file(pb::UpdateFileRequest {
                    file: Some(file),
                    update_mask: Some(mask),
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
            let files = all_pages!(files, |page_token| c.files.list_files(
                pb::ListFilesRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListFilesResponse {
                files,
                ..Default::default()
            };
            return ctx.list(&response, &response.files, show, "no files here");
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
    ctx.show(&f, || show(&f))
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
            let parent = ctx.any_name(parent, "files")?;
            let case = new_object(c, &parent, subject, fields).await?;
            c.cases
                .create_case(pb::CreateCaseRequest {
                    parent,
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
            let (case, mask) = changed_object(c, ctx.name(name, "cases")?, subject, fields).await?;
            c.cases
                .update_case(pb::UpdateCaseRequest {
                    case: Some(case),
                    update_mask: Some(mask),
                    etag: String::new(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner()
        }
        CaseCommand::List { parent } => {
            let parent = ctx.any_name(parent, "files")?;
            let cases = all_pages!(cases, |page_token| c.cases.list_cases(
                pb::ListCasesRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListCasesResponse {
                cases,
                ..Default::default()
            };
            return ctx.list(&response, &response.cases, show, "no cases here");
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
    ctx.show(&k, || show(&k))
}

async fn document(ctx: &Ctx<'_>, c: &mut Clients, command: &DocumentCommand) -> Result<()> {
    let show =
        |d: &pb::Document| format!("{}\t{} versions\t{}", d.name, d.version_count, d.subject);
    match command {
        DocumentCommand::Create {
            parent,
            subject,
            fields,
            file,
            media_type,
            comment,
        } => {
            let mut document = pb::Document {
                subject: subject.clone(),
                ..Default::default()
            };
            fields.apply(&mut document)?;
            let parent = ctx.any_name(parent, "files")?;
            document.custom_fields =
                access::field_values(c, &access::tenant_of(&parent)?, &fields.custom)
                    .await?
                    .0;
            let request = pb::CreateDocumentRequest {
                parent,
                document: Some(document),
                ..Default::default()
            };
            let d = match file {
                None => c.documents.create_document(request).await?.into_inner(),
                Some(path) => {
                    create_with_file(c, request, path, media_type.as_deref(), comment).await?
                }
            };
            ctx.show(&d, || show(&d))?;
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
            let (values, paths) =
                access::field_values(c, &access::tenant_of(&document.name)?, &fields.custom)
                    .await?;
            document.custom_fields = values;
            mask.extend(paths);
            if mask.is_empty() {
                return Err(usage("nothing to change: give at least one field"));
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
            ctx.show(&d, || show(&d))?;
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
            if ctx.json {
                // The document and its versions, each as the API has it.
                print_json(&json!({
                    "document": api(&d)?,
                    "versions": versions.iter().map(api).collect::<Result<Vec<_>>>()?,
                }));
                return Ok(());
            }
            println!("{}", show(&d));
            for v in &versions {
                println!(
                    "  version {}\t{}\t{}\t{}",
                    v.number,
                    time(v.created.as_ref().and_then(|c| c.time.as_ref())),
                    v.created.as_ref().map_or("", |c| c.actor.as_str()),
                    v.comment
                );
                for r in &v.renditions {
                    println!(
                        "    {}\t{}\t{} bytes\tsha256 {}",
                        r.name,
                        r.file_name,
                        r.size,
                        hex::encode(&r.sha256)
                    );
                }
            }
        }
        DocumentCommand::List { parent } => {
            let parent = ctx.any_name(parent, "files")?;
            let documents = all_pages!(documents, |page_token| c.documents.list_documents(
                pb::ListDocumentsRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListDocumentsResponse {
                documents,
                ..Default::default()
            };
            ctx.list(&response, &response.documents, show, "no documents here")?;
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
            ctx.show(&cp, || {
                String::from_utf8_lossy(&cp.signed_note)
                    .trim_end()
                    .to_owned()
            })?;
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
            ctx.show(&e, || {
                let mut s = format!(
                    "entry {} at {}: {} by {} on {}\nleaf {}",
                    e.seq,
                    time(e.time.as_ref()),
                    e.kind,
                    e.actor,
                    if e.object.is_empty() { "-" } else { &e.object },
                    hex::encode(&e.leaf_hash)
                );
                for p in &e.payloads {
                    s.push_str(&format!(
                        "\n  {}\t{} bytes\tsha256 {}",
                        p.role,
                        p.size,
                        hex::encode(&p.sha256)
                    ));
                }
                s
            })?;
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
            ctx.show(&p, || {
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
            })?;
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
            ctx.show(&cp, || {
                let mut s = format!(
                    "{}: {} witness cosignature(s) stored",
                    cp.name,
                    cp.cosignatures.len()
                );
                for w in &cp.cosignatures {
                    s.push_str(&format!(
                        "\n  {}\tcosigned {}",
                        w.verifier_key,
                        time(w.cosign_time.as_ref())
                    ));
                }
                s
            })?;
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
            ctx.show(&p, || {
                format!(
                    "tree {} root {}\ntree {} root {}\nconsistency proof of {} hashes verified",
                    p.first_tree_size,
                    hex::encode(&p.first_root_hash),
                    p.second_tree_size,
                    hex::encode(&p.second_root_hash),
                    p.hashes.len()
                )
            })?;
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

/// SHA-256 and size of a file, in one pass on a blocking thread.
async fn hash_file(path: &Path) -> Result<(Vec<u8>, u64)> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, u64)> {
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
    .await?
}

/// Creates a document with a file as its first version in one call, so the journal
/// records both in one entry: inline in CreateDocument up to 4 MiB, else as the one
/// document of a CreateDocuments stream (the bytes in 1 MiB chunks).
async fn create_with_file(
    c: &mut Clients,
    mut request: pb::CreateDocumentRequest,
    path: &Path,
    media_type: Option<&str>,
    comment: &str,
) -> Result<pb::Document> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let media_type = media_type
        .unwrap_or_else(|| guess_media_type(path))
        .to_owned();
    request.version_comment = comment.to_owned();
    let (sha, size) = hash_file(path).await?;
    if size <= akte_api::limits::MAX_INLINE_CONTENT as u64 {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 != size {
            bail!("{} changed while it was read", path.display());
        }
        request.content = Bytes::from(bytes);
        request.content_sha256 = sha.into();
        request.content_file_name = file_name;
        request.content_media_type = media_type;
        return Ok(c.documents.create_document(request).await?.into_inner());
    }
    let tenant_of = request.parent.clone();
    let first = pb::CreateDocumentsRequest {
        message: Some(pb::create_documents_request::Message::Document(
            pb::CreateDocumentsItem {
                document: Some(request),
                upload: Some(pb::RenditionUpload {
                    file_name,
                    media_type,
                    sha256: sha.into(),
                    size,
                }),
            },
        )),
    };
    let chunks = file_chunks(path, 0, |b| pb::CreateDocumentsRequest {
        message: Some(pb::create_documents_request::Message::Chunk(b)),
    })
    .await?;
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter([first]), chunks);
    let r = c.documents.create_documents(stream).await?.into_inner();
    match r.results.first().and_then(|x| x.result.clone()) {
        Some(pb::create_documents_result::Result::Name(name)) => Ok(c
            .documents
            .get_document(pb::GetDocumentRequest { name })
            .await?
            .into_inner()),
        Some(pb::create_documents_result::Result::Error(e)) => Err(anyhow!(
            "creating the document in {tenant_of} was refused: {}",
            e.message
        )),
        None => bail!("the server answered without a result"),
    }
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
    let (sha, size) = hash_file(path).await?;
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
