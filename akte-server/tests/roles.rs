//! The server against the table of roles and operations (`akte_core::access`): for every
//! role and every operation, one call that is that operation is refused PERMISSION_DENIED
//! exactly when the table says the role may not do it.

mod support;

use akte_core::access::{Operation, Role};
use akte_server::client::Clients;
use akte_server::pb::akte::v1 as pb;
use support::{fixture, Env, Fixture};
use tonic::Code;

fn pb_role(r: Role) -> pb::Role {
    match r {
        Role::Reader => pb::Role::Reader,
        Role::Clerk => pb::Role::Clerk,
        Role::Registrar => pb::Role::Registrar,
        Role::Archivist => pb::Role::Archivist,
        Role::Admin => pb::Role::Admin,
    }
}

/// Makes one call that is `op`; returns its status code (OK when it succeeded).
async fn attempt(c: &mut Clients, f: &Fixture, op: Operation, n: usize) -> Code {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    match op {
        Operation::Read => code(
            c.files
                .get_file(pb::GetFileRequest {
                    name: f.file.name.clone(),
                })
                .await
                .map(drop),
        ),
        Operation::FileDocuments => code(
            c.documents
                .create_document(pb::CreateDocumentRequest {
                    parent: f.file.name.clone(),
                    document: Some(pb::Document {
                        subject: format!("Vermerk {n}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Operation::KeepFiles => code(
            c.plan
                .create_plan_unit(pb::CreatePlanUnitRequest {
                    parent: f.tenant.clone(),
                    plan_unit: Some(pb::PlanUnit {
                        code: format!("700.{n}"),
                        title: "Sonstiges".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Operation::SignCheckpoint => code(
            c.journal
                .create_checkpoint(pb::CreateCheckpointRequest {
                    parent: f.tenant.clone(),
                })
                .await
                .map(drop),
        ),
        Operation::Verify => code(
            c.verification
                .verify_tenant(pb::VerifyTenantRequest {
                    name: f.tenant.clone(),
                    incremental: true,
                    skip_content: true,
                })
                .await
                .map(drop),
        ),
        Operation::Archive => code(
            c.holds
                .place_hold(pb::PlaceHoldRequest {
                    object: f.file.name.clone(),
                    reason: format!("Prüfung {n}"),
                    reference: String::new(),
                })
                .await
                .map(drop),
        ),
        Operation::Administer => code(
            c.tenants
                .list_tokens(pb::ListTokensRequest {
                    parent: f.tenant.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_may_do_exactly_what_the_table_says() {
    let env = Env::new().await;
    let f = fixture(&env, "bauamt").await;
    let mut n = 0;
    for role in Role::ALL {
        let mut c = env
            .as_role("bauamt", &format!("{}:test", role.name()), &[pb_role(role)])
            .await;
        for op in Operation::ALL {
            n += 1;
            let got = attempt(&mut c, &f, op, n).await;
            if role.may(op) {
                assert_eq!(got, Code::Ok, "{role:?} may {op:?}");
            } else {
                assert_eq!(got, Code::PermissionDenied, "{role:?} may not {op:?}");
            }
        }
    }
    env.server.shutdown().await.expect("shutdown");
}
