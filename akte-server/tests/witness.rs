//! Witnesses end to end: akted in-process, the `akte` binary as the archive's witness.
//!
//! The witness makes its key (`akte witness init`), an admin registers it (AddWitness),
//! and the witness cosigns the agency's checkpoints as the journal grows (`akte witness
//! cosign`, remote and offline); the daemon stores and serves the cosignatures. A fork
//! (a copy of the data directory that goes its own way, signed with the same key) is
//! refused by the witness, and every bad AddCosignature, AddWitness and wrong role is
//! refused by the daemon with its reason, changing nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use akte_core::keys::{SigningKeyPair, VerifierKey};
use akte_core::note::{cosign, Checkpoint, SignedNote};
use akte_server::client::{ClientTls, Clients};
use akte_server::config::ServerConfig;
use akte_server::error::{error_info, reason};
use akte_server::pb::akte::v1 as pb;
use akte_server::server::{start, Running};
use tonic::{Code, Status};

const TENANT: &str = "stadt-erfurt";

fn config(dir: &Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_listen = None;
    cfg
}

fn url(server: &Running) -> String {
    format!("http://{}", server.addr)
}

async fn client(server: &Running, token: &str) -> Clients {
    Clients::connect(&url(server), Some(token), &ClientTls::default())
        .await
        .expect("connect")
}

async fn token(admin: &mut Clients, principal: &str, roles: &[pb::Role]) -> String {
    admin
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: format!("tenants/{TENANT}"),
            principal: principal.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            description: String::new(),
            expire_time: None,
            org_units: Vec::new(),
        })
        .await
        .expect("create token")
        .into_inner()
        .secret
}

