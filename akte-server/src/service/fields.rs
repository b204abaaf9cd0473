//! CustomFieldService: the definitions of a tenant's custom fields (agency metadata,
//! `akte_core::records::fields`). Values are set through the file, case and document
//! methods; this service only manages what may be set.

use akte_core::records::{
    FieldDefinition, FieldDefinitionPatch, FieldScope, FieldType, NewFieldDefinition, ObjectKind,
    RecordsError,
};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_etag, timestamp};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::custom_field_service_server::CustomFieldService;

use super::{blocking, page_after, reason, Api};

/// The collection of field definitions in resource names.
pub(crate) const CUSTOM_FIELDS: &str = "customFields";

/// `tenants/{tenant}/customFields/{key}` → (tenant, key). The key is the field's own
/// name, not a UUID: it is what objects carry their values under.
pub(crate) fn field_name(field: &str, name: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::field(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/{CUSTOM_FIELDS}/{{custom_field}}",
                name.chars().take(120).collect::<String>()
            ),
        )
    };
    let (tenant_part, key) = name
        .rsplit_once(&format!("/{CUSTOM_FIELDS}/"))
        .ok_or_else(bad)?;
    let tenant = names::tenant(field, tenant_part)?;
    akte_core::records::fields::check_field_name(field, key).map_err(ApiError::from)?;
    Ok((tenant, key.to_owned()))
}

fn stamp(s: &akte_core::records::Stamp) -> pb::AuditStamp {
    pb::AuditStamp {
        actor: s.actor.clone(),
        time: Some(timestamp(&s.at)),
        journal_seq: s.seq,
    }
}

fn type_msg(t: FieldType) -> pb::CustomFieldType {
    match t {
        FieldType::Text => pb::CustomFieldType::Text,
        FieldType::Number => pb::CustomFieldType::Number,
        FieldType::Date => pb::CustomFieldType::Date,
        FieldType::Code => pb::CustomFieldType::Code,
        FieldType::Reference => pb::CustomFieldType::Reference,
    }
}

fn parse_type(v: i32) -> Result<FieldType, ApiError> {
    match pb::CustomFieldType::try_from(v) {
        Ok(pb::CustomFieldType::Text) => Ok(FieldType::Text),
        Ok(pb::CustomFieldType::Number) => Ok(FieldType::Number),
        Ok(pb::CustomFieldType::Date) => Ok(FieldType::Date),
        Ok(pb::CustomFieldType::Code) => Ok(FieldType::Code),
        Ok(pb::CustomFieldType::Reference) => Ok(FieldType::Reference),
        _ => Err(ApiError::field(
            "custom_field.type",
            "must be TEXT, NUMBER, DATE, CODE or REFERENCE",
        )),
    }
}

fn target_msg(k: ObjectKind) -> i32 {
    (match k {
        ObjectKind::Case => pb::CustomFieldTarget::Case,
        ObjectKind::Document => pb::CustomFieldTarget::Document,
        _ => pb::CustomFieldTarget::File,
    }) as i32
}

fn parse_targets(v: &[i32]) -> Result<Vec<ObjectKind>, ApiError> {
    let mut out = Vec::new();
    for t in v {
        let k = match pb::CustomFieldTarget::try_from(*t) {
            Ok(pb::CustomFieldTarget::File) => ObjectKind::File,
            Ok(pb::CustomFieldTarget::Case) => ObjectKind::Case,
            Ok(pb::CustomFieldTarget::Document) => ObjectKind::Document,
            _ => {
                return Err(ApiError::field(
                    "custom_field.applies_to",
                    "must be FILE, CASE or DOCUMENT",
                ))
            }
        };
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out.sort_by_key(|k| target_msg(*k));
    Ok(out)
}

/// A definition as the API shows it.
pub(crate) fn field_msg(tenant: &str, d: &FieldDefinition) -> pb::CustomField {
    let (plan_unit, document_type) = match &d.scope {
        FieldScope::PlanUnit(u) => (
            names::object_name(tenant, ObjectKind::PlanUnit, *u),
            String::new(),
        ),
        FieldScope::DocumentType(t) => (String::new(), t.clone()),
    };
    pb::CustomField {
        name: format!("tenants/{tenant}/{CUSTOM_FIELDS}/{}", d.name),
        label: d.label.clone(),
        description: d.description.clone(),
        r#type: type_msg(d.field_type) as i32,
        plan_unit,
        document_type,
        applies_to: d.applies_to.iter().map(|k| target_msg(*k)).collect(),
        required: d.required,
        allowed_values: d.allowed_values.clone(),
        active: d.active,
        etag: d.revision.to_string(),
        created: Some(stamp(&d.created)),
        updated: Some(stamp(&d.updated)),
    }
}

/// Fields of a definition an update may name.
const UPDATABLE: &[&str] = &[
    "label",
    "description",
    "applies_to",
    "required",
    "allowed_values",
    "active",
];

fn not_found(name: &str) -> impl Fn(RecordsError) -> ApiError + '_ {
    move |e| match e {
        RecordsError::NotFound { what, .. } if what == "custom field" => ApiError::NotFound {
            resource: name.to_owned(),
        },
        other => other.into(),
    }
}

