//! Writing evidence: the agency's side, which reads the journal and the records model.
//! The evidence file's format, its parsing and the offline verifier are akte-verify's
//! (`akte_verify::evidence`); `crate::evidence` puts both under one path.
//!
//! - [`build_evidence`]; the transfer writes its evidence itself (see
//!   [`TenantRecords::transfer`]); [`TenantRecords::document_evidence`] and
//!   [`TenantRecords::document_evidence_package`] give the evidence of one document;
//! - [`consistency_evidence`]: a new checkpoint and the consistency proof from one the
//!   archive kept.

use std::io::{self, Seek, Write};

use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, ZipWriter};
use uuid::Uuid;

use akte_verify::evidence::format::truncate;
use akte_verify::evidence::{
    evidence_entry_name, Evidence, EvidenceFile, EvidenceKind, EvidenceObject, FormatError,
    EVIDENCE_FORMAT,
};

use crate::digest::Digest;
use crate::entry::PayloadKind;
use crate::merkle::{self, ProofError};
use crate::note::{Checkpoint, NoteError, SignedNote};
use crate::records::{RecordsError, TenantRecords};
use crate::store::{StoreError, Tenant};
use crate::witness::WitnessError;
use crate::xdomea::{
    self, primary_file_name, sanitize_file_name, FileObject, MessageHeader, TransferWriter,
    XdomeaError,
};

/// Errors while writing evidence (the agency's side).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The store failed (reading an entry, a proof or the checkpoint).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The records model failed (looking up a document or version).
    #[error(transparent)]
    Records(Box<RecordsError>),
    /// The checkpoint the store signed does not open with the tenant's own key.
    #[error("checkpoint: {0}")]
    Note(#[from] NoteError),
    /// A file's entry does not list the file as content: the index and the journal disagree.
    #[error(
        "journal entry {seq} does not record {name} ({size} bytes, SHA-256 {digest}) as content"
    )]
    NotRecorded {
        /// The entry.
        seq: u64,
        /// The file's name.
        name: String,
        /// The file's size.
        size: u64,
        /// The file's digest.
        digest: Digest,
    },
    /// An inclusion proof the store produced does not verify.
    #[error("the inclusion proof of entry {seq} does not verify: {source}")]
    Proof {
        /// The entry.
        seq: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// Looking for a witnessed checkpoint failed (the witness list cannot be read).
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// Writing the ZIP failed.
    #[error(transparent)]
    Xdomea(#[from] XdomeaError),
    /// Reading the content store or writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An evidence file, checkpoint note or proof file that does not have the format.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<RecordsError> for EvidenceError {
    fn from(e: RecordsError) -> Self {
        EvidenceError::Records(Box::new(e))
    }
}

impl From<EvidenceError> for RecordsError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::Records(e) => *e,
            EvidenceError::Store(e) => RecordsError::Store(e),
            EvidenceError::Xdomea(e) => RecordsError::Invalid {
                field: "message".into(),
                reason: e.to_string(),
            },
            other => RecordsError::Internal(other.to_string()),
        }
    }
}

impl From<FormatError> for EvidenceError {
    fn from(e: FormatError) -> Self {
        EvidenceError::Malformed {
            what: e.what,
            reason: e.reason,
        }
    }
}

fn malformed(what: &'static str, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Malformed {
        what,
        reason: reason.into(),
    }
}

/// One file to put into evidence: its name, size and digest, and the journal entry that
/// recorded it (a `version.add` entry listing the digest as a content payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceItem {
    /// Name of the file in the package (or directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: Digest,
    /// The entry that recorded it.
    pub seq: u64,
}

/// What an evidence file is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceSubject {
    /// A transfer (0503) with this process id.
    Transfer(Uuid),
    /// A document.
    Document(Uuid),
}

