//! Long-running operations through `google.longrunning.Operations`: a caller starts one,
//! goes away and comes back; tenants and roles wall operations off like any resource; they
//! survive a restart, and one that a stop interrupted ends OPERATION_INTERRUPTED.

mod support;

use akte_server::client::{unpack, wait_operation};
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::longrunning as lro;
use prost::Message;
use support::{add_version, expect_err, expect_status, fixture, Env, R};
use tonic::Code;

fn metadata(op: &lro::Operation) -> pb::OperationMetadata {
    pb::OperationMetadata::decode(op.metadata.as_ref().expect("metadata").value.as_slice())
        .expect("OperationMetadata")
}

fn get(name: &str) -> lro::GetOperationRequest {
    lro::GetOperationRequest { name: name.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_can_go_away_and_come_back() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    add_version(&mut f.clerk, &f.doc.name, b"%PDF Bauantrag").await?;
    let name = {
        // Started on one connection, which is then dropped.
        let mut arch = env
            .as_role("bauamt", "archiv:roth", &[pb::Role::Archivist])
            .await;
        let op = arch
            .verification
            .verify_tenant(pb::VerifyTenantRequest {
                name: f.tenant.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(
            op.name.starts_with("tenants/bauamt/operations/"),
            "{}",
            op.name
        );
        let m = metadata(&op);
        assert_eq!(
            (m.verb.as_str(), m.target.as_str(), m.principal.as_str()),
            ("verify", "tenants/bauamt", "archiv:roth")
        );
        assert!(m.create_time.is_some());
        op.name
    };
    // Another connection, another token of the same role, later.
    let mut admin = env.as_role("bauamt", "admin:it", &[pb::Role::Admin]).await;
    let op = admin
        .operations
        .wait_operation(lro::WaitOperationRequest {
            name: name.clone(),
            timeout: None,
        })
        .await?
        .into_inner();
    if !op.done {
        // Waited 30 s without the verification finishing: wait on.
        wait_operation(&mut admin.operations, op).await?;
    }
    let op = admin
        .operations
        .get_operation(get(&name))
        .await?
        .into_inner();
    assert!(op.done);
    let m = metadata(&op);
    assert!(m.end_time.is_some());
    assert_eq!(m.unit, "entries");
    assert_eq!(m.processed, m.total);
    let report: pb::VerificationReport = match &op.result {
        Some(lro::operation::Result::Response(any)) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/akte.v1.VerificationReport"
            );
            unpack(any)?
        }
        other => panic!("expected a response, got {other:?}"),
    };
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(report.tenant, "tenants/bauamt");
    // Cancelling a finished operation changes nothing.
    admin
        .operations
        .cancel_operation(lro::CancelOperationRequest { name: name.clone() })
        .await?;
    let again = admin
        .operations
        .get_operation(get(&name))
        .await?
        .into_inner();
    assert_eq!(again.result, op.result);

    // Listed with filters, and paged.
    let list = |filter: &str| lro::ListOperationsRequest {
        name: "tenants/bauamt".into(),
        filter: filter.into(),
        ..Default::default()
    };
    let all = admin
        .operations
        .list_operations(list(""))
        .await?
        .into_inner();
    assert_eq!(all.operations.len(), 1);
    for (filter, n) in [
        ("done = true", 1),
        ("done = false", 0),
        ("verb = \"verify\"", 1),
        ("verb = transfer", 0),
        ("verb != transfer AND done = true", 1),
    ] {
        let got = admin.operations.list_operations(list(filter)).await?;
        assert_eq!(got.into_inner().operations.len(), n, "{filter}");
    }
    expect_err(
        admin
            .operations
            .list_operations(list("state = RUNNING"))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );

    // Forgotten on request.
    admin
        .operations
        .delete_operation(lro::DeleteOperationRequest { name: name.clone() })
        .await?;
    expect_err(
        admin.operations.get_operation(get(&name)).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_respect_tenants_and_roles() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    env.tenant("andere").await;
    let mut arch = env
        .as_role("bauamt", "archiv:roth", &[pb::Role::Archivist])
        .await;
    let op = arch
        .verification
        .verify_tenant(pb::VerifyTenantRequest {
            name: f.tenant.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    wait_operation(&mut arch.operations, op.clone()).await?;

    // A clerk may not verify, so it does not see verifications either.
    expect_err(
        f.clerk.operations.get_operation(get(&op.name)).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        f.clerk
            .operations
            .cancel_operation(lro::CancelOperationRequest {
                name: op.name.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let listed = f
        .clerk
        .operations
        .list_operations(lro::ListOperationsRequest {
            name: "tenants/bauamt".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed.operations.is_empty());

    // Another tenant's admin: not found, under either tenant's name.
    let mut other = env.as_role("andere", "admin:x", &[pb::Role::Admin]).await;
    expect_err(
        other.operations.get_operation(get(&op.name)).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let moved = op.name.replace("tenants/bauamt/", "tenants/andere/");
    expect_err(
        other.operations.get_operation(get(&moved)).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        other
            .operations
            .list_operations(lro::ListOperationsRequest {
                name: "tenants/bauamt".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        other.operations.get_operation(get("operations/x")).await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    // An operation that never was.
    expect_err(
        arch.operations
            .get_operation(get(
                "tenants/bauamt/operations/00000000-0000-4000-8000-000000000001",
            ))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // The method's own role check comes first: a clerk cannot start a verification.
    expect_err(
        f.clerk
            .verification
            .verify_tenant(pb::VerifyTenantRequest {
                name: f.tenant.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_survive_a_restart_and_interrupted_ones_say_so() -> R<()> {
    let env = Env::new().await;
    fixture(&env, "bauamt").await;
    let mut admin = env.admin().await;
    let op = admin
        .verification
        .verify_tenant(pb::VerifyTenantRequest {
            name: "tenants/bauamt".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    wait_operation(&mut admin.operations, op.clone()).await?;
    let before = admin
        .operations
        .get_operation(get(&op.name))
        .await?
        .into_inner();
    drop(admin);

    // The server stops; a transfer was running when it did (written as a crash leaves it).
    let dir = env.dir.path().to_owned();
    let env = {
        let Env {
            dir: d,
            server,
            admin,
        } = env;
        server.shutdown().await?;
        let running = lro::Operation {
            name: "tenants/bauamt/operations/7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60".into(),
            metadata: Some(akte_server::operations::pack(
                "akte.v1.OperationMetadata",
                &pb::OperationMetadata {
                    verb: "transfer".into(),
                    target: "tenants/bauamt/disposalProcesses/x".into(),
                    ..Default::default()
                },
            )),
            done: false,
            result: None,
        };
        match support::database(&dir) {
            // On a shared backend: the record of an instance that stopped writing it.
            Some(db) => {
                use akte_core::backend::Backend as _;
                let options = akte_postgres::PgOptions {
                    seal_key: db.seal_key.clone(),
                    ..Default::default()
                };
                let backend = akte_postgres::PgBackend::connect(&db.url, options)?;
                let id = uuid::Uuid::parse_str("7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60")?;
                backend.installation_meta().put(
                    &akte_server::operations::blob_name("bauamt", id),
                    &akte_server::operations::stored_record(&running, 0, 5000),
                    false,
                )?;
            }
            None => std::fs::write(
                dir.join("operations/bauamt/7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60.op"),
                running.encode_to_vec(),
            )?,
        }
        let server = akte_server::server::start(support::config(d.path())).await?;
        Env {
            dir: d,
            server,
            admin,
        }
    };
    let mut admin = env.admin().await;
    let after = admin
        .operations
        .get_operation(get(&op.name))
        .await?
        .into_inner();
    assert_eq!(after, before, "a finished operation is served as before");
    let interrupted = admin
        .operations
        .get_operation(get(
            "tenants/bauamt/operations/7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60",
        ))
        .await?
        .into_inner();
    assert!(interrupted.done);
    let Some(lro::operation::Result::Error(e)) = &interrupted.result else {
        panic!("expected an error, got {interrupted:?}");
    };
    let status = akte_server::client::operation_error(e);
    expect_status(&status, Code::Aborted, "OPERATION_INTERRUPTED");
    assert!(status.message().contains("resend"), "{}", status.message());
    Ok(())
}
