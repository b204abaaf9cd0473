//! The tenant's file plan as xdomea 0301, and taking one over: units are created, or
//! updated where their code exists (each change an entry with its history), and the
//! receipt 0302.

use std::io::{Read, Seek};

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::xdomea::{
    self, FilePlan, MessageHeader, MessageType, Party, PlanUnitEntry, SendingSystem,
};

use super::mapping::x_decision;
use super::service::NewPlanUnit;
use super::types::*;
use super::{RecordsError, TenantRecords};

fn xdomea_error(message: &str, e: xdomea::XdomeaError) -> RecordsError {
    RecordsError::RefusedMessage {
        message: message.into(),
        element: String::new(),
        rule: "xdomea".into(),
        reason: e.to_string(),
    }
}

fn from_x_decision(d: xdomea::DisposalDecision) -> DisposalDecision {
    match d {
        xdomea::DisposalDecision::Archive => DisposalDecision::Archive,
        xdomea::DisposalDecision::Destroy => DisposalDecision::Destroy,
        xdomea::DisposalDecision::Appraise => DisposalDecision::Appraise,
    }
}

fn from_x_retention(r: xdomea::Retention) -> Retention {
    match r {
        xdomea::Retention::Years(y) => Retention::Years(y),
        xdomea::Retention::Unlimited => Retention::Unlimited,
    }
}

/// What taking over a file plan did.
#[derive(Debug, Clone)]
pub struct PlanImport {
    /// The 0301's Kopf.
    pub header: MessageHeader,
    /// Units created.
    pub created: Vec<String>,
    /// Units changed.
    pub updated: Vec<String>,
    /// Units as they were already.
    pub unchanged: Vec<String>,
    /// Units refused, with the reason (their sub-units are refused with them).
    pub failed: Vec<(String, String)>,
}

impl PlanImport {
    /// The receipt (0302) as a ZIP.
    pub fn receipt_zip(&self) -> Result<Vec<u8>, RecordsError> {
        let header = MessageHeader {
            process_id: self.header.process_id,
            created: Utc::now().fixed_offset(),
            sender: self.header.receiver.clone(),
            receiver: self.header.sender.clone(),
            system: Some(SendingSystem::akte(None)),
            note: None,
            receipt_requested: false,
            archive_id_requested: false,
        };
        let xml = xdomea::write_0302(&header).map_err(|e| xdomea_error("0302", e))?;
        let out = xdomea::write_message_zip(
            std::io::Cursor::new(Vec::new()),
            &header,
            MessageType::PlanReceipt,
            &xml,
        )
        .map_err(|e| xdomea_error("0302", e))?;
        Ok(out.into_inner())
    }
}

impl TenantRecords {
    /// The tenant's file plan as a 0301 ZIP (`{ProzessID}_Aktenplan.Aktenplan.0301.zip`),
    /// with its name in the ZIP. Deleted units are gone; deactivated ones are Stillgelegt.
    pub fn export_plan(
        &self,
        sender: Party,
        receiver: Party,
        name: &str,
        version: &str,
    ) -> Result<(Vec<u8>, String), RecordsError> {
        let units = self.plan_entries(None, 0)?;
        let header = MessageHeader {
            process_id: super::schema::new_id(),
            created: Utc::now().fixed_offset(),
            sender,
            receiver,
            system: Some(SendingSystem::akte(None)),
            note: None,
            receipt_requested: true,
            archive_id_requested: false,
        };
        let plan = FilePlan {
            name: name.to_owned(),
            version: version.to_owned(),
            units,
        };
        let xml = xdomea::write_0301(&header, &plan).map_err(|e| xdomea_error("0301", e))?;
        let out = xdomea::write_message_zip(
            std::io::Cursor::new(Vec::new()),
            &header,
            MessageType::Plan,
            &xml,
        )
        .map_err(|e| xdomea_error("0301", e))?;
        Ok((
            out.into_inner(),
            xdomea::message_zip_name(header.process_id, MessageType::Plan),
        ))
    }

