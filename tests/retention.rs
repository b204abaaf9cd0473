//! Retention: the retention-end rule, inheritance and overrides, holds, explained disposal
//! status and the due list.

use akte_core::records::*;
use akte_core::store::StoreOptions;
use chrono::NaiveDate;
use uuid::Uuid;

const REG: &str = "registrar:weber";

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

#[test]
fn retention_end_table() {
    use RetentionRule::*;
    let cases = [
        // rule, closed on, retention, expected last day of retention
        (
            EndOfClosingYear,
            d(2026, 1, 1),
            Retention::Years(10),
            Some(d(2036, 12, 31)),
        ),
        (
            EndOfClosingYear,
            d(2026, 12, 31),
            Retention::Years(10),
            Some(d(2036, 12, 31)),
        ),
        (
            EndOfClosingYear,
            d(2027, 1, 1),
            Retention::Years(10),
            Some(d(2037, 12, 31)),
        ),
        (
            EndOfClosingYear,
            d(2026, 6, 15),
            Retention::Years(0),
            Some(d(2026, 12, 31)),
        ),
        (
            EndOfClosingYear,
            d(2024, 2, 29),
            Retention::Years(5),
            Some(d(2029, 12, 31)),
        ),
        (EndOfClosingYear, d(2026, 6, 15), Retention::Unlimited, None),
        (
            ClosingDate,
            d(2026, 6, 15),
            Retention::Years(10),
            Some(d(2036, 6, 15)),
        ),
        (
            ClosingDate,
            d(2024, 2, 29),
            Retention::Years(1),
            Some(d(2025, 2, 28)),
        ),
        (
            ClosingDate,
            d(2024, 2, 29),
            Retention::Years(4),
            Some(d(2028, 2, 29)),
        ),
        (
            ClosingDate,
            d(2026, 12, 31),
            Retention::Years(0),
            Some(d(2026, 12, 31)),
        ),
        (ClosingDate, d(2026, 6, 15), Retention::Unlimited, None),
    ];
    for (rule, closed, retention, expected) in cases {
        assert_eq!(
            retention_end(rule, closed, retention),
            expected,
            "{rule:?} {closed} {retention:?}"
        );
    }
    // Far future does not overflow or panic.
    assert_eq!(
        retention_end(EndOfClosingYear, NaiveDate::MAX, Retention::Years(500)),
        None
    );
}

fn setup() -> (tempfile::TempDir, TenantRecords, PlanUnit) {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("amt").unwrap();
    let unit = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                retention: Retention::Years(10),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    (dir, t, unit)
}

fn closed_file(t: &TenantRecords, unit: Uuid, subject: &str, on: NaiveDate) -> File {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    t.close(REG, f.id, None, Some(on)).unwrap();
    t.file(f.id).unwrap()
}

