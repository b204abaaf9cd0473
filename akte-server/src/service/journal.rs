//! HistoryService, JournalService and VerificationService.

use akte_core::keys::VerifierKey;
use akte_core::note::Checkpoint;
use akte_core::records::TenantRecords;
use akte_core::store::StoreError;
use akte_core::store::Tenant;
use akte_core::verify::{verify_tenant, VerifyOptions};
use akte_core::witness::CosignedCheckpoint;
use bytes::Bytes;
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert;
use crate::error::ApiError;
use crate::names;
use crate::operations::{pack, Verb};
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::history_service_server::HistoryService;
use crate::pb::akte::v1::journal_service_server::JournalService;
use crate::pb::akte::v1::verification_service_server::VerificationService;

use super::{blocking, Api};

fn bytes(d: &akte_core::Digest) -> Bytes {
    Bytes::copy_from_slice(d.as_bytes())
}

/// The message of a stored checkpoint, with the registered witnesses whose cosignatures
/// on it verify.
fn checkpoint_msg(t: &Tenant, c: &CosignedCheckpoint) -> pb::Checkpoint {
    let cp = &c.checkpoint;
    pb::Checkpoint {
        name: format!("tenants/{}/checkpoints/{}", t.id(), cp.size),
        origin: cp.origin.clone(),
        tree_size: cp.size,
        root_hash: bytes(&cp.root),
        signed_note: Bytes::from(c.note.to_bytes()),
        verifier_key: t.verifier().to_string(),
        cosignatures: c
            .witnesses
            .iter()
            .map(|w| pb::Cosignature {
                verifier_key: w.key.to_string(),
                cosign_time: Some(prost_types::Timestamp {
                    // Cosignature timestamps are at most 2^63-1 (checked when verified).
                    seconds: i64::try_from(w.timestamp).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            })
            .collect(),
    }
}

/// The stored checkpoint of `size` as a message.
fn stored(t: &Tenant, size: u64) -> Result<pb::Checkpoint, ApiError> {
    Ok(checkpoint_msg(t, &t.cosigned_checkpoint(size)?))
}

fn latest(t: &TenantRecords) -> Result<pb::Checkpoint, ApiError> {
    let (cp, _) = t.tenant().latest_checkpoint()?;
    stored(t.tenant(), cp.size)
}

fn witness_msg(tenant: &str, key: &VerifierKey) -> pb::Witness {
    pb::Witness {
        name: names::witness_name(tenant, &key.fingerprint()),
        verifier_key: key.to_string(),
        key_name: key.name().to_owned(),
    }
}

#[tonic::async_trait]
impl HistoryService for Api {
    async fn list_history(
        &self,
        req: Request<pb::ListHistoryRequest>,
    ) -> Result<Response<pb::ListHistoryResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let scope = Scope::new("ListHistory", &[&r.parent]);
        if r.parent.contains("/customFields/") {
            // A custom field's definition: every change of it.
            let (tenant, key) = super::fields::field_name("parent", &r.parent)?;
            let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
            let page = self.page_request(&scope, r.page_size, &r.page_token)?;
            let name = r.parent;
            let page = blocking(move || {
                let d = t
                    .field_definition_named(&key)
                    .map_err(super::named(&name))?;
                t.history(d.id, &page).map_err(super::named(&name))
            })
            .await?;
            return Ok(Response::new(pb::ListHistoryResponse {
                entries: page.items.iter().map(convert::history).collect(),
                next_page_token: self.seal_token(&scope, page.next_page_token.as_deref()),
            }));
        }
        if r.parent.contains("/orgUnits/") {
            // An organisational unit's history: its names, parents and members.
            let (tenant, id) = names::resource("parent", &r.parent, super::access::ORG_UNITS)?;
            let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
            let page = self.page_request(&scope, r.page_size, &r.page_token)?;
            let name = r.parent;
            let page = blocking(move || {
                t.org_unit(id).map_err(super::named(&name))?;
                t.history(id, &page).map_err(super::named(&name))
            })
            .await?;
            return Ok(Response::new(pb::ListHistoryResponse {
                entries: page.items.iter().map(convert::history).collect(),
                next_page_token: self.seal_token(&scope, page.next_page_token.as_deref()),
            }));
        }
        let o = names::object("parent", &r.parent)?;
        let t = self.tenant(&caller, &o.tenant, &r.parent, Operation::Read)?;
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let name = r.parent;
        let page = blocking(move || {
            // A deleted plan unit keeps its history; an existing object must be of the
            // kind its name says.
            if let Ok(obj) = t.get(o.id) {
                if obj.kind() != o.kind {
                    return Err(ApiError::NotFound { resource: name });
                }
            }
            t.history(o.id, &page).map_err(super::named(&name))
        })
        .await?;
        Ok(Response::new(pb::ListHistoryResponse {
            entries: page.items.iter().map(convert::history).collect(),
            next_page_token: self.seal_token(&scope, page.next_page_token.as_deref()),
        }))
    }
}

#[tonic::async_trait]
impl JournalService for Api {
    async fn get_latest_checkpoint(
        &self,
        req: Request<pb::GetLatestCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let name = r.parent;
        let tenant = names::tenant("parent", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        if !r.cosigned {
            return Ok(Response::new(blocking(move || latest(&t)).await?));
        }
        let cp = blocking(move || {
            let tenant = t.tenant();
            match tenant.newest_cosigned_checkpoint()? {
                Some(c) => Ok(checkpoint_msg(tenant, &c)),
                None => Err(StoreError::NoCheckpoint(tenant.id().to_owned()).into()),
            }
        })
        .await?;
        Ok(Response::new(cp))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, size) = names::checkpoint("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        Ok(Response::new(
            blocking(move || stored(t.tenant(), size)).await?,
        ))
    }

    async fn create_checkpoint(
        &self,
        req: Request<pb::CreateCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().parent;
        let tenant = names::tenant("parent", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::SignCheckpoint)?;
        let cp = blocking(move || {
            let note = t.tenant().checkpoint()?;
            let size = Checkpoint::parse_body(&note.text)
                .map_err(|e| ApiError::Store(StoreError::Note(e)))?
                .size;
            stored(t.tenant(), size)
        })
        .await?;
        tracing::info!(tenant = %tenant, size = cp.tree_size, principal = %caller.principal.name, "checkpoint signed");
        Ok(Response::new(cp))
    }

    async fn get_entry(
        &self,
        req: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::JournalEntry>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, seq) = names::entry("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let rec = blocking(move || {
            let rec = t.tenant().entry(seq)?;
            if let Ok(id) = uuid::Uuid::parse_str(&rec.entry.object) {
                t.admit_id(id).map_err(super::named(&name))?;
            }
            Ok(rec)
        })
        .await?;
        Ok(Response::new(super::feed::entry_msg(&tenant, &rec)))
    }

    async fn list_entries(
        &self,
        req: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListEntries", &[&r.parent, &r.start_seq.to_string()]);
        let from = self
            .state()
            .page_tokens
            .open_u64(&scope, &r.page_token)?
            .unwrap_or(r.start_seq);
        let size = convert::page_len(r.page_size)? as u64;
        let (entries, next, journal_size) = blocking(move || {
            let journal_size = t.tenant().size().map_err(ApiError::from)?;
            if from > journal_size {
                return Err(StoreError::BeyondJournal {
                    requested: from,
                    available: journal_size,
                }
                .into());
            }
            let to = journal_size.min(from.saturating_add(size));
            let entries = super::feed::read_entries(&t, &tenant, from, to)?;
            Ok((entries, (to < journal_size).then_some(to), journal_size))
        })
        .await?;
        Ok(Response::new(pb::ListEntriesResponse {
            entries,
            next_page_token: self.state().page_tokens.seal_u64(&scope, next),
            journal_size,
        }))
    }

    type WatchEntriesStream = super::feed::WatchStream;

    async fn watch_entries(
        &self,
        req: Request<pb::WatchEntriesRequest>,
    ) -> Result<Response<Self::WatchEntriesStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let permit = self
            .state()
            .watchers
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded(super::MAX_WATCHERS))?;
        Ok(super::feed::watch(
            t,
            tenant,
            r.start_seq,
            self.state().draining.clone(),
            permit,
        ))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let proof = blocking(move || {
            let (size, checkpoint) = if r.tree_size == 0 {
                let cp = latest(&t)?;
                (cp.tree_size, Some(cp))
            } else {
                (r.tree_size, None)
            };
            if r.seq >= size {
                return Err(ApiError::field(
                    "seq",
                    format!("entry {} is not in a tree of {size} entries", r.seq),
                ));
            }
            let tenant = t.tenant();
            let rec = tenant.entry(r.seq)?;
            if let Ok(id) = uuid::Uuid::parse_str(&rec.entry.object) {
                t.admit_id(id).map_err(|_| ApiError::NotFound {
                    resource: format!("{}/entries/{}", r.parent, r.seq),
                })?;
            }
            let leaf = rec.leaf;
            let hashes = tenant.inclusion_proof(r.seq, size)?;
            let root = tenant.root(size)?;
            Ok(pb::InclusionProof {
                seq: r.seq,
                tree_size: size,
                leaf_hash: bytes(&leaf),
                hashes: hashes.iter().map(bytes).collect(),
                root_hash: bytes(&root),
                checkpoint,
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        if r.first_tree_size == 0 || r.first_tree_size > r.second_tree_size {
            return Err(ApiError::field(
                "first_tree_size",
                "must be at least 1 and at most second_tree_size",
            )
            .into());
        }
        let proof = blocking(move || {
            let tenant = t.tenant();
            let hashes = tenant.consistency_proof(r.first_tree_size, r.second_tree_size)?;
            Ok(pb::ConsistencyProof {
                first_tree_size: r.first_tree_size,
                second_tree_size: r.second_tree_size,
                hashes: hashes.iter().map(bytes).collect(),
                first_root_hash: bytes(&tenant.root(r.first_tree_size)?),
                second_root_hash: bytes(&tenant.root(r.second_tree_size)?),
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn add_witness(
        &self,
        req: Request<pb::AddWitnessRequest>,
    ) -> Result<Response<pb::Witness>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
        let key = VerifierKey::parse(r.verifier_key.trim_end_matches('\n'))
            .map_err(|e| ApiError::field("verifier_key", e.to_string()))?;
        let (key, added) = blocking(move || Ok(t.tenant().add_witness(&key)?)).await?;
        if added {
            tracing::info!(tenant = %tenant, witness = %key, principal = %caller.principal.name, "witness registered");
        }
        Ok(Response::new(witness_msg(&tenant, &key)))
    }

    async fn list_witnesses(
        &self,
        req: Request<pb::ListWitnessesRequest>,
    ) -> Result<Response<pb::ListWitnessesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        // Witness keys are public: every checkpoint served to a reader names them anyway.
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListWitnesses", &[&r.parent]);
        let after = self.state().page_tokens.open_u64(&scope, &r.page_token)?;
        let size = convert::page_len(r.page_size)?;
        let keys = blocking(move || Ok(t.tenant().witnesses()?)).await?;
        // Registration order; the cursor is the position (a tenant has at most 32).
        let positioned: Vec<(u64, &VerifierKey)> = (0u64..).zip(keys.iter()).collect();
        let (page, next) = super::page_after(&positioned, |(i, _)| *i, after.as_ref(), size);
        Ok(Response::new(pb::ListWitnessesResponse {
            witnesses: page.iter().map(|(_, k)| witness_msg(&tenant, k)).collect(),
            next_page_token: self.state().page_tokens.seal_u64(&scope, next),
        }))
    }

    async fn delete_witness(
        &self,
        req: Request<pb::DeleteWitnessRequest>,
    ) -> Result<Response<pb::DeleteWitnessResponse>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, fingerprint) = names::witness("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Administer)?;
        let removed = blocking(move || Ok(t.tenant().remove_witness(&fingerprint)?)).await?;
        tracing::info!(tenant = %tenant, witness = %removed, principal = %caller.principal.name, "witness removed");
        Ok(Response::new(pb::DeleteWitnessResponse {}))
    }

    async fn add_cosignature(
        &self,
        req: Request<pb::AddCosignatureRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Archive)?;
        if r.cosigned_note.is_empty() {
            return Err(ApiError::field("cosigned_note", "is required").into());
        }
        let out = blocking(move || {
            let out = t.tenant().add_cosignatures(&r.cosigned_note)?;
            Ok((checkpoint_msg(t.tenant(), &out.stored), out.added))
        })
        .await?;
        let (cp, added) = out;
        if !added.is_empty() {
            tracing::info!(tenant = %tenant, size = cp.tree_size, witnesses = ?added, principal = %caller.principal.name, "cosignatures stored");
        }
        Ok(Response::new(cp))
    }
}

#[tonic::async_trait]
impl VerificationService for Api {
    async fn verify_tenant(
        &self,
        req: Request<pb::VerifyTenantRequest>,
    ) -> Result<Response<crate::pb::google::longrunning::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("name", &r.name)?;
        let t = self.tenant(&caller, &tenant, &r.name, Operation::Verify)?;
        let verify_lock = self.state.verify_lock.clone();
        let store = self.state.records.store().clone();
        let options = VerifyOptions {
            incremental: r.incremental,
            content: !r.skip_content,
            index: true,
        };
        let (name, principal) = (r.name.clone(), caller.actor().to_owned());
        let tn = tenant.clone();
        let op = self.state.operations.start(
            &tn,
            Verb::Verify,
            r.name,
            caller.actor(),
            move |progress| {
                progress.message("waiting for another verification to finish");
                // One verification at a time: they read every byte of the store.
                let _one_at_a_time = verify_lock.blocking_lock();
                // The verifier reports no progress of its own (see ARCHITECTURE.md): the
                // total is what it will look at, the count is set when it is done.
                let total = t.tenant().size().map_err(ApiError::from)?;
                progress.total(total, "entries");
                progress.message(format!("verifying {total} journal entries"));
                let report = verify_tenant(&store, t.tenant(), options)?;
                progress.set(report.from_seq + report.entries);
                tracing::info!(tenant = %tenant, problems = report.problems.len(), principal = %principal, "verification run");
                Ok(pack(
                    "akte.v1.VerificationReport",
                    &report_msg(&name, &report),
                ))
            },
        )
        .await?;
        Ok(Response::new(op))
    }
}

/// The message of a verification report.
fn report_msg(name: &str, report: &akte_core::verify::TenantReport) -> pb::VerificationReport {
    pb::VerificationReport {
        tenant: name.to_owned(),
        clean: report.problems.is_empty(),
        from_seq: report.from_seq,
        entries_checked: report.entries,
        checkpoints_checked: report.checkpoints,
        content_objects: report.content_objects,
        content_bytes: report.content_bytes,
        destroyed_records: report.destroyed_records,
        unreferenced_objects: report.unreferenced_objects,
        problems: report
            .problems
            .iter()
            .map(|p| pb::VerificationProblem {
                kind: serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                seq: p.seq,
                digest: p
                    .digest
                    .as_ref()
                    .map(convert::digest_bytes)
                    .unwrap_or_default(),
                message: p.message.clone(),
            })
            .collect(),
    }
}
