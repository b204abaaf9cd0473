//! Pagination of the API: every List pages, page sizes above the maximum are capped
//! (AIP-158), and page tokens are signed: altered, foreign or misused tokens are refused
//! with INVALID_ARGUMENT / INVALID_PAGE_TOKEN.

mod support;

use akte_core::keys::SigningKeyPair;
use akte_core::records::NewPlanUnit;
use akte_server::pb::akte::v1 as pb;
use base64::Engine as _;
use support::{add_version, expect_err, fixture, Env, R};
use tonic::Code;

/// Names of all items of a listing, page by page (`page` returns items and next token).
async fn all_pages<F, Fut>(mut page: F) -> R<(Vec<String>, usize)>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<String>, String), tonic::Status>>,
{
    let (mut all, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let (items, next) = page(token).await?;
        pages += 1;
        all.extend(items);
        if next.is_empty() {
            return Ok((all, pages));
        }
        token = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_sizes_above_the_maximum_are_capped() -> R<()> {
    let env = Env::new().await;
    env.tenant("gross").await;
    // 1100 journal entries, written in-process by eight threads (they share flushes).
    let records = env.server.records().clone();
    tokio::task::spawn_blocking(move || {
        let t = records.tenant("gross").unwrap();
        std::thread::scope(|s| {
            for w in 0..8 {
                let t = t.clone();
                s.spawn(move || {
                    for i in 0..138 {
                        t.create_plan_unit(
                            "registrar:test",
                            NewPlanUnit {
                                code: format!("{}.{}", w + 1, i + 1),
                                title: "Einheit".into(),
                                ..Default::default()
                            },
                            None,
                        )
                        .unwrap();
                    }
                });
            }
        });
    })
    .await?;
    let mut admin = env.admin().await;
    let page = admin
        .journal
        .list_entries(pb::ListEntriesRequest {
            parent: "tenants/gross".into(),
            page_size: 5000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(page.entries.len(), 1000, "capped at 1000, not refused");
    assert_eq!(page.journal_size, 1104);
    assert!(!page.next_page_token.is_empty());
    let rest = admin
        .journal
        .list_entries(pb::ListEntriesRequest {
            parent: "tenants/gross".into(),
            page_size: 5000,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(rest.entries.len(), 104);
    assert_eq!(rest.entries[0].seq, 1000);
    assert!(rest.next_page_token.is_empty());
    // The records model's listings cap too.
    let units = admin
        .plan
        .list_plan_units(pb::ListPlanUnitsRequest {
            parent: "tenants/gross".into(),
            page_size: i32::MAX,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(units.plan_units.len(), 1000);
    expect_err(
        admin
            .plan
            .list_plan_units(pb::ListPlanUnitsRequest {
                parent: "tenants/gross".into(),
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_are_signed_and_bound_to_their_listing() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    for i in 0..3 {
        f.registrar
            .plan
            .create_plan_unit(pb::CreatePlanUnitRequest {
                parent: "tenants/bauamt".into(),
                plan_unit: Some(pb::PlanUnit {
                    code: format!("80{i}"),
                    title: format!("Einheit {i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
    }
    let list = |token: &str| pb::ListPlanUnitsRequest {
        parent: "tenants/bauamt".into(),
        page_size: 1,
        page_token: token.into(),
    };
    let first = f
        .registrar
        .plan
        .list_plan_units(list(""))
        .await?
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    f.registrar.plan.list_plan_units(list(&token)).await?;

    // One character changed, anywhere, in any way: refused (a character that differs only
    // in the bits base64 drops at the end is the same token, and accepted).
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut refused = 0;
    for i in 0..token.len() {
        for c in ['A', 'f', '0', '-', '_', 'z'] {
            let mut changed: Vec<char> = token.chars().collect();
            if changed[i] == c {
                continue;
            }
            changed[i] = c;
            let changed: String = changed.into_iter().collect();
            let r = f.registrar.plan.list_plan_units(list(&changed)).await;
            if b64.decode(&changed).ok() == b64.decode(&token).ok() {
                assert!(r.is_ok(), "{changed}");
            } else {
                expect_err(r, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
                refused += 1;
            }
        }
    }
    assert!(refused > token.len() * 4);
    for junk in [
        "x",
        "after:bauamt",
        "AQ",
        &token[..token.len() - 2],
        &format!("{token}AA"),
    ] {
        expect_err(
            f.registrar.plan.list_plan_units(list(junk)).await,
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        );
    }

    // A token of one listing is no token of another: other method, other parent, other
    // filter.
    expect_err(
        f.registrar
            .files
            .list_files(pb::ListFilesRequest {
                parent: f.file.name.clone(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    let holds = |filter: &str, token: &str| pb::ListHoldsRequest {
        parent: "tenants/bauamt".into(),
        filter: filter.into(),
        page_size: 1,
        page_token: token.into(),
    };
    let mut arch = env
        .as_role("bauamt", "archiv:roth", &[pb::Role::Archivist])
        .await;
    for reason in ["Klage", "Auskunft"] {
        arch.holds
            .place_hold(pb::PlaceHoldRequest {
                object: f.file.name.clone(),
                reason: reason.into(),
                reference: String::new(),
            })
            .await?;
    }
    let h = arch
        .holds
        .list_holds(holds("active = true", ""))
        .await?
        .into_inner();
    assert_eq!(h.holds.len(), 1);
    expect_err(
        arch.holds
            .list_holds(holds("active = false", &h.next_page_token))
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    let second = arch
        .holds
        .list_holds(holds("active = true", &h.next_page_token))
        .await?
        .into_inner();
    assert_eq!(second.holds.len(), 1);
    assert_ne!(second.holds[0].name, h.holds[0].name);

    // Another installation (another key) does not accept this one's tokens.
    let other = Env::new().await;
    fixture(&other, "bauamt").await;
    expect_err(
        other.admin().await.plan.list_plan_units(list(&token)).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    // The key survives a restart: tokens handed out before still work.
    let env = env.restart().await;
    env.admin().await.plan.list_plan_units(list(&token)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let t = "tenants/bauamt".to_owned();

    // Versions.
    for i in 0..5u8 {
        add_version(&mut f.clerk, &f.doc.name, &[i; 100]).await?;
    }
    let c = f.clerk.clone();
    let (versions, pages) = all_pages(|page_token| {
        let (mut c, parent) = (c.clone(), f.doc.name.clone());
        async move {
            let r = c
                .documents
                .list_versions(pb::ListVersionsRequest {
                    parent,
                    page_size: 2,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((
                r.versions.into_iter().map(|v| v.name).collect(),
                r.next_page_token,
            ))
        }
    })
    .await?;
    assert_eq!(pages, 3);
    let want: Vec<String> = (1..=5)
        .map(|n| format!("{}/versions/{n}", f.doc.name))
        .collect();
    assert_eq!(versions, want);

    // Tokens of the tenant: the two of the fixture and three more, oldest first.
    let admin = env.admin().await;
    for i in 0..3 {
        env.as_role("bauamt", &format!("reader:{i}"), &[pb::Role::Reader])
            .await;
    }
    let (tokens, pages) = all_pages(|page_token| {
        let (mut c, parent) = (admin.clone(), t.clone());
        async move {
            let r = c
                .tenants
                .list_tokens(pb::ListTokensRequest {
                    parent,
                    page_size: 2,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((
                r.tokens.into_iter().map(|t| t.principal).collect(),
                r.next_page_token,
            ))
        }
    })
    .await?;
    assert_eq!(pages, 3);
    assert_eq!(
        tokens,
        [
            "registrar:weber",
            "clerk:schmidt",
            "reader:0",
            "reader:1",
            "reader:2"
        ]
    );

    // Witnesses, in registration order.
    let mut keys = Vec::new();
    for i in 0..3 {
        let k = SigningKeyPair::generate(&format!("archiv.example/zeuge-{i}"))?;
        let w = admin
            .clone()
            .journal
            .add_witness(pb::AddWitnessRequest {
                parent: t.clone(),
                verifier_key: k.cosignature_verifier().to_string(),
            })
            .await?
            .into_inner();
        keys.push(w.name);
    }
    let (witnesses, pages) = all_pages(|page_token| {
        let (mut c, parent) = (f.clerk.clone(), t.clone());
        async move {
            let r = c
                .journal
                .list_witnesses(pb::ListWitnessesRequest {
                    parent,
                    page_size: 2,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((
                r.witnesses.into_iter().map(|w| w.name).collect(),
                r.next_page_token,
            ))
        }
    })
    .await?;
    assert_eq!((witnesses, pages), (keys, 2));

    // Holds with a filter: released ones only when asked for.
    let mut arch = env
        .as_role("bauamt", "archiv:roth", &[pb::Role::Archivist])
        .await;
    let mut placed = Vec::new();
    for i in 0..4 {
        let h = arch
            .holds
            .place_hold(pb::PlaceHoldRequest {
                object: f.doc.name.clone(),
                reason: format!("Grund {i}"),
                reference: String::new(),
            })
            .await?
            .into_inner();
        placed.push(h.name);
    }
    arch.holds
        .release_hold(pb::ReleaseHoldRequest {
            name: placed[1].clone(),
            reason: "erledigt".into(),
        })
        .await?;
    let holds = |filter: &'static str| {
        let c = f.clerk.clone();
        let parent = t.clone();
        all_pages(move |page_token| {
            let (mut c, parent) = (c.clone(), parent.clone());
            async move {
                let r = c
                    .holds
                    .list_holds(pb::ListHoldsRequest {
                        parent,
                        filter: filter.into(),
                        page_size: 1,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((
                    r.holds.into_iter().map(|h| h.name).collect(),
                    r.next_page_token,
                ))
            }
        })
    };
    assert_eq!(holds("").await?.0, placed);
    let active: Vec<String> = [0, 2, 3].iter().map(|i| placed[*i].clone()).collect();
    assert_eq!(holds("active = true").await?.0, active);
    assert_eq!(holds("active=false").await?.0, vec![placed[1].clone()]);
    let by_object = format!("object = \"{}\" AND active = true", f.doc.name);
    let by_object: &'static str = Box::leak(by_object.into_boxed_str());
    assert_eq!(holds(by_object).await?.0, active);
    assert_eq!(
        holds("file = \"tenants/bauamt/files/00000000-0000-4000-8000-000000000001\"")
            .await?
            .0,
        Vec::<String>::new()
    );
    for bad in [
        "colour = red",
        "active = maybe",
        "active = true OR active = false",
    ] {
        expect_err(
            f.clerk
                .holds
                .list_holds(pb::ListHoldsRequest {
                    parent: t.clone(),
                    filter: bad.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
    }
    Ok(())
}
