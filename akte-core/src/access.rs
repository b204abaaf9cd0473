//! Who may do what: the roles of a principal and the operations of the records model, as
//! one table.
//!
//! The server checks every call against [`Operation::roles`] (a principal may act when one
//! of its roles is in the operation's row), and the tests check the server against the
//! same table, so a rule is changed in exactly one place. A role does not imply another:
//! each row lists every role it admits, the administrator's included.
//!
//! On top of the role table, [`decide`] is the one function that says whether a principal
//! may do an operation on one object of the records model: the role table first, then the
//! principal's clearance against the object's confidentiality level, then need-to-know
//! through organisational units (the lead units of the object and its containers) and
//! shares. An object with no lead unit anywhere above it is open to every role of the
//! tenant that the table admits, as before units existed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::Confidentiality;

/// A role a principal (a token) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of its tenant.
    Reader,
    /// Cases, documents, versions.
    Clerk,
    /// File plan and files too.
    Registrar,
    /// Reads, checkpoints, verification, holds and the archive's messages.
    Archivist,
    /// Everything in its tenant, plus tokens; with tenant `*` also tenants.
    Admin,
}

/// What a call does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Read anything of the tenant: objects, history, journal, proofs, statuses.
    Read,
    /// Create and change cases, documents and versions; upload.
    FileDocuments,
    /// Keep the file plan and the files; retention; offer, transfer and destroy.
    KeepFiles,
    /// Sign a checkpoint of the journal.
    SignCheckpoint,
    /// Verify the tenant's store.
    Verify,
    /// Holds, the archive's messages and witness cosignatures.
    Archive,
    /// Tokens, witnesses, disposal settings (and, for all tenants, tenants).
    Administer,
}

/// The table: each operation with the roles that may do it.
const TABLE: [(Operation, &[Role]); 7] = [
    (
        Operation::Read,
        &[
            Role::Reader,
            Role::Clerk,
            Role::Registrar,
            Role::Archivist,
            Role::Admin,
        ],
    ),
    (
        Operation::FileDocuments,
        &[Role::Clerk, Role::Registrar, Role::Admin],
    ),
    (Operation::KeepFiles, &[Role::Registrar, Role::Admin]),
    (
        Operation::SignCheckpoint,
        &[Role::Registrar, Role::Archivist, Role::Admin],
    ),
    (Operation::Verify, &[Role::Archivist, Role::Admin]),
    (Operation::Archive, &[Role::Archivist, Role::Admin]),
    (Operation::Administer, &[Role::Admin]),
];

impl Operation {
    /// Every operation, in the table's order.
    pub const ALL: [Operation; 7] = [
        Operation::Read,
        Operation::FileDocuments,
        Operation::KeepFiles,
        Operation::SignCheckpoint,
        Operation::Verify,
        Operation::Archive,
        Operation::Administer,
    ];

    /// The roles that may do it.
    pub fn roles(self) -> &'static [Role] {
        TABLE
            .iter()
            .find(|(op, _)| *op == self)
            .map_or(&[], |(_, roles)| roles)
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Reader,
        Role::Clerk,
        Role::Registrar,
        Role::Archivist,
        Role::Admin,
    ];

    /// Whether this role may do `op`.
    pub fn may(self, op: Operation) -> bool {
        op.roles().contains(&self)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Clerk => "clerk",
            Role::Registrar => "registrar",
            Role::Archivist => "archivist",
            Role::Admin => "admin",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Clearance of a principal for whom none was recorded: VS-NfD. VS-NfD needs no security
/// clearance (every official is bound to it by instruction, VSA), only need-to-know,
/// which the units decide; higher levels need an explicit clearance.
pub const DEFAULT_CLEARANCE: Confidentiality = Confidentiality::Restricted;

/// The order of the confidentiality levels: Offen < VS-NfD < VS-Vertraulich < Geheim <
/// Streng geheim (the xdomea codes are not in this order).
pub fn rank(level: Confidentiality) -> u8 {
    match level {
        Confidentiality::Open => 0,
        Confidentiality::Restricted => 1,
        Confidentiality::Confidential => 2,
        Confidentiality::Secret => 3,
        Confidentiality::TopSecret => 4,
    }
}

/// Whether reads of an object at `level` are written to the access log (VS-NfD and up).
pub fn is_logged(level: Confidentiality) -> bool {
    rank(level) >= rank(Confidentiality::Restricted)
}

/// Who a share is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// Every member of an organisational unit (and of the units above it).
    Unit(Uuid),
    /// One principal.
    Principal(String),
}

