//! Who may do what: the roles of a principal and the operations of the records model, as
//! one table.
//!
//! The server checks every call against [`Operation::roles`] (a principal may act when one
//! of its roles is in the operation's row), and the tests check the server against the
//! same table, so a rule is changed in exactly one place. A role does not imply another:
//! each row lists every role it admits, the administrator's included.

use serde::{Deserialize, Serialize};

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

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
    }
}
