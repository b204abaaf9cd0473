//! Agency metadata over gRPC: custom field definitions (CustomFieldService), values on
//! files, cases and documents, validation on write (a bad value changes nothing), search
//! by value (filtered by access), and the values in the objects' history.

mod support;

use akte_server::client::Clients;
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::r#type::Date;
use pb::custom_field_value::Value as V;
use support::{expect_err, Env};
use tonic::Code;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const T: &str = "tenants/amt";

fn val(field: &str, v: V) -> pb::CustomFieldValue {
    pb::CustomFieldValue {
        field: field.into(),
        value: Some(v),
    }
}

fn date(y: i32, m: i32, d: i32) -> Date {
    Date {
        year: y,
        month: m,
        day: d,
    }
}

async fn define(admin: &mut Clients, id: &str, f: pb::CustomField) -> R<pb::CustomField> {
    Ok(admin
        .fields
        .create_custom_field(pb::CreateCustomFieldRequest {
            parent: T.into(),
            custom_field: Some(f),
            custom_field_id: id.into(),
        })
        .await?
        .into_inner())
}

async fn search(c: &mut Clients, filters: Vec<pb::CustomFieldFilter>) -> R<Vec<String>> {
    let r = c
        .search
        .search(pb::SearchRequest {
            parent: T.into(),
            custom_fields: filters,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.results
        .into_iter()
        .filter_map(|r| match r.object? {
            pb::search_result::Object::File(f) => Some(f.name),
            pb::search_result::Object::Case(c) => Some(c.name),
            pb::search_result::Object::Document(d) => Some(d.name),
            pb::search_result::Object::PlanUnit(u) => Some(u.name),
        })
        .collect())
}

fn eq(field: &str, v: &str) -> pb::CustomFieldFilter {
    pb::CustomFieldFilter {
        field: field.into(),
        equals: v.into(),
        ..Default::default()
    }
}

fn range(field: &str, min: &str, max: &str) -> pb::CustomFieldFilter {
    pb::CustomFieldFilter {
        field: field.into(),
        min: min.into(),
        max: max.into(),
        ..Default::default()
    }
}

async fn file_count(c: &mut Clients, unit: &str) -> R<usize> {
    Ok(c.files
        .list_files(pb::ListFilesRequest {
            parent: unit.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .files
        .len())
}

#[tokio::test]
async fn custom_fields_are_defined_checked_searched_and_kept_in_history() -> R<()> {
    let env = Env::new().await;
    env.tenant("amt").await;
    let mut admin = env.as_role("amt", "admin:it", &[pb::Role::Admin]).await;
    let mut reg = env
        .as_role("amt", "registrar:weber", &[pb::Role::Registrar])
        .await;
    let mut clerk = env
        .as_role("amt", "clerk:schmidt", &[pb::Role::Clerk])
        .await;
    let unit = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "632".into(),
                title: "Bauaufsicht".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let sub = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: unit.name.clone(),
            plan_unit: Some(pb::PlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let other_unit = reg
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: T.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "110".into(),
                title: "Personal".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();

    // Definitions: only an administrator defines; a clerk may read them.
    let art = pb::CustomField {
        label: "Verfahrensart".into(),
        r#type: pb::CustomFieldType::Code as i32,
        plan_unit: unit.name.clone(),
        applies_to: vec![pb::CustomFieldTarget::File as i32],
        required: true,
        allowed_values: vec!["Neubau".into(), "Umbau".into(), "Abriss".into()],
        ..Default::default()
    };
    expect_err(
        clerk
            .fields
            .create_custom_field(pb::CreateCustomFieldRequest {
                parent: T.into(),
                custom_field: Some(art.clone()),
                custom_field_id: "verfahrensart".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let art = define(&mut admin, "verfahrensart", art).await?;
    assert_eq!(art.name, format!("{T}/customFields/verfahrensart"));
    assert!(art.active);
    define(
        &mut admin,
        "baukosten",
        pb::CustomField {
            label: "Baukosten (EUR)".into(),
            r#type: pb::CustomFieldType::Number as i32,
            plan_unit: unit.name.clone(),
            ..Default::default()
        },
    )
    .await?;
    define(
        &mut admin,
        "antragsdatum",
        pb::CustomField {
            label: "Antragsdatum".into(),
            r#type: pb::CustomFieldType::Date as i32,
            plan_unit: unit.name.clone(),
            ..Default::default()
        },
    )
    .await?;
    define(
        &mut admin,
        "bezug",
        pb::CustomField {
            label: "Bezugsakte".into(),
            r#type: pb::CustomFieldType::Reference as i32,
            plan_unit: unit.name.clone(),
            ..Default::default()
        },
    )
    .await?;
    define(
        &mut admin,
        "bescheidnummer",
        pb::CustomField {
            label: "Bescheidnummer".into(),
            r#type: pb::CustomFieldType::Text as i32,
            document_type: "Bescheid".into(),
            required: true,
            ..Default::default()
        },
    )
    .await?;
    // A second definition with the same key, a code field without codes, a bad key.
    let dup = admin
        .fields
        .create_custom_field(pb::CreateCustomFieldRequest {
            parent: T.into(),
            custom_field: Some(pb::CustomField {
                label: "x".into(),
                r#type: pb::CustomFieldType::Text as i32,
                plan_unit: unit.name.clone(),
                ..Default::default()
            }),
            custom_field_id: "baukosten".into(),
        })
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);
    for (id, f, field) in [
        (
            "leer",
            pb::CustomField {
                label: "Leer".into(),
                r#type: pb::CustomFieldType::Code as i32,
                plan_unit: unit.name.clone(),
                ..Default::default()
            },
            "custom_field.allowed_values",
        ),
        (
            "Gross",
            pb::CustomField {
                label: "Gross".into(),
                r#type: pb::CustomFieldType::Text as i32,
                plan_unit: unit.name.clone(),
                ..Default::default()
            },
            "custom_field_id",
        ),
    ] {
        let e = admin
            .fields
            .create_custom_field(pb::CreateCustomFieldRequest {
                parent: T.into(),
                custom_field: Some(f),
                custom_field_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    }
    let listed = clerk
        .fields
        .list_custom_fields(pb::ListCustomFieldsRequest {
            parent: T.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let keys: Vec<&str> = listed
        .custom_fields
        .iter()
        .map(|f| f.name.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "antragsdatum",
            "baukosten",
            "bescheidnummer",
            "bezug",
            "verfahrensart"
        ]
    );

    // A file below the unit's sub-unit takes the values; the required code is needed.
    let create = |subject: &str, values: Vec<pb::CustomFieldValue>| pb::CreateFileRequest {
        parent: sub.name.clone(),
        file: Some(pb::File {
            subject: subject.into(),
            custom_fields: values,
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = reg
        .files
        .create_file(create(
            "Neubau Lindenstraße 3",
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val("baukosten", V::NumberValue("0450000.50".into())),
                val("antragsdatum", V::DateValue(date(2026, 3, 2))),
            ],
        ))
        .await?
        .into_inner();
    let number = a
        .custom_fields
        .iter()
        .find(|v| v.field == "baukosten")
        .and_then(|v| v.value.clone());
    assert_eq!(number, Some(V::NumberValue("450000.5".into())));
    let b = reg
        .files
        .create_file(create(
            "Umbau Marktplatz 1",
            vec![
                val("verfahrensart", V::CodeValue("Umbau".into())),
                val("baukosten", V::NumberValue("75000".into())),
                val("antragsdatum", V::DateValue(date(2025, 11, 20))),
                val("bezug", V::ReferenceValue(a.name.clone())),
            ],
        ))
        .await?
        .into_inner();

    // Bad values: each is INVALID_ARGUMENT naming the field, and no file is made.
    let before = file_count(&mut reg, &sub.name).await?;
    let bad: Vec<(Vec<pb::CustomFieldValue>, &str)> = vec![
        (vec![], "custom_fields.verfahrensart"),
        (
            vec![val("verfahrensart", V::CodeValue("Anbau".into()))],
            "custom_fields.verfahrensart",
        ),
        (
            vec![val("verfahrensart", V::TextValue("Neubau".into()))],
            "custom_fields.verfahrensart",
        ),
        (
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val("baukosten", V::NumberValue("12,50".into())),
            ],
            "custom_fields.baukosten",
        ),
        (
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val(
                    "bezug",
                    V::ReferenceValue("00000000-0000-4000-8000-000000000000".into()),
                ),
            ],
            "custom_fields.bezug",
        ),
        (
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val("bescheidnummer", V::TextValue("B-1".into())),
            ],
            "custom_fields.bescheidnummer",
        ),
        (
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val("unbekannt", V::TextValue("x".into())),
            ],
            "custom_fields.unbekannt",
        ),
    ];
    for (values, field) in bad {
        let e = reg
            .files
            .create_file(create("Falsch", values.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{values:?}: {e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    }
    assert_eq!(file_count(&mut reg, &sub.name).await?, before);
    // Outside the unit the fields do not apply (and nothing is required).
    let e = reg
        .files
        .create_file(pb::CreateFileRequest {
            parent: other_unit.name.clone(),
            file: Some(pb::File {
                subject: "Personalakte".into(),
                custom_fields: vec![val("baukosten", V::NumberValue("1".into()))],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("custom_fields.baukosten"), "{e:?}");
    reg.files
        .create_file(pb::CreateFileRequest {
            parent: other_unit.name.clone(),
            file: Some(pb::File {
                subject: "Personalakte".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;

    // Documents: a field of a document type is required for documents of that type.
    let doc_req = |ty: &str, values: Vec<pb::CustomFieldValue>| pb::CreateDocumentRequest {
        parent: a.name.clone(),
        document: Some(pb::Document {
            subject: "Baugenehmigung".into(),
            document_type: ty.into(),
            custom_fields: values,
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = clerk
        .documents
        .create_document(doc_req("Bescheid", vec![]))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("custom_fields.bescheidnummer"),
        "{e:?}"
    );
    let bescheid = clerk
        .documents
        .create_document(doc_req(
            "Bescheid",
            vec![val("bescheidnummer", V::TextValue("BG-2026-0042".into()))],
        ))
        .await?
        .into_inner();
    assert_eq!(bescheid.document_type, "Bescheid");

    // Updates: one field by mask path; a bad value changes nothing.
    let mut change = a.clone();
    change.custom_fields = vec![val("baukosten", V::NumberValue("-1x".into()))];
    let e = reg
        .files
        .update_file(pb::UpdateFileRequest {
            file: Some(change.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["custom_fields.baukosten".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("custom_fields.baukosten"), "{e:?}");
    let unchanged = reg
        .files
        .get_file(pb::GetFileRequest {
            name: a.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(unchanged.etag, a.etag);
    change.custom_fields = vec![val("baukosten", V::NumberValue("520000".into()))];
    let a2 = reg
        .files
        .update_file(pb::UpdateFileRequest {
            file: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["custom_fields.baukosten".into()],
            }),
            reason: "Nachtrag".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(a2.custom_fields.len(), 3, "{:?}", a2.custom_fields);
    assert!(a2
        .custom_fields
        .contains(&val("baukosten", V::NumberValue("520000".into()))));

    // History: the create and the change of the values.
    let h = reg
        .history
        .list_history(pb::ListHistoryRequest {
            parent: a.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let created = h.entries[0]
        .changes
        .iter()
        .find(|c| c.field == "custom_fields")
        .expect("custom fields in the create's history");
    assert!(created.new_value.contains("450000.5"), "{created:?}");
    let last = h.entries.last().expect("update");
    assert_eq!(last.action, "file.update");
    let c = &last.changes[0];
    assert_eq!(c.field, "custom_fields");
    assert!(
        c.old_value.contains("450000.5") && c.new_value.contains("520000"),
        "{c:?}"
    );
    assert_eq!(last.reason, "Nachtrag");

    // Search: equality (code, text case-insensitively, reference), ranges on numbers and
    // dates, combined with other criteria.
    assert_eq!(
        search(&mut clerk, vec![eq("verfahrensart", "Umbau")]).await?,
        vec![b.name.clone()]
    );
    assert_eq!(
        search(&mut clerk, vec![eq("bescheidnummer", "bg-2026-0042")]).await?,
        vec![bescheid.name.clone()]
    );
    assert_eq!(
        search(&mut clerk, vec![eq("bezug", &a.name[a.name.len() - 36..])]).await?,
        vec![b.name.clone()]
    );
    let mut by_cost = search(&mut clerk, vec![range("baukosten", "70000", "600000")]).await?;
    by_cost.sort();
    let mut both = vec![a.name.clone(), b.name.clone()];
    both.sort();
    assert_eq!(by_cost, both);
    assert_eq!(
        search(&mut clerk, vec![range("baukosten", "500000", "")]).await?,
        vec![a.name.clone()]
    );
    assert_eq!(
        search(&mut clerk, vec![range("antragsdatum", "", "2025-12-31")]).await?,
        vec![b.name.clone()]
    );
    assert_eq!(
        search(
            &mut clerk,
            vec![range("baukosten", "1", ""), eq("verfahrensart", "Neubau")]
        )
        .await?,
        vec![a.name.clone()]
    );
    let e = clerk
        .search
        .search(pb::SearchRequest {
            parent: T.into(),
            custom_fields: vec![range("verfahrensart", "A", "B")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = clerk
        .search
        .search(pb::SearchRequest {
            parent: T.into(),
            custom_fields: vec![eq("antragsdatum", "2.3.2026")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Search is filtered by access: a file led by a unit the clerk is not in is not found.
    let bauamt = admin
        .access
        .create_org_unit(pb::CreateOrgUnitRequest {
            parent: T.into(),
            org_unit: Some(pb::OrgUnit {
                display_name: "Bauamt".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    reg.access
        .set_lead_unit(pb::SetLeadUnitRequest {
            name: b.name.clone(),
            lead_unit: bauamt.name.clone(),
            ..Default::default()
        })
        .await?;
    assert!(search(&mut clerk, vec![eq("verfahrensart", "Umbau")])
        .await?
        .is_empty());
    assert_eq!(
        search(&mut reg, vec![eq("verfahrensart", "Umbau")]).await?,
        Vec::<String>::new(),
        "the registrar is in no unit either"
    );

    // A definition's change is in its history; a retired field takes no new values.
    let retired = admin
        .fields
        .update_custom_field(pb::UpdateCustomFieldRequest {
            custom_field: Some(pb::CustomField {
                name: format!("{T}/customFields/baukosten"),
                active: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["active".into()],
            }),
            reason: "Feld entfällt".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!retired.active);
    assert_eq!(retired.etag, "2");
    let h = admin
        .history
        .list_history(pb::ListHistoryRequest {
            parent: format!("{T}/customFields/baukosten"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(h.entries.len(), 2);
    assert_eq!(h.entries[1].action, "custom_field.update");
    assert_eq!(h.entries[1].reason, "Feld entfällt");
    let e = reg
        .files
        .create_file(create(
            "Zu spät",
            vec![
                val("verfahrensart", V::CodeValue("Neubau".into())),
                val("baukosten", V::NumberValue("1".into())),
            ],
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("retired"), "{e:?}");
    Ok(())
}

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/xdomea/schemas/3.1.0/xdomea.xsd"
);

/// The message in a ZIP validates against the xdomea 3.1.0 schema (xmllint); returns it.
fn valid_xml(zip: &[u8], message: akte_core::xdomea::MessageType) -> String {
    let xml = akte_core::xdomea::read_received_zip(std::io::Cursor::new(zip), &[message], 1 << 26)
        .expect("a message ZIP")
        .xml;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.xml");
    std::fs::write(&p, &xml).expect("write");
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(&p)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "{} does not validate: {}",
        message.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&xml).into_owned()
}

async fn plan_unit(c: &mut Clients, tenant: &str) -> R<String> {
    Ok(c.plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: tenant.into(),
            plan_unit: Some(pb::PlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name)
}

/// The definitions both agencies have: a code and a number field for the plan unit, a
/// text field for documents of type Bescheid.
async fn shared_fields(admin: &mut Clients, tenant: &str, unit: &str) -> R<()> {
    for (id, f) in [
        (
            "verfahrensart",
            pb::CustomField {
                label: "Verfahrensart".into(),
                r#type: pb::CustomFieldType::Code as i32,
                plan_unit: unit.into(),
                applies_to: vec![pb::CustomFieldTarget::File as i32],
                allowed_values: vec!["Neubau".into(), "Umbau".into()],
                ..Default::default()
            },
        ),
        (
            "baukosten",
            pb::CustomField {
                label: "Baukosten".into(),
                r#type: pb::CustomFieldType::Number as i32,
                plan_unit: unit.into(),
                ..Default::default()
            },
        ),
        (
            "bescheidnummer",
            pb::CustomField {
                label: "Bescheidnummer".into(),
                r#type: pb::CustomFieldType::Text as i32,
                document_type: "Bescheid".into(),
                ..Default::default()
            },
        ),
    ] {
        admin
            .fields
            .create_custom_field(pb::CreateCustomFieldRequest {
                parent: tenant.into(),
                custom_field: Some(f),
                custom_field_id: id.into(),
            })
            .await?;
    }
    Ok(())
}

/// A handover (0401) carries the values as AnwendungsspezifischeErweiterung (Feldgruppe
/// Fachdaten, each Feld with its Datentyp), validates against the schema, and the
/// receiving agency takes them over into its own fields; a field it does not define is
/// reported, not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_fields_travel_in_a_handover_and_are_taken_over() -> R<()> {
    let env = Env::new().await;
    env.tenant("stadt").await;
    env.tenant("kreis").await;
    let mut a = env.admin().await;
    let unit_a = plan_unit(&mut a, "tenants/stadt").await?;
    shared_fields(&mut a, "tenants/stadt", &unit_a).await?;
    // Only the giving agency has this one.
    a.fields
        .create_custom_field(pb::CreateCustomFieldRequest {
            parent: "tenants/stadt".into(),
            custom_field: Some(pb::CustomField {
                label: "Eingang".into(),
                r#type: pb::CustomFieldType::Date as i32,
                plan_unit: unit_a.clone(),
                ..Default::default()
            }),
            custom_field_id: "eingang".into(),
        })
        .await?;
    let file = a
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit_a.clone(),
            file: Some(pb::File {
                subject: "Neubau Lindenstraße 3".into(),
                custom_fields: vec![
                    val("verfahrensart", V::CodeValue("Neubau".into())),
                    val("baukosten", V::NumberValue("450000.5".into())),
                    val("eingang", V::DateValue(date(2026, 3, 2))),
                ],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let doc = a
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.name.clone(),
            document: Some(pb::Document {
                subject: "Baugenehmigung".into(),
                document_type: "Bescheid".into(),
                custom_fields: vec![val("bescheidnummer", V::TextValue("BG-42 & <1>".into()))],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();

    let s = a
        .migration
        .export_handover(pb::ExportHandoverRequest {
            parent: "tenants/stadt".into(),
            files: vec![file.name.clone()],
            sender: Some(pb::Agency {
                code: "16051000".into(),
                name: "Stadt Erfurt".into(),
                ..Default::default()
            }),
            receiver: Some(pb::Agency {
                code: "16055000".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let mut zip = Vec::new();
    let mut s = s;
    while let Some(m) = s.message().await? {
        if let Some(pb::message_chunk::Message::Chunk(b)) = m.message {
            zip.extend_from_slice(&b);
        }
    }
    let xml = valid_xml(&zip, akte_core::xdomea::MessageType::Handover);
    assert!(xml.contains("<xdomea:Name>Fachdaten</xdomea:Name>") || xml.contains(">Fachdaten<"));
    assert!(
        xml.contains("450000.5") && xml.contains("BG-42 &amp; &lt;1&gt;"),
        "{xml}"
    );
    assert!(
        xml.contains(">Bescheid<"),
        "the document type is the xdomea Typ"
    );

    // The receiving agency: the same plan unit code and the shared definitions.
    let unit_b = plan_unit(&mut a, "tenants/kreis").await?;
    shared_fields(&mut a, "tenants/kreis", &unit_b).await?;
    let mut parts = vec![pb::ImportPackageRequest {
        message: Some(pb::import_package_request::Message::Options(
            pb::ImportPackageOptions {
                parent: "tenants/kreis".into(),
                ..Default::default()
            },
        )),
    }];
    for c in zip.chunks(4096) {
        parts.push(pb::ImportPackageRequest {
            message: Some(pb::import_package_request::Message::Chunk(
                bytes::Bytes::copy_from_slice(c),
            )),
        });
    }
    let op = a
        .migration
        .import_package(tokio_stream::iter(parts))
        .await?
        .into_inner();
    let any = akte_server::client::wait_operation(&mut a.operations, op).await?;
    let r: pb::ImportPackageResult = akte_server::client::unpack(&any)?;
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.warned, 1, "{r:?}");
    let warned = r
        .items
        .iter()
        .flat_map(|i| i.warnings.iter())
        .find(|w| w.contains("eingang"));
    assert!(warned.is_some(), "{r:?}");

    let id = |n: &str| n.rsplit('/').next().unwrap_or_default().to_owned();
    let fb = a
        .files
        .get_file(pb::GetFileRequest {
            name: format!("tenants/kreis/files/{}", id(&file.name)),
        })
        .await?
        .into_inner();
    assert_eq!(
        fb.custom_fields,
        vec![
            val("baukosten", V::NumberValue("450000.5".into())),
            val("verfahrensart", V::CodeValue("Neubau".into())),
        ]
    );
    let db = a
        .documents
        .get_document(pb::GetDocumentRequest {
            name: format!("tenants/kreis/documents/{}", id(&doc.name)),
        })
        .await?
        .into_inner();
    assert_eq!(db.document_type, "Bescheid");
    assert_eq!(
        db.custom_fields,
        vec![val("bescheidnummer", V::TextValue("BG-42 & <1>".into()))]
    );
    // Found by value in the receiving tenant.
    let found = a
        .search
        .search(pb::SearchRequest {
            parent: "tenants/kreis".into(),
            custom_fields: vec![range("baukosten", "400000", "")],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(found.results.len(), 1);
    Ok(())
}