/// A share of an object with a unit or principal beyond its lead unit (Beteiligung,
/// Mitzeichnung).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Share {
    /// Who.
    pub grantee: Grantee,
    /// Write (Mitzeichnung: may file documents and change) or read only (Beteiligung).
    pub write: bool,
}

/// An object's access as the decision sees it: its own settings folded together with
/// those of every file and case above it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectAccess {
    /// Lead units (Federführung) of the object and its containers; empty: no unit
    /// restricts it.
    pub lead_units: Vec<Uuid>,
    /// Effective level: the highest level on the way up (levels are inherited downwards
    /// and can only be raised below).
    pub level: Confidentiality,
    /// Shares of the object and its containers.
    pub shares: Vec<Share>,
}

/// The caller as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The principal's name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// The units it acts in: those it is a member of (or its token is bound to) and every
    /// unit below them.
    pub units: BTreeSet<Uuid>,
    /// The highest level it is cleared for.
    pub clearance: Confidentiality,
}

/// Why a decision denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// No role of the principal admits the operation (the table).
    Role,
    /// The object's level is above the principal's clearance.
    Clearance,
    /// The object is led by units the principal is not in, and not shared with it.
    Unit,
    /// The object is shared with the principal for reading only.
    ReadOnly,
}

impl Denial {
    /// Whether the object stays hidden (answered as if it did not exist): everything but a
    /// missing role or a read-only share, which concern an object the caller may see.
    pub fn hides(self) -> bool {
        matches!(self, Denial::Clearance | Denial::Unit)
    }

    /// Lower-case name, as the access log records it.
    pub fn name(self) -> &'static str {
        match self {
            Denial::Role => "role",
            Denial::Clearance => "clearance",
            Denial::Unit => "unit",
            Denial::ReadOnly => "read_only",
        }
    }
}

impl Operation {
    /// Whether doing this to an object changes it (needs the lead unit or a write share);
    /// every other operation on an object needs only to see it.
    pub fn writes(self) -> bool {
        matches!(self, Operation::FileDocuments | Operation::KeepFiles)
    }

    /// Lower-case name, as the access log records it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::FileDocuments => "file_documents",
            Operation::KeepFiles => "keep_files",
            Operation::SignCheckpoint => "sign_checkpoint",
            Operation::Verify => "verify",
            Operation::Archive => "archive",
            Operation::Administer => "administer",
        }
    }
}

