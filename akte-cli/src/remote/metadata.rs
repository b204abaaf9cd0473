//! The metadata flags of files, cases and documents: what the API's File, Case and Document
//! carry and what an appraiser sees in the 0501 (Laufzeit, Vertraulichkeitsstufe, Medium,
//! Federführung, Bemerkung; for documents dates, correspondents, clerk). The same flags
//! serve `create` and `update`; an update changes exactly the fields given (its field mask),
//! and an empty value clears a field.

use anyhow::{bail, Result};
use clap::Args;

use akte_api::pb::akte::v1 as pb;
use akte_api::pb::google::r#type::Date;

use super::parse_date;

/// A date flag: YYYY-MM-DD, or empty to clear.
fn date(flag: &str, v: &str) -> Result<Option<Date>> {
    if v.is_empty() {
        return Ok(None);
    }
    parse_date(v)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

pub(super) fn confidentiality(v: &str) -> Result<i32> {
    use pb::Confidentiality as C;
    Ok(match v.to_ascii_lowercase().as_str() {
        "001" | "geheim" | "secret" => C::Secret,
        "002" | "nfd" | "restricted" => C::Restricted,
        "003" | "offen" | "open" => C::Open,
        "004" | "streng-geheim" | "top-secret" => C::TopSecret,
        "005" | "vertraulich" | "confidential" => C::Confidential,
        _ => bail!(
            "--confidentiality {v:?}: expected 001 geheim, 002 nfd, 003 offen, \
             004 streng-geheim or 005 vertraulich"
        ),
    } as i32)
}

fn medium(v: &str) -> Result<i32> {
    use pb::Medium as M;
    Ok(match v.to_ascii_lowercase().as_str() {
        "001" | "elektronisch" | "electronic" => M::Electronic,
        "002" | "hybrid" => M::Hybrid,
        "003" | "papier" | "paper" => M::Paper,
        _ => bail!("--medium {v:?}: expected 001 elektronisch, 002 hybrid or 003 papier"),
    } as i32)
}

/// Laufzeit flags shared by files and cases.
#[derive(Args, Debug, Clone, Default)]
pub struct RunningTime {
    /// Laufzeit: first day, YYYY-MM-DD (empty clears).
    #[arg(long)]
    pub begin: Option<String>,
    /// Laufzeit: last day, YYYY-MM-DD (empty clears).
    #[arg(long)]
    pub end: Option<String>,
}

impl RunningTime {
    /// Sets the given ends of the Laufzeit; adds their names to `mask`.
    fn apply(
        &self,
        begin: &mut Option<Date>,
        end: &mut Option<Date>,
        mask: &mut Vec<String>,
    ) -> Result<()> {
        if let Some(v) = &self.begin {
            *begin = date("begin", v)?;
            mask.push("begin".to_owned());
        }
        if let Some(v) = &self.end {
            *end = date("end", v)?;
            mask.push("end".to_owned());
        }
        Ok(())
    }
}

/// A file's metadata.
#[derive(Args, Debug, Clone, Default)]
pub struct FileFields {
    #[command(flatten)]
    pub running: RunningTime,
    /// Vertraulichkeitsstufe: 001 geheim, 002 nfd, 003 offen, 004 streng-geheim,
    /// 005 vertraulich.
    #[arg(long)]
    pub confidentiality: Option<String>,
    /// Medium: 001 elektronisch, 002 hybrid, 003 papier.
    #[arg(long)]
    pub medium: Option<String>,
    /// Federführende Organisationseinheit.
    #[arg(long)]
    pub lead_unit: Option<String>,
    /// Notes (Bemerkung).
    #[arg(long)]
    pub notes: Option<String>,
    /// A custom field's value, KEY=VALUE (repeat for several; dates YYYY-MM-DD; the type
    /// comes from the field's definition). In an update, KEY= removes the value.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub custom: Vec<String>,
}

/// The flags of one kind of message: `apply` sets the fields given and returns their
/// mask paths.
pub trait Flags<M> {
    /// Sets the fields given on `m`; returns their names for an update mask.
    fn apply(&self, m: &mut M) -> Result<Vec<String>>;
    /// The `--field KEY=VALUE` flags, typed later from the tenant's definitions.
    fn custom(&self) -> &[String];
}

impl Flags<pb::File> for FileFields {
    fn apply(&self, f: &mut pb::File) -> Result<Vec<String>> {
        FileFields::apply(self, f)
    }
    fn custom(&self) -> &[String] {
        &self.custom
    }
}

impl Flags<pb::Case> for CaseFields {
    fn apply(&self, c: &mut pb::Case) -> Result<Vec<String>> {
        CaseFields::apply(self, c)
    }
    fn custom(&self) -> &[String] {
        &self.custom
    }
}

impl FileFields {
    /// Sets the given fields on `f`; returns their names (the update mask).
    pub fn apply(&self, f: &mut pb::File) -> Result<Vec<String>> {
        let mut mask = Vec::new();
        self.running.apply(&mut f.begin, &mut f.end, &mut mask)?;
        if let Some(v) = &self.confidentiality {
            f.confidentiality = confidentiality(v)?;
            mask.push("confidentiality".to_owned());
        }
        if let Some(v) = &self.medium {
            f.medium = medium(v)?;
            mask.push("medium".to_owned());
        }
        if let Some(v) = &self.lead_unit {
            f.lead_unit = v.clone();
            mask.push("lead_unit".to_owned());
        }
        if let Some(v) = &self.notes {
            f.notes = v.clone();
            mask.push("notes".to_owned());
        }
        Ok(mask)
    }
}

/// A case's metadata.
#[derive(Args, Debug, Clone, Default)]
pub struct CaseFields {
    #[command(flatten)]
    pub running: RunningTime,
    /// Vertraulichkeitsstufe: 001 geheim, 002 nfd, 003 offen, 004 streng-geheim,
    /// 005 vertraulich.
    #[arg(long)]
    pub confidentiality: Option<String>,
    /// Notes (Bemerkung).
    #[arg(long)]
    pub notes: Option<String>,
    /// A custom field's value, KEY=VALUE (repeat for several; dates YYYY-MM-DD; the type
    /// comes from the field's definition). In an update, KEY= removes the value.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub custom: Vec<String>,
}

impl CaseFields {
    /// Sets the given fields on `c`; returns their names (the update mask).
    pub fn apply(&self, c: &mut pb::Case) -> Result<Vec<String>> {
        let mut mask = Vec::new();
        self.running.apply(&mut c.begin, &mut c.end, &mut mask)?;
        if let Some(v) = &self.confidentiality {
            c.confidentiality = confidentiality(v)?;
            mask.push("confidentiality".to_owned());
        }
        if let Some(v) = &self.notes {
            c.notes = v.clone();
            mask.push("notes".to_owned());
        }
        Ok(mask)
    }
}

/// A document's metadata.
#[derive(Args, Debug, Clone, Default)]
pub struct DocumentFields {
    /// Datum des Schreibens, YYYY-MM-DD (empty clears).
    #[arg(long)]
    pub letter_date: Option<String>,
    /// Eingangsdatum, YYYY-MM-DD (empty clears).
    #[arg(long)]
    pub received_on: Option<String>,
    /// Ausgangsdatum, YYYY-MM-DD (empty clears).
    #[arg(long)]
    pub sent_on: Option<String>,
    /// Absender.
    #[arg(long)]
    pub sender: Option<String>,
    /// Empfänger (repeat for several); in an update, the whole list.
    #[arg(long = "recipient")]
    pub recipients: Vec<String>,
    /// Bearbeiter.
    #[arg(long)]
    pub clerk: Option<String>,
    /// Fremdes Geschäftszeichen.
    #[arg(long)]
    pub external_reference: Option<String>,
    /// Vertraulichkeitsstufe: 001 geheim, 002 nfd, 003 offen, 004 streng-geheim,
    /// 005 vertraulich.
    #[arg(long)]
    pub confidentiality: Option<String>,
    /// A custom field's value, KEY=VALUE (repeat for several; dates YYYY-MM-DD; the type
    /// comes from the field's definition). In an update, KEY= removes the value.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub custom: Vec<String>,
    /// Dokumenttyp, e.g. Bescheid (custom fields may be defined per type).
    #[arg(long)]
    pub document_type: Option<String>,
}

impl DocumentFields {
    /// Sets the given fields on `d`; returns their names (the update mask).
    pub fn apply(&self, d: &mut pb::Document) -> Result<Vec<String>> {
        let mut mask = Vec::new();
        for (flag, value, slot) in [
            ("letter_date", &self.letter_date, &mut d.letter_date),
            ("received_on", &self.received_on, &mut d.received_on),
            ("sent_on", &self.sent_on, &mut d.sent_on),
        ] {
            if let Some(v) = value {
                *slot = date(&flag.replace('_', "-"), v)?;
                mask.push(flag.to_owned());
            }
        }
        if let Some(v) = &self.sender {
            d.sender = v.clone();
            mask.push("sender".to_owned());
        }
        if !self.recipients.is_empty() {
            d.recipients = self.recipients.clone();
            mask.push("recipients".to_owned());
        }
        if let Some(v) = &self.clerk {
            d.clerk = v.clone();
            mask.push("clerk".to_owned());
        }
        if let Some(v) = &self.external_reference {
            d.external_reference = v.clone();
            mask.push("external_reference".to_owned());
        }
        if let Some(v) = &self.confidentiality {
            d.confidentiality = confidentiality(v)?;
            mask.push("confidentiality".to_owned());
        }
        if let Some(v) = &self.document_type {
            d.document_type = v.clone();
            mask.push("document_type".to_owned());
        }
        Ok(mask)
    }
}
