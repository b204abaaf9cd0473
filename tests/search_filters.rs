//! Metadata search by lead unit (with the units below it), by effective confidentiality
//! level, and ordered by creation date, through callers who may not see everything:
//! hidden objects are absent, and date-ordered page tokens go on after an object the
//! caller saw.

use akte_core::access::{Operation, Role};
use akte_core::records::*;
use akte_core::store::StoreOptions;
use uuid::Uuid;

const ADMIN: &str = "admin:it";
const REG: &str = "registrar:weber";

struct World {
    _dir: tempfile::TempDir,
    t: TenantRecords,
    amt: Uuid,
    personal: Uuid,
    bauamt: Uuid,
    /// Files led by Personal (VS-NfD), Bauamt, Hauptamt and none, each with 3 documents.
    docs: Vec<(Uuid, Vec<Uuid>)>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("stadt").unwrap();
    let amt = t.create_org_unit(ADMIN, "Hauptamt", None).unwrap().id;
    let personal = t.create_org_unit(ADMIN, "Personal", Some(amt)).unwrap().id;
    let bauamt = t.create_org_unit(ADMIN, "Bauamt", Some(amt)).unwrap().id;
    t.add_member(ADMIN, personal, "clerk:pers").unwrap();
    t.add_member(ADMIN, bauamt, "clerk:bau").unwrap();
    t.add_member(ADMIN, amt, "head:amt").unwrap();
    let unit = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "100".into(),
                title: "Allgemeines".into(),
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let mut docs = Vec::new();
    for (subject, lead) in [
        ("Personalakte", Some(personal)),
        ("Bauantrag", Some(bauamt)),
        ("Haushalt", Some(amt)),
        ("Allgemeines", None),
    ] {
        let f = t
            .create_file(
                REG,
                NewFile {
                    plan_unit: unit.id,
                    subject: subject.into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap();
        if let Some(u) = lead {
            t.set_lead_unit(REG, f.id, Some(u), None).unwrap();
        }
        if lead == Some(personal) {
            t.set_confidentiality(REG, f.id, Confidentiality::Restricted, None)
                .unwrap();
        }
        let ds = (0..3)
            .map(|i| {
                t.create_document(
                    REG,
                    NewDocument {
                        parent: f.id,
                        subject: format!("{subject} Schreiben {i}"),
                        ..NewDocument::default()
                    },
                    None,
                )
                .unwrap()
                .id
            })
            .collect();
        docs.push((f.id, ds));
    }
    World {
        _dir: dir,
        t,
        amt,
        personal,
        bauamt,
        docs,
    }
}

fn ids(p: &Page<Object>) -> Vec<Uuid> {
    p.items.iter().map(Object::id).collect()
}

/// Every page of `q` in date order, page size 1, and the tokens.
fn all_by_date(t: &TenantRecords, q: &Query, newest: bool) -> (Vec<Uuid>, Vec<String>) {
    let (mut out, mut tokens) = (Vec::new(), Vec::new());
    let mut page = PageRequest::first(1);
    loop {
        let p = t.query_by_date(q, newest, &page).unwrap();
        assert!(p.items.len() <= 1);
        out.extend(ids(&p));
        match p.next_page_token {
            Some(tok) => {
                tokens.push(tok.clone());
                page.page_token = tok;
            }
            None => return (out, tokens),
        }
    }
}

#[test]
fn search_by_unit_includes_units_below_and_only_what_the_caller_sees() {
    let w = world();
    let docs = |i: usize| w.docs[i].1.clone();
    let q = |unit: Uuid| Query {
        kind: Some(ObjectKind::Document),
        org_unit: Some(unit),
        ..Query::default()
    };
    let head =
        w.t.bind("head:amt", &[Role::Reader], &[], Operation::Read)
            .unwrap();
    let bau =
        w.t.bind("clerk:bau", &[Role::Clerk], &[], Operation::Read)
            .unwrap();
    // Hauptamt and the units below it: Personal's, Bauamt's and its own.
    let mut want: Vec<Uuid> = [docs(0), docs(1), docs(2)].concat();
    want.sort();
    let mut got = ids(&w.t.query(&q(w.amt), &PageRequest::first(100)).unwrap());
    got.sort();
    assert_eq!(got, want);
    // The head sees Personal's documents (its unit is above); the Bauamt does not.
    assert_eq!(
        ids(&head
            .query(&q(w.personal), &PageRequest::first(100))
            .unwrap())
        .len(),
        3
    );
    assert!(ids(&bau.query(&q(w.personal), &PageRequest::first(100)).unwrap()).is_empty());
    // Hauptamt's own file is led by a unit above the Bauamt, which the Bauamt's members do
    // not act in: of the Hauptamt and everything below it they see the Bauamt's only.
    let mut got = ids(&bau.query(&q(w.amt), &PageRequest::first(100)).unwrap());
    got.sort();
    let mut want = docs(1);
    want.sort();
    assert_eq!(got, want);
    // Files match by their lead unit too; plan units never.
    let files = Query {
        org_unit: Some(w.bauamt),
        ..Query::default()
    };
    let found = ids(&w.t.query(&files, &PageRequest::first(100)).unwrap());
    assert!(found.contains(&w.docs[1].0));
    assert_eq!(found.len(), 4);
}

#[test]
fn search_by_level_uses_the_effective_level() {
    let w = world();
    let q = Query {
        kind: Some(ObjectKind::Document),
        confidentiality: Some(Confidentiality::Restricted),
        ..Query::default()
    };
    let mut got = ids(&w.t.query(&q, &PageRequest::first(100)).unwrap());
    got.sort();
    let mut want = w.docs[0].1.clone();
    want.sort();
    assert_eq!(got, want, "documents inherit VS-NfD from their file");
    let open = Query {
        kind: Some(ObjectKind::Document),
        confidentiality: Some(Confidentiality::Open),
        ..Query::default()
    };
    assert_eq!(
        w.t.query(&open, &PageRequest::first(100))
            .unwrap()
            .items
            .len(),
        9
    );
}

#[test]
fn date_order_pages_through_what_the_caller_sees() {
    let w = world();
    let q = Query {
        kind: Some(ObjectKind::Document),
        ..Query::default()
    };
    let every: Vec<Uuid> = w.docs.iter().flat_map(|(_, d)| d.clone()).collect();
    let (oldest, _) = all_by_date(&w.t, &q, false);
    assert_eq!(oldest, every, "creation order");
    let (newest, _) = all_by_date(&w.t, &q, true);
    assert_eq!(newest, every.iter().rev().copied().collect::<Vec<_>>());
    // The Bauamt's clerk: Personal's and Hauptamt's documents are not there, and no
    // token is the key of one of them.
    let bau =
        w.t.bind("clerk:bau", &[Role::Clerk], &[], Operation::Read)
            .unwrap();
    let (seen, tokens) = all_by_date(&bau, &q, false);
    let visible: Vec<Uuid> = [w.docs[1].1.clone(), w.docs[3].1.clone()].concat();
    assert_eq!(seen, visible);
    assert_eq!(tokens.len(), visible.len() - 1);
    // A token of another listing is refused.
    let listing_token =
        w.t.query(&q, &PageRequest::first(1))
            .unwrap()
            .next_page_token
            .unwrap();
    let bad = w.t.query_by_date(
        &q,
        false,
        &PageRequest {
            page_size: 1,
            page_token: listing_token,
        },
    );
    assert!(matches!(bad, Err(RecordsError::Invalid { .. })), "{bad:?}");
}