#[test]
fn inheritance_override_and_explained_status() {
    let (_dir, t, unit) = setup();
    let open = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                subject: "offen".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let s = t.disposal_status_on(open.id, d(2040, 1, 1)).unwrap();
    assert_eq!(s.status, DisposalStatus::NotClosed);
    assert_eq!(s.explanation, "not closed");
    assert_eq!(s.source, "plan unit 632.1");

    let f = closed_file(&t, unit.id, "Bauantrag", d(2021, 3, 1));
    let s = t.disposal_status_on(f.id, d(2031, 12, 31)).unwrap();
    assert_eq!(
        s.status,
        DisposalStatus::Retained {
            until: d(2031, 12, 31)
        }
    );
    assert_eq!(s.explanation, "retention ends 2031-12-31");
    let s = t.disposal_status_on(f.id, d(2032, 1, 1)).unwrap();
    assert_eq!(
        s.status,
        DisposalStatus::Due {
            decision: DisposalDecision::Destroy
        }
    );

    // Override on the file, with a reason in the history.
    let f2 = t
        .set_retention(
            REG,
            f.id,
            Some(Retention::Years(30)),
            Some(DisposalDecision::Archive),
            "Grundsatzverfahren",
        )
        .unwrap();
    assert_eq!(f2.retention_override, Some(Retention::Years(30)));
    let s = t.disposal_status_on(f.id, d(2032, 1, 1)).unwrap();
    assert_eq!(
        s.status,
        DisposalStatus::Retained {
            until: d(2051, 12, 31)
        }
    );
    assert_eq!(s.decision, DisposalDecision::Archive);
    assert_eq!(s.source, "set on the file");
    let history = t.history(f.id, &PageRequest::first(10)).unwrap().items;
    let last = history.last().unwrap();
    assert_eq!(last.action, "file.retention");
    assert_eq!(last.reason.as_deref(), Some("Grundsatzverfahren"));
    assert!(
        t.set_retention(REG, f.id, None, None, "").is_err(),
        "a reason is required"
    );
    // Clearing the override inherits again.
    t.set_retention(REG, f.id, None, None, "zurück zur Vorgabe")
        .unwrap();
    assert_eq!(
        t.disposal_status_on(f.id, d(2032, 1, 1)).unwrap().source,
        "plan unit 632.1"
    );

    // Unlimited retention is never due.
    t.set_retention(
        REG,
        f.id,
        Some(Retention::Unlimited),
        None,
        "dauernd aufbewahren",
    )
    .unwrap();
    assert_eq!(
        t.disposal_status_on(f.id, d(2999, 1, 1)).unwrap().status,
        DisposalStatus::Unlimited
    );

    // The other rule, configured per tenant.
    t.set_retention(REG, f.id, None, None, "Vorgabe").unwrap();
    t.configure_retention_rule(REG, RetentionRule::ClosingDate)
        .unwrap();
    assert_eq!(
        t.disposal_status_on(f.id, d(2031, 3, 2)).unwrap().status,
        DisposalStatus::Due {
            decision: DisposalDecision::Destroy
        }
    );
    assert_eq!(
        t.disposal_status_on(f.id, d(2031, 3, 1)).unwrap().status,
        DisposalStatus::Retained {
            until: d(2031, 3, 1)
        }
    );
}

