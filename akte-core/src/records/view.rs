//! The records of a tenant as one caller may see them.
//!
//! [`TenantRecords::bind`] attaches a caller (principal, roles, the units its token is
//! bound to) and the operation of its request. From then on every get answers an object
//! the caller may not see as not found, every listing and query leaves such objects out
//! (so counts and page contents never show them), and writes check the right to change
//! the object. Reads of objects at VS-NfD and above, and every denied attempt, are
//! appended to the journal as access log entries, once per object and request; reads of
//! open objects write nothing, so they cost no more than before. Unbound records (the
//! library used directly, the server's own work) see everything, as before.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::access::{decide, is_logged, rank, Denial, ObjectAccess, Operation, Role, Viewer};

use super::org::{self, load_grants, MAX_DEPTH};
use super::projection::load_object;
use super::types::{Object, ObjectKind};
use super::{RecordsError, TenantRecords};

/// A caller bound to a tenant's records for one request.
#[derive(Debug)]
pub struct Bound {
    viewer: Viewer,
    op: Operation,
    /// Objects whose access this request has logged already.
    logged: Mutex<HashSet<Uuid>>,
}

impl Bound {
    /// The caller.
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }
}

impl TenantRecords {
    /// These records as `principal` with `roles` sees them for a request doing `op`;
    /// `token_units` are the units its token is bound to (it acts in them as if it were
    /// a member). Memberships and clearance are read once, here.
    pub fn bind(
        &self,
        principal: &str,
        roles: &[Role],
        token_units: &[Uuid],
        op: Operation,
    ) -> Result<TenantRecords, RecordsError> {
        let index = self.tenant.index();
        let viewer = Viewer {
            name: principal.to_owned(),
            roles: roles.to_vec(),
            units: org::acting_units(index, principal, token_units)?,
            clearance: org::clearance_of(index, principal)?,
        };
        Ok(TenantRecords {
            tenant: self.tenant.clone(),
            viewer: Some(Arc::new(Bound {
                viewer,
                op,
                logged: Mutex::new(HashSet::new()),
            })),
        })
    }

    /// The caller these records are bound to, if any.
    pub fn bound(&self) -> Option<&Bound> {
        self.viewer.as_deref()
    }

    /// The same records without a caller (for the server's own follow-up work after a
    /// request was admitted, e.g. an operation running on).
    pub fn unbound(&self) -> TenantRecords {
        TenantRecords {
            tenant: self.tenant.clone(),
            viewer: None,
        }
    }

    /// An object's access with everything inherited from the files and cases above it;
    /// `None` for plan units, which no unit restricts.
    pub fn effective_access(&self, obj: &Object) -> Result<Option<ObjectAccess>, RecordsError> {
        let index = self.tenant.index();
        let mut acc = ObjectAccess::default();
        let mut cur = obj.clone();
        for _ in 0..MAX_DEPTH {
            let (level, next) = match &cur {
                Object::PlanUnit(_) => return Ok(None),
                Object::File(f) => (f.confidentiality, f.parent_file),
                Object::Case(c) => (c.confidentiality, Some(c.parent_case.unwrap_or(c.file))),
                Object::Document(d) => (d.confidentiality, Some(d.parent)),
            };
            if rank(level) > rank(acc.level) {
                acc.level = level;
            }
            let g = load_grants(index, cur.id())?;
            acc.lead_units.extend(g.lead_unit);
            acc.shares.extend(g.shares);
            match next.map(|p| load_object(index, p)).transpose()?.flatten() {
                Some(p) => cur = p,
                None => break,
            }
        }
        Ok(Some(acc))
    }

    /// The decision for the bound caller doing `op` on `obj` (always allowed unbound).
    fn decide_for(&self, obj: &Object, op: Operation) -> Result<Result<(), Denial>, RecordsError> {
        let Some(b) = self.bound() else {
            return Ok(Ok(()));
        };
        let access = self.effective_access(obj)?;
        Ok(decide(&b.viewer, op, access.as_ref()))
    }

    /// Whether the bound caller may see `obj` (listings and queries; nothing is logged).
    pub fn may_see(&self, obj: &Object) -> Result<bool, RecordsError> {
        Ok(self.decide_for(obj, Operation::Read)?.is_ok())
    }

    /// Whether the bound caller may see the object `id`; anything that is no file, case or
    /// document (a plan unit, a destroyed or unknown id) is not hidden by access rules.
    pub fn may_see_id(&self, id: Uuid) -> Result<bool, RecordsError> {
        if self.bound().is_none() {
            return Ok(true);
        }
        match load_object(self.tenant.index(), id)? {
            Some(o) => self.may_see(&o),
            None => Ok(true),
        }
    }

