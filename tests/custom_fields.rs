//! Agency metadata at the records level: every field type's validation on write (a bad
//! value is an error naming `custom_fields.<key>` and changes nothing), scopes by plan unit
//! and document type, required and retired fields, values in history and search, and a
//! rebuilt index equal to the live one. Runs on every backend (`AKTE_TEST_BACKEND`).

use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::index_dump as dump;
use chrono::NaiveDate;
use uuid::Uuid;

const ADMIN: &str = "admin:it";
const REG: &str = "registrar:weber";

fn def(name: &str, t: FieldType, scope: FieldScope) -> NewFieldDefinition {
    NewFieldDefinition {
        name: name.into(),
        label: name.to_uppercase(),
        description: String::new(),
        field_type: t,
        scope,
        applies_to: Vec::new(),
        required: false,
        allowed_values: Vec::new(),
    }
}

fn values(pairs: &[(&str, FieldValue)]) -> FieldValues {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, RecordsError>, field: &str) {
    match r {
        Err(RecordsError::Invalid { field: f, reason }) => {
            assert_eq!(f, field, "{reason}")
        }
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

#[test]
fn every_field_type_is_checked_on_write_and_bad_values_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("amt").unwrap();
    let plan = |code: &str, parent: Option<Uuid>| {
        t.create_plan_unit(
            REG,
            NewPlanUnit {
                code: code.into(),
                title: code.into(),
                parent,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap()
    };
    let top = plan("600", None);
    let below = plan("600.1", Some(top.id));
    let elsewhere = plan("100", None);
    let scope = FieldScope::PlanUnit(top.id);
    t.define_field(ADMIN, def("titel", FieldType::Text, scope.clone()))
        .unwrap();
    t.define_field(ADMIN, def("betrag", FieldType::Number, scope.clone()))
        .unwrap();
    t.define_field(ADMIN, def("frist", FieldType::Date, scope.clone()))
        .unwrap();
    let art = t
        .define_field(
            ADMIN,
            NewFieldDefinition {
                allowed_values: vec!["A".into(), "B".into()],
                required: true,
                applies_to: vec![ObjectKind::File],
                ..def("art", FieldType::Code, scope.clone())
            },
        )
        .unwrap();
    t.define_field(ADMIN, def("bezug", FieldType::Reference, scope.clone()))
        .unwrap();
    t.define_field(
        ADMIN,
        def(
            "nummer",
            FieldType::Text,
            FieldScope::DocumentType("Bescheid".into()),
        ),
    )
    .unwrap();
    // Definitions are checked too.
    invalid_field(
        t.define_field(ADMIN, def("leer", FieldType::Code, scope.clone())),
        "allowed_values",
    );
    invalid_field(
        t.define_field(ADMIN, def("Gross", FieldType::Text, scope.clone())),
        "name",
    );
    assert!(matches!(
        t.define_field(ADMIN, def("titel", FieldType::Text, scope.clone())),
        Err(RecordsError::AlreadyExists { .. })
    ));
    assert!(matches!(
        t.define_field(
            ADMIN,
            def("x", FieldType::Text, FieldScope::PlanUnit(Uuid::new_v4()))
        ),
        Err(RecordsError::NotFound { .. })
    ));

    let file = |vals: FieldValues| {
        t.create_file(
            REG,
            NewFile {
                plan_unit: below.id,
                subject: "Akte".into(),
                custom_fields: vals,
                ..NewFile::default()
            },
            None,
        )
    };
    let code = |c: &str| ("art", FieldValue::Code(c.into()));
    let good = file(values(&[
        code("A"),
        ("titel", FieldValue::Text("Lindenstraße 3".into())),
        ("betrag", FieldValue::Number("0012.50".into())),
        (
            "frist",
            FieldValue::Date(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()),
        ),
    ]))
    .unwrap();
    assert_eq!(
        good.custom_fields.get("betrag"),
        Some(&FieldValue::Number("12.5".into())),
        "numbers are stored canonically"
    );
    let size = t.tenant().size().unwrap();
    let long = "x".repeat(4001);
    let year_zero = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
    for (vals, field) in [
        (values(&[]), "custom_fields.art"),
        (values(&[code("C")]), "custom_fields.art"),
        (
            values(&[("art", FieldValue::Text("A".into()))]),
            "custom_fields.art",
        ),
        (
            values(&[code("A"), ("titel", FieldValue::Text(long.clone()))]),
            "custom_fields.titel",
        ),
        (
            values(&[
                code("A"),
                ("titel", FieldValue::Text("zwei\nZeilen".into())),
            ]),
            "custom_fields.titel",
        ),
        (
            values(&[code("A"), ("betrag", FieldValue::Number("1e5".into()))]),
            "custom_fields.betrag",
        ),
        (
            values(&[code("A"), ("frist", FieldValue::Date(year_zero))]),
            "custom_fields.frist",
        ),
        (
            values(&[code("A"), ("bezug", FieldValue::Reference(Uuid::new_v4()))]),
            "custom_fields.bezug",
        ),
        (
            values(&[code("A"), ("bezug", FieldValue::Reference(top.id))]),
            "custom_fields.bezug",
        ),
        (
            values(&[code("A"), ("nummer", FieldValue::Text("B-1".into()))]),
            "custom_fields.nummer",
        ),
        (
            values(&[code("A"), ("Falsch", FieldValue::Text("x".into()))]),
            "custom_fields.Falsch",
        ),
    ] {
        invalid_field(file(vals), field);
    }
    assert_eq!(t.tenant().size().unwrap(), size, "nothing was written");
    // A reference to another file is fine; outside the unit nothing applies.
    let other = file(values(&[
        code("B"),
        ("bezug", FieldValue::Reference(good.id)),
    ]))
    .unwrap();
    invalid_field(
        t.create_file(
            REG,
            NewFile {
                plan_unit: elsewhere.id,
                subject: "Personal".into(),
                custom_fields: values(&[("titel", FieldValue::Text("x".into()))]),
                ..NewFile::default()
            },
            None,
        ),
        "custom_fields.titel",
    );
    // Documents: the plan unit's fields (not the file-only code) and their type's fields.
    let doc = t
        .create_document(
            REG,
            NewDocument {
                parent: good.id,
                subject: "Bescheid".into(),
                document_type: "Bescheid".into(),
                custom_fields: values(&[
                    ("nummer", FieldValue::Text("B-1".into())),
                    ("betrag", FieldValue::Number("-3".into())),
                ]),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(doc.custom_fields.len(), 2);

    // Updates: one value by key; a code retired later does not block other changes.
    let patch = |k: &str, v: serde_json::Value| {
        let mut m = serde_json::Map::new();
        m.insert(k.into(), v);
        m
    };
    let before = t.get(good.id).unwrap();
    invalid_field(
        t.update(
            REG,
            good.id,
            before.revision(),
            patch(
                "custom_fields.betrag",
                serde_json::json!({"number": "zwölf"}),
            ),
            None,
        ),
        "custom_fields.betrag",
    );
    assert_eq!(t.get(good.id).unwrap(), before);
    t.update_field(
        ADMIN,
        art.id,
        art.revision,
        FieldDefinitionPatch {
            allowed_values: Some(vec!["B".into()]),
            ..FieldDefinitionPatch::default()
        },
        Some("A entfällt"),
    )
    .unwrap();
    let after = t
        .update(
            REG,
            good.id,
            before.revision(),
            patch("custom_fields.betrag", serde_json::json!({"number": "13"})),
            Some("Nachtrag".into()),
        )
        .unwrap();
    let Object::File(after) = after else {
        panic!("a file")
    };
    assert_eq!(
        after.custom_fields.get("art"),
        Some(&FieldValue::Code("A".into()))
    );
    let history = t.history(good.id, &PageRequest::first(10)).unwrap().items;
    let change = &history.last().unwrap().changes[0];
    assert_eq!(change.field, "custom_fields");
    assert_eq!(change.old["betrag"], serde_json::json!({"number": "12.5"}));
    assert_eq!(change.new["betrag"], serde_json::json!({"number": "13"}));
    // Removing a required value is refused.
    invalid_field(
        t.update(
            REG,
            good.id,
            after.revision,
            patch("custom_fields.art", serde_json::Value::Null),
            None,
        ),
        "custom_fields.art",
    );

    // Search by value and range, combined with the kind.
    let q = |filters: Vec<FieldFilter>, kind: Option<ObjectKind>| {
        let mut ids: Vec<Uuid> = t
            .query(
                &Query {
                    kind,
                    custom_fields: filters,
                    ..Query::default()
                },
                &PageRequest::first(100),
            )
            .unwrap()
            .items
            .iter()
            .map(|o| o.id())
            .collect();
        ids.sort();
        ids
    };
    let f = |name: &str, eq: Option<&str>, from: Option<&str>, to: Option<&str>| FieldFilter {
        name: name.into(),
        equals: eq.map(str::to_owned),
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
    };
    assert_eq!(
        q(vec![f("art", Some("B"), None, None)], None),
        vec![other.id]
    );
    assert_eq!(
        q(vec![f("betrag", None, Some("-5"), Some("0"))], None),
        vec![doc.id]
    );
    assert_eq!(
        q(
            vec![f("betrag", None, Some("-5"), None)],
            Some(ObjectKind::File)
        ),
        vec![good.id]
    );
    assert_eq!(
        q(vec![f("titel", Some("LINDENSTRASSE 3"), None, None)], None),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        q(vec![f("titel", Some("LINDENSTRAßE 3"), None, None)], None),
        vec![good.id]
    );
    assert_eq!(
        q(
            vec![f("bezug", Some(&good.id.to_string()), None, None)],
            None
        ),
        vec![other.id]
    );

    // The index is derived: a rebuild gives the same keys; verification is clean.
    t.tenant().checkpoint().unwrap();
    let live = dump(&t);
    t.tenant().rebuild_index().unwrap();
    assert_eq!(dump(&t), live, "rebuilt index differs from the live one");
    let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}