#[test]
fn holds_block_the_file_and_everything_in_it() {
    let (_dir, t, unit) = setup();
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                subject: "Akte".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let c = t
        .create_case(
            REG,
            NewCase {
                parent: f.id,
                subject: "Vorgang".into(),
                ..NewCase::default()
            },
            None,
        )
        .unwrap();
    let doc = t
        .create_document(
            REG,
            NewDocument {
                parent: c.id,
                subject: "Schreiben".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    t.close(REG, f.id, None, Some(d(2010, 5, 5))).unwrap();
    let day = d(2030, 1, 1);
    assert!(matches!(
        t.disposal_status_on(f.id, day).unwrap().status,
        DisposalStatus::Due { .. }
    ));

    let hold = t
        .place_hold(
            "archivist:klein",
            doc.id,
            "Klage anhängig",
            "VG Weimar 1 K 123/26",
        )
        .unwrap();
    assert_eq!(hold.file, f.id);
    for id in [f.id, c.id, doc.id] {
        let s = t.disposal_status_on(id, day).unwrap();
        assert!(
            matches!(s.status, DisposalStatus::Held { .. }),
            "{id}: {s:?}"
        );
        assert!(
            s.explanation.contains("Klage anhängig"),
            "{}",
            s.explanation
        );
    }
    assert!(t.due_list(&DueFilter::default(), day).unwrap().is_empty());
    assert_eq!(t.list_holds(true).unwrap(), vec![hold.clone()]);
    assert!(t.place_hold(REG, Uuid::new_v4(), "x", "").is_err());
    assert!(
        t.place_hold(REG, unit.id, "x", "").is_err(),
        "plan units cannot be held"
    );

    let released = t
        .release_hold("archivist:klein", hold.id, "Verfahren abgeschlossen")
        .unwrap();
    assert!(released.released.is_some());
    assert!(t.release_hold(REG, hold.id, "again").is_err());
    assert!(t.list_holds(true).unwrap().is_empty());
    assert_eq!(t.list_holds(false).unwrap().len(), 1);
    assert_eq!(t.due_list(&DueFilter::default(), day).unwrap().len(), 1);
    let h = t.history(doc.id, &PageRequest::first(10)).unwrap().items;
    assert_eq!(
        h.iter().map(|i| i.action.as_str()).collect::<Vec<_>>(),
        vec!["document.create", "hold.place", "hold.release"]
    );
}

#[test]
fn due_list_filters() {
    let (_dir, t, unit) = setup();
    let other = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "100".into(),
                title: "Personal".into(),
                retention: Retention::Years(5),
                disposal: DisposalDecision::Archive,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let a = closed_file(&t, unit.id, "A", d(2015, 1, 1)); // ends 2025-12-31, V
    let b = closed_file(&t, other.id, "B", d(2019, 1, 1)); // ends 2024-12-31, A
    let _c = closed_file(&t, unit.id, "C", d(2024, 1, 1)); // ends 2034-12-31
    let day = d(2026, 6, 1);
    let all: Vec<Uuid> = t
        .due_list(&DueFilter::default(), day)
        .unwrap()
        .iter()
        .map(|e| e.file)
        .collect();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&a.id) && all.contains(&b.id));
    let only_a = t
        .due_list(
            &DueFilter {
                decision: Some(DisposalDecision::Archive),
                ..DueFilter::default()
            },
            day,
        )
        .unwrap();
    assert_eq!(
        only_a.iter().map(|e| e.file).collect::<Vec<_>>(),
        vec![b.id]
    );
    let by_unit = t
        .due_list(
            &DueFilter {
                plan_unit: Some(unit.id),
                ..DueFilter::default()
            },
            day,
        )
        .unwrap();
    assert_eq!(
        by_unit.iter().map(|e| e.file).collect::<Vec<_>>(),
        vec![a.id]
    );
    let early = t
        .due_list(
            &DueFilter {
                ended_by: Some(d(2025, 1, 1)),
                ..DueFilter::default()
            },
            day,
        )
        .unwrap();
    assert_eq!(early.iter().map(|e| e.file).collect::<Vec<_>>(), vec![b.id]);
}

#[test]
fn due_files_page_by_page() {
    let (_dir, t, unit) = setup();
    let mut due: Vec<Uuid> = (0..7)
        .map(|i| closed_file(&t, unit.id, &format!("F{i}"), d(2015, 1, 1)).id)
        .collect();
    closed_file(&t, unit.id, "not yet", d(2024, 1, 1));
    due.sort();
    let day = d(2026, 6, 1);
    let filter = DueFilter::default();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    let mut pages = 0;
    loop {
        let p = t.due_page(&filter, day, &page).unwrap();
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|e| e.file));
        pages += 1;
        match p.next_page_token {
            Some(token) => page.page_token = token,
            None => break,
        }
    }
    assert_eq!(seen, due, "every due file once, in id order");
    assert!(pages >= 3, "{pages} pages of at most 3");
    assert_eq!(
        t.due_list(&filter, day)
            .unwrap()
            .iter()
            .map(|e| e.file)
            .collect::<Vec<_>>(),
        due
    );

    // Bad pages are refused with the field named.
    for bad in [
        PageRequest {
            page_size: 1001,
            page_token: String::new(),
        },
        PageRequest {
            page_size: 3,
            page_token: "not-a-token".into(),
        },
    ] {
        let e = t.due_page(&filter, day, &bad).unwrap_err().to_string();
        assert!(e.contains("page_"), "{e}");
    }
    // A token of another listing is not accepted here.
    let other = t
        .list_files(unit.id, &PageRequest::first(1))
        .unwrap()
        .next_page_token
        .expect("more than one child");
    let e = t
        .due_page(
            &filter,
            day,
            &PageRequest {
                page_size: 3,
                page_token: other,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("page_token"), "{e}");
}
