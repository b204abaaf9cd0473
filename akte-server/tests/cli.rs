//! The `akte` binary as people and scripts meet it: `--json` prints API objects in the
//! proto3 JSON mapping (what grpcurl prints) and errors as JSON; text output has dates and
//! hex hashes and never JSON; exit codes as documented (usage 2, not found 6, ...); the
//! advice fits the case; `--help` lists a command's own options first; a missing token
//! names AKTE_TOKEN_FILE; failures leave nothing behind; commands that find nothing say so.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;
use support::{fixture, Env};

use akte_server::pb::akte::v1 as pb;

/// Runs `akte` with a clean environment in `cwd`.
fn akte_in(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_akte"))
        .args(args)
        .current_dir(cwd)
        .env_remove("AKTE_TOKEN")
        .env_remove("AKTE_TOKEN_FILE")
        .env_remove("AKTE_TENANT")
        .env_remove("AKTE_SERVER")
        .env_remove("AKTE_DATA_DIR")
        .env_remove("AKTE_LOG")
        .output()
        .expect("running akte");
    println!(
        "$ akte {}\n{}{}-> {:?}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("akte killed by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON value ({e}): {}", stdout(out)))
}

/// The JSON error `--json` prints on standard error.
fn json_error(out: &Output) -> Value {
    let v: Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("no JSON error ({e}): {}", stderr(out)));
    v["error"].clone()
}

/// What grpcurl prints for `m`: the proto3 JSON mapping, made here independently of the
/// CLI's code from the same descriptor set.
fn proto3_json<M: prost::Message + prost::Name>(m: &M) -> Value {
    let pool = DescriptorPool::decode(akte_server::pb::FILE_DESCRIPTOR_SET).expect("pool");
    let d = pool.get_message_by_name(&M::full_name()).expect("known");
    let dynamic = DynamicMessage::decode(d, m.encode_to_vec().as_slice()).expect("decode");
    serde_json::to_value(&dynamic).expect("json")
}

struct Remote<'a> {
    env: &'a Env,
    url: String,
    tenant: &'a str,
    cwd: tempfile::TempDir,
}

impl<'a> Remote<'a> {
    fn new(env: &'a Env, tenant: &'a str) -> Remote<'a> {
        Remote {
            env,
            url: env.url(),
            tenant,
            cwd: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--server",
            &self.url,
            "--token",
            &self.env.admin,
            "--tenant",
            self.tenant,
        ];
        all.extend_from_slice(args);
        akte_in(self.cwd.path(), &all)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_the_proto3_mapping_and_text_is_for_people() {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let cli = Remote::new(&env, "bauamt");

    // An API object: exactly what grpcurl prints for GetFile.
    let out = cli.run(&["--json", "file", "get", &f.file.name]);
    assert_eq!(code(&out), 0);
    let got = json(&out);
    let served = f
        .registrar
        .files
        .get_file(pb::GetFileRequest {
            name: f.file.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, proto3_json(&served));
    // The mapping's marks: lowerCamelCase, enums by name, uint64 as a string, RFC 3339.
    assert_eq!(got["planUnit"], served.plan_unit.as_str());
    assert_eq!(got["state"], "STATE_OPEN");
    assert!(got["created"]["journalSeq"].is_string(), "{got}");
    assert!(
        got["created"]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{got}"
    );
    assert!(got.get("plan_unit").is_none(), "{got}");

    // A list: the List response with every page, as one object.
    let out = cli.run(&["--json", "document", "list", "--parent", &f.file.name]);
    let list = json(&out);
    assert_eq!(list["documents"][0], proto3_json(&f.doc));

    // Bytes are base64 in JSON, hex in text; one encoding per form.
    let data = b"%PDF-1.7 Bauantrag\n".to_vec();
    let path = cli.cwd.path().join("antrag.pdf");
    std::fs::write(&path, &data).expect("write");
    let out = cli.run(&[
        "--json",
        "upload",
        "--document",
        &f.doc.name,
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&out), 0);
    let v = json(&out);
    let sha = akte_server::client::sha256(&data);
    use base64::Engine as _;
    assert_eq!(
        v["renditions"][0]["sha256"],
        base64::engine::general_purpose::STANDARD.encode(&sha)
    );
    let out = cli.run(&["document", "get", &f.doc.name]);
    let text = stdout(&out);
    assert!(text.contains(&hex::encode(&sha)), "{text}");
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with(['{', '[']),
            "JSON in text: {text}"
        );
    }