/// May `viewer` do `op` on an object with `access` (`None`: the tenant as a whole, or an
/// object outside the access model such as a plan unit)?
///
/// In this order: a role of the viewer must admit `op` (the table); the viewer's clearance
/// must reach the object's level; and if any lead unit restricts the object, the viewer
/// must act in one of them, or the object must be shared with one of its units or with
/// it by name (for writing operations, with a write share).
pub fn decide(viewer: &Viewer, op: Operation, access: Option<&ObjectAccess>) -> Result<(), Denial> {
    if !viewer.roles.iter().any(|r| r.may(op)) {
        return Err(Denial::Role);
    }
    let Some(access) = access else {
        return Ok(());
    };
    if rank(access.level) > rank(viewer.clearance) {
        return Err(Denial::Clearance);
    }
    if access.lead_units.is_empty() || access.lead_units.iter().any(|u| viewer.units.contains(u)) {
        return Ok(());
    }
    let mine = |s: &&Share| match &s.grantee {
        Grantee::Unit(u) => viewer.units.contains(u),
        Grantee::Principal(p) => *p == viewer.name,
    };
    let mut shares = access.shares.iter().filter(mine).peekable();
    if shares.peek().is_none() {
        return Err(Denial::Unit);
    }
    if op.writes() && !shares.any(|s| s.write) {
        return Err(Denial::ReadOnly);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_row_and_the_admin_may_do_everything() {
        for op in Operation::ALL {
            assert!(!op.roles().is_empty(), "{op:?} has a row");
            assert!(Role::Admin.may(op), "{op:?}");
        }
    }

    #[test]
    fn the_table_as_documented() {
        // Role × operation, in the order of Operation::ALL: R, F, K, S, V, A, D.
        let expected: [(Role, [bool; 7]); 5] = [
            (
                Role::Reader,
                [true, false, false, false, false, false, false],
            ),
            (Role::Clerk, [true, true, false, false, false, false, false]),
            (
                Role::Registrar,
                [true, true, true, true, false, false, false],
            ),
            (
                Role::Archivist,
                [true, false, false, true, true, true, false],
            ),
            (Role::Admin, [true; 7]),
        ];
        for (role, row) in expected {
            for (op, may) in Operation::ALL.into_iter().zip(row) {
                assert_eq!(role.may(op), may, "{role:?} {op:?}");
            }
        }
    }

    /// How the viewer relates to the object's units, for the matrix below.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Membership {
        /// The object has no lead unit at all (as before units existed).
        NoLeadUnit,
        /// The viewer acts in no unit.
        NoUnit,
        /// The viewer is in the lead unit (directly or through a unit above it).
        LeadUnit,
        /// The viewer is in another unit only.
        OtherUnit,
        /// Shared for reading with a unit of the viewer.
        ReadShareUnit,
        /// Shared for reading with the viewer by name.
        ReadSharePrincipal,
        /// Shared for writing with a unit of the viewer.
        WriteShareUnit,
        /// Shared for writing with the viewer by name.
        WriteSharePrincipal,
    }

    const LEVELS: [Confidentiality; 5] = [
        Confidentiality::Open,
        Confidentiality::Restricted,
        Confidentiality::Confidential,
        Confidentiality::Secret,
        Confidentiality::TopSecret,
    ];

    fn case(m: Membership, level: Confidentiality) -> (BTreeSet<Uuid>, ObjectAccess) {
        let lead = Uuid::from_u128(1);
        let mine = Uuid::from_u128(2);
        let other = Uuid::from_u128(3);
        let mut units = BTreeSet::new();
        let mut access = ObjectAccess {
            lead_units: vec![lead],
            level,
            shares: vec![Share {
                grantee: Grantee::Unit(other),
                write: true,
            }],
        };
        let share = |grantee, write| Share { grantee, write };
        match m {
            Membership::NoLeadUnit => {
                access.lead_units.clear();
                units.insert(mine);
            }
            Membership::NoUnit => {}
            Membership::LeadUnit => {
                units.insert(lead);
            }
            Membership::OtherUnit => {
                units.insert(mine);
            }
            Membership::ReadShareUnit => {
                units.insert(mine);
                access.shares.push(share(Grantee::Unit(mine), false));
            }
            Membership::ReadSharePrincipal => {
                access
                    .shares
                    .push(share(Grantee::Principal("p".into()), false));
            }
            Membership::WriteShareUnit => {
                units.insert(mine);
                access.shares.push(share(Grantee::Unit(mine), true));
            }
            Membership::WriteSharePrincipal => {
                access
                    .shares
                    .push(share(Grantee::Principal("p".into()), true));
            }
        }
        (units, access)
    }

    /// The rules in words, written independently of `decide`: the role table; then
    /// clearance; then units: free without a lead unit, free in the lead unit, read (and
    /// every non-writing operation) with any share of the viewer, write only with a write
    /// share.
    fn expected(
        role: Role,
        m: Membership,
        level: Confidentiality,
        clearance: Confidentiality,
        op: Operation,
    ) -> Result<(), Denial> {
        let table: &[(Role, &[Operation])] = &[
            (Role::Reader, &[Operation::Read]),
            (Role::Clerk, &[Operation::Read, Operation::FileDocuments]),
            (
                Role::Registrar,
                &[
                    Operation::Read,
                    Operation::FileDocuments,
                    Operation::KeepFiles,
                    Operation::SignCheckpoint,
                ],
            ),
            (
                Role::Archivist,
                &[
                    Operation::Read,
                    Operation::SignCheckpoint,
                    Operation::Verify,
                    Operation::Archive,
                ],
            ),
            (Role::Admin, &Operation::ALL),
        ];
        let ops = table.iter().find(|(r, _)| *r == role).map(|(_, o)| *o);
        if !ops.is_some_and(|o| o.contains(&op)) {
            return Err(Denial::Role);
        }
        let order = |c| LEVELS.iter().position(|l| *l == c);
        if order(level) > order(clearance) {
            return Err(Denial::Clearance);
        }
        let writing = matches!(op, Operation::FileDocuments | Operation::KeepFiles);
        match m {
            Membership::NoLeadUnit | Membership::LeadUnit => Ok(()),
            Membership::NoUnit | Membership::OtherUnit => Err(Denial::Unit),
            Membership::ReadShareUnit | Membership::ReadSharePrincipal if writing => {
                Err(Denial::ReadOnly)
            }
            _ => Ok(()),
        }
    }

    #[test]
    fn the_access_matrix_role_membership_level_operation() {
        use Membership::*;
        let memberships = [
            NoLeadUnit,
            NoUnit,
            LeadUnit,
            OtherUnit,
            ReadShareUnit,
            ReadSharePrincipal,
            WriteShareUnit,
            WriteSharePrincipal,
        ];
        let mut checked = 0;
        let mut allowed = 0;
        for clearance in [DEFAULT_CLEARANCE, Confidentiality::Secret] {
            for role in Role::ALL {
                for m in memberships {
                    for level in LEVELS {
                        let (units, access) = case(m, level);
                        let viewer = Viewer {
                            name: "p".into(),
                            roles: vec![role],
                            units,
                            clearance,
                        };
                        for op in Operation::ALL {
                            let got = decide(&viewer, op, Some(&access));
                            let want = expected(role, m, level, clearance, op);
                            assert_eq!(
                                got, want,
                                "{role:?} {m:?} level {level:?} clearance {clearance:?} {op:?}"
                            );
                            checked += 1;
                            allowed += usize::from(got.is_ok());
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 5 * 8 * 5 * 7);
        // Both outcomes occur, so the loops did compare something.
        assert!(allowed > 0 && allowed < checked, "{allowed} of {checked}");
    }

    #[test]
    fn tenant_wide_operations_need_only_the_role_and_denials_that_hide() {
        let viewer = Viewer {
            name: "p".into(),
            roles: vec![Role::Reader],
            units: BTreeSet::new(),
            clearance: Confidentiality::Open,
        };
        assert_eq!(decide(&viewer, Operation::Read, None), Ok(()));
        assert_eq!(
            decide(&viewer, Operation::KeepFiles, None),
            Err(Denial::Role)
        );
        assert!(Denial::Unit.hides() && Denial::Clearance.hides());
        assert!(!Denial::Role.hides() && !Denial::ReadOnly.hides());
    }

    #[test]
    fn levels_are_ranked_and_logged_from_nfd() {
        let ranks: Vec<u8> = LEVELS.iter().map(|l| rank(*l)).collect();
        assert_eq!(ranks, vec![0, 1, 2, 3, 4]);
        assert!(!is_logged(Confidentiality::Open));
        assert!(LEVELS[1..].iter().all(|l| is_logged(*l)));
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
    }
}
