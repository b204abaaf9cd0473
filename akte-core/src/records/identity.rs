//! The identities in every disposal message's Kopf: the agency (Absender of 0501, 0503 and
//! 0505) and its archive (Empfänger), kept per tenant as a setting (`tenant.configure`,
//! so the journal holds every change and a rebuilt index has the same settings).
//!
//! An archive identifies an agency by its Behördenkennung: Behördenschlüssel and Präfix
//! (both xoev codes, e.g. from the DVDV lists; x-man of the Thuringian State Archive
//! compares both with what it registered), and shows the Institution (name, short name) to
//! its staff. The settings carry all of them, so that no message ever goes out with a
//! partial identity: [`TenantRecords::disposal_parties`] refuses, naming the setting, until
//! the required ones are set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::index::TenantIndex;
use crate::xdomea::Party;

use super::disposal::Parties;
use super::schema::{self, tag};
use super::validate::{self, MAX_NAME};
use super::{RecordsError, TenantRecords};

/// The key of the settings in the tenant's settings record.
const SETTING: &str = "disposal_parties";

/// A code with its list, as xoev codes carry it (Behördenschlüssel, Präfix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCode {
    /// The code, e.g. `16051000` or `ags:`.
    pub code: String,
    /// Its name in the list (optional).
    #[serde(default)]
    pub name: String,
    /// The list's URI, `listURI` (optional).
    #[serde(default)]
    pub list_uri: String,
    /// The list's version, `listVersionID` (optional).
    #[serde(default)]
    pub list_version: String,
}

/// One side of the disposal messages: who the agency or the archive is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyIdentity {
    /// Behördenkennung/Behördenschlüssel.
    #[serde(default)]
    pub key: Option<ListCode>,
    /// Behördenkennung/Präfix.
    #[serde(default)]
    pub prefix: Option<ListCode>,
    /// Institution/Name: the full name, e.g. "Stadtverwaltung Erfurt".
    #[serde(default)]
    pub institution: String,
    /// Institution/Kurzbezeichnung, e.g. "SV Erfurt" (optional).
    #[serde(default)]
    pub institution_short: String,
}

/// The tenant's disposal settings: its own identity and its archive's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisposalSettings {
    /// The agency (the tenant).
    #[serde(default)]
    pub agency: PartyIdentity,
    /// The archive it hands its records to.
    #[serde(default)]
    pub archive: PartyIdentity,
}

fn check_code(field: &str, c: &ListCode) -> Result<(), RecordsError> {
    validate::line(&format!("{field}.code"), &c.code, MAX_NAME)?;
    validate::optional_line(&format!("{field}.name"), &c.name, MAX_NAME)?;
    validate::optional_line(&format!("{field}.list_version"), &c.list_version, MAX_NAME)?;
    validate::optional_line(&format!("{field}.list_uri"), &c.list_uri, MAX_NAME)?;
    if c.list_uri.contains(char::is_whitespace) {
        return Err(RecordsError::Invalid {
            field: format!("{field}.list_uri"),
            reason: "a URI contains no white space".into(),
        });
    }
    Ok(())
}

fn check_party(side: &str, p: &PartyIdentity) -> Result<(), RecordsError> {
    if let Some(k) = &p.key {
        check_code(&format!("{side}.key"), k)?;
    }
    if let Some(k) = &p.prefix {
        check_code(&format!("{side}.prefix"), k)?;
    }
    validate::optional_line(&format!("{side}.institution"), &p.institution, MAX_NAME)?;
    validate::optional_line(
        &format!("{side}.institution_short"),
        &p.institution_short,
        MAX_NAME,
    )?;
    Ok(())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl PartyIdentity {
    /// The Kontakt of a message header.
    pub fn party(&self) -> Party {
        let key = self.key.as_ref();
        let prefix = self.prefix.as_ref();
        Party {
            agency_code: key.map(|k| k.code.clone()),
            agency_name: key.and_then(|k| non_empty(&k.name)),
            agency_list_uri: key.and_then(|k| non_empty(&k.list_uri)),
            agency_list_version: key.and_then(|k| non_empty(&k.list_version)),
            prefix_code: prefix.map(|k| k.code.clone()),
            prefix_name: prefix.and_then(|k| non_empty(&k.name)),
            prefix_list_uri: prefix.and_then(|k| non_empty(&k.list_uri)),
            prefix_list_version: prefix.and_then(|k| non_empty(&k.list_version)),
            institution: non_empty(&self.institution),
            institution_short: non_empty(&self.institution_short),
            ..Party::default()
        }
    }
}

impl DisposalSettings {
    /// The first setting a message cannot do without, with what it is for; `None` when
    /// messages can be written. The agency needs its Behördenschlüssel (archives identify
    /// the sender by it) and its institution's name; the archive a name or a key.
    pub fn missing(&self) -> Option<(&'static str, &'static str)> {
        if self.agency.key.is_none() {
            return Some((
                "agency.key",
                "the agency's Behördenschlüssel, by which the archive identifies the sender",
            ));
        }
        if self.agency.institution.is_empty() {
            return Some(("agency.institution", "the agency's name (Institution/Name)"));
        }
        if self.archive.institution.is_empty() && self.archive.key.is_none() {
            return Some((
                "archive.institution",
                "the archive's name (or its Behördenschlüssel, archive.key)",
            ));
        }
        None
    }
}

/// The settings as recorded (defaults: nothing set).
pub(super) fn read_settings(index: &TenantIndex) -> Result<DisposalSettings, RecordsError> {
    let Some(v) = index.get(schema::key(tag::SETTINGS))? else {
        return Ok(DisposalSettings::default());
    };
    let settings: Map<String, Value> =
        serde_json::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))?;
    match settings.get(SETTING) {
        None | Some(Value::Null) => Ok(DisposalSettings::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| RecordsError::Internal(format!("disposal settings: {e}"))),
    }
}

/// The parties of the messages the agency writes, or the missing setting.
pub(super) fn message_parties(index: &TenantIndex) -> Result<Parties, RecordsError> {
    let settings = read_settings(index)?;
    if let Some((setting, what)) = settings.missing() {
        return Err(RecordsError::NotConfigured {
            setting: setting.to_owned(),
            what: what.to_owned(),
        });
    }
    Ok(Parties {
        agency: settings.agency.party(),
        archive: settings.archive.party(),
    })
}

impl TenantRecords {
    /// Replaces the tenant's disposal settings (an admin's task). Every field is checked;
    /// incomplete settings may be stored (an offer then names what is missing).
    pub fn set_disposal_settings(
        &self,
        actor: &str,
        settings: &DisposalSettings,
    ) -> Result<DisposalSettings, RecordsError> {
        check_party("agency", &settings.agency)?;
        check_party("archive", &settings.archive)?;
        let mut set = Map::new();
        set.insert(
            SETTING.into(),
            serde_json::to_value(settings).map_err(|e| RecordsError::Internal(e.to_string()))?,
        );
        self.configure(actor, set)?;
        self.disposal_settings()
    }

    /// The tenant's disposal settings.
    pub fn disposal_settings(&self) -> Result<DisposalSettings, RecordsError> {
        read_settings(self.tenant.index())
    }

    /// Sender and receiver of the messages the agency writes, from the settings; refused
    /// with [`RecordsError::NotConfigured`] naming the first missing setting.
    pub fn disposal_parties(&self) -> Result<Parties, RecordsError> {
        message_parties(self.tenant.index())
    }
}
