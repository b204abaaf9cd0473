//! Full-text search over gRPC: documents filed as text, XML and DOCX are found by words
//! in any inflection and umlaut spelling, by phrase and prefix, with highlighted
//! snippets; a reader outside the document's lead unit does not see it (nor does any
//! count or page token show it); the unit and level filters and date order work with
//! text; a destroyed document is gone from the index, and `akte verify` reports a
//! destroyed document planted in the index as a problem.
//!
//! The test waits for the indexer to reach the journal's size, never for a time.

mod support;

use std::io::Write;
use std::time::Duration;

use akte_server::client::{add_version_messages, sha256, wait_operation, Clients};
use akte_server::pb::akte::v1 as pb;
use bytes::Bytes;
use support::{Env, R};

const TENANT: &str = "stadt";
const T: &str = "tenants/stadt";

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

async fn unit(admin: &mut Clients, name: &str) -> R<String> {
    Ok(admin
        .access
        .create_org_unit(pb::CreateOrgUnitRequest {
            parent: T.into(),
            org_unit: Some(pb::OrgUnit {
                display_name: name.into(),
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

async fn file(reg: &mut Clients, plan_unit: &str, subject: &str) -> R<pb::File> {
    Ok(reg
        .files
        .create_file(pb::CreateFileRequest {
            parent: plan_unit.into(),
            file: Some(pb::File {
                subject: subject.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// A document in `parent` with one version of `data` as `media_type`.
async fn document(
    reg: &mut Clients,
    parent: &str,
    subject: &str,
    data: &[u8],
    media_type: &str,
) -> R<pb::Document> {
    let doc = reg
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: parent.into(),
            document: Some(pb::Document {
                subject: subject.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let header = pb::AddVersionHeader {
        parent: doc.name.clone(),
        upload: Some(pb::RenditionUpload {
            file_name: "inhalt".into(),
            media_type: media_type.into(),
            sha256: sha256(data),
            size: data.len() as u64,
        }),
        ..Default::default()
    };
    let msgs = add_version_messages(header, Bytes::copy_from_slice(data), 1 << 20);
    reg.documents.add_version(tokio_stream::iter(msgs)).await?;
    Ok(doc)
}

fn docx(text: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    write!(
        w,
        r#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"#
    )
    .unwrap();
    w.finish().unwrap().into_inner()
}

/// Waits until the full-text index covers the whole journal of the tenant.
async fn indexed(env: &Env) {
    let size = env
        .server
        .records()
        .tenant(TENANT)
        .unwrap()
        .tenant()
        .size()
        .unwrap();
    let ft = env.server.fulltext().clone();
    let reached =
        tokio::task::spawn_blocking(move || ft.wait_for(TENANT, size, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(reached, "the indexer reached position {size}");
}

fn text_req(text: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        parent: T.into(),
        text: text.into(),
        ..Default::default()
    }
}

async fn search(c: &mut Clients, r: pb::SearchRequest) -> R<pb::SearchResponse> {
    Ok(c.search.search(r).await?.into_inner())
}

/// Names of the documents found.
async fn found(c: &mut Clients, r: pb::SearchRequest) -> R<Vec<String>> {
    Ok(search(c, r)
        .await?
        .results
        .into_iter()
        .filter_map(|r| match r.object {
            Some(pb::search_result::Object::Document(d)) => Some(d.name),
            _ => None,
        })
        .collect())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_search_with_access_destruction_and_verify() -> R<()> {
    let env = Env::new().await;
    env.tenant(TENANT).await;
    let mut admin = env.admin().await;
    let bau = unit(&mut admin, "Bauamt").await?;
    let pers = unit(&mut admin, "Personalamt").await?;
    member(&mut admin, &bau, "registrar:bau").await?;
    member(&mut admin, &bau, "reader:bau").await?;
    member(&mut admin, &pers, "reader:pers").await?;
    let mut reg = token(&env, "registrar:bau", &[pb::Role::Registrar], &[]).await;
    let mut reader_bau = token(&env, "reader:bau", &[pb::Role::Reader], &[]).await;
    let mut reader_pers = token(&env, "reader:pers", &[pb::Role::Reader], &[]).await;

    // Files of a plan unit whose files are destroyed 5 years after closing.
    let plan = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                retention: Some(pb::Retention {
                    period: Some(pb::retention::Period::Years(5)),
                }),
                disposal: pb::DisposalDecision::Destroy as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let fa = file(&mut reg, &plan.name, "Anbau Lindenstraße 4").await?;
    let fb = file(&mut reg, &plan.name, "Personalsache").await?;
    let fc = file(&mut reg, &plan.name, "Altakte").await?;
    let a1 = document(
        &mut reg,
        &fa.name,
        "Bauantrag",
        "Antrag von Frau Müller auf Genehmigung eines Anbaus an das Gebäude.".as_bytes(),
        "text/plain",
    )
    .await?;
    let a2 = document(
        &mut reg,
        &fa.name,
        "Bescheid",
        &docx("Gebührenbescheid für Herrn Mueller über die Genehmigungen"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    .await?;
    let b1 = document(
        &mut reg,
        &fb.name,
        "Beurteilung",
        "<akte><text>Dienstliche Beurteilung von Herrn Muller, vertraulich</text></akte>"
            .as_bytes(),
        "application/xml",
    )
    .await?;
    let c1 = document(
        &mut reg,
        &fc.name,
        "Altantrag",
        "Alter Antrag von Frau Müller aus dem Archivbestand".as_bytes(),
        "text/plain",
    )
    .await?;
    for (f, u) in [(&fa, &bau), (&fc, &bau), (&fb, &pers)] {
        reg.access
            .set_lead_unit(pb::SetLeadUnitRequest {
                name: f.name.clone(),
                lead_unit: u.clone(),
                reason: "Federführung".into(),
            })
            .await?;
    }
    indexed(&env).await;

    // Umlaut spellings, stemming, in text of every kind; the Personalamt's document is
    // not there for the Bauamt.
    for q in ["Müller", "Mueller", "Muller"] {
        assert_eq!(
            sorted(found(&mut reader_bau, text_req(q)).await?),
            sorted(vec![a1.name.clone(), a2.name.clone(), c1.name.clone()]),
            "{q}"
        );
    }
    assert_eq!(
        found(&mut reader_pers, text_req("Müller")).await?,
        vec![b1.name.clone()]
    );
    assert!(found(&mut reader_bau, text_req("Beurteilung"))
        .await?
        .is_empty());
    assert_eq!(
        sorted(found(&mut reader_bau, text_req("Genehmigung")).await?),
        sorted(vec![a1.name.clone(), a2.name.clone()])
    );
    assert_eq!(
        found(&mut reader_bau, text_req("\"Frau Müller auf\"")).await?,
        vec![a1.name.clone()]
    );
    assert_eq!(
        found(&mut reader_bau, text_req("gebühren*")).await?,
        vec![a2.name.clone()]
    );

    // Snippets with the marker, and a score.
    let r = search(&mut reader_bau, text_req("Gebührenbescheid")).await?;
    assert_eq!(r.results.len(), 1);
    assert!(
        r.results[0].snippets[0].contains("<b>Gebührenbescheid</b>"),
        "{:?}",
        r.results[0].snippets
    );
    assert!(r.results[0].score > 0.0);

    // Paging one by one: three pages for the Bauamt, the tokens carry nothing of the
    // hidden document, and the Personalamt's reader gets one page.
    let mut seen = Vec::new();
    let mut tok = String::new();
    let mut pages = 0;
    loop {
        let r = search(
            &mut reader_bau,
            pb::SearchRequest {
                page_size: 1,
                page_token: tok.clone(),
                ..text_req("Müller")
            },
        )
        .await?;
        pages += 1;
        assert_eq!(r.results.len(), 1);
        seen.extend(r.results.into_iter().filter_map(|x| match x.object {
            Some(pb::search_result::Object::Document(d)) => Some(d.name),
            _ => None,
        }));
        if r.next_page_token.is_empty() {
            break;
        }
        assert!(!r
            .next_page_token
            .contains(b1.name.rsplit('/').next().unwrap()));
        tok = r.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 3);
    assert!(!seen.contains(&b1.name));
    // A token of another query is refused.
    let first = search(
        &mut reader_bau,
        pb::SearchRequest {
            page_size: 1,
            ..text_req("Müller")
        },
    )
    .await?;
    let other = reader_bau
        .search
        .search(pb::SearchRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..text_req("Genehmigung")
        })
        .await;
    assert_eq!(other.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Date order, unit filter, level filter, with text.
    let newest = found(
        &mut reader_bau,
        pb::SearchRequest {
            order: pb::SearchOrder::NewestFirst as i32,
            ..text_req("Müller")
        },
    )
    .await?;
    assert_eq!(
        newest,
        vec![c1.name.clone(), a2.name.clone(), a1.name.clone()]
    );
    let in_pers = found(
        &mut reader_pers,
        pb::SearchRequest {
            org_unit: pers.clone(),
            ..text_req("Müller")
        },
    )
    .await?;
    assert_eq!(in_pers, vec![b1.name.clone()]);
    let open_level = found(
        &mut reader_bau,
        pb::SearchRequest {
            confidentiality: pb::Confidentiality::Open as i32,
            org_unit: bau.clone(),
            ..text_req("Müller")
        },
    )
    .await?;
    assert_eq!(open_level.len(), 3);
    // Without text: metadata search by unit, newest first.
    let by_unit = found(
        &mut reader_bau,
        pb::SearchRequest {
            parent: T.into(),
            r#type: pb::ObjectType::Document as i32,
            org_unit: bau.clone(),
            order: pb::SearchOrder::OldestFirst as i32,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(
        by_unit,
        vec![a1.name.clone(), a2.name.clone(), c1.name.clone()]
    );
    // Bad queries are INVALID_ARGUMENT.
    for bad in ["x*", "   \"\"  ", &"wort ".repeat(40)] {
        let s = reader_bau.search.search(text_req(bad)).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{bad}: {s:?}");
    }

    // Destruction: file C, closed in 2000, is past its retention.
    reg.files
        .close_file(pb::CloseFileRequest {
            name: fc.name.clone(),
            etag: String::new(),
            close_date: Some(akte_server::pb::google::r#type::Date {
                year: 2000,
                month: 1,
                day: 1,
            }),
        })
        .await?;
    let op = reg
        .disposal
        .destroy(pb::DestroyRequest {
            parent: T.into(),
            files: vec![fc.name.clone()],
            legal_basis: "§ 18 ThürEGovG".into(),
            authorised_by: "Amtsleitung".into(),
        })
        .await?
        .into_inner();
    wait_operation(&mut reg.operations, op).await?;
    indexed(&env).await;
    assert_eq!(
        sorted(found(&mut reader_bau, text_req("Müller")).await?),
        sorted(vec![a1.name.clone(), a2.name.clone()])
    );
    assert!(found(&mut reader_bau, text_req("Archivbestand"))
        .await?
        .is_empty());

    // A destroyed document planted in the index: `akte verify` finds it (a data
    // directory's; on PostgreSQL the records are not in the directory).
    if support::on_postgres() {
        return Ok(());
    }
    let dir = env.dir.path().to_path_buf();
    let verify = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_akte"))
            .arg("--data-dir")
            .arg(dir)
            .arg("verify")
            .output()
            .expect("run akte verify")
    };
    let clean = verify(&dir);
    let out = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(clean.status.success(), "{out}");
    assert!(
        out.contains("full-text index: 3 documents, 0 destroyed"),
        "{out}"
    );
    let Env {
        dir: tmp, server, ..
    } = env;
    server.shutdown().await?;
    let c1_id = uuid::Uuid::parse_str(c1.name.rsplit('/').next().unwrap())?;
    {
        let ix = akte_fulltext::TextIndex::open(&akte_fulltext::service::dir_of(
            &tmp.path().join("index"),
            TENANT,
        ))?;
        let pos = ix.position()?;
        ix.put(&akte_fulltext::index::IndexedDoc {
            id: c1_id,
            above: vec![],
            title: "Altantrag".into(),
            body: "planted".into(),
            created: 0,
            note: None,
        })?;
        ix.commit(pos)?;
    }
    let dirty = verify(tmp.path());
    let out = String::from_utf8_lossy(&dirty.stdout).into_owned();
    assert_eq!(dirty.status.code(), Some(1), "{out}");
    assert!(out.contains(&c1_id.to_string()), "{out}");
    assert!(out.contains("destroyed document"), "{out}");
    Ok(())
}