/// Builds the evidence of `items`, and for each item reads its entry, checks that the entry
/// lists the item as content (kind 1, same digest and size), and proves the entry's
/// inclusion in one checkpoint. `message` is the transfer's XML (required for a transfer,
/// refused for a document).
///
/// The checkpoint is the newest stored one that registered witnesses have cosigned, if it
/// covers every item's entry; its note carries the cosignatures, and `witnesses` lists the
/// keys of the witnesses whose cosignatures verify, so the evidence shows that others saw
/// the same history. Otherwise a checkpoint of the journal as it is now is signed
/// (`Tenant::checkpoint`) and `witnesses` is empty.
pub fn build_evidence(
    tenant: &Tenant,
    subject: EvidenceSubject,
    message: Option<EvidenceFile>,
    items: &[EvidenceItem],
) -> Result<Evidence, EvidenceError> {
    let key = tenant.verifier();
    let needed = items
        .iter()
        .map(|i| i.seq.saturating_add(1))
        .max()
        .unwrap_or(0);
    let (note, witnesses) = match tenant.newest_cosigned_checkpoint()? {
        Some(c) if c.checkpoint.size >= needed => (
            c.note,
            c.witnesses.iter().map(|w| w.key.to_string()).collect(),
        ),
        _ => (tenant.checkpoint()?, Vec::new()),
    };
    let (checkpoint, note) = Checkpoint::open(&note.to_bytes(), &key)?;
    let mut objects = Vec::with_capacity(items.len());
    for item in items {
        let record = tenant.entry(item.seq)?;
        let bytes = record.entry.encode();
        let recorded = record.entry.payloads.iter().any(|p| {
            p.kind == PayloadKind::Content && p.digest == item.sha256 && p.size == item.size
        });
        if !recorded || merkle::leaf_hash(&bytes) != record.leaf {
            return Err(EvidenceError::NotRecorded {
                seq: item.seq,
                name: item.name.clone(),
                size: item.size,
                digest: item.sha256,
            });
        }
        let proof = tenant.inclusion_proof(item.seq, checkpoint.size)?;
        merkle::verify_inclusion(
            &record.leaf,
            item.seq,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|source| EvidenceError::Proof {
            seq: item.seq,
            source,
        })?;
        objects.push(EvidenceObject {
            name: item.name.clone(),
            size: item.size,
            sha256: item.sha256,
            seq: item.seq,
            entry: bytes,
            proof,
        });
    }
    let (kind, process_id, document_id) = match subject {
        EvidenceSubject::Transfer(p) => (EvidenceKind::Transfer, Some(p), None),
        EvidenceSubject::Document(d) => (EvidenceKind::Document, None, Some(d)),
    };
    let evidence = Evidence {
        format: EVIDENCE_FORMAT.to_owned(),
        kind,
        process_id,
        document_id,
        checkpoint: String::from_utf8_lossy(&note.to_bytes()).into_owned(),
        verifier_key: key.to_string(),
        key_fingerprint: key.fingerprint(),
        witnesses,
        message,
        objects,
    };
    evidence
        .validate()
        .map_err(|reason| malformed("evidence file", reason))?;
    Ok(evidence)
}

