//! Access control and agency metadata from the command line: organisational units and
//! their members, clearances, an object's access (lead unit, shares, level) and access
//! log (AccessService), and custom field definitions (CustomFieldService).

use anyhow::{bail, Result};
use clap::Subcommand;

use akte_api::client::Clients;
use akte_api::pb::akte::v1 as pb;

use super::{all_pages, metadata, Ctx};
use crate::output::usage;

/// Organisational units (admin; list and show for any role).
#[derive(Subcommand, Debug)]
pub enum UnitCommand {
    /// Create a unit, at the top or below --parent.
    Create {
        /// Its name, e.g. "Bauamt".
        #[arg(long)]
        name: String,
        /// The unit it belongs to.
        #[arg(long)]
        parent: Option<String>,
    },
    /// List the tenant's units, parents before their children.
    List,
    /// Show a unit with its members.
    Show {
        /// The unit.
        unit: String,
    },
    /// Make a principal a member of a unit.
    AddMember {
        /// The unit.
        unit: String,
        /// The principal, e.g. clerk:schmidt.
        principal: String,
    },
    /// End a principal's membership of a unit.
    RemoveMember {
        /// The unit.
        unit: String,
        /// The principal.
        principal: String,
    },
}

/// Clearances: the highest confidentiality level a principal may see (admin).
#[derive(Subcommand, Debug)]
pub enum ClearanceCommand {
    /// Record a principal's clearance.
    Set {
        /// The principal.
        principal: String,
        /// 001 geheim, 002 nfd, 003 offen, 004 streng-geheim or 005 vertraulich.
        level: String,
        /// Why (e.g. the security check it rests on).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show a principal's clearance with its history.
    Show {
        /// The principal.
        principal: String,
    },
}

/// Who may see a file, case or document.
#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Show an object's own and effective access settings.
    Show {
        /// The file, case or document (full name).
        name: String,
    },
    /// Set the lead unit (Federführung) of a file or case; without --unit, remove it.
    LeadUnit {
        /// The file or case.
        name: String,
        /// The unit.
        #[arg(long)]
        unit: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Share a file or case with a unit or principal (Beteiligung: read; Mitzeichnung:
    /// write).
    Share {
        /// The file or case.
        name: String,
        /// A unit.
        #[arg(long, conflicts_with = "principal")]
        unit: Option<String>,
        /// A principal.
        #[arg(long)]
        principal: Option<String>,
        /// read or write.
        #[arg(long, default_value = "read")]
        mode: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End a share.
    Unshare {
        /// The file or case.
        name: String,
        /// A unit.
        #[arg(long, conflicts_with = "principal")]
        unit: Option<String>,
        /// A principal.
        #[arg(long)]
        principal: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set the confidentiality level; lowering needs a registrar and --reason.
    Level {
        /// The file, case or document.
        name: String,
        /// 001 geheim, 002 nfd, 003 offen, 004 streng-geheim or 005 vertraulich.
        level: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The access log of an object (its registrar), or with `tenants/{t}` the tenant's
    /// own log of refused calls (admin).
    Log {
        /// The file, case or document, or the tenant.
        name: String,
    },
}

/// Custom field definitions (agency metadata).
#[derive(Subcommand, Debug)]
pub enum FieldCommand {
    /// Define a field (admin).
    Define {
        /// The field's key: lower-case letters, digits and _, e.g. verfahrensart.
        key: String,
        /// Name shown to people.
        #[arg(long)]
        label: String,
        /// text, number, date, code or reference.
        #[arg(long = "type")]
        field_type: String,
        /// Applies below this plan unit.
        #[arg(long, conflicts_with = "document_type")]
        plan_unit: Option<String>,
        /// Applies to documents of this type.
        #[arg(long)]
        document_type: Option<String>,
        /// Only these kinds: file, case, document (comma-separated).
        #[arg(long, value_delimiter = ',')]
        applies_to: Vec<String>,
        /// Every object it applies to needs a value.
        #[arg(long)]
        required: bool,
        /// The code list of a code field (comma-separated).
        #[arg(long, value_delimiter = ',')]
        codes: Vec<String>,
        /// What it means.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tenant's fields.
    List,
}

fn unit_line(u: &pb::OrgUnit) -> String {
    format!(
        "{}\t{}\t{}\t{}",
        u.name,
        u.display_name,
        if u.parent_unit.is_empty() {
            "-"
        } else {
            &u.parent_unit
        },
        u.members.join(",")
    )
}

fn level_name(v: i32) -> &'static str {
    match pb::Confidentiality::try_from(v) {
        Ok(pb::Confidentiality::Secret) => "001 geheim",
        Ok(pb::Confidentiality::Restricted) => "002 nfd",
        Ok(pb::Confidentiality::Open) => "003 offen",
        Ok(pb::Confidentiality::TopSecret) => "004 streng-geheim",
        Ok(pb::Confidentiality::Confidential) => "005 vertraulich",
        _ => "-",
    }
}

fn level(v: &str) -> Result<i32> {
    metadata::confidentiality(v)
}

pub(super) async fn unit(ctx: &Ctx<'_>, c: &mut Clients, command: &UnitCommand) -> Result<()> {
    let u = match command {
        UnitCommand::Create { name, parent } => c
            .access
            .create_org_unit(pb::CreateOrgUnitRequest {
                parent: ctx.tenant_name()?,
                org_unit: Some(pb::OrgUnit {
                    display_name: name.clone(),
                    parent_unit: match parent {
                        Some(p) => ctx.name(p, "orgUnits")?,
                        None => String::new(),
                    },
                    ..Default::default()
                }),
            })
            .await?
            .into_inner(),
        UnitCommand::List => {
            let parent = ctx.tenant_name()?;
            let org_units = all_pages!(org_units, |page_token| c.access.list_org_units(
                pb::ListOrgUnitsRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListOrgUnitsResponse {
                org_units,
                ..Default::default()
            };
            return ctx.list(&response, &response.org_units, unit_line, "no units");
        }
        UnitCommand::Show { unit } => c
            .access
            .get_org_unit(pb::GetOrgUnitRequest {
                name: ctx.name(unit, "orgUnits")?,
            })
            .await?
            .into_inner(),
        UnitCommand::AddMember { unit, principal } => c
            .access
            .add_org_unit_member(pb::AddOrgUnitMemberRequest {
                name: ctx.name(unit, "orgUnits")?,
                principal: principal.clone(),
            })
            .await?
            .into_inner(),
        UnitCommand::RemoveMember { unit, principal } => c
            .access
            .remove_org_unit_member(pb::RemoveOrgUnitMemberRequest {
                name: ctx.name(unit, "orgUnits")?,
                principal: principal.clone(),
            })
            .await?
            .into_inner(),
    };
    ctx.show(&u, || unit_line(&u))
}

pub(super) async fn clearance(
    ctx: &Ctx<'_>,
    c: &mut Clients,
    command: &ClearanceCommand,
) -> Result<()> {
    let cl = match command {
        ClearanceCommand::Set {
            principal,
            level: l,
            reason,
        } => c
            .access
            .set_clearance(pb::SetClearanceRequest {
                parent: ctx.tenant_name()?,
                principal: principal.clone(),
                level: level(l)?,
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
        ClearanceCommand::Show { principal } => c
            .access
            .get_clearance(pb::GetClearanceRequest {
                parent: ctx.tenant_name()?,
                principal: principal.clone(),
            })
            .await?
            .into_inner(),
    };
    ctx.show(&cl, || {
        let mut out = format!(
            "{}\t{}{}",
            cl.principal,
            level_name(cl.level),
            if cl.recorded { "" } else { " (default)" }
        );
        for h in &cl.history {
            out.push_str(&format!(
                "\n  {} -> {}\tby {}\t{}",
                level_name(h.old_level),
                level_name(h.new_level),
                h.actor,
                h.reason
            ));
        }
        out
    })
}

fn grantee(
    ctx: &Ctx<'_>,
    unit: &Option<String>,
    principal: &Option<String>,
) -> Result<(String, String)> {
    match (unit, principal) {
        (Some(u), None) => Ok((ctx.name(u, "orgUnits")?, String::new())),
        (None, Some(p)) => Ok((String::new(), p.clone())),
        _ => Err(usage("give exactly one of --unit and --principal")),
    }
}

fn access_text(a: &pb::ObjectAccess) -> String {
    let shares: Vec<String> = a
        .shares
        .iter()
        .map(|s| {
            let who = if s.org_unit.is_empty() {
                &s.principal
            } else {
                &s.org_unit
            };
            let mode = if s.mode == pb::ShareMode::Write as i32 {
                "write"
            } else {
                "read"
            };
            format!("{who}:{mode}")
        })
        .collect();
    format!(
        "{}\tlead {}\tlevel {} (effective {})\tshares {}\teffective lead units {}",
        a.name,
        if a.lead_unit.is_empty() {
            "-"
        } else {
            &a.lead_unit
        },
        level_name(a.confidentiality),
        level_name(a.effective_confidentiality),
        if shares.is_empty() {
            "-".to_owned()
        } else {
            shares.join(",")
        },
        if a.effective_lead_units.is_empty() {
            "-".to_owned()
        } else {
            a.effective_lead_units.join(",")
        }
    )
}

pub(super) async fn access(ctx: &Ctx<'_>, c: &mut Clients, command: &AccessCommand) -> Result<()> {
    let a = match command {
        AccessCommand::Show { name } => c
            .access
            .get_access(pb::GetAccessRequest { name: name.clone() })
            .await?
            .into_inner(),
        AccessCommand::LeadUnit { name, unit, reason } => c
            .access
            .set_lead_unit(pb::SetLeadUnitRequest {
                name: name.clone(),
                lead_unit: match unit {
                    Some(u) => ctx.name(u, "orgUnits")?,
                    None => String::new(),
                },
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
        AccessCommand::Share {
            name,
            unit,
            principal,
            mode,
            reason,
        } => {
            let (org_unit, principal) = grantee(ctx, unit, principal)?;
            let mode = match mode.as_str() {
                "read" => pb::ShareMode::Read,
                "write" => pb::ShareMode::Write,
                other => bail!("--mode {other:?}: expected read or write"),
            };
            c.access
                .update_share(pb::UpdateShareRequest {
                    name: name.clone(),
                    share: Some(pb::Share {
                        org_unit,
                        principal,
                        mode: mode as i32,
                    }),
                    reason: reason.clone(),
                })
                .await?
                .into_inner()
        }
        AccessCommand::Unshare {
            name,
            unit,
            principal,
            reason,
        } => {
            let (org_unit, principal) = grantee(ctx, unit, principal)?;
            c.access
                .update_share(pb::UpdateShareRequest {
                    name: name.clone(),
                    share: Some(pb::Share {
                        org_unit,
                        principal,
                        mode: pb::ShareMode::None as i32,
                    }),
                    reason: reason.clone(),
                })
                .await?
                .into_inner()
        }
        AccessCommand::Level {
            name,
            level: l,
            reason,
        } => c
            .access
            .set_confidentiality(pb::SetConfidentialityRequest {
                name: name.clone(),
                confidentiality: level(l)?,
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
        AccessCommand::Log { name } => {
            let entries = all_pages!(entries, |page_token| c.access.list_access_log(
                pb::ListAccessLogRequest {
                    parent: name.clone(),
                    page_size: 1000,
                    page_token,
                }
            ));
            let response = pb::ListAccessLogResponse {
                entries,
                ..Default::default()
            };
            let line = |e: &pb::AccessLogEntry| {
                format!(
                    "#{}\t{}\t{}\t{}{}",
                    e.journal_seq,
                    e.principal,
                    e.operation,
                    if e.allowed { "allowed" } else { "denied" },
                    if e.denial.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", e.denial)
                    }
                )
            };
            return ctx.list(&response, &response.entries, line, "no entries");
        }
    };
    ctx.show(&a, || access_text(&a))
}

/// The tenant of a resource name (`tenants/{t}/...`).
pub(super) fn tenant_of(name: &str) -> Result<String> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next()) {
        (Some("tenants"), Some(t)) if !t.is_empty() => Ok(format!("tenants/{t}")),
        _ => Err(usage(format!(
            "{name:?} is not a resource name tenants/{{tenant}}/..."
        ))),
    }
}

/// Typed custom field values from `--field KEY=VALUE` flags, each typed by its field's
/// definition in `tenant`; with the update mask paths they set (`custom_fields.KEY`; an
/// empty VALUE in an update removes the value, so it is masked but not sent).
pub(super) async fn field_values(
    c: &mut Clients,
    tenant: &str,
    args: &[String],
) -> Result<(Vec<pb::CustomFieldValue>, Vec<String>)> {
    use pb::custom_field_value::Value as V;
    if args.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let defs = all_pages!(custom_fields, |page_token| c.fields.list_custom_fields(
        pb::ListCustomFieldsRequest {
            parent: tenant.to_owned(),
            page_size: 1000,
            page_token,
        }
    ));
    let mut values = Vec::new();
    let mut paths = Vec::new();
    for arg in args {
        let Some((key, text)) = arg.split_once('=') else {
            return Err(usage(format!("--field {arg:?}: expected KEY=VALUE")));
        };
        let Some(def) = defs.iter().find(|d| d.name.rsplit('/').next() == Some(key)) else {
            bail!("--field {key}: no such custom field in {tenant} (see `akte field list`)");
        };
        paths.push(format!("custom_fields.{key}"));
        if text.is_empty() {
            continue;
        }
        let value = match pb::CustomFieldType::try_from(def.r#type) {
            Ok(pb::CustomFieldType::Number) => V::NumberValue(text.to_owned()),
            Ok(pb::CustomFieldType::Date) => V::DateValue(
                super::parse_date(text).map_err(|e| anyhow::anyhow!("--field {key}: {e}"))?,
            ),
            Ok(pb::CustomFieldType::Code) => V::CodeValue(text.to_owned()),
            Ok(pb::CustomFieldType::Reference) => V::ReferenceValue(text.to_owned()),
            _ => V::TextValue(text.to_owned()),
        };
        values.push(pb::CustomFieldValue {
            field: key.to_owned(),
            value: Some(value),
        });
    }
    Ok((values, paths))
}

fn type_of(v: &str) -> Result<pb::CustomFieldType> {
    use pb::CustomFieldType as T;
    Ok(match v {
        "text" => T::Text,
        "number" => T::Number,
        "date" => T::Date,
        "code" => T::Code,
        "reference" => T::Reference,
        other => bail!("--type {other:?}: expected text, number, date, code or reference"),
    })
}

fn field_line(f: &pb::CustomField) -> String {
    let ty = match pb::CustomFieldType::try_from(f.r#type) {
        Ok(pb::CustomFieldType::Text) => "text",
        Ok(pb::CustomFieldType::Number) => "number",
        Ok(pb::CustomFieldType::Date) => "date",
        Ok(pb::CustomFieldType::Code) => "code",
        Ok(pb::CustomFieldType::Reference) => "reference",
        _ => "-",
    };
    let scope = if f.plan_unit.is_empty() {
        format!("document type {}", f.document_type)
    } else {
        f.plan_unit.clone()
    };
    format!(
        "{}\t{}\t{ty}{}\t{scope}\t{}{}",
        f.name,
        f.label,
        if f.required { " required" } else { "" },
        if f.active { "active" } else { "retired" },
        if f.allowed_values.is_empty() {
            String::new()
        } else {
            format!("\t{}", f.allowed_values.join(","))
        }
    )
}

pub(super) async fn field(ctx: &Ctx<'_>, c: &mut Clients, command: &FieldCommand) -> Result<()> {
    match command {
        FieldCommand::Define {
            key,
            label,
            field_type,
            plan_unit,
            document_type,
            applies_to,
            required,
            codes,
            description,
        } => {
            let applies_to = applies_to
                .iter()
                .map(|k| {
                    Ok(match k.as_str() {
                        "file" => pb::CustomFieldTarget::File,
                        "case" => pb::CustomFieldTarget::Case,
                        "document" => pb::CustomFieldTarget::Document,
                        other => bail!("--applies-to {other:?}: expected file, case or document"),
                    } as i32)
                })
                .collect::<Result<Vec<i32>>>()?;
            if plan_unit.is_none() && document_type.is_none() {
                return Err(usage("give --plan-unit or --document-type"));
            }
            let f = c
                .fields
                .create_custom_field(pb::CreateCustomFieldRequest {
                    parent: ctx.tenant_name()?,
                    custom_field_id: key.clone(),
                    custom_field: Some(pb::CustomField {
                        label: label.clone(),
                        description: description.clone(),
                        r#type: type_of(field_type)? as i32,
                        plan_unit: match plan_unit {
                            Some(u) => ctx.name(u, "planUnits")?,
                            None => String::new(),
                        },
                        document_type: document_type.clone().unwrap_or_default(),
                        applies_to,
                        required: *required,
                        allowed_values: codes.clone(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            ctx.show(&f, || field_line(&f))
        }
        FieldCommand::List => {
            let parent = ctx.tenant_name()?;
            let custom_fields = all_pages!(custom_fields, |page_token| c
                .fields
                .list_custom_fields(pb::ListCustomFieldsRequest {
                    parent: parent.clone(),
                    page_size: 1000,
                    page_token,
                }));
            let response = pb::ListCustomFieldsResponse {
                custom_fields,
                ..Default::default()
            };
            ctx.list(
                &response,
                &response.custom_fields,
                field_line,
                "no custom fields",
            )
        }
    }
}
