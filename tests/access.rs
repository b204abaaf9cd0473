//! Access control in the records model: organisational units (nested), lead units,
//! shares, confidentiality levels with clearances, the access log; through the library's
//! bound views, on every test backend. The decision table itself is tested as a matrix in
//! `akte-core/src/access.rs`; the same rules over gRPC in `akte-server/tests/access.rs`.

use akte_core::access::{Grantee, Operation, Role};
use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::index_dump as dump;
use serde_json::{json, Map, Value};
use uuid::Uuid;

const ADMIN: &str = "admin:root";
const REG: &str = "registrar:weber";

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    t: TenantRecords,
    /// Hauptamt, with Personal (21) and Bauamt (22) below it.
    amt: Uuid,
    personal: Uuid,
    bauamt: Uuid,
    /// Led by Personal, VS-NfD.
    personnel: File,
    personnel_doc: Document,
    /// Led by Bauamt, open.
    building: File,
    /// No lead unit, open: as before units existed.
    open: File,
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
    let mk = |subject: &str| {
        t.create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                subject: subject.into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap()
    };
    let personnel = mk("Personalakte Müller");
    let building = mk("Bauantrag Flurstück 12");
    let open = mk("Allgemeiner Schriftverkehr");
    t.set_lead_unit(REG, personnel.id, Some(personal), None)
        .unwrap();
    t.set_lead_unit(REG, building.id, Some(bauamt), None)
        .unwrap();
    t.set_confidentiality(REG, personnel.id, Confidentiality::Restricted, None)
        .unwrap();
    let personnel_doc = t
        .create_document(
            REG,
            NewDocument {
                parent: personnel.id,
                subject: "Beurteilung Müller".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    World {
        _dir: dir,
        records,
        t,
        amt,
        personal,
        bauamt,
        personnel,
        personnel_doc,
        building,
        open,
    }
}

fn as_(w: &World, who: &str, role: Role, op: Operation) -> TenantRecords {
    w.t.bind(who, &[role], &[], op).unwrap()
}

fn listed(t: &TenantRecords, unit: Uuid) -> Vec<Uuid> {
    let plan = t.list_plan_units(None, &PageRequest::first(10)).unwrap();
    let _ = unit;
    let mut out = Vec::new();
    for u in plan.items {
        let mut page = PageRequest::first(1);
        loop {
            let p = t.list_files(u.id, &page).unwrap();
            out.extend(p.items.iter().map(|f| f.id));
            match p.next_page_token {
                Some(tok) => page.page_token = tok,
                None => break,
            }
        }
    }
    out
}

fn not_found<T: std::fmt::Debug>(r: Result<T, RecordsError>) {
    assert!(
        matches!(r, Err(RecordsError::NotFound { .. })),
        "expected not found, got {r:?}"
    );
}

#[test]
fn units_decide_who_sees_a_file_and_everything_in_it() {
    let w = world();
    let pers = as_(&w, "clerk:pers", Role::Clerk, Operation::Read);
    let bau = as_(&w, "clerk:bau", Role::Clerk, Operation::Read);
    let head = as_(&w, "head:amt", Role::Reader, Operation::Read);
    let nobody = as_(&w, "reader:extern", Role::Reader, Operation::Read);

    // Lead unit members see their file and what is in it; the unit above sees it too.
    pers.file(w.personnel.id).unwrap();
    pers.document(w.personnel_doc.id).unwrap();
    head.file(w.personnel.id).unwrap();
    head.file(w.building.id).unwrap();
    // Another unit and a principal in no unit do not: not found, like a wrong id.
    not_found(bau.file(w.personnel.id));
    not_found(bau.document(w.personnel_doc.id));
    not_found(nobody.file(w.building.id));
    not_found(bau.history(w.personnel.id, &PageRequest::first(10)));
    not_found(bau.versions(w.personnel_doc.id));
    not_found(bau.list_children(w.personnel.id, &PageRequest::first(10)));
    // A file without a lead unit is everyone's, as before.
    nobody.file(w.open.id).unwrap();

    // Listings leave hidden files out, page by page (page size 1: no empty pages with
    // a token pointing at a hidden file).
    let all = listed(&w.t, w.amt);
    assert_eq!(all.len(), 3);
    assert_eq!(listed(&bau, w.amt), vec![w.building.id, w.open.id]);
    assert_eq!(listed(&pers, w.amt), vec![w.personnel.id, w.open.id]);
    assert_eq!(listed(&nobody, w.amt), vec![w.open.id]);
    assert_eq!(listed(&head, w.amt), all);

    // Search too.
    let q = Query {
        subject_words: vec!["müller".into()],
        ..Query::default()
    };
    let found = |t: &TenantRecords| -> Vec<Uuid> {
        t.query(&q, &PageRequest::first(10))
            .unwrap()
            .items
            .iter()
            .map(Object::id)
            .collect()
    };
    assert_eq!(found(&pers).len(), 2);
    assert!(found(&bau).is_empty());
    assert!(found(&nobody).is_empty());
}

#[test]
fn shares_grant_reading_or_writing_to_further_units_and_principals() {
    let w = world();
    // Beteiligung: Bauamt reads the personnel file; Mitzeichnung: one clerk may write.
    w.t.share(
        REG,
        w.personnel.id,
        Grantee::Unit(w.bauamt),
        Some(false),
        None,
    )
    .unwrap();
    w.t.share(
        REG,
        w.personnel.id,
        Grantee::Principal("clerk:extra".into()),
        Some(true),
        Some("Mitzeichnung"),
    )
    .unwrap();
    let bau_read = as_(&w, "clerk:bau", Role::Clerk, Operation::Read);
    bau_read.document(w.personnel_doc.id).unwrap();
    let bau_write = as_(&w, "clerk:bau", Role::Clerk, Operation::FileDocuments);
    let new_doc = |t: &TenantRecords| {
        t.create_document(
            "x",
            NewDocument {
                parent: w.personnel.id,
                subject: "Stellungnahme".into(),
                ..NewDocument::default()
            },
            None,
        )
    };
    assert!(matches!(
        new_doc(&bau_write),
        Err(RecordsError::AccessDenied { .. })
    ));
    let extra = as_(&w, "clerk:extra", Role::Clerk, Operation::FileDocuments);
    new_doc(&extra).unwrap();
    // Ending the share hides the file again.
    w.t.share(
        REG,
        w.personnel.id,
        Grantee::Unit(w.bauamt),
        None,
        Some("erledigt"),
    )
    .unwrap();
    not_found(as_(&w, "clerk:bau", Role::Clerk, Operation::Read).file(w.personnel.id));
    // History shows the share and its end.
    let h =
        w.t.history(w.personnel.id, &PageRequest::first(100))
            .unwrap();
    let shares: Vec<&HistoryItem> = h
        .items
        .iter()
        .filter(|i| i.action == "access.share")
        .collect();
    assert_eq!(shares.len(), 3);
}

#[test]
fn levels_are_inherited_raised_and_lowered_only_by_a_registrar_with_a_reason() {
    let w = world();
    // The document inherits VS-NfD from its file.
    let doc = w.personnel_doc.id;
    let effective = |id| {
        w.t.effective_access(&w.t.get(id).unwrap())
            .unwrap()
            .unwrap()
            .level
    };
    assert_eq!(effective(doc), Confidentiality::Restricted);
    // Raised on the document: Geheim; a clerk of the unit with the default clearance no
    // longer sees it, one cleared for Geheim does.
    w.t.set_confidentiality(REG, doc, Confidentiality::Secret, None)
        .unwrap();
    assert_eq!(effective(doc), Confidentiality::Secret);
    not_found(as_(&w, "clerk:pers", Role::Clerk, Operation::Read).document(doc));
    w.t.set_clearance(ADMIN, "clerk:pers", Confidentiality::Secret, Some("Ü2"))
        .unwrap();
    as_(&w, "clerk:pers", Role::Clerk, Operation::Read)
        .document(doc)
        .unwrap();
    // An update may raise, never lower.
    let mut patch = Map::new();
    patch.insert("confidentiality".into(), json!("003"));
    let d = w.t.document(doc).unwrap();
    assert!(matches!(
        w.t.update(REG, doc, d.revision, patch, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    // Lowering needs a reason, and a registrar.
    let clerk = as_(&w, "clerk:pers", Role::Clerk, Operation::FileDocuments);
    assert!(matches!(
        clerk.set_confidentiality("clerk:pers", doc, Confidentiality::Restricted, Some("x")),
        Err(RecordsError::AccessDenied { .. })
    ));
    w.t.set_clearance(ADMIN, "registrar:pers", Confidentiality::Secret, None)
        .unwrap();
    w.t.add_member(ADMIN, w.personal, "registrar:pers").unwrap();
    let reg = as_(&w, "registrar:pers", Role::Registrar, Operation::KeepFiles);
    assert!(matches!(
        reg.set_confidentiality("registrar:pers", doc, Confidentiality::Restricted, None),
        Err(RecordsError::Invalid { .. })
    ));
    reg.set_confidentiality(
        "registrar:pers",
        doc,
        Confidentiality::Open,
        Some("herabgestuft nach Ablauf"),
    )
    .unwrap();
    // Still VS-NfD through the file: a lower own level does not undercut the inherited one.
    assert_eq!(effective(doc), Confidentiality::Restricted);
    let h = w.t.history(doc, &PageRequest::first(100)).unwrap();
    let last = h.items.last().unwrap();
    assert_eq!(last.action, "access.confidentiality");
    assert_eq!(last.reason.as_deref(), Some("herabgestuft nach Ablauf"));
    assert_eq!(
        w.t.clearance_history("clerk:pers").unwrap()[0].changes[0].new,
        Value::from("001")
    );
}

#[test]
fn confidential_reads_and_denials_are_logged_open_reads_are_not() {
    let w = world();
    let before = w.t.tenant().size().unwrap();
    // An open object: no entry.
    as_(&w, "reader:extern", Role::Reader, Operation::Read)
        .file(w.open.id)
        .unwrap();
    assert_eq!(w.t.tenant().size().unwrap(), before);
    // A VS-NfD read: one entry, even if the request reads it twice.
    let pers = as_(&w, "clerk:pers", Role::Clerk, Operation::Read);
    pers.file(w.personnel.id).unwrap();
    pers.file(w.personnel.id).unwrap();
    assert_eq!(w.t.tenant().size().unwrap(), before + 1);
    // A denied attempt (on an open file of another unit, too): one entry.
    not_found(as_(&w, "clerk:pers", Role::Clerk, Operation::Read).file(w.building.id));
    assert_eq!(w.t.tenant().size().unwrap(), before + 2);

    let log =
        w.t.access_log(w.personnel.id, &PageRequest::first(10))
            .unwrap();
    assert_eq!(log.items.len(), 1);
    assert_eq!(log.items[0].actor, "clerk:pers");
    assert!(log.items[0].allowed);
    let log =
        w.t.access_log(w.building.id, &PageRequest::first(10))
            .unwrap();
    assert_eq!(log.items.len(), 1);
    assert!(!log.items[0].allowed);
    assert_eq!(log.items[0].denial, "unit");
    // The access log is its registrar's: a clerk of the unit may not list it; another
    // unit's registrar does not even see the file.
    assert!(matches!(
        as_(&w, "clerk:pers", Role::Clerk, Operation::Read)
            .access_log(w.personnel.id, &PageRequest::first(10)),
        Err(RecordsError::AccessDenied { .. })
    ));
    w.t.add_member(ADMIN, w.bauamt, "registrar:bau").unwrap();
    not_found(
        as_(&w, "registrar:bau", Role::Registrar, Operation::Read)
            .access_log(w.personnel.id, &PageRequest::first(10)),
    );
}

#[test]
fn units_nest_move_without_cycles_and_everything_survives_a_rebuild() {
    let w = world();
    assert!(matches!(
        w.t.update_org_unit(ADMIN, w.amt, None, Some(Some(w.personal))),
        Err(RecordsError::Invalid { .. })
    ));
    // Bauamt moved to the top: the head of Hauptamt no longer sees its files.
    w.t.update_org_unit(ADMIN, w.bauamt, Some("Bauordnungsamt"), Some(None))
        .unwrap();
    not_found(as_(&w, "head:amt", Role::Reader, Operation::Read).file(w.building.id));
    // A token bound to a unit acts in it.
    w.t.bind("svc:ozg", &[Role::Clerk], &[w.bauamt], Operation::Read)
        .unwrap()
        .file(w.building.id)
        .unwrap();
    let units = w.t.list_org_units().unwrap();
    assert_eq!(
        units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        vec!["Bauordnungsamt", "Hauptamt", "Personal"]
    );
    assert_eq!(w.t.members(w.personal).unwrap(), vec!["clerk:pers"]);
    w.t.remove_member(ADMIN, w.personal, "clerk:pers").unwrap();
    assert!(w.t.members(w.personal).unwrap().is_empty());
    not_found(as_(&w, "clerk:pers", Role::Clerk, Operation::Read).file(w.personnel.id));
    // Bad input changes nothing.
    let size = w.t.tenant().size().unwrap();
    assert!(w.t.create_org_unit(ADMIN, "", None).is_err());
    assert!(w.t.add_member(ADMIN, Uuid::new_v4(), "x").is_err());
    assert!(w
        .t
        .set_lead_unit(REG, w.personnel_doc.id, Some(w.amt), None)
        .is_err());
    assert!(w
        .t
        .set_lead_unit(REG, w.personnel.id, Some(Uuid::new_v4()), None)
        .is_err());
    assert_eq!(w.t.tenant().size().unwrap(), size);

    let live = dump(&w.t);
    w.t.tenant().rebuild_index().unwrap();
    assert_eq!(dump(&w.t), live, "rebuilt index differs from the live one");
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(report.is_clean());
}

#[test]
fn metadata_search_by_sender_recipient_clerk_and_external_reference_is_filtered_by_access() {
    let w = world();
    let letter = |parent: Uuid, subject: &str| NewDocument {
        parent,
        subject: subject.into(),
        sender: "Bauherr Meier".into(),
        recipients: vec!["Stadtverwaltung, Bauamt".into()],
        clerk: "Schmidt".into(),
        external_reference: "AZ 12/26-M".into(),
        ..NewDocument::default()
    };
    let in_p =
        w.t.create_document(REG, letter(w.personnel.id, "Schreiben"), None)
            .unwrap();
    let in_b =
        w.t.create_document(REG, letter(w.building.id, "Schreiben"), None)
            .unwrap();
    let ids = |t: &TenantRecords, q: &Query| -> Vec<Uuid> {
        let mut v: Vec<Uuid> = t
            .query(q, &PageRequest::first(10))
            .unwrap()
            .items
            .iter()
            .map(Object::id)
            .collect();
        v.sort();
        v
    };
    let mut both = vec![in_p.id, in_b.id];
    both.sort();
    let queries = [
        Query {
            sender: Some("meier".into()),
            ..Query::default()
        },
        Query {
            recipient: Some("BAUAMT".into()),
            ..Query::default()
        },
        Query {
            clerk: Some("schmidt".into()),
            kind: Some(ObjectKind::Document),
            ..Query::default()
        },
        Query {
            external_reference: Some("12/26".into()),
            ..Query::default()
        },
    ];
    for q in &queries {
        assert_eq!(ids(&w.t, q), both, "{q:?}");
        assert_eq!(
            ids(&as_(&w, "clerk:bau", Role::Clerk, Operation::Read), q),
            vec![in_b.id],
            "{q:?}"
        );
        assert_eq!(
            ids(&as_(&w, "clerk:pers", Role::Clerk, Operation::Read), q),
            vec![in_p.id],
            "{q:?}"
        );
        assert!(ids(&as_(&w, "reader:extern", Role::Reader, Operation::Read), q).is_empty());
    }
    // Fields of documents only; a miss finds nothing; bad input is a typed error.
    let q = Query {
        sender: Some("Müller".into()),
        ..Query::default()
    };
    assert!(ids(&w.t, &q).is_empty());
    let q = Query {
        clerk: Some("a\nb".into()),
        ..Query::default()
    };
    assert!(matches!(
        w.t.query(&q, &PageRequest::first(10)),
        Err(RecordsError::Invalid { .. })
    ));
}

/// What names a file names what is in it: a handover process and a destruction record of
/// a file led by a unit are NOT_FOUND (and left out of the listing of records) for a
/// principal outside it, also after the file itself was destroyed.
#[test]
fn processes_and_destruction_records_are_hidden_like_their_files() {
    let w = world();
    let t = &w.t;
    let due_unit = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "900".into(),
                title: "Massenakten".into(),
                retention: Retention::Years(1),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let make = |subject: &str| {
        let f = t
            .create_file(
                REG,
                NewFile {
                    plan_unit: due_unit.id,
                    subject: subject.into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap();
        t.set_lead_unit(ADMIN, f.id, Some(w.bauamt), None).unwrap();
        f
    };
    let gone = make("Altakte");
    t.close(
        REG,
        gone.id,
        None,
        chrono::NaiveDate::from_ymd_opt(2015, 6, 30),
    )
    .unwrap();
    let handed = make("Abgabe");
    let (record, _) = t
        .destroy(REG, &[gone.id], "§ 7 ArchivG", "Amtsleitung")
        .unwrap();
    let (_, sent) = t
        .export_handover(
            REG,
            &[handed.id],
            akte_core::xdomea::Party::agency("16051000", "Stadt Erfurt"),
            akte_core::xdomea::Party::agency("16055000", "Landkreis"),
            std::io::Cursor::new(Vec::new()),
        )
        .unwrap();
    let process = sent.process.id;

    let outsider = as_(&w, "clerk:pers", Role::Registrar, Operation::Read);
    not_found(outsider.destruction_record(record.id));
    assert!(outsider.list_destruction_records().unwrap().is_empty());
    not_found(outsider.handover_process(process));
    let insider = as_(&w, "clerk:bau", Role::Registrar, Operation::Read);
    assert_eq!(
        insider.destruction_record(record.id).unwrap().0.id,
        record.id
    );
    assert_eq!(insider.list_destruction_records().unwrap(), vec![record.id]);
    assert_eq!(insider.handover_process(process).unwrap().id, process);
    // The refusals are in the access log of the (destroyed) file and the handed-over one.
    let log = t
        .access_log(handed.id, &PageRequest::first(100))
        .unwrap()
        .items;
    assert!(
        log.iter()
            .any(|e| e.actor == "clerk:pers" && !e.allowed && e.denial == "unit"),
        "{log:?}"
    );
}