/// The items of a transfer, in the order of the 0503 XML, with each rendition's UUID.
fn transfer_items(
    records: &TenantRecords,
    files: &[FileObject],
) -> Result<Vec<(Uuid, EvidenceItem)>, EvidenceError> {
    fn doc(
        records: &TenantRecords,
        d: &xdomea::DocumentObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for v in &d.versions {
            let version = records.version(d.id, v.number)?;
            for r in &v.renditions {
                if !version.renditions.iter().any(|x| x.id == r.id) {
                    return Err(EvidenceError::Records(Box::new(RecordsError::Internal(
                        format!(
                            "rendition {} is not in version {} of document {}",
                            r.id, v.number, d.id
                        ),
                    ))));
                }
                out.push((
                    r.id,
                    EvidenceItem {
                        name: primary_file_name(r),
                        size: r.size,
                        sha256: r.digest,
                        seq: version.created.seq,
                    },
                ));
            }
        }
        for a in &d.attachments {
            doc(records, &a.document, out)?;
        }
        Ok(())
    }
    fn case(
        records: &TenantRecords,
        c: &xdomea::CaseObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for d in &c.documents {
            doc(records, d, out)?;
        }
        for s in &c.sub_cases {
            case(records, s, out)?;
        }
        Ok(())
    }
    fn file(
        records: &TenantRecords,
        f: &FileObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for d in &f.documents {
            doc(records, d, out)?;
        }
        for c in &f.cases {
            case(records, c, out)?;
        }
        for s in &f.sub_files {
            file(records, s, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    for f in files {
        file(records, f, &mut out)?;
    }
    Ok(out)
}

/// Writes a 0503 transfer ZIP with its evidence file: the XML, every primary file streamed
/// from the content store, then `{ProzessID}_akte-evidence.json` with a checkpoint chosen
/// after the files were read (the newest witnessed one covering them, or one signed then;
/// see [`build_evidence`]). The disposal flow calls this; it records nothing itself.
pub(crate) fn write_transfer<W: Write + Seek>(
    records: &TenantRecords,
    header: &MessageHeader,
    files: &[FileObject],
    out: W,
) -> Result<W, EvidenceError> {
    let items = transfer_items(records, files)?;
    let content = records.tenant().content();
    let mut writer = TransferWriter::new(out, header, files)?;
    for (rendition, item) in &items {
        let reader = content.get(&item.sha256).map_err(|e| XdomeaError::Source {
            rendition: *rendition,
            source: Box::new(e),
        })?;
        writer.add_primary_file(*rendition, reader)?;
    }
    let (name, size, sha256) = writer.message_entry();
    let message = EvidenceFile {
        name: name.to_owned(),
        size,
        sha256,
    };
    let items: Vec<EvidenceItem> = items.into_iter().map(|(_, item)| item).collect();
    let evidence = build_evidence(
        records.tenant(),
        EvidenceSubject::Transfer(header.process_id),
        Some(message),
        &items,
    )?;
    writer.add_extra_file(&evidence_entry_name(header.process_id), &evidence.to_json())?;
    Ok(writer.finish()?)
}

impl TenantRecords {
    fn document_items(&self, document: Uuid) -> Result<Vec<EvidenceItem>, EvidenceError> {
        let mut items = Vec::new();
        for v in self.versions(document)? {
            for r in &v.renditions {
                items.push(EvidenceItem {
                    name: format!("{}_{}", r.id.hyphenated(), sanitize_file_name(&r.file_name)),
                    size: r.size,
                    sha256: r.sha256,
                    seq: v.created.seq,
                });
            }
        }
        Ok(items)
    }

    /// The evidence of one document, for a file inspection request or a court: every
    /// rendition of every version, named `{rendition UUID}_{sanitised original name}` as in
    /// a transfer, each with its `version.add` entry and inclusion proof, all leading to one
    /// checkpoint (the newest witnessed one that covers them, or one signed now). Write it with [`Evidence::to_json`] and hand it over with the
    /// files under those names ([`verify_evidence_dir`] checks such a bundle), or use
    /// [`TenantRecords::document_evidence_package`].
    pub fn document_evidence(&self, document: Uuid) -> Result<Evidence, EvidenceError> {
        let items = self.document_items(document)?;
        build_evidence(
            self.tenant(),
            EvidenceSubject::Document(document),
            None,
            &items,
        )
    }

    /// A ZIP holding every rendition of every version of one document and its evidence as
    /// `{document UUID}_akte-evidence.json`; [`verify_package`] checks it like a transfer.
    /// Files stream from the content store.
    pub fn document_evidence_package<W: Write + Seek>(
        &self,
        document: Uuid,
        out: W,
    ) -> Result<W, EvidenceError> {
        let items = self.document_items(document)?;
        let content = self.tenant().content();
        let mut zip = ZipWriter::new(out);
        let zip_err = |what: &str, e: ::zip::result::ZipError| EvidenceError::Io {
            what: what.to_owned(),
            source: io::Error::other(e),
        };
        for item in &items {
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .large_file(item.size >= 0xF000_0000);
            zip.start_file(item.name.as_str(), options)
                .map_err(|e| zip_err("write the ZIP", e))?;
            let mut reader = content.get(&item.sha256).map_err(|e| EvidenceError::Io {
                what: format!("read {} from the content store", item.sha256),
                source: io::Error::other(e),
            })?;
            io::copy(&mut reader, &mut zip).map_err(|source| EvidenceError::Io {
                what: format!("copy {} into the ZIP", item.name),
                source,
            })?;
        }
        let evidence = build_evidence(
            self.tenant(),
            EvidenceSubject::Document(document),
            None,
            &items,
        )?;
        zip.start_file(
            evidence_entry_name(document).as_str(),
            SimpleFileOptions::default().compression_method(CompressionMethod::Deflated),
        )
        .map_err(|e| zip_err("write the ZIP", e))?;
        zip.write_all(&evidence.to_json())
            .map_err(|source| EvidenceError::Io {
                what: "write the evidence into the ZIP".into(),
                source,
            })?;
        zip.finish().map_err(|e| zip_err("finish the ZIP", e))
    }
}

/// The agency's side of a consistency check: given a checkpoint note the archive kept (it
/// must be this tenant's, signed with its key), signs a checkpoint of the journal now and
/// returns it with the consistency proof from the old size to the new one. Hand both to the
/// archive; it checks them with [`verify_consistency`].
pub fn consistency_evidence(
    tenant: &Tenant,
    old_note: &[u8],
) -> Result<(SignedNote, Vec<Digest>), EvidenceError> {
    let key = tenant.verifier();
    let (old, _) = Checkpoint::open(old_note, &key)?;
    if old.origin != tenant.origin() {
        return Err(malformed(
            "checkpoint note",
            format!(
                "its origin {:?} is not this tenant's {:?}",
                truncate(&old.origin, 80),
                tenant.origin()
            ),
        ));
    }
    let note = tenant.checkpoint()?;
    let (new, note) = Checkpoint::open(&note.to_bytes(), &key)?;
    let proof = tenant.consistency_proof(old.size, new.size)?;
    Ok((note, proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_finds_the_transfer_xml_under_the_name_the_writer_gives_it() {
        let id = Uuid::new_v4();
        assert_eq!(
            akte_verify::evidence::transfer_xml_name(id),
            xdomea::message_xml_name(id, xdomea::MessageType::Transfer)
        );
    }
}
