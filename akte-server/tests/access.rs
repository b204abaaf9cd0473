//! Access control over gRPC: organisational units, lead units, shares, confidentiality
//! levels with clearances, tokens bound to units, and the access log, against akted.
//!
//! The matrix: principals (role × unit membership × clearance) against three files (led
//! by Personal at VS-NfD, led by Bauamt, led by no unit) and every way of reaching them:
//! get, listing, search, history, versions, download, journal entry, inclusion proof,
//! export and disposal. What a principal may not see is NOT_FOUND, and absent from
//! listings, search and the journal listing; page tokens do not carry its id.

mod support;

use akte_server::client::Clients;
use akte_server::pb::akte::v1 as pb;
use base64::Engine as _;
use support::{add_version, expect_err, Env};
use tonic::Code;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const T: &str = "tenants/stadt";

/// One of the three files with its document, version and the journal entry that created
/// the document.
#[derive(Clone)]
struct Obj {
    label: &'static str,
    file: pb::File,
    doc: pb::Document,
    version: pb::Version,
    doc_seq: u64,
}

async fn token(env: &Env, principal: &str, roles: &[pb::Role], units: &[&str]) -> Clients {
    let secret = env
        .admin()
        .await
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: T.into(),
            principal: principal.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            org_units: units.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        })
        .await
        .expect("create token")
        .into_inner()
        .secret;
    env.client(&secret).await
}