    fn plan_entries(
        &self,
        parent: Option<Uuid>,
        depth: usize,
    ) -> Result<Vec<PlanUnitEntry>, RecordsError> {
        if depth > 64 {
            return Err(RecordsError::Internal("plan deeper than 64".into()));
        }
        let mut out = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let units = self.list_plan_units(parent, &page)?;
            for u in units.items {
                out.push(PlanUnitEntry {
                    code: u.code.clone(),
                    title: Some(u.title.clone()),
                    disposal: x_decision(u.disposal),
                    valid_from: None,
                    valid_until: None,
                    inactive: !u.active,
                    retention: match u.retention {
                        Retention::Years(y) => xdomea::Retention::Years(y),
                        Retention::Unlimited => xdomea::Retention::Unlimited,
                    },
                    children: self.plan_entries(Some(u.id), depth + 1)?,
                });
            }
            match units.next_page_token {
                Some(t) => page.page_token = t,
                None => return Ok(out),
            }
        }
    }

    /// Takes over a file plan (a 0301 as a ZIP): units whose code is new here are created
    /// under the unit above them; existing ones get the title, retention, disposal
    /// decision, place and Stillgelegt of the plan, each change recorded with `reason`
    /// in their history. A refused unit is reported with its sub-units; the rest goes on.
    pub fn import_plan<R: Read + Seek>(
        &self,
        actor: &str,
        zip: R,
    ) -> Result<PlanImport, RecordsError> {
        let received = xdomea::read_received_zip(zip, &[MessageType::Plan], super::MAX_MESSAGE_XML)
            .map_err(|e| xdomea_error("ZIP", e))?;
        let message = xdomea::read_0301(&received.xml).map_err(|e| xdomea_error("0301", e))?;
        let reason = format!(
            "Aktenplan {} Version {} (0301, Prozess {})",
            message.plan.name, message.plan.version, message.header.process_id
        );
        let mut result = PlanImport {
            header: message.header.clone(),
            created: vec![],
            updated: vec![],
            unchanged: vec![],
            failed: vec![],
        };
        for u in &message.plan.units {
            self.take_unit(actor, u, None, &reason, &mut result)?;
        }
        Ok(result)
    }

    fn take_unit(
        &self,
        actor: &str,
        u: &PlanUnitEntry,
        parent: Option<Uuid>,
        reason: &str,
        result: &mut PlanImport,
    ) -> Result<(), RecordsError> {
        let title = u.title.clone().unwrap_or_else(|| u.code.clone());
        let retention = from_x_retention(u.retention);
        let disposal = from_x_decision(u.disposal);
        let outcome = match self.plan_unit_by_code(&u.code) {
            Ok(existing) => {
                let mut patch = Map::new();
                let mut set = |k: &str, v: Value| {
                    patch.insert(k.to_owned(), v);
                };
                set("title", Value::from(title));
                set(
                    "retention",
                    serde_json::to_value(retention).unwrap_or_default(),
                );
                set(
                    "disposal",
                    serde_json::to_value(disposal).unwrap_or_default(),
                );
                set("active", Value::from(!u.inactive));
                set(
                    "parent",
                    parent.map_or(Value::Null, |p| Value::from(p.to_string())),
                );
                match self.update(
                    actor,
                    existing.id,
                    existing.revision,
                    patch,
                    Some(reason.to_owned()),
                ) {
                    Ok(Object::PlanUnit(after)) if after.revision == existing.revision => {
                        result.unchanged.push(u.code.clone());
                        Ok(existing.id)
                    }
                    Ok(_) => {
                        result.updated.push(u.code.clone());
                        Ok(existing.id)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(RecordsError::NotFound { .. }) => {
                let created = self.create_plan_unit(
                    actor,
                    NewPlanUnit {
                        id: None,
                        parent,
                        code: u.code.clone(),
                        title,
                        description: String::new(),
                        retention,
                        disposal,
                    },
                    None,
                );
                match created {
                    Ok(c) => {
                        result.created.push(u.code.clone());
                        if u.inactive {
                            self.deactivate_plan_unit(actor, c.id, c.revision)?;
                        }
                        Ok(c.id)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(id) => {
                for c in &u.children {
                    self.take_unit(actor, c, Some(id), reason, result)?;
                }
                Ok(())
            }
            Err(
                e @ (RecordsError::Store(_) | RecordsError::Index(_) | RecordsError::Internal(_)),
            ) => Err(e),
            Err(e) => {
                fn all(u: &PlanUnitEntry, why: &str, out: &mut Vec<(String, String)>) {
                    out.push((u.code.clone(), why.to_owned()));
                    for c in &u.children {
                        all(c, &format!("its unit {} was refused", u.code), out);
                    }
                }
                all(u, &e.to_string(), &mut result.failed);
                Ok(())
            }
        }
    }
}
