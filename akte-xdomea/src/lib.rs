//! akte-xdomea: xdomea 3.1.0 disposal (Aussonderung) messages: write what the agency sends,
//! read what the archive answers (also the handover 0401-0403 and the file plan 0301/0302).
//!
//! It must not depend on akte-core or the records model: the records model maps itself onto
//! these plain types (akte-core `records/mapping.rs`). Its only akte dependency is
//! akte-verify, for the `Digest` type.
//!
//! | message | direction | here |
//! |---|---|---|
//! | 0501 Aussonderung.Anbieteverzeichnis (offer list, metadata only) | agency → archive | [`write_0501`], [`write_0501_zip`] |
//! | 0502 Aussonderung.Bewertungsverzeichnis (appraisal, A/V per file or case) | archive → agency | [`read_0502`], [`check_appraisal_against_offer`] ([`write_0502`] for tests) |
//! | 0503 Aussonderung.Aussonderung (transfer with primary files) | agency → archive | [`TransferWriter`], [`write_0503`] |
//! | 0504 Aussonderung.AnbietungEmpfangBestaetigen (receipt of 0501) | archive → agency | [`read_0504`] ([`write_0504`]) |
//! | 0505 Aussonderung.BewertungEmpfangBestaetigen (receipt of 0502) | agency → archive | [`write_0505`] ([`read_0505`]) |
//! | 0506 Aussonderung.AussonderungImportBestaetigen (import result per object) | archive → agency | [`read_0506`] ([`write_0506`]) |
//! | 0507 Aussonderung.AussonderungEmpfangBestaetigen (receipt of 0503) | archive → agency | [`read_0507`] ([`write_0507`]) |
//!
//! The archive's side, for archive simulations and tests: [`read_0501`] and [`read_0503`]
//! read what the agency sends as a tree of objects, [`archive`] appraises an offer and
//! checks a transfer the way intake software does, and the `write_05xx_with` functions
//! write the archive's answers in [`WriteStyle::Archive`], the way intake software writes
//! them (local times without offset, codes without optional list attributes).
//!
//! Transport (xdomea 3): every message travels as `{ProzessID}_{Nachrichtenname}.zip`
//! holding `{ProzessID}_{Nachrichtenname}.xml` ([`message_zip_name`], [`message_xml_name`]),
//! the transfer also its primary files; [`read_received_zip`] also accepts the short names
//! of xdomea 4 (`{ProzessID}_0502.xml`).
//!
//! The crate is self-contained: its input and output are the plain types of [`types`],
//! which depend on nothing in akte but [`akte_verify::digest::Digest`]. Mapping the records model
//! onto them, checking process IDs against the disposal process, and journaling are the
//! caller's.
//!
//! Written messages are UTF-8, in namespace [`NAMESPACE`] (prefix `xdomea`), elements in the
//! order of the XSD sequences, and validate against the official schema
//! (`shared/xdomea/schemas/3.1.0/xdomea.xsd`; the tests run `xmllint` on every kind). Readers
//! accept 3.1.0 and 3.0.0, whose disposal messages differ only in the namespace, and reject
//! anything else with an [`XdomeaError`] naming the problem and its element path and line.
//!
//! Transfer packages stream: [`TransferWriter`] never holds a whole primary file in memory.
//! Primary files are named `{rendition UUID}_{sanitised original name}` in the ZIP (unique,
//! UUID-prefixed as xdomea 4.0 requires), and each document's SHA-256 and sizes travel in an
//! AnwendungsspezifischeErweiterung ([`CHECKSUM_EXTENSION_ID`]), since xdomea 3.1.0 has no
//! element for them.
#![forbid(unsafe_code)]

pub mod archive;
mod error;
mod handover;
mod names;
mod package;
mod plan;
mod read;
mod tree;
pub mod types;
mod write;
mod xml;

#[cfg(test)]
mod test_archive;
#[cfg(test)]
mod test_handover;
#[cfg(test)]
mod tests;

pub use error::{Location, XdomeaError};
pub use handover::{
    check_entry_name, read_0402, read_0403, read_package, write_0401, write_0401_xml, write_0402,
    write_0403, Handover, HandoverConfirmation, HandoverResult, HistoryRecord, ObjectExtras,
    PrimaryFileRef, ReceivedPackage, CUSTOM_FIELDS_GROUP, HANDOVER_EXTENSION_ID,
    MAX_PACKAGE_OBJECTS, METADATA_GROUP,
};
pub use names::{
    message_xml_name, message_zip_name, offer_zip_name, primary_file_name, sanitize_file_name,
    transfer_zip_name, MAX_NAME_BYTES,
};
pub use package::{
    for_each_rendition, parse_message_xml_name, read_message_zip, read_received_zip,
    write_0501_zip, write_0503, write_message_zip, ReceivedZip, TransferOptions, TransferWriter,
};
pub use plan::{
    read_0301, read_0302, write_0301, write_0302, FilePlan, PlanMessage, PlanUnitEntry,
    MAX_PLAN_UNITS,
};
pub use read::{
    check_appraisal_against_offer, identify, offered_ids, read_0502, read_0504, read_0505,
    read_0506, read_0507, unappraised,
};
pub use tree::{read_0501, read_0503, ObjectList, ReceivedObject, SgoKind};
pub use types::*;
pub use write::{
    write_0501, write_0502, write_0502_with, write_0503_xml, write_0504, write_0504_with,
    write_0505, write_0506, write_0506_with, write_0507, write_0507_with, CHECKSUM_EXTENSION_ID,
    FIELDS_EXTENSION_ID,
};

/// The namespace of xdomea 3.1.0, in which akte writes.
pub const NAMESPACE: &str = "urn:xoev-de:xdomea:schema:3.1.0";

/// The namespace of xdomea 3.0.0, accepted when reading.
pub const NAMESPACE_3_0_0: &str = "urn:xoev-de:xdomea:schema:3.0.0";