async fn unit(admin: &mut Clients, name: &str, parent: &str) -> R<String> {
    Ok(admin
        .access
        .create_org_unit(pb::CreateOrgUnitRequest {
            parent: T.into(),
            org_unit: Some(pb::OrgUnit {
                display_name: name.into(),
                parent_unit: parent.into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .name)
}

async fn member(admin: &mut Clients, unit: &str, principal: &str) -> R<()> {
    admin
        .access
        .add_org_unit_member(pb::AddOrgUnitMemberRequest {
            name: unit.into(),
            principal: principal.into(),
        })
        .await?;
    Ok(())
}

async fn make(reg: &mut Clients, plan_unit: &str, label: &'static str) -> R<Obj> {
    let file = reg
        .files
        .create_file(pb::CreateFileRequest {
            parent: plan_unit.into(),
            file: Some(pb::File {
                subject: format!("Akte {label}"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let doc = reg
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.name.clone(),
            document: Some(pb::Document {
                subject: format!("Antrag {label}"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let version = add_version(reg, &doc.name, label.as_bytes()).await?;
    let history = reg
        .history
        .list_history(pb::ListHistoryRequest {
            parent: doc.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Obj {
        label,
        file,
        doc,
        version,
        doc_seq: history.entries[0].journal_seq,
    })
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.err().map_or(Code::Ok, |s| s.code())
}

async fn all_files(c: &mut Clients, plan_unit: &str) -> R<(Vec<String>, Vec<String>)> {
    let (mut names, mut tokens) = (Vec::new(), Vec::new());
    let mut token = String::new();
    loop {
        let p = c
            .files
            .list_files(pb::ListFilesRequest {
                parent: plan_unit.into(),
                page_size: 1,
                page_token: token,
            })
            .await?
            .into_inner();
        names.extend(p.files.into_iter().map(|f| f.name));
        if p.next_page_token.is_empty() {
            return Ok((names, tokens));
        }
        tokens.push(p.next_page_token.clone());
        token = p.next_page_token;
    }
}

/// The bytes inside a page token (its outer and inner base64 undone, as far as they go).
fn token_bytes(token: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let outer = b64.decode(token).unwrap_or_default();
    let mut out = outer.clone();
    // Version byte and 16 bytes of MAC, then the records model's own (base64) cursor.
    if let Some(inner) = outer.get(17..) {
        if let Ok(s) = std::str::from_utf8(inner) {
            out.extend(b64.decode(s).unwrap_or_default());
        }
    }
    out
}

/// Every way of reaching `o`, each as the code it answers (OK: reached; listings and
/// search: OK if the object is in the result, NOT_FOUND if it is absent).
async fn reach(c: &mut Clients, plan_unit: &str, o: &Obj) -> Vec<(&'static str, Code)> {
    let mut out = Vec::new();
    let present = |found: bool| if found { Code::Ok } else { Code::NotFound };
    out.push((
        "GetFile",
        code(
            c.files
                .get_file(pb::GetFileRequest {
                    name: o.file.name.clone(),
                })
                .await,
        ),
    ));
    out.push((
        "GetDocument",
        code(
            c.documents
                .get_document(pb::GetDocumentRequest {
                    name: o.doc.name.clone(),
                })
                .await,
        ),
    ));
    let listed = all_files(c, plan_unit).await.expect("list files").0;
    out.push(("ListFiles", present(listed.contains(&o.file.name))));
    out.push((
        "ListDocuments",
        code(
            c.documents
                .list_documents(pb::ListDocumentsRequest {
                    parent: o.file.name.clone(),
                    ..Default::default()
                })
                .await,
        ),
    ));
    let found = c
        .search
        .search(pb::SearchRequest {
            parent: T.into(),
            subject_words: format!("antrag {}", o.label),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .results;
    out.push(("Search", present(!found.is_empty())));
    out.push((
        "ListHistory",
        code(
            c.history
                .list_history(pb::ListHistoryRequest {
                    parent: o.doc.name.clone(),
                    ..Default::default()
                })
                .await,
        ),
    ));
    out.push((
        "ListVersions",
        code(
            c.documents
                .list_versions(pb::ListVersionsRequest {
                    parent: o.doc.name.clone(),
                    ..Default::default()
                })
                .await,
        ),
    ));
    let download = async {
        let mut s = c
            .documents
            .download_rendition(pb::DownloadRenditionRequest {
                name: o.version.renditions[0].name.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    };
    out.push(("DownloadRendition", code(download.await)));
    out.push((
        "GetEntry",
        code(
            c.journal
                .get_entry(pb::GetEntryRequest {
                    name: format!("{T}/entries/{}", o.doc_seq),
                })
                .await,
        ),
    ));
    let entries = c
        .journal
        .list_entries(pb::ListEntriesRequest {
            parent: T.into(),
            start_seq: o.doc_seq,
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list entries")
        .into_inner()
        .entries;
    out.push((
        "ListEntries",
        present(entries.iter().any(|e| e.seq == o.doc_seq)),
    ));
    out.push((
        "GetInclusionProof",
        code(
            c.journal
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    parent: T.into(),
                    seq: o.doc_seq,
                    tree_size: 0,
                })
                .await,
        ),
    ));
    out
}

/// Export and disposal (registrars): NOT_FOUND for a hidden file, anything else for a
/// visible one (an open file cannot be destroyed, but that is found out later).
async fn dispose(c: &mut Clients, o: &Obj) -> Vec<(&'static str, bool)> {
    let export = async {
        let mut s = c
            .migration
            .export_handover(pb::ExportHandoverRequest {
                parent: T.into(),
                files: vec![o.file.name.clone()],
                receiver: Some(pb::Agency {
                    code: "X".into(),
                    name: "Andere Behörde".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    };
    let export = code(export.await);
    let destroy = code(
        c.disposal
            .destroy(pb::DestroyRequest {
                parent: T.into(),
                files: vec![o.file.name.clone()],
                legal_basis: "§ 18 ThürEGovG".into(),
                authorised_by: "Amtsleitung".into(),
            })
            .await,
    );
    vec![
        ("ExportHandover", export != Code::NotFound),
        ("Destroy", destroy != Code::NotFound),
    ]
}

#[tokio::test]
async fn the_access_matrix_over_grpc() -> R<()> {
    let env = Env::new().await;
    env.tenant("stadt").await;
    env.tenant("andere").await;
    let mut admin = env.admin().await;
    let mut reg = env
        .as_role("stadt", "registrar:weber", &[pb::Role::Registrar])
        .await;
    let plan = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "100".into(),
                title: "Allgemeines".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    let p = make(&mut reg, &plan, "personal").await?;
    let b = make(&mut reg, &plan, "bau").await?;
    let o = make(&mut reg, &plan, "offen").await?;
    // Inclusion proofs are against the latest checkpoint.
    reg.journal
        .create_checkpoint(pb::CreateCheckpointRequest { parent: T.into() })
        .await?;

    // Hauptamt with Personal and Bauamt below it.
    let amt = unit(&mut admin, "Hauptamt", "").await?;
    let personal = unit(&mut admin, "Personal", &amt).await?;
    let bauamt = unit(&mut admin, "Bauamt", &amt).await?;
    for (u, who) in [
        (&personal, "clerk:pers"),
        (&personal, "clerk:pers-offen"),
        (&personal, "registrar:pers"),
        (&bauamt, "clerk:bau"),
        (&bauamt, "registrar:bau"),
        (&amt, "reader:amtsleitung"),
    ] {
        member(&mut admin, u, who).await?;
    }
    // clerk:pers-offen is cleared for open objects only.
    admin
        .access
        .set_clearance(pb::SetClearanceRequest {
            parent: T.into(),
            principal: "clerk:pers-offen".into(),
            level: pb::Confidentiality::Open as i32,
            reason: "keine Verpflichtung".into(),
        })
        .await?;
    // Lead units, a read share by name, and VS-NfD on the personnel file.
    for (obj, lead) in [(&p, &personal), (&b, &bauamt)] {
        reg.access
            .set_lead_unit(pb::SetLeadUnitRequest {
                name: obj.file.name.clone(),
                lead_unit: lead.clone(),
                reason: String::new(),
            })
            .await?;
    }
    let access = admin
        .access
        .get_access(pb::GetAccessRequest {
            name: o.doc.name.clone(),
        })
        .await?
        .into_inner();
    assert!(access.effective_lead_units.is_empty());
    // The registrar who set the lead unit is in no unit: the file is gone for it now.
    expect_err(
        reg.files
            .get_file(pb::GetFileRequest {
                name: p.file.name.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let mut reg_pers = token(&env, "registrar:pers", &[pb::Role::Registrar], &[]).await;
    reg_pers
        .access
        .update_share(pb::UpdateShareRequest {
            name: p.file.name.clone(),
            share: Some(pb::Share {
                principal: "reader:beteiligt".into(),
                mode: pb::ShareMode::Read as i32,
                ..Default::default()
            }),
            reason: "Beteiligung".into(),
        })
        .await?;
    let access = reg_pers
        .access
        .set_confidentiality(pb::SetConfidentialityRequest {
            name: p.file.name.clone(),
            confidentiality: pb::Confidentiality::Restricted as i32,
            reason: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(access.lead_unit, personal);
    assert_eq!(access.shares.len(), 1);
    // The document inherits the level and the lead unit.
    let access = reg_pers
        .access
        .get_access(pb::GetAccessRequest {
            name: p.doc.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        access.effective_confidentiality,
        pb::Confidentiality::Restricted as i32
    );
    assert_eq!(access.confidentiality, pb::Confidentiality::Open as i32);
    assert_eq!(access.effective_lead_units, vec![personal.clone()]);

    // The principals of the matrix: (label, role, units of the token, sees P, B, O).
    let rows: Vec<(&str, Clients, [bool; 3])> = vec![
        (
            "clerk:pers (Clerk, member of Personal)",
            token(&env, "clerk:pers", &[pb::Role::Clerk], &[]).await,
            [true, false, true],
        ),
        (
            "clerk:pers-offen (Clerk, member of Personal, cleared for Offen only)",
            token(&env, "clerk:pers-offen", &[pb::Role::Clerk], &[]).await,
            [false, false, true],
        ),
        (
            "clerk:bau (Clerk, member of Bauamt)",
            token(&env, "clerk:bau", &[pb::Role::Clerk], &[]).await,
            [false, true, true],
        ),
        (
            "svc:ozg (Clerk, token bound to Bauamt, no membership)",
            token(&env, "svc:ozg", &[pb::Role::Clerk], &[&bauamt]).await,
            [false, true, true],
        ),
        (
            "reader:amtsleitung (Reader, member of Hauptamt above both)",
            token(&env, "reader:amtsleitung", &[pb::Role::Reader], &[]).await,
            [true, true, true],
        ),
        (
            "reader:beteiligt (Reader, no unit, personnel file shared for reading)",
            token(&env, "reader:beteiligt", &[pb::Role::Reader], &[]).await,
            [true, false, true],
        ),
        (
            "reader:extern (Reader, no unit)",
            token(&env, "reader:extern", &[pb::Role::Reader], &[]).await,
            [false, false, true],
        ),
        (
            "archivist:lath (Archivist, no unit)",
            token(&env, "archivist:lath", &[pb::Role::Archivist], &[]).await,
            [false, false, true],
        ),
        (
            "admin:stadt (Admin of the tenant, no unit)",
            token(&env, "admin:stadt", &[pb::Role::Admin], &[]).await,
            [false, false, true],
        ),
    ];
    let objects = [&p, &b, &o];
    let mut checked = 0;
    for (label, mut c, sees) in rows {
        for (obj, visible) in objects.iter().zip(sees) {
            let want = if visible { Code::Ok } else { Code::NotFound };
            for (what, got) in reach(&mut c, &plan, obj).await {
                assert_eq!(got, want, "{label}: {what} of file {}", obj.label);
                checked += 1;
            }
        }
        // Page tokens of a listing never carry a hidden file's id.
        let (_, tokens) = all_files(&mut c, &plan).await?;
        for (obj, visible) in objects.iter().zip(sees) {
            let id = obj.file.name.rsplit('/').next().unwrap_or_default();
            let raw = uuid::Uuid::parse_str(id)?;
            for t in &tokens {
                let bytes = token_bytes(t);
                let leaks = bytes.windows(16).any(|w| w == raw.as_bytes())
                    || String::from_utf8_lossy(&bytes).contains(id);
                assert!(
                    visible || !leaks,
                    "{label}: a page token names {}",
                    obj.label
                );
            }
        }
    }
    assert_eq!(checked, 9 * 3 * 11);

    // Another tenant's admin reaches nothing of this tenant.
    let mut other = env
        .as_role("andere", "admin:andere", &[pb::Role::Admin])
        .await;
    for obj in objects {
        for (what, got) in reach_foreign(&mut other, obj).await {
            assert_eq!(got, Code::NotFound, "other tenant: {what} of {}", obj.label);
        }
    }

    // Export and disposal by registrars of either unit.
    let mut reg_bau = token(&env, "registrar:bau", &[pb::Role::Registrar], &[]).await;
    for (label, c, sees) in [
        ("registrar:pers", &mut reg_pers, [true, false, true]),
        ("registrar:bau", &mut reg_bau, [false, true, true]),
    ] {
        for (obj, visible) in objects.iter().zip(sees) {
            for (what, reached) in dispose(c, obj).await {
                assert_eq!(reached, visible, "{label}: {what} of {}", obj.label);
            }
        }
    }
    Ok(())
}

/// What another tenant's principal tries: the names of this tenant's objects.
async fn reach_foreign(c: &mut Clients, o: &Obj) -> Vec<(&'static str, Code)> {
    vec![
        (
            "GetFile",
            code(
                c.files
                    .get_file(pb::GetFileRequest {
                        name: o.file.name.clone(),
                    })
                    .await,
            ),
        ),
        (
            "GetDocument",
            code(
                c.documents
                    .get_document(pb::GetDocumentRequest {
                        name: o.doc.name.clone(),
                    })
                    .await,
            ),
        ),
        (
            "GetAccess",
            code(
                c.access
                    .get_access(pb::GetAccessRequest {
                        name: o.doc.name.clone(),
                    })
                    .await,
            ),
        ),
        (
            "ListAccessLog",
            code(
                c.access
                    .list_access_log(pb::ListAccessLogRequest {
                        parent: o.file.name.clone(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
    ]
}

#[tokio::test]
async fn writes_shares_levels_and_the_access_log() -> R<()> {
    let env = Env::new().await;
    env.tenant("stadt").await;
    let mut admin = env.admin().await;
    let mut reg = env
        .as_role("stadt", "registrar:weber", &[pb::Role::Registrar])
        .await;
    let plan = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "200".into(),
                title: "Personal".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    let p = make(&mut reg, &plan, "personal").await?;
    let o = make(&mut reg, &plan, "offen").await?;
    let personal = unit(&mut admin, "Personal", "").await?;
    let bauamt = unit(&mut admin, "Bauamt", "").await?;
    member(&mut admin, &personal, "registrar:pers").await?;
    member(&mut admin, &personal, "clerk:pers").await?;
    member(&mut admin, &bauamt, "clerk:bau").await?;
    reg.access
        .set_lead_unit(pb::SetLeadUnitRequest {
            name: p.file.name.clone(),
            lead_unit: personal.clone(),
            reason: "Federführung".into(),
        })
        .await?;
    let mut reg_pers = token(&env, "registrar:pers", &[pb::Role::Registrar], &[]).await;
    let mut clerk_pers = token(&env, "clerk:pers", &[pb::Role::Clerk], &[]).await;
    let mut clerk_bau = token(&env, "clerk:bau", &[pb::Role::Clerk], &[]).await;

    // Bauamt shared for reading: it sees the file but may not file into it.
    reg_pers
        .access
        .update_share(pb::UpdateShareRequest {
            name: p.file.name.clone(),
            share: Some(pb::Share {
                org_unit: bauamt.clone(),
                mode: pb::ShareMode::Read as i32,
                ..Default::default()
            }),
            reason: String::new(),
        })
        .await?;
    let new_doc = |parent: String| pb::CreateDocumentRequest {
        parent,
        document: Some(pb::Document {
            subject: "Stellungnahme".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    clerk_bau
        .files
        .get_file(pb::GetFileRequest {
            name: p.file.name.clone(),
        })
        .await?;
    expect_err(
        clerk_bau
            .documents
            .create_document(new_doc(p.file.name.clone()))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // Mitzeichnung: with a write share it may.
    reg_pers
        .access
        .update_share(pb::UpdateShareRequest {
            name: p.file.name.clone(),
            share: Some(pb::Share {
                org_unit: bauamt.clone(),
                mode: pb::ShareMode::Write as i32,
                ..Default::default()
            }),
            reason: "Mitzeichnung".into(),
        })
        .await?;
    clerk_bau
        .documents
        .create_document(new_doc(p.file.name.clone()))
        .await?;
    // A clerk of another unit cannot set a lead unit or share (registrars do).
    expect_err(
        clerk_pers
            .access
            .set_lead_unit(pb::SetLeadUnitRequest {
                name: o.file.name.clone(),
                lead_unit: personal.clone(),
                reason: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Levels: a clerk raises a document's level; lowering is refused to the clerk and
    // needs a reason from the registrar.
    clerk_pers
        .access
        .set_confidentiality(pb::SetConfidentialityRequest {
            name: p.doc.name.clone(),
            confidentiality: pb::Confidentiality::Restricted as i32,
            reason: String::new(),
        })
        .await?;
    expect_err(
        clerk_pers
            .access
            .set_confidentiality(pb::SetConfidentialityRequest {
                name: p.doc.name.clone(),
                confidentiality: pb::Confidentiality::Open as i32,
                reason: "versehentlich".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        reg_pers
            .access
            .set_confidentiality(pb::SetConfidentialityRequest {
                name: p.doc.name.clone(),
                confidentiality: pb::Confidentiality::Open as i32,
                reason: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    // An update lowering the level is refused as well.
    expect_err(
        clerk_pers
            .documents
            .update_document(pb::UpdateDocumentRequest {
                document: Some(pb::Document {
                    name: p.doc.name.clone(),
                    confidentiality: pb::Confidentiality::Open as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["confidentiality".into()],
                }),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "INVALID_STATE",
    );

    // Reads of the VS-NfD document are logged; a denied attempt too; open reads are not.
    for _ in 0..2 {
        clerk_pers
            .documents
            .get_document(pb::GetDocumentRequest {
                name: p.doc.name.clone(),
            })
            .await?;
    }
    let mut extern_reader = token(&env, "reader:extern", &[pb::Role::Reader], &[]).await;
    expect_err(
        extern_reader
            .documents
            .get_document(pb::GetDocumentRequest {
                name: p.doc.name.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    extern_reader
        .documents
        .get_document(pb::GetDocumentRequest {
            name: o.doc.name.clone(),
        })
        .await?;
    let log = |parent: String| pb::ListAccessLogRequest {
        parent,
        ..Default::default()
    };
    let entries = reg_pers
        .access
        .list_access_log(log(p.doc.name.clone()))
        .await?
        .into_inner()
        .entries;
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e.principal == "clerk:pers" && e.operation == "read" && e.allowed)
        .collect();
    assert_eq!(reads.len(), 2, "one per request: {entries:?}");
    assert!(entries
        .iter()
        .any(|e| e.principal == "reader:extern" && !e.allowed && e.denial == "unit"));
    let open_log = reg
        .access
        .list_access_log(log(o.doc.name.clone()))
        .await?
        .into_inner()
        .entries;
    assert!(
        open_log.is_empty(),
        "open reads are not logged: {open_log:?}"
    );
    // The access log is the registrar's: a clerk of the unit is refused, a registrar of
    // another unit does not see the object.
    expect_err(
        clerk_pers
            .access
            .list_access_log(log(p.doc.name.clone()))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let mut reg_other = token(&env, "registrar:other", &[pb::Role::Registrar], &[]).await;
    expect_err(
        reg_other
            .access
            .list_access_log(log(p.doc.name.clone()))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Units, members and clearances are the admin's, with history.
    expect_err(
        reg_pers
            .access
            .add_org_unit_member(pb::AddOrgUnitMemberRequest {
                name: personal.clone(),
                principal: "registrar:pers2".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let moved = admin
        .access
        .update_org_unit(pb::UpdateOrgUnitRequest {
            name: bauamt.clone(),
            display_name: "Bauordnungsamt".into(),
            parent_unit: Some(personal.clone()),
        })
        .await?
        .into_inner();
    assert_eq!(moved.parent_unit, personal);
    let h = clerk_bau
        .history
        .list_history(pb::ListHistoryRequest {
            parent: bauamt.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let actions: Vec<&str> = h.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["org_unit.create", "org_unit.member_add", "org_unit.update"]
    );
    expect_err(
        admin
            .access
            .update_org_unit(pb::UpdateOrgUnitRequest {
                name: personal.clone(),
                parent_unit: Some(bauamt.clone()),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    let units = clerk_bau
        .access
        .list_org_units(pb::ListOrgUnitsRequest {
            parent: T.into(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(units.org_units.len(), 1);
    assert!(!units.next_page_token.is_empty());
    admin
        .access
        .set_clearance(pb::SetClearanceRequest {
            parent: T.into(),
            principal: "clerk:pers".into(),
            level: pb::Confidentiality::Secret as i32,
            reason: "Ü2".into(),
        })
        .await?;
    let c = admin
        .access
        .get_clearance(pb::GetClearanceRequest {
            parent: T.into(),
            principal: "clerk:pers".into(),
        })
        .await?
        .into_inner();
    assert!(c.recorded);
    assert_eq!(c.level, pb::Confidentiality::Secret as i32);
    assert_eq!(c.history.len(), 1);
    assert_eq!(c.history[0].reason, "Ü2");
    // The lead unit and shares show in the file's history.
    let h = reg_pers
        .history
        .list_history(pb::ListHistoryRequest {
            parent: p.file.name.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    let actions: Vec<&str> = h.entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"access.lead_unit"), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "access.share").count(), 2);
    // Tokens bound to units: only for a unit of the token's tenant that exists.
    let bad = admin
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: "tenants/-".into(),
            principal: "svc:x".into(),
            roles: vec![pb::Role::Reader as i32],
            org_units: vec![personal.clone()],
            ..Default::default()
        })
        .await;
    expect_err(bad, Code::InvalidArgument, "INVALID_FIELD");
    let missing = format!("{T}/orgUnits/{}", uuid::Uuid::new_v4());
    let bad = admin
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: T.into(),
            principal: "svc:x".into(),
            roles: vec![pb::Role::Reader as i32],
            org_units: vec![missing],
            ..Default::default()
        })
        .await;
    expect_err(bad, Code::NotFound, "NOT_FOUND");

    // Metadata search by sender, filtered by access.
    clerk_pers
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: p.file.name.clone(),
            document: Some(pb::Document {
                subject: "Zuschrift".into(),
                sender: "Bürger Meier".into(),
                external_reference: "AZ 7/26".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let by_sender = pb::SearchRequest {
        parent: T.into(),
        sender: "meier".into(),
        external_reference: "7/26".into(),
        ..Default::default()
    };
    let found = clerk_pers
        .search
        .search(by_sender.clone())
        .await?
        .into_inner();
    assert_eq!(found.results.len(), 1);
    let found = extern_reader.search.search(by_sender).await?.into_inner();
    assert!(found.results.is_empty());
    Ok(())
}

/// The gaps closed after the matrix: upload sessions and operations of a hidden file's
/// document are NOT_FOUND for a caller who may not see the file (and absent from
/// ListOperations), and a call the role table refuses is an access log entry, one per
/// refused request.
#[tokio::test]
async fn sessions_operations_and_role_denials_respect_access() -> R<()> {
    use akte_server::pb::google::longrunning as lro;
    let env = Env::new().await;
    env.tenant("stadt").await;
    let mut admin = env.as_role("stadt", "admin:it", &[pb::Role::Admin]).await;
    let bauamt = unit(&mut admin, "Bauamt", "").await?;
    member(&mut admin, &bauamt, "registrar:bau").await?;
    let mut reg = token(&env, "registrar:bau", &[pb::Role::Registrar], &[]).await;
    let mut other = token(&env, "registrar:fremd", &[pb::Role::Registrar], &[]).await;
    let plan = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "600".into(),
                title: "Bauen".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    let o = make(&mut reg, &plan, "bau").await?;
    reg.access
        .set_lead_unit(pb::SetLeadUnitRequest {
            name: o.file.name.clone(),
            lead_unit: bauamt.clone(),
            ..Default::default()
        })
        .await?;

    // An upload session of the hidden document.
    let data = b"zweite Fassung".to_vec();
    let session = reg
        .documents
        .create_upload_session(pb::CreateUploadSessionRequest {
            parent: o.doc.name.clone(),
            upload_session: Some(pb::UploadSession {
                rendition: Some(support::rendition(&data, "plan.pdf")),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    reg.documents
        .get_upload_session(pb::GetUploadSessionRequest {
            name: session.name.clone(),
        })
        .await?;
    let r = other
        .documents
        .get_upload_session(pb::GetUploadSessionRequest {
            name: session.name.clone(),
        })
        .await;
    expect_err(r, Code::NotFound, "NOT_FOUND");
    let r = other
        .documents
        .delete_upload_session(pb::DeleteUploadSessionRequest {
            name: session.name.clone(),
        })
        .await;
    expect_err(r, Code::NotFound, "NOT_FOUND");
    // The document is also not reached through a session of it the caller makes up.
    let r = other
        .documents
        .create_upload_session(pb::CreateUploadSessionRequest {
            parent: o.doc.name.clone(),
            upload_session: Some(pb::UploadSession {
                rendition: Some(support::rendition(&data, "plan.pdf")),
                ..Default::default()
            }),
        })
        .await;
    expect_err(r, Code::NotFound, "NOT_FOUND");

    // Its import runs as an operation about the session: hidden from the other
    // registrar, listed for the one who started it.
    let msgs = vec![
        pb::WriteUploadSessionRequest {
            message: Some(pb::write_upload_session_request::Message::Header(
                pb::WriteUploadSessionHeader {
                    name: session.name.clone(),
                    offset: 0,
                },
            )),
        },
        pb::WriteUploadSessionRequest {
            message: Some(pb::write_upload_session_request::Message::Chunk(
                data.clone().into(),
            )),
        },
    ];
    reg.documents
        .write_upload_session(tokio_stream::iter(msgs))
        .await?;
    let op = reg
        .documents
        .import_upload_session(pb::ImportUploadSessionRequest {
            name: session.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    reg.operations
        .get_operation(lro::GetOperationRequest {
            name: op.name.clone(),
        })
        .await?;
    let r = other
        .operations
        .get_operation(lro::GetOperationRequest {
            name: op.name.clone(),
        })
        .await;
    expect_err(r, Code::NotFound, "NOT_FOUND");
    let list = |c: &mut Clients| {
        let mut c = c.clone();
        async move {
            c.operations
                .list_operations(lro::ListOperationsRequest {
                    name: T.into(),
                    ..Default::default()
                })
                .await
                .map(|r| {
                    r.into_inner()
                        .operations
                        .into_iter()
                        .map(|o| o.name)
                        .collect::<Vec<_>>()
                })
        }
    };
    assert_eq!(list(&mut reg).await?, vec![op.name.clone()]);
    assert!(list(&mut other).await?.is_empty());

    // A call the role table refuses: one access log entry per refused request, under the
    // object it named, or in the tenant's own log.
    let mut reader = token(&env, "reader:neugier", &[pb::Role::Reader], &[]).await;
    for _ in 0..2 {
        let r = reader
            .files
            .close_file(pb::CloseFileRequest {
                name: o.file.name.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    }
    let r = reader
        .access
        .create_org_unit(pb::CreateOrgUnitRequest {
            parent: T.into(),
            org_unit: Some(pb::OrgUnit {
                display_name: "Schatten".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    // The entries are written while the refusal is answered; wait for them to land.
    let role_denials = |entries: &[pb::AccessLogEntry]| {
        entries
            .iter()
            .filter(|e| e.principal == "reader:neugier" && e.denial == "role" && !e.allowed)
            .count()
    };
    let mut on_file = 0;
    let mut on_tenant = 0;
    for _ in 0..200 {
        let log = reg
            .access
            .list_access_log(pb::ListAccessLogRequest {
                parent: o.file.name.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        on_file = role_denials(&log.entries);
        let log = admin
            .access
            .list_access_log(pb::ListAccessLogRequest {
                parent: T.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        on_tenant = role_denials(&log.entries);
        if on_file == 2 && on_tenant == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!((on_file, on_tenant), (2, 1));
    // The tenant's log is its administrator's.
    let r = reg
        .access
        .list_access_log(pb::ListAccessLogRequest {
            parent: T.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    Ok(())
}