    // History in text: dates, no seconds since 1970, no JSON.
    let out = cli.run(&["history", &f.file.name]);
    let text = stdout(&out);
    assert!(text.contains("file.create"), "{text}");
    assert!(text.contains(" UTC"), "times as dates: {text}");
    assert!(!text.contains('{'), "{text}");

    // The document with its versions: two API objects under their names.
    let out = cli.run(&["--json", "document", "get", &f.doc.name]);
    let v = json(&out);
    assert_eq!(v["document"]["name"], f.doc.name.as_str());
    assert_eq!(v["versions"][0]["number"], 1);

    // A checkpoint: the API object (its note is a bytes field), never the bare note.
    let out = cli.run(&["--json", "journal", "checkpoint"]);
    let v = json(&out);
    assert!(
        v["treeSize"].is_string() && v["signedNote"].is_string(),
        "{v}"
    );
    let out = cli.run(&["journal", "checkpoint"]);
    assert!(
        stdout(&out).starts_with("akte.local/bauamt\n"),
        "the note in text"
    );

    // Nothing found, and nothing printed? No: it says so.
    let out = cli.run(&["retention", "due"]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("no files are due"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["--json", "retention", "due"]);
    assert_eq!(json(&out), serde_json::json!({}), "an empty list response");
    let out = cli.run(&["hold", "list"]);
    assert!(stdout(&out).contains("no active holds"), "{}", stdout(&out));
    // A change says what changed.
    let out = cli.run(&[
        "retention",
        "set",
        &f.file.name,
        "--years",
        "7",
        "--decision",
        "a",
        "--reason",
        "Bewertungskatalog",
    ]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).starts_with("retention set to 7 years, decision A"),
        "{}",
        stdout(&out)
    );
    env.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_documented_exit_codes_and_json_with_code_and_reason() {
    let env = Env::new().await;
    let f = fixture(&env, "bauamt").await;
    let cli = Remote::new(&env, "bauamt");

    // Not found: exit 6; under --json the code and the reason, on standard error.
    let missing = format!("tenants/bauamt/files/{}", uuid::Uuid::new_v4());
    let out = cli.run(&["--json", "file", "get", &missing]);
    assert_eq!(code(&out), 6);
    assert!(out.stdout.is_empty());
    let e = json_error(&out);
    assert_eq!(
        (e["code"].as_str(), e["reason"].as_str()),
        (Some("NOT_FOUND"), Some("NOT_FOUND"))
    );
    // The nil UUID is a UUID: not found, not "not a UUID".
    let out = cli.run(&[
        "--json",
        "file",
        "get",
        "tenants/bauamt/files/00000000-0000-0000-0000-000000000000",
    ]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    // A malformed id is a refused request: exit 7, INVALID_ARGUMENT.
    let out = cli.run(&["--json", "file", "get", "tenants/bauamt/files/x"]);
    assert_eq!(code(&out), 7);
    assert_eq!(json_error(&out)["code"], "INVALID_ARGUMENT");
    // Without --json: one line with code and reason.
    let out = cli.run(&["file", "get", &missing]);
    assert!(
        stderr(&out).starts_with("akte: error: NOT_FOUND (NOT_FOUND): "),
        "{}",
        stderr(&out)
    );

    // Usage errors are 2, whether clap or the command finds them, JSON under --json.
    for args in [
        vec!["--json", "file", "get"],
        vec!["--json", "frobnicate"],
        vec!["--json", "file", "update", &f.file.name],
        vec![
            "--json",
            "file",
            "close",
            &f.file.name,
            "--date",
            "30.06.2015",
        ],
        vec!["--json", "retention", "due", "--decision", "X"],
    ] {
        let out = cli.run(&args);
        assert_eq!(code(&out), 2, "{args:?}");
        let e = json_error(&out);
        assert_eq!(e["code"], "INVALID_ARGUMENT", "{args:?}");
        assert_eq!(e["reason"], "USAGE", "{args:?}");
        assert!(!e["message"].as_str().unwrap_or("").is_empty());
    }
    let out = akte_in(
        cli.cwd.path(),
        &[
            "--server", &cli.url, "--token", &env.admin, "file", "get", "x",
        ],
    );
    assert_eq!(code(&out), 2, "no --tenant for a bare id");
    assert!(stderr(&out).contains("--tenant"), "{}", stderr(&out));

    // No token: exit 5, and the message names AKTE_TOKEN_FILE.
    let out = akte_in(
        cli.cwd.path(),
        &[
            "--server", &cli.url, "--tenant", "bauamt", "admin", "tenants",
        ],
    );
    assert_eq!(code(&out), 5);
    assert!(stderr(&out).contains("AKTE_TOKEN_FILE"), "{}", stderr(&out));
    // A wrong token: exit 5 too.
    let out = akte_in(
        cli.cwd.path(),
        &["--server", &cli.url, "--token", "nope", "admin", "tenants"],
    );
    assert_eq!(code(&out), 5);

    // Unreachable: exit 4.
    let out = akte_in(
        cli.cwd.path(),
        &[
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "x",
            "admin",
            "tenants",
        ],
    );
    assert_eq!(code(&out), 4);

    // Nothing was written into the working directory by any of this.
    let left: Vec<_> = std::fs::read_dir(cli.cwd.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    env.server.shutdown().await.expect("shutdown");
}

#[test]
fn help_lists_the_commands_own_options_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = akte_in(dir.path(), &["file", "create", "--help"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    let own = text.find("--subject").expect("own option");
    let global = text.find("Global options:").expect("global heading");
    assert!(own < global, "{text}");
    assert!(text[global..].contains("--server"), "{text}");
    assert!(!text[..global].contains("--server"), "{text}");
}

#[test]
fn offline_commands_refuse_what_is_not_a_data_directory_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    // No data directory given: a usage error, and nothing (no ./data, no key) is made.
    for args in [
        vec!["tenant", "create", "bauamt"],
        vec!["stats"],
        vec!["checkpoint", "--tenant", "bauamt"],
    ] {
        let out = akte_in(cwd, &args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains("--data-dir"), "{}", stderr(&out));
    }
    // A directory that does not exist is not made by reading commands.
    let missing = cwd.join("missing");
    let m = missing.to_str().expect("utf-8");
    for args in [
        vec!["--data-dir", m, "stats"],
        vec!["--data-dir", m, "tenant", "list"],
        vec!["--data-dir", m, "prove", "--tenant", "t", "--seq", "0"],
        vec!["--data-dir", m, "--json", "rebuild-index"],
    ] {
        let out = akte_in(cwd, &args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(!missing.exists(), "{args:?} made {m}");
    }
    // A directory that holds other things is not a data directory: exit 2, untouched.
    let other = cwd.join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), b"x").expect("write");
    let o = other.to_str().expect("utf-8");
    let out = akte_in(cwd, &["--json", "--data-dir", o, "tenant", "create", "t"]);
    assert_eq!(code(&out), 2);
    assert_eq!(json_error(&out)["reason"], "NOT_A_DATA_DIRECTORY");
    assert_eq!(std::fs::read_dir(&other).expect("list").count(), 1);
    std::fs::remove_dir_all(&other).expect("clean up");
    // A tenant that cannot be created leaves no data directory behind.
    let out = akte_in(cwd, &["--data-dir", m, "tenant", "create", "Bad Id"]);
    assert_eq!(code(&out), 7);
    assert!(!missing.exists());
    let listing: Vec<_> = std::fs::read_dir(cwd).expect("list").flatten().collect();
    assert!(listing.is_empty(), "{listing:?}");
}

/// A data directory in `dir` with tenant `t`, and a document file to ingest: their
/// paths.
fn tenant_and_document(dir: &Path) -> (String, String) {
    let data = dir.join("data").to_str().expect("utf-8").to_owned();
    assert_eq!(
        code(&akte_in(
            dir,
            &["--data-dir", &data, "tenant", "create", "t"]
        )),
        0
    );
    let doc = dir.join("a.txt");
    std::fs::write(&doc, b"Antrag").expect("write");
    (data, doc.to_str().expect("utf-8").to_owned())
}

#[test]
fn prove_advice_fits_the_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, doc) = tenant_and_document(dir.path());
    let (d, doc) = (data.as_str(), doc.as_str());
    let out = akte_in(
        dir.path(),
        &["--data-dir", d, "ingest", "--tenant", "t", doc, doc],
    );
    assert_eq!(code(&out), 0);
    // An entry that is not there: "no such entry", exit 6, no advice to checkpoint.
    let out = akte_in(
        dir.path(),
        &["--data-dir", d, "prove", "--tenant", "t", "--seq", "99"],
    );
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("no such entry"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("checkpoint"), "{}", stderr(&out));
    // An entry that is there but no checkpoint yet: then the advice is to sign one.
    let out = akte_in(
        dir.path(),
        &["--data-dir", d, "prove", "--tenant", "t", "--seq", "1"],
    );
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("akte checkpoint"), "{}", stderr(&out));
    let note = dir.path().join("held.note");
    let out = akte_in(
        dir.path(),
        &[
            "--data-dir",
            d,
            "--json",
            "checkpoint",
            "--tenant",
            "t",
            "--out",
            note.to_str().expect("utf-8"),
        ],
    );
    let v = json(&out);
    assert_eq!(v["tree_size"], 2);
    assert!(std::fs::read_to_string(&note)
        .expect("note")
        .starts_with("akte.local/t\n2\n"));
    let out = akte_in(
        dir.path(),
        &[
            "--data-dir",
            d,
            "--json",
            "prove",
            "--tenant",
            "t",
            "--seq",
            "1",
        ],
    );
    assert_eq!(json(&out)["verified"], true);
    // Offline results under --json are JSON objects.
    let out = akte_in(dir.path(), &["--data-dir", d, "--json", "stats"]);
    assert_eq!(json(&out)["tenants"][0]["entries"], 2);
    let out = akte_in(dir.path(), &["--data-dir", d, "stats"]);
    assert!(stdout(&out).starts_with("t: 2 entries"), "{}", stdout(&out));
}