    /// As [`Self::get`] for a request that names an object indirectly (a journal entry
    /// about it, a proof of it): not found if the caller may not see it, logged like a
    /// read; ids that are no object pass.
    pub fn admit_id(&self, id: Uuid) -> Result<(), RecordsError> {
        if self.bound().is_none() {
            return Ok(());
        }
        match load_object(self.tenant.index(), id)? {
            Some(o) => self.admit(o).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Whether the bound caller may see every object of `ids` (the files of a disposal or
    /// handover process, the files and containers of a destruction record): something that
    /// names objects it may not see is itself hidden. An object destroyed since is judged by
    /// its own lead unit and shares, which destruction keeps (its level went with it).
    /// Denials are logged like any other; ids that were never objects pass.
    pub fn admit_all(&self, ids: &[Uuid]) -> Result<bool, RecordsError> {
        self.sees_all(ids, true)
    }

    /// As [`Self::admit_all`] for a listing, which leaves out what the caller may not see
    /// and logs nothing.
    pub fn may_see_all(&self, ids: &[Uuid]) -> Result<bool, RecordsError> {
        self.sees_all(ids, false)
    }

    fn sees_all(&self, ids: &[Uuid], log: bool) -> Result<bool, RecordsError> {
        let Some(b) = self.bound() else {
            return Ok(true);
        };
        let index = self.tenant.index();
        for &id in ids {
            match load_object(index, id)? {
                Some(o) if !log => {
                    if !self.may_see(&o)? {
                        return Ok(false);
                    }
                }
                Some(o) => match self.admit(o) {
                    Ok(_) => {}
                    Err(RecordsError::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(e),
                },
                None => {
                    let g = load_grants(index, id)?;
                    let access = ObjectAccess {
                        lead_units: g.lead_unit.into_iter().collect(),
                        shares: g.shares,
                        ..ObjectAccess::default()
                    };
                    if let Err(denial) = decide(&b.viewer, Operation::Read, Some(&access)) {
                        if log {
                            self.log_once(id, b.op, Some(denial))?;
                        }
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Lets the bound caller have `obj` for its request's operation, or answers as the
    /// rules say: not found for an object it may not see, access denied for one it may see
    /// but not change. Confidential reads and every denial are logged.
    pub(super) fn admit(&self, obj: Object) -> Result<Object, RecordsError> {
        let Some(b) = self.bound() else {
            return Ok(obj);
        };
        let op = b.op;
        let access = self.effective_access(&obj)?;
        let id = obj.id();
        match decide(&b.viewer, op, access.as_ref()) {
            Ok(()) => {
                if access.as_ref().is_some_and(|a| is_logged(a.level)) {
                    self.log_once(id, op, None)?;
                }
                Ok(obj)
            }
            Err(denial) => {
                self.log_once(id, op, Some(denial))?;
                if denial.hides() {
                    return Err(RecordsError::NotFound {
                        what: obj.kind().name().into(),
                        id: id.to_string(),
                    });
                }
                // A denied write on an object the caller may see is no secret.
                let reason = match denial {
                    Denial::ReadOnly => "shared with the caller for reading only".into(),
                    _ => format!("no role of the caller may {}", op.name()),
                };
                Err(RecordsError::AccessDenied {
                    id: id.to_string(),
                    reason,
                })
            }
        }
    }

    fn log_once(
        &self,
        id: Uuid,
        op: Operation,
        denial: Option<Denial>,
    ) -> Result<(), RecordsError> {
        let Some(b) = self.bound() else {
            return Ok(());
        };
        let first = b
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        if !first {
            return Ok(());
        }
        // Failing closed: a confidential read whose log entry cannot be written is refused.
        self.log_access(&b.viewer.name, &[id], op.name(), denial.map(Denial::name))
    }

    /// Logs, in one entry, that a listing or query showed the bound caller these objects
    /// (only those at VS-NfD and above are named; nothing is written if there are none).
    pub fn log_listed(&self, objects: &[Object]) -> Result<(), RecordsError> {
        let Some(b) = self.bound() else {
            return Ok(());
        };
        let mut ids = Vec::new();
        for o in objects {
            if self
                .effective_access(o)?
                .is_some_and(|a| is_logged(a.level))
            {
                ids.push(o.id());
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        self.log_access(&b.viewer.name, &ids, "list", None)
    }

    /// For a write on object `id`: the object if the bound caller may change it (see
    /// [`Self::admit`]); unbound, simply the object.
    pub(super) fn authorize_write(&self, id: Uuid) -> Result<Object, RecordsError> {
        let obj = super::service::get_object(self.tenant.index(), id)?;
        let Some(b) = self.bound() else {
            return Ok(obj);
        };
        if !b.op.writes() {
            // A read-only request changing something is a server bug; refuse it.
            return Err(RecordsError::AccessDenied {
                id: id.to_string(),
                reason: format!("a {} request changes nothing", b.op.name()),
            });
        }
        self.admit(obj)
    }

    /// Lowering a level: the bound caller must be allowed to keep files (a registrar).
    pub(super) fn authorize_lowering(&self, obj: &Object) -> Result<(), RecordsError> {
        match self.decide_for(obj, Operation::KeepFiles)? {
            Ok(()) => Ok(()),
            Err(_) => Err(RecordsError::AccessDenied {
                id: obj.id().to_string(),
                reason: "only a registrar of the object may lower its confidentiality level".into(),
            }),
        }
    }

    /// The access log is its registrar's: the bound caller must see the object and be
    /// allowed to keep it.
    pub(super) fn authorize_registrar(&self, id: Uuid) -> Result<(), RecordsError> {
        let obj = super::service::get_object(self.tenant.index(), id)?;
        if obj.kind() == ObjectKind::PlanUnit {
            return Err(RecordsError::WrongKind {
                id: id.to_string(),
                expected: "file, case or document".into(),
                found: ObjectKind::PlanUnit,
            });
        }
        match self.decide_for(&obj, Operation::KeepFiles)? {
            Ok(()) => Ok(()),
            Err(d) if d.hides() => Err(RecordsError::NotFound {
                what: obj.kind().name().into(),
                id: id.to_string(),
            }),
            Err(_) => Err(RecordsError::AccessDenied {
                id: id.to_string(),
                reason: "the access log is for the object's registrar".into(),
            }),
        }
    }
}