#[tonic::async_trait]
impl CustomFieldService for Api {
    async fn create_custom_field(
        &self,
        req: Request<pb::CreateCustomFieldRequest>,
    ) -> Result<Response<pb::CustomField>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
        let f = r.custom_field.unwrap_or_default();
        let scope = match (f.plan_unit.is_empty(), f.document_type.is_empty()) {
            (false, true) => {
                let u = names::object_of(
                    "custom_field.plan_unit",
                    &f.plan_unit,
                    &[ObjectKind::PlanUnit],
                )?;
                if u.tenant != tenant {
                    return Err(ApiError::NotFound {
                        resource: f.plan_unit,
                    }
                    .into());
                }
                FieldScope::PlanUnit(u.id)
            }
            (true, false) => FieldScope::DocumentType(f.document_type.clone()),
            _ => {
                return Err(ApiError::field(
                    "custom_field.plan_unit",
                    "exactly one of plan_unit and document_type must be set",
                )
                .into())
            }
        };
        let new = NewFieldDefinition {
            name: r.custom_field_id,
            label: f.label,
            description: f.description,
            field_type: parse_type(f.r#type)?,
            scope,
            applies_to: parse_targets(&f.applies_to)?,
            required: f.required,
            allowed_values: f.allowed_values,
        };
        let actor = caller.actor().to_owned();
        let plan_unit = f.plan_unit;
        let msg = blocking(move || {
            let d = t.define_field(&actor, new).map_err(|e| match e {
                RecordsError::NotFound { .. } => ApiError::NotFound {
                    resource: plan_unit.clone(),
                },
                RecordsError::Invalid { field, reason } => ApiError::field(
                    &match field.as_str() {
                        "name" => "custom_field_id".to_owned(),
                        f => format!("custom_field.{f}"),
                    },
                    reason,
                ),
                other => other.into(),
            })?;
            Ok(field_msg(&tenant, &d))
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn get_custom_field(
        &self,
        req: Request<pb::GetCustomFieldRequest>,
    ) -> Result<Response<pb::CustomField>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, key) = field_name("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let msg = blocking(move || {
            let d = t.field_definition_named(&key).map_err(not_found(&name))?;
            Ok(field_msg(&tenant, &d))
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn list_custom_fields(
        &self,
        req: Request<pb::ListCustomFieldsRequest>,
    ) -> Result<Response<pb::ListCustomFieldsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListCustomFields", &[&r.parent]);
        let after = self.open_token(&scope, &r.page_token)?;
        let after = (!after.is_empty()).then_some(after);
        let size = convert::page_len(r.page_size)?;
        let (fields, next) = blocking(move || {
            // Definitions are few (at most 500) and kept in name order.
            let all = t.field_definitions()?;
            let (page, next) = page_after(&all, |d| d.name.clone(), after.as_ref(), size);
            let msgs = page.into_iter().map(|d| field_msg(&tenant, d)).collect();
            Ok((msgs, next))
        })
        .await?;
        Ok(Response::new(pb::ListCustomFieldsResponse {
            custom_fields: fields,
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn update_custom_field(
        &self,
        req: Request<pb::UpdateCustomFieldRequest>,
    ) -> Result<Response<pb::CustomField>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let f = r.custom_field.unwrap_or_default();
        let (tenant, key) = field_name("custom_field.name", &f.name)?;
        let t = self.tenant(&caller, &tenant, &f.name, Operation::Administer)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::field(
                "update_mask",
                format!("names no field; changeable: {}", UPDATABLE.join(", ")),
            )
            .into());
        }
        let mut patch = FieldDefinitionPatch::default();
        for p in &paths {
            let bare = p.strip_prefix("custom_field.").unwrap_or(p);
            match bare {
                "label" => patch.label = Some(f.label.clone()),
                "description" => patch.description = Some(f.description.clone()),
                "applies_to" => patch.applies_to = Some(parse_targets(&f.applies_to)?),
                "required" => patch.required = Some(f.required),
                "allowed_values" => patch.allowed_values = Some(f.allowed_values.clone()),
                "active" => patch.active = Some(f.active),
                _ => {
                    return Err(ApiError::field(
                        "update_mask",
                        format!(
                            "{:?} cannot be changed; changeable: {}",
                            p.chars().take(80).collect::<String>(),
                            UPDATABLE.join(", ")
                        ),
                    )
                    .into())
                }
            }
        }
        let expected = parse_etag("etag", &r.etag)?;
        let why = reason(r.reason);
        let actor = caller.actor().to_owned();
        let name = f.name;
        let msg = blocking(move || {
            let current = t.field_definition_named(&key).map_err(not_found(&name))?;
            let d = t
                .update_field(
                    &actor,
                    current.id,
                    expected.unwrap_or(current.revision),
                    patch,
                    why.as_deref(),
                )
                .map_err(not_found(&name))?;
            Ok(field_msg(&tenant, &d))
        })
        .await?;
        Ok(Response::new(msg))
    }
}