/// Appends `n` journal entries (plan units) with codes `{prefix}.{i}`.
async fn grow(registrar: &mut Clients, prefix: &str, n: usize) {
    for i in 0..n {
        registrar
            .plan
            .create_plan_unit(pb::CreatePlanUnitRequest {
                parent: format!("tenants/{TENANT}"),
                plan_unit: Some(pb::PlanUnit {
                    code: format!("{prefix}.{i}"),
                    title: format!("Einheit {prefix}.{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("plan unit");
    }
}

async fn new_checkpoint(c: &mut Clients) -> pb::Checkpoint {
    c.journal
        .create_checkpoint(pb::CreateCheckpointRequest {
            parent: format!("tenants/{TENANT}"),
        })
        .await
        .expect("checkpoint")
        .into_inner()
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>, code: Code, why: &str) {
    match r {
        Ok(v) => panic!("expected {code:?}/{why}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert_eq!(reason(&s), why, "status {s:?}");
            assert_eq!(error_info(&s).expect("ErrorInfo").domain, "akte.de");
        }
    }
}

/// Runs the `akte` binary with a clean environment.
fn akte(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_akte"))
        .args(args)
        .env_remove("AKTE_TOKEN")
        .env_remove("AKTE_TENANT")
        .env_remove("AKTE_SERVER")
        .env_remove("AKTE_LOG")
        .output()
        .expect("running akte");
    println!(
        "$ akte {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("akte killed by a signal")
}

struct Witness {
    key: PathBuf,
    state: PathBuf,
    verifier: String,
}

impl Witness {
    /// `akte witness cosign` against `server` as `token`; returns the run.
    fn cosign(&self, server: &Running, token: &str, extra: &[&str]) -> Output {
        let url = url(server);
        let mut args = vec![
            "--server",
            &url,
            "--token",
            token,
            "--tenant",
            TENANT,
            "witness",
            "cosign",
            "--key",
            self.key.to_str().unwrap(),
            "--state",
            self.state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        akte(&args)
    }

    fn kept_size(&self) -> u64 {
        let bytes = std::fs::read(self.state.join("checkpoint.note")).unwrap();
        let note = SignedNote::parse(&bytes).unwrap();
        Checkpoint::parse_body(&note.text).unwrap().size
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_tree(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_cosigns_a_growing_log_and_refuses_a_fork() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("agency");
    let server = start(config(&data)).await.expect("start");
    let admin_token = std::fs::read_to_string(server.bootstrap_token.clone().unwrap())
        .unwrap()
        .trim()
        .to_owned();
    let mut admin = client(&server, &admin_token).await;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: TENANT.into(),
        })
        .await
        .expect("tenant");
    let registrar_token = token(&mut admin, "registrar:weber", &[pb::Role::Registrar]).await;
    let archivist_token = token(&mut admin, "archivist:lang", &[pb::Role::Archivist]).await;
    let reader_token = token(&mut admin, "reader:kurz", &[pb::Role::Reader]).await;
    let mut registrar = client(&server, &registrar_token).await;
    let mut archivist = client(&server, &archivist_token).await;
    let mut reader = client(&server, &reader_token).await;
    let log_key = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: format!("tenants/{TENANT}"),
        })
        .await
        .unwrap()
        .into_inner()
        .verifier_key;

    // The archive makes its witness key; the verifier key is printed and in KEYFILE.pub.
    let key = work.path().join("zeuge.key");
    let out = akte(&[
        "witness",
        "init",
        "--name",
        "archiv.thueringen.de/zeuge",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    let verifier = std::fs::read_to_string(work.path().join("zeuge.key.pub"))
        .unwrap()
        .trim_end()
        .to_owned();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&verifier));
    assert_eq!(
        VerifierKey::parse(&verifier).unwrap().kind(),
        akte_core::keys::KeyKind::CosignatureV1
    );
    // A key is never overwritten.
    assert_ne!(
        code(&akte(&[
            "witness",
            "init",
            "--name",
            "x/y",
            "--out",
            key.to_str().unwrap()
        ])),
        0
    );
    let w = Witness {
        key,
        state: work.path().join("state-erfurt"),
        verifier: verifier.clone(),
    };

    // Registering: admin only; the key is checked.
    let add = |key: &str| pb::AddWitnessRequest {
        parent: format!("tenants/{TENANT}"),
        verifier_key: key.into(),
    };
    expect_err(
        archivist.journal.add_witness(add(&verifier)).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        admin.journal.add_witness(add("not a key")).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        admin.journal.add_witness(add(&log_key)).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    let registered = admin
        .journal
        .add_witness(add(&verifier))
        .await
        .expect("add witness")
        .into_inner();
    assert_eq!(registered.verifier_key, verifier);
    assert_eq!(registered.key_name, "archiv.thueringen.de/zeuge");
    // Again: the same witness, no error.
    assert_eq!(
        admin
            .journal
            .add_witness(add(&verifier))
            .await
            .unwrap()
            .into_inner(),
        registered
    );
    // Another key under the same name.
    let impostor = SigningKeyPair::generate("archiv.thueringen.de/zeuge").unwrap();
    expect_err(
        admin
            .journal
            .add_witness(add(&impostor.cosignature_verifier().to_string()))
            .await,
        Code::AlreadyExists,
        "ALREADY_EXISTS",
    );
    let listed = reader
        .journal
        .list_witnesses(pb::ListWitnessesRequest {
            parent: format!("tenants/{TENANT}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .witnesses;
    assert_eq!(listed, vec![registered.clone()]);

    // The journal grows; a checkpoint; the witness cosigns it. First use needs the log key.
    grow(&mut registrar, "1", 3).await;
    let first = new_checkpoint(&mut registrar).await;
    let out = w.cosign(&server, &archivist_token, &[]);
    assert_ne!(code(&out), 0, "no silent trust on first use");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pinned log key"));
    let out = w.cosign(&server, &archivist_token, &["--trust-log-key", &log_key]);
    assert_eq!(code(&out), 0);
    assert_eq!(w.kept_size(), first.tree_size);

    // The daemon serves it cosigned: latest, by size, and as the newest cosigned one.
    let served = reader
        .journal
        .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
            parent: format!("tenants/{TENANT}"),
            cosigned: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.tree_size, first.tree_size);
    assert_eq!(served.cosignatures.len(), 1);
    assert_eq!(served.cosignatures[0].verifier_key, w.verifier);
    let note = SignedNote::parse(&served.signed_note).unwrap();
    let wkey = VerifierKey::parse(&w.verifier).unwrap();
    let lkey = VerifierKey::parse(&log_key).unwrap();
    assert_eq!(note.verify(&[lkey.clone(), wkey.clone()]).unwrap().len(), 2);
    let by_size = reader
        .journal
        .get_checkpoint(pb::GetCheckpointRequest {
            name: format!("tenants/{TENANT}/checkpoints/{}", first.tree_size),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_size, served);

    // It grows again: the second cosignature needs (and checks) a consistency proof. The
    // witness asks for a fresh checkpoint itself this time.
    grow(&mut registrar, "2", 4).await;
    let out = w.cosign(&server, &archivist_token, &["--new-checkpoint"]);
    assert_eq!(code(&out), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "consistent with the kept checkpoint of size {}",
            first.tree_size
        )),
        "{stdout}"
    );
    let second = w.kept_size();
    assert_eq!(second, first.tree_size + 4);
    let served = reader
        .journal
        .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
            parent: format!("tenants/{TENANT}"),
            cosigned: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.tree_size, second);
    // Cosigning the same checkpoint again is fine and changes nothing on the server.
    assert_eq!(code(&w.cosign(&server, &archivist_token, &[])), 0);
    let stored_again = reader
        .journal
        .get_checkpoint(pb::GetCheckpointRequest {
            name: format!("tenants/{TENANT}/checkpoints/{second}"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored_again.signed_note, served.signed_note,
        "first cosignature kept"
    );
    assert_eq!(w.kept_size(), second);

    // A fork: stop the agency's server, copy its data directory, and let both copies go
    // on with different entries, both signing with the same tenant key.
    drop((admin, registrar, archivist, reader));
    server.shutdown().await.expect("shutdown");
    let fork_dir = work.path().join("fork");
    copy_tree(&data, &fork_dir);
    let server = start(config(&data)).await.expect("restart");
    let fork = start(config(&fork_dir)).await.expect("fork");
    let mut registrar = client(&server, &registrar_token).await;
    let mut fork_registrar = client(&fork, &registrar_token).await;
    grow(&mut registrar, "3", 2).await;
    grow(&mut fork_registrar, "4", 3).await;
    let genuine = new_checkpoint(&mut registrar).await;
    let forked = new_checkpoint(&mut fork_registrar).await;
    assert_eq!(genuine.verifier_key, forked.verifier_key, "same key");
    assert_ne!(genuine.tree_size, forked.tree_size);

    // The witness cosigns the genuine one, then sees the fork: refused, exit 1, both sizes
    // and roots named, nothing stored on the fork, the kept checkpoint unchanged.
    assert_eq!(code(&w.cosign(&server, &archivist_token, &[])), 0);
    assert_eq!(w.kept_size(), genuine.tree_size);
    let out = w.cosign(&fork, &archivist_token, &[]);
    assert_eq!(code(&out), 1, "refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REFUSED"), "{stderr}");
    assert!(
        stderr.contains(&format!("size {}", genuine.tree_size)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("size {}", forked.tree_size)),
        "{stderr}"
    );
    assert_eq!(w.kept_size(), genuine.tree_size);
    let mut fork_reader = client(&fork, &archivist_token).await;
    let fork_cp = fork_reader
        .journal
        .get_checkpoint(pb::GetCheckpointRequest {
            name: format!("tenants/{TENANT}/checkpoints/{}", forked.tree_size),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        fork_cp.cosignatures.is_empty(),
        "the fork got no cosignature"
    );
    let mut archivist = client(&server, &archivist_token).await;
    drop(fork_reader);
    fork.shutdown().await.expect("fork shutdown");

    // Offline: a second witness state, fed from files the agency hands over.
    let offline_state = work.path().join("state-offline");
    let cp1 = work.path().join("cp1.note");
    std::fs::write(&cp1, &first.signed_note).unwrap();
    let cosigned1 = work.path().join("cosigned1.note");
    let offline = |cp: &Path, proof: Option<&Path>, out_file: &Path, trust: bool| {
        let mut args = vec![
            "witness".to_owned(),
            "cosign".into(),
            "--key".into(),
            w.key.display().to_string(),
            "--state".into(),
            offline_state.display().to_string(),
            "--checkpoint".into(),
            cp.display().to_string(),
            "--out".into(),
            out_file.display().to_string(),
        ];
        if let Some(p) = proof {
            args.extend(["--proof".into(), p.display().to_string()]);
        }
        if trust {
            args.extend(["--trust-log-key".into(), log_key.clone()]);
        }
        akte(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(code(&offline(&cp1, None, &cosigned1, true)), 0);
    let note1 = std::fs::read(&cosigned1).unwrap();
    assert_eq!(
        SignedNote::parse(&note1)
            .unwrap()
            .verify(std::slice::from_ref(&wkey))
            .unwrap()
            .len(),
        1
    );
    // The agency's current checkpoint and the proof file from the CLI.
    let current = new_checkpoint(&mut archivist).await;
    let cp2 = work.path().join("cp2.note");
    std::fs::write(&cp2, &current.signed_note).unwrap();
    let proof = work.path().join("proof.txt");
    let url_s = url(&server);
    let out = akte(&[
        "--server",
        &url_s,
        "--token",
        &archivist_token,
        "--tenant",
        TENANT,
        "journal",
        "consistency",
        &first.tree_size.to_string(),
        &current.tree_size.to_string(),
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    // Without the proof: refused to proceed; with it: cosigned.
    let cosigned2 = work.path().join("cosigned2.note");
    assert_ne!(code(&offline(&cp2, None, &cosigned2, false)), 0);
    assert!(!cosigned2.exists());
    assert_eq!(code(&offline(&cp2, Some(&proof), &cosigned2, false)), 0);
    // The archive hands the cosigned note back. The journal has not grown since the
    // genuine checkpoint, which this witness cosigned remotely already: the daemon accepts
    // the note and keeps the first cosignature.
    let out = akte(&[
        "--server",
        &url_s,
        "--token",
        &archivist_token,
        "--tenant",
        TENANT,
        "--json",
        "journal",
        "add-cosignature",
        cosigned2.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    let stored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The proto3 JSON mapping: lowerCamelCase names, uint64 as a string.
    assert_eq!(stored["treeSize"], current.tree_size.to_string());
    assert_eq!(
        stored["cosignatures"][0]["verifierKey"],
        w.verifier.as_str()
    );
    // The admin's view of the witnesses, through the CLI.
    let out = akte(&[
        "--server",
        &url_s,
        "--token",
        &admin_token,
        "--tenant",
        TENANT,
        "admin",
        "witnesses",
    ]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&w.verifier));
    // Going backwards offline (the old checkpoint again): refused with exit 1.
    let back = work.path().join("back.note");
    assert_eq!(code(&offline(&cp1, None, &back, false)), 1);
    assert!(!back.exists());

    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_cosignature_refuses_bad_input_and_wrong_roles() {
    let work = tempfile::tempdir().unwrap();
    let server = start(config(work.path())).await.expect("start");
    let admin_token = std::fs::read_to_string(server.bootstrap_token.clone().unwrap())
        .unwrap()
        .trim()
        .to_owned();
    let mut admin = client(&server, &admin_token).await;
    for t in [TENANT, "anderes-amt"] {
        admin
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: t.into(),
            })
            .await
            .expect("tenant");
    }
    let registrar_token = token(&mut admin, "registrar:weber", &[pb::Role::Registrar]).await;
    let archivist_token = token(&mut admin, "archivist:lang", &[pb::Role::Archivist]).await;
    let mut registrar = client(&server, &registrar_token).await;
    let mut archivist = client(&server, &archivist_token).await;
    let witness = SigningKeyPair::generate("archiv.thueringen.de/zeuge").unwrap();
    admin
        .journal
        .add_witness(pb::AddWitnessRequest {
            parent: format!("tenants/{TENANT}"),
            verifier_key: witness.verifier().to_string(), // type 0x01 is accepted too
        })
        .await
        .expect("add witness");
    grow(&mut registrar, "1", 2).await;
    let cp_msg = new_checkpoint(&mut registrar).await;
    let note = SignedNote::parse(&cp_msg.signed_note).unwrap();
    let cp = Checkpoint::parse_body(&note.text).unwrap();
    let with = |sig| {
        let mut n = note.clone();
        n.push_signature(sig).unwrap();
        n.to_bytes()
    };
    let req = |bytes: Vec<u8>| pb::AddCosignatureRequest {
        parent: format!("tenants/{TENANT}"),
        cosigned_note: bytes.into(),
    };
    let good = with(cosign(&cp, &witness, 1_767_225_600).unwrap());

    // Roles: a registrar may sign checkpoints but not store cosignatures.
    expect_err(
        registrar.journal.add_cosignature(req(good.clone())).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // Another tenant's resource is not found for a tenant-bound token.
    expect_err(
        archivist
            .journal
            .add_cosignature(pb::AddCosignatureRequest {
                parent: "tenants/anderes-amt".into(),
                cosigned_note: good.clone().into(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // Bad input.
    let stranger = SigningKeyPair::generate("archiv.example/fremd").unwrap();
    expect_err(
        archivist
            .journal
            .add_cosignature(req(with(cosign(&cp, &stranger, 1).unwrap())))
            .await,
        Code::FailedPrecondition,
        "WITNESS_UNKNOWN",
    );
    let mut bad = cosign(&cp, &witness, 1).unwrap();
    bad.signature[20] ^= 2;
    expect_err(
        archivist.journal.add_cosignature(req(with(bad))).await,
        Code::InvalidArgument,
        "COSIGNATURE_INVALID",
    );
    let mut other_root = cp.clone();
    other_root.root.0[5] ^= 1;
    let mut forged = other_root.sign(&stranger).unwrap();
    forged
        .push_signature(cosign(&other_root, &witness, 1).unwrap())
        .unwrap();
    expect_err(
        archivist
            .journal
            .add_cosignature(req(forged.to_bytes()))
            .await,
        Code::InvalidArgument,
        "CHECKPOINT_MISMATCH",
    );
    let mut unstored = cp.clone();
    unstored.size = 1;
    let mut n = unstored.sign(&stranger).unwrap();
    n.push_signature(cosign(&unstored, &witness, 1).unwrap())
        .unwrap();
    expect_err(
        archivist.journal.add_cosignature(req(n.to_bytes())).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    for bytes in [Vec::new(), b"garbage".to_vec(), note.to_bytes()] {
        expect_err(
            archivist.journal.add_cosignature(req(bytes)).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
    }
    // Nothing of it was stored.
    expect_err(
        archivist
            .journal
            .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
                parent: format!("tenants/{TENANT}"),
                cosigned: true,
            })
            .await,
        Code::NotFound,
        "NO_CHECKPOINT",
    );
    // The good one, twice.
    for _ in 0..2 {
        let stored = archivist
            .journal
            .add_cosignature(req(good.clone()))
            .await
            .expect("stored")
            .into_inner();
        assert_eq!(stored.signed_note.as_ref(), good.as_slice());
        assert_eq!(stored.cosignatures.len(), 1);
        assert_eq!(
            stored.cosignatures[0].cosign_time.as_ref().unwrap().seconds,
            1_767_225_600
        );
    }

    // Checkpoint names are checked.
    for bad in [
        "tenants/stadt-erfurt/checkpoints/01",
        "tenants/stadt-erfurt/checkpoints/x",
        "tenants/stadt-erfurt/entries/1",
    ] {
        expect_err(
            archivist
                .journal
                .get_checkpoint(pb::GetCheckpointRequest { name: bad.into() })
                .await,
            Code::InvalidArgument,
            "INVALID_NAME",
        );
    }
    expect_err(
        archivist
            .journal
            .get_checkpoint(pb::GetCheckpointRequest {
                name: format!("tenants/{TENANT}/checkpoints/1"),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Removing the witness (admin only) withdraws its cosignatures from what is served.
    let name = format!(
        "tenants/{TENANT}/witnesses/{}",
        witness.cosignature_verifier().fingerprint()
    );
    expect_err(
        archivist
            .journal
            .delete_witness(pb::DeleteWitnessRequest { name: name.clone() })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        admin
            .journal
            .delete_witness(pb::DeleteWitnessRequest {
                name: format!("tenants/{TENANT}/witnesses/zeuge"),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    admin
        .journal
        .delete_witness(pb::DeleteWitnessRequest { name: name.clone() })
        .await
        .expect("delete witness");
    expect_err(
        admin
            .journal
            .delete_witness(pb::DeleteWitnessRequest { name })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let served = archivist
        .journal
        .get_checkpoint(pb::GetCheckpointRequest {
            name: format!("tenants/{TENANT}/checkpoints/{}", cp.size),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(served.cosignatures.is_empty());
    assert_eq!(
        served.signed_note.as_ref(),
        good.as_slice(),
        "the line stays"
    );
    expect_err(
        archivist.journal.add_cosignature(req(good)).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    server.shutdown().await.expect("shutdown");
}