#[test]
fn verify_consistency_tells_cannot_check_from_not_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    // Inputs that are not there: the question stays open (exit 2, an error on standard
    // error, JSON under --json), nothing claims the checkpoints are inconsistent.
    let out = akte_in(
        cwd,
        &["--json", "verify-consistency", "old", "new", "proof"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let e = json_error(&out);
    assert_eq!(e["reason"], "CANNOT_CHECK");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("old")),
        "{e}"
    );
    let out = akte_in(cwd, &["verify-consistency", "old", "new", "proof"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("akte: error: cannot check consistency: "),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("NOT CONSISTENT"), "{}", stdout(&out));

    // A signed note of a real store.
    let data = cwd.join("data");
    let d = data.to_str().expect("utf-8");
    assert_eq!(
        code(&akte_in(cwd, &["--data-dir", d, "tenant", "create", "t"])),
        0
    );
    let note = cwd.join("t.note");
    let n = note.to_str().expect("utf-8");
    let out = akte_in(
        cwd,
        &["--data-dir", d, "checkpoint", "--tenant", "t", "--out", n],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A bare note carries no key and none is given: cannot check.
    let proof = cwd.join("proof.txt");
    std::fs::write(&proof, b"").expect("write");
    let p = proof.to_str().expect("utf-8");
    let out = akte_in(cwd, &["--json", "verify-consistency", n, n, p]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert_eq!(json_error(&out)["reason"], "CANNOT_CHECK");
    // A proof that is no proof is a finding: exit 1, NOT CONSISTENT.
    std::fs::write(&proof, b"x\n").expect("write");
    let out = akte_in(cwd, &["verify-consistency", n, n, p]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("NOT CONSISTENT: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn gc_marks_unreferenced_content_keeps_recorded_content_and_checks_its_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, doc) = tenant_and_document(dir.path());
    let (d, doc) = (data.as_str(), doc.as_str());
    assert_eq!(
        code(&akte_in(
            dir.path(),
            &["--data-dir", d, "ingest", "--tenant", "t", doc]
        )),
        0
    );
    // An upload that was never recorded, as a failed write leaves it.
    {
        let store = akte_core::store::Store::open(
            akte_core::embedded::open(Path::new(d)).expect("open"),
            Default::default(),
        )
        .expect("store");
        let t = store.tenant("t").expect("tenant");
        t.put_content(&b"uploaded, never recorded"[..])
            .expect("put");
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["--data-dir", d, "--json", "gc"];
        args.extend_from_slice(extra);
        akte_in(dir.path(), &args)
    };
    let dry = run(&["--dry-run"]);
    assert_eq!(code(&dry), 0);
    let t = &json(&dry)["tenants"][0];
    assert_eq!(
        (t["listed"].as_u64(), t["unreferenced"].as_u64()),
        (Some(2), Some(1))
    );
    // The first run marks; the next one, within the grace period, still removes nothing.
    for (marked, waiting) in [(1, 1), (0, 1)] {
        let out = run(&[]);
        assert_eq!(code(&out), 0);
        let t = &json(&out)["tenants"][0];
        assert_eq!(t["newly_marked"].as_u64(), Some(marked), "{t}");
        assert_eq!(t["waiting"].as_u64(), Some(waiting), "{t}");
        assert_eq!(t["removed"].as_u64(), Some(0), "{t}");
    }
    // A grace period under an hour is refused: imports store content before recording it.
    let out = run(&["--grace-hours", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("grace-hours"), "{}", stderr(&out));
    let out = run(&["--tenant", "nope"]);
    assert_ne!(code(&out), 0);
    // The store still verifies: the recorded document's content is there.
    let out = akte_in(dir.path(), &["--data-dir", d, "verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn rebuild_index_on_a_database_needs_the_instances_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused before any connection is tried: the database named does not exist.
    let out = Command::new(env!("CARGO_BIN_EXE_akte"))
        .args(["rebuild-index"])
        .current_dir(dir.path())
        .env("AKTE_DATABASE", "postgres://akte@127.0.0.1:1/none")
        .env_remove("AKTE_DATA_DIR")
        .output()
        .expect("running akte");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--instances-stopped"),
        "{}",
        stderr(&out)
    );
}

/// Units, clearances, an object's access and access log, and custom field definitions
/// from the command line, each answer checked against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_custom_field_commands() {
    let env = Env::new().await;
    let mut f = fixture(&env, "kreis").await;
    let cli = Remote::new(&env, "kreis");
    let ok = |args: &[&str]| {
        let out = cli.run(args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        out
    };

    let amt = json(&ok(&["--json", "unit", "create", "--name", "Bauamt"]));
    let amt = amt["name"].as_str().expect("unit name").to_owned();
    let id = amt.rsplit('/').next().expect("id").to_owned();
    let sub = json(&ok(&[
        "--json", "unit", "create", "--name", "Hochbau", "--parent", &id,
    ]));
    assert_eq!(sub["parentUnit"], amt.as_str());
    let unit = json(&ok(&[
        "--json",
        "unit",
        "add-member",
        &id,
        "registrar:weber",
    ]));
    assert_eq!(unit["members"][0], "registrar:weber");
    let listed = stdout(&ok(&["unit", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].contains("Bauamt") && lines[0].contains("registrar:weber"));
    assert!(lines[1].contains("Hochbau") && lines[1].contains(amt.as_str()));
    assert!(lines[1].contains("Hochbau"));
    let unit = json(&ok(&[
        "--json",
        "unit",
        "remove-member",
        &id,
        "registrar:weber",
    ]));
    assert!(unit.get("members").is_none(), "{unit}");
    ok(&["unit", "add-member", &id, "registrar:weber"]);
    // The CLI's admin token acts in Bauamt too, or it could not see the file once Bauamt
    // leads it.
    ok(&["unit", "add-member", &id, "bootstrap-admin"]);

    let c = json(&ok(&[
        "--json",
        "clearance",
        "set",
        "clerk:schmidt",
        "vertraulich",
        "--reason",
        "Ü2",
    ]));
    assert_eq!(c["level"], "CONFIDENTIALITY_CONFIDENTIAL");
    let shown = stdout(&ok(&["clearance", "show", "clerk:schmidt"]));
    assert!(
        shown.contains("005 vertraulich") && shown.contains("Ü2"),
        "{shown}"
    );

    let file = f.file.name.clone();
    let a = json(&ok(&[
        "--json",
        "access",
        "lead-unit",
        &file,
        "--unit",
        &id,
    ]));
    assert_eq!(a["leadUnit"], amt.as_str());
    let a = json(&ok(&[
        "--json",
        "access",
        "share",
        &file,
        "--principal",
        "clerk:schmidt",
        "--mode",
        "write",
    ]));
    assert_eq!(a["shares"][0]["mode"], "SHARE_MODE_WRITE");
    let a = json(&ok(&["--json", "access", "level", &file, "nfd"]));
    assert_eq!(a["confidentiality"], "CONFIDENTIALITY_RESTRICTED");
    let served = f
        .registrar
        .access
        .get_access(pb::GetAccessRequest { name: file.clone() })
        .await
        .expect("get access")
        .into_inner();
    assert_eq!(
        json(&ok(&["--json", "access", "show", &file])),
        proto3_json(&served)
    );
    let a = json(&ok(&[
        "--json",
        "access",
        "unshare",
        &file,
        "--principal",
        "clerk:schmidt",
    ]));
    assert!(a.get("shares").is_none(), "{a}");
    // The registrar (now in Bauamt) reads the VS-NfD file: an access log entry.
    f.registrar
        .files
        .get_file(pb::GetFileRequest { name: file.clone() })
        .await
        .expect("get file");
    let log = stdout(&ok(&["access", "log", &file]));
    assert!(log.contains("registrar:weber\tread\tallowed"), "{log}");
    let out = cli.run(&["access", "share", &file, "--mode", "read"]);
    assert_eq!(code(&out), 2, "neither --unit nor --principal");

    let plan_unit = f.file.plan_unit.clone();
    let field = json(&ok(&[
        "--json",
        "field",
        "define",
        "verfahrensart",
        "--label",
        "Verfahrensart",
        "--type",
        "code",
        "--plan-unit",
        &plan_unit,
        "--applies-to",
        "file,case",
        "--codes",
        "Neubau,Umbau",
    ]));
    assert_eq!(field["name"], "tenants/kreis/customFields/verfahrensart");
    assert_eq!(field["allowedValues"][1], "Umbau");
    ok(&[
        "field",
        "define",
        "bescheidnummer",
        "--label",
        "Bescheidnummer",
        "--type",
        "text",
        "--document-type",
        "Bescheid",
    ]);
    let listed = stdout(&ok(&["field", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].contains("bescheidnummer") && lines[0].contains("document type Bescheid"));
    assert!(lines[1].contains("verfahrensart") && lines[1].contains("Neubau,Umbau"));
    // Values on files, typed by the definitions; a bad one is refused naming the field.
    let made = json(&ok(&[
        "--json",
        "file",
        "create",
        "--parent",
        &plan_unit,
        "--subject",
        "Umbau Rathaus",
        "--field",
        "verfahrensart=Umbau",
    ]));
    assert_eq!(made["customFields"][0]["codeValue"], "Umbau", "{made}");
    let out = cli.run(&[
        "file",
        "create",
        "--parent",
        &plan_unit,
        "--subject",
        "x",
        "--field",
        "verfahrensart=Abriss",
    ]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("custom_fields.verfahrensart"),
        "{}",
        stderr(&out)
    );
    let name = made["name"].as_str().expect("name");
    let changed = json(&ok(&[
        "--json",
        "file",
        "update",
        name,
        "--field",
        "verfahrensart=",
    ]));
    assert!(changed.get("customFields").is_none(), "{changed}");
    let doc = json(&ok(&[
        "--json",
        "document",
        "create",
        "--parent",
        name,
        "--subject",
        "Bescheid",
        "--document-type",
        "Bescheid",
        "--field",
        "bescheidnummer=B-7",
    ]));
    assert_eq!(doc["documentType"], "Bescheid");
    assert_eq!(doc["customFields"][0]["textValue"], "B-7");
    let out = cli.run(&[
        "field",
        "define",
        "x",
        "--label",
        "X",
        "--type",
        "colour",
        "--plan-unit",
        &plan_unit,
    ]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("--type"), "{}", stderr(&out));
}

/// `akte document create --file` makes the document with its first version in one call
/// (issue 20): inline up to 4 MiB, as a CreateDocuments stream above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_create_with_a_file_is_one_entry() {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let cli = Remote::new(&env, "bauamt");
    for (name, data) in [
        ("brief.txt", b"Sehr geehrte Damen und Herren\n".to_vec()),
        ("plan.pdf", support::bytes_of((4 << 20) + 100, 9)),
    ] {
        let path = cli.cwd.path().join(name);
        std::fs::write(&path, &data).expect("write");
        let out = cli.run(&[
            "--json",
            "document",
            "create",
            "--parent",
            &f.file.name,
            "--subject",
            name,
            "--comment",
            "Eingang",
            "--file",
            path.to_str().expect("utf-8"),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["versionCount"], 1, "{v}");
        let doc = v["name"].as_str().expect("name").to_owned();
        let version = f
            .clerk
            .documents
            .get_version(pb::GetVersionRequest {
                name: format!("{doc}/versions/1"),
            })
            .await
            .expect("version")
            .into_inner();
        assert_eq!(version.comment, "Eingang");
        assert_eq!(version.renditions[0].file_name, name);
        assert_eq!(
            version.renditions[0].sha256,
            akte_server::client::sha256(&data)
        );
        assert_eq!(
            version.created.as_ref().map(|c| c.journal_seq),
            v["created"]["journalSeq"]
                .as_str()
                .and_then(|s| s.parse().ok()),
            "the version is in the document's own entry"
        );
    }
}
