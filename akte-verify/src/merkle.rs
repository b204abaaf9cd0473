//! RFC 6962 / RFC 9162 Merkle tree hashing and proofs over the journal's entries.
//!
//! Every journal entry is a leaf of one append-only Merkle tree per tenant. Leaves and
//! interior nodes are hashed exactly as in RFC 6962 section 2.1 (kept unchanged in RFC 9162
//! section 2.1): SHA-256 with a one-byte domain separator, `0x00` for leaves and `0x01` for
//! nodes, so that no leaf can be passed off as a node or the other way round. Anyone can
//! therefore check akte's checkpoints and proofs with any RFC 6962 verifier.
//!
//! # Perfect nodes
//!
//! The RFC defines the tree hash recursively for any number of leaves. For storage it helps
//! to look at the same tree differently: the hash of every *perfect* subtree, the one
//! covering the leaves `[index << level, (index + 1) << level)`, never changes once its last
//! leaf is appended, whatever the tree grows to later. The RFC tree of any size `n` is made
//! only of such perfect subtrees plus a right-hand border of nodes whose hashes depend on
//! `n`. So the store keeps one append-only table of perfect nodes (the [`NodeSource`]) and
//! computes border hashes on demand from O(log n) perfect nodes. Nothing stored is ever
//! rewritten, which keeps the index simple to make crash-safe, and a root or proof for any
//! past size comes from the same table.
//!
//! # What lives here
//!
//! - [`leaf_hash`] and [`node_hash`]: the two hash functions.
//! - [`CompactRange`]: the O(log n) state a writer keeps to know the root at every size and
//!   to emit the perfect nodes the index must store.
//! - [`root`], [`subtree_hash`], [`inclusion_proof`], [`consistency_proof`]: reading a
//!   [`NodeSource`], each with O(log n) node look-ups.
//! - [`verify_inclusion`], [`verify_consistency`], [`root_from_inclusion`]: pure checks that
//!   need no store at all, for clients and archivists' tools.
//! - [`MemoryTree`]: an in-memory [`NodeSource`] for tests, tools and small trees.
//!
//! The byte-level description for re-implementers is in `docs/FORMAT.md`.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Domain separator prepended to a leaf's bytes before hashing (RFC 6962 section 2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain separator prepended to two child hashes before hashing (RFC 6962 section 2.1).
const NODE_PREFIX: u8 = 0x01;

/// Hash of one leaf: `SHA-256(0x00 || entry_bytes)`.
#[must_use]
pub fn leaf_hash(entry_bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry_bytes);
    Digest(h.finalize().into())
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Digest::of(&buf)
}

/// Failure to compute a root or a proof from stored nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf asked for is not in a tree of that size.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the proof was asked for.
        size: u64,
    },
    /// A consistency proof was asked for sizes that do not satisfy `1 <= old <= new`.
    #[error(
        "invalid tree sizes for a consistency proof: old size {old}, new size {new} \
         (need 1 <= old <= new)"
    )]
    InvalidSizes {
        /// The older (smaller) tree size.
        old: u64,
        /// The newer (larger) tree size.
        new: u64,
    },
    /// A leaf range that is reversed, or that is not the left part of one aligned perfect
    /// subtree, so its RFC hash cannot be assembled from stored perfect nodes.
    #[error(
        "leaf range [{start}, {end}) is not a subtree of the Merkle tree: it must not be \
         reversed and must start at a multiple of the smallest power of two >= its length"
    )]
    InvalidRange {
        /// First leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
    },
    /// A compact range whose number of peaks does not match its size.
    #[error("a compact range of {size} leaves has exactly {expected} peaks, got {got}")]
    PeakCount {
        /// The claimed number of leaves.
        size: u64,
        /// The number of peaks that size needs (its count of one bits).
        expected: u32,
        /// The number of peaks supplied.
        got: usize,
    },
    /// The tree already has the largest size a `u64` can hold.
    #[error("tree already holds {size} leaves, the most a 64-bit tree size can count")]
    TreeFull {
        /// The size of the full tree.
        size: u64,
    },
    /// The node store does not have a perfect node that the computation needs.
    #[error("perfect node at level {level}, index {index} is missing from the node store")]
    MissingNode {
        /// Height of the node (0 for leaves).
        level: u8,
        /// Position of the node among the nodes of its level.
        index: u64,
    },
    /// The node store failed (I/O, corruption); the text says how.
    #[error("node store failed: {0}")]
    Source(String),
}

/// A proof that does not check out, or parameters under which no proof can exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof has the wrong number of hashes for the given index and sizes.
    #[error("proof has {got} hashes, but a proof for these tree sizes has exactly {expected}")]
    WrongLength {
        /// The number of hashes a proof for these parameters has.
        expected: usize,
        /// The number of hashes supplied.
        got: usize,
    },
    /// The proof leads to a different root than the one expected (for a consistency proof,
    /// the root of the new tree).
    #[error("proof does not lead to the expected root: expected {expected}, computed {computed}")]
    RootMismatch {
        /// The root the verifier trusts.
        expected: Digest,
        /// The root computed from the proof.
        computed: Digest,
    },
    /// A consistency proof does not lead back to the old tree's root.
    #[error(
        "consistency proof does not lead to the old root: expected {expected}, computed {computed}"
    )]
    OldRootMismatch {
        /// The old root the verifier trusts.
        expected: Digest,
        /// The old root computed from the proof.
        computed: Digest,
    },
    /// Index or sizes for which no proof exists (the text gives the numbers).
    #[error("invalid proof parameters: {0}")]
    InvalidParameters(String),
}

/// Read access to the hashes of perfect subtrees.
///
/// `perfect_node(level, index)` is the RFC 6962 hash of the perfect subtree covering the
/// leaves `[index << level, (index + 1) << level)`; level 0 holds the leaf hashes. Such a
/// hash never changes once its last leaf exists, so an implementation can store them in an
/// append-only table. A node that is not (yet) stored must be reported as
/// [`MerkleError::MissingNode`], never invented.
pub trait NodeSource {
    /// Hash of the perfect subtree at `level`, `index`.
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        (**self).perfect_node(level, index)
    }
}

impl<H: std::hash::BuildHasher> NodeSource for HashMap<(u8, u64), Digest, H> {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        self.get(&(level, index))
            .copied()
            .ok_or(MerkleError::MissingNode { level, index })
    }
}

impl NodeSource for BTreeMap<(u8, u64), Digest> {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        self.get(&(level, index))
            .copied()
            .ok_or(MerkleError::MissingNode { level, index })
    }
}

/// A perfect node completed by [`CompactRange::push`], to be stored by the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewNode {
    /// Height of the node (0 for the leaf itself).
    pub level: u8,
    /// Position among the nodes of its level: it covers leaves
    /// `[index << level, (index + 1) << level)`.
    pub index: u64,
    /// The node's hash.
    pub hash: Digest,
}

/// The roots ("peaks") of the perfect subtrees that together make up a tree of `size`
/// leaves, left to right, largest first: one peak per one bit of `size`.
///
/// This is all the state needed to append leaves and to know the root after every append,
/// in O(log n) memory: the journal writer keeps one and persists nothing else about the
/// tree, because every node it completes is handed back by [`push`](Self::push) for the
/// index to store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Digest>,
}

impl CompactRange {
    /// The range of the empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from its size and peaks (as stored in a checkpoint of the writer's
    /// state, or loaded with [`peak_positions`](Self::peak_positions)).
    ///
    /// Only the count is checked here: whether the peaks are the right hashes shows when the
    /// root is compared with a trusted one.
    pub fn from_parts(size: u64, peaks: Vec<Digest>) -> Result<Self, MerkleError> {
        let expected = size.count_ones();
        if peaks.len() != expected as usize {
            return Err(MerkleError::PeakCount {
                size,
                expected,
                got: peaks.len(),
            });
        }
        Ok(Self { size, peaks })
    }

    /// Loads the range for a tree of `size` leaves from stored perfect nodes, which is how a
    /// writer resumes after a restart.
    pub fn load<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, MerkleError> {
        let peaks = peak_iter(0, size)
            .map(|(level, index)| src.perfect_node(level, index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, peaks })
    }

    /// `(level, index)` of each peak of a tree of `size` leaves, left to right, so a caller
    /// can load them from a [`NodeSource`].
    #[must_use]
    pub fn peak_positions(size: u64) -> Vec<(u8, u64)> {
        peak_iter(0, size).collect()
    }

    /// Number of leaves appended so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks, left to right (largest subtree first).
    #[must_use]
    pub fn peaks(&self) -> &[Digest] {
        &self.peaks
    }

    /// Appends one leaf hash and returns every perfect node this leaf completes, bottom up:
    /// the leaf itself at level 0, then each parent that now has both children.
    ///
    /// Fails only when the tree already has `u64::MAX` leaves; the range is then unchanged.
    pub fn push(&mut self, leaf: Digest) -> Result<Vec<NewNode>, MerkleError> {
        let index = self.size;
        let new_size = index
            .checked_add(1)
            .ok_or(MerkleError::TreeFull { size: self.size })?;
        // The new leaf merges with one existing peak for every trailing one bit of the old
        // size: those peaks are exactly the left siblings that were waiting for it.
        let merges = index.trailing_ones();
        let mut nodes = Vec::with_capacity(merges as usize + 1);
        nodes.push(NewNode {
            level: 0,
            index,
            hash: leaf,
        });
        let mut hash = leaf;
        for level in 1..=merges {
            // `from_parts`/`load` guarantee one peak per one bit, so a peak is always there;
            // if the invariant were broken we stop merging rather than panic.
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            nodes.push(NewNode {
                // `merges` is at most 64, so the level fits a u8.
                level: level as u8,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push(hash);
        self.size = new_size;
        Ok(nodes)
    }

    /// The RFC 6962 tree hash of all leaves appended so far ([`Digest::EMPTY_INPUT`] for
    /// none).
    #[must_use]
    pub fn root(&self) -> Digest {
        // The tree hash nests to the right: H(p0, H(p1, H(p2, ...))).
        let mut peaks = self.peaks.iter().rev();
        match peaks.next() {
            None => Digest::EMPTY_INPUT,
            Some(last) => peaks.fold(*last, |acc, p| node_hash(p, &acc)),
        }
    }
}

/// `(level, index)` of the perfect subtrees that make up the leaves `[start, start + len)`,
/// left to right, largest first. Only meaningful for aligned ranges (see [`subtree_hash`]).
fn peak_iter(start: u64, len: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut pos = start;
    (0..64u32).rev().filter_map(move |b| {
        if (len >> b) & 1 == 0 {
            return None;
        }
        let node = (b as u8, pos >> b);
        // Never overflows: the sum of the pieces is `len` and `start + len` is an `end`
        // the caller already holds as a u64. Wrapping keeps it panic-free regardless.
        pos = pos.wrapping_add(1u64 << b);
        Some(node)
    })
}

/// The largest power of two strictly below `n`, where the RFC splits a tree of `n >= 2`
/// leaves. (For `n < 2` it returns 1; no caller asks for that.)
fn split_point(n: u64) -> u64 {
    let bits = u64::BITS - n.saturating_sub(1).leading_zeros();
    1u64 << bits.saturating_sub(1)
}

/// The RFC 6962 tree hash of a tree of `size` leaves, from O(log size) perfect nodes.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Digest, MerkleError> {
    subtree_hash(src, 0, size)
}

/// The RFC 6962 tree hash of the leaves `[start, end)`, from at most 64 perfect nodes.
///
/// The range must be a subtree in the RFC sense: `start` must be a multiple of the smallest
/// power of two `>= end - start` (every range that appears in a root or a proof is). Other
/// ranges are rejected with [`MerkleError::InvalidRange`] because their hash does not
/// consist of stored nodes and would need one look-up per leaf. The empty range hashes to
/// [`Digest::EMPTY_INPUT`].
pub fn subtree_hash<S: NodeSource + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Digest, MerkleError> {
    let len = end
        .checked_sub(start)
        .ok_or(MerkleError::InvalidRange { start, end })?;
    let aligned = match len.checked_next_power_of_two() {
        Some(p) => start.is_multiple_of(p),
        // Longer than 2^63 leaves: only the range starting at leaf 0 is a subtree.
        None => start == 0,
    };
    if !aligned {
        return Err(MerkleError::InvalidRange { start, end });
    }
    // Fold right to left (smallest peak first) so no peak list has to be allocated.
    let mut acc: Option<Digest> = None;
    let mut pos = end;
    for b in 0..64u32 {
        if (len >> b) & 1 == 0 {
            continue;
        }
        pos -= 1u64 << b; // cannot underflow: the pieces sum to len = end - start
        let node = src.perfect_node(b as u8, pos >> b)?;
        acc = Some(match acc {
            None => node,
            Some(right) => node_hash(&node, &right),
        });
    }
    Ok(acc.unwrap_or(Digest::EMPTY_INPUT))
}

/// The inclusion proof (RFC 9162 section 2.1.3.1, `PATH(m, D[n])`) of leaf `index` in the
/// tree of `size` leaves: the sibling hashes from the leaf up to the root, bottom first.
///
/// Uses at most 128 node look-ups (one per level, plus the peaks of the one sibling on the
/// tree's right border whose subtree is not perfect).
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Digest>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Walk down the RFC recursion from the root to the leaf: at each split, record the
    // hash of the half that does not hold the leaf. Recorded top first, returned bottom
    // first as the RFC orders it.
    let (mut start, mut end) = (0u64, size);
    let mut path = Vec::with_capacity(64);
    while end - start > 1 {
        let mid = start + split_point(end - start);
        if index < mid {
            path.push(subtree_hash(src, mid, end)?);
            end = mid;
        } else {
            path.push(subtree_hash(src, start, mid)?);
            start = mid;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof (RFC 9162 section 2.1.4.1, `PROOF(m, D[n])`) that the tree of
/// `old_size` leaves is a prefix of the tree of `new_size` leaves.
///
/// Empty when the sizes are equal. `old_size == 0` is rejected: the empty tree is a prefix
/// of every tree and there is no old root to prove anything from.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Digest>, MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    // Walk down the RFC SUBPROOF recursion. `whole` is the RFC's flag b: it stays true while
    // the current subtree starts at leaf 0, because then the verifier already has the hash
    // of the old tree's part (it is the old root) and it need not be sent.
    let (mut start, mut end) = (0u64, new_size);
    let mut whole = true;
    let mut proof = Vec::with_capacity(65);
    while end != old_size {
        // Invariant: start < old_size < end, so the subtree has at least two leaves.
        let mid = start + split_point(end - start);
        if old_size <= mid {
            proof.push(subtree_hash(src, mid, end)?);
            end = mid;
        } else {
            proof.push(subtree_hash(src, start, mid)?);
            start = mid;
            whole = false;
        }
    }
    if !whole {
        proof.push(subtree_hash(src, start, end)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The most hashes an inclusion proof can have (one per level of a tree of `u64::MAX`
/// leaves). An API can refuse longer input before looking at it.
pub const MAX_INCLUSION_PROOF_LEN: usize = 64;

/// The most hashes a consistency proof can have (reached from `u64::MAX - 2` to
/// `u64::MAX` leaves).
pub const MAX_CONSISTENCY_PROOF_LEN: usize = 65;

/// Number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves, or
/// `None` if `index >= size`. Lets an API reject a malformed proof before hashing anything.
#[must_use]
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let (inner, border) = path_shape(index, size);
    Some((inner + border) as usize)
}

/// Number of hashes in the consistency proof between trees of `old_size` and `new_size`
/// leaves, or `None` unless `1 <= old_size <= new_size`.
#[must_use]
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Option<usize> {
    if old_size == 0 || old_size > new_size {
        return None;
    }
    if old_size == new_size {
        return Some(0);
    }
    // The proof is the inclusion path of the old tree's last leaf, minus the levels inside
    // the old tree's smallest peak (the proof starts at that peak), plus the peak itself
    // unless it is the whole old tree (old size a power of two: the verifier has it).
    let (inner, border) = path_shape(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    let seed = u32::from(!old_size.is_power_of_two());
    Some((seed + inner.checked_sub(shift)? + border) as usize)
}

/// Splits the inclusion path of `index` in a tree of `size > index` leaves into the levels
/// below the point where it joins the path of the last leaf (`inner`), each with a sibling,
/// and the levels above it on the right border (`border`), which have a left sibling only
/// where `index` has a one bit.
fn path_shape(index: u64, size: u64) -> (u32, u32) {
    let last = size.saturating_sub(1);
    let inner = u64::BITS - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Computes the root that `proof` leads to from `leaf` at `index` in a tree of `size`
/// leaves (RFC 9162 section 2.1.3.2, without the final comparison).
pub fn root_from_inclusion(
    leaf: &Digest,
    index: u64,
    size: u64,
    proof: &[Digest],
) -> Result<Digest, ProofError> {
    let expected = inclusion_proof_len(index, size).ok_or_else(|| {
        ProofError::InvalidParameters(format!(
            "leaf index {index} is out of range for a tree of {size} leaves"
        ))
    })?;
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    // fn and sn are the positions of the current node and of the tree's last node at the
    // current level; comparing them tells whether the sibling is on the left or the right
    // and when a level has no sibling (the node is the last one and has nothing to its
    // right, so the RFC lifts it unchanged).
    let mut f_n = index;
    let mut s_n = size - 1; // size > index >= 0
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// Checks that `leaf` is the leaf at `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162 section 2.1.3.2).
///
/// `size` and `root` must come from the same trusted (signed) checkpoint: the proof binds
/// the leaf to the root, and only the checkpoint binds the root to the size.
pub fn verify_inclusion(
    leaf: &Digest,
    index: u64,
    size: u64,
    proof: &[Digest],
    root: &Digest,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. `old_size == 0` is rejected like in
/// [`consistency_proof`]: a client that trusted only the empty tree has nothing to compare.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<(), ProofError> {
    let expected = consistency_proof_len(old_size, new_size).ok_or_else(|| {
        ProofError::InvalidParameters(format!(
            "no consistency proof exists from old size {old_size} to new size {new_size} \
             (need 1 <= old <= new)"
        ))
    })?;
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    // When the old tree is a perfect subtree, its root is the first node of the walk and
    // the proof leaves it out; otherwise the proof starts with the old tree's smallest peak.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => {
                return Err(ProofError::WrongLength {
                    expected,
                    got: proof.len(),
                })
            }
        }
    };
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    // Skip the levels inside the seed peak: it is a complete subtree of the old tree.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // fr rebuilds the old root, sr the new one; they share every left sibling, and right
    // siblings only belong to the new tree.
    let mut fr = seed;
    let mut sr = seed;
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

/// A tree that keeps every perfect node in memory, level by level.
///
/// A complete [`NodeSource`] for tests, tools and trees small enough for memory (about
/// 64 bytes per leaf).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect node at level `l`, index `i`.
    levels: Vec<Vec<Digest>>,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree holding `leaves` (leaf hashes) in order.
    #[must_use]
    pub fn from_leaves(leaves: &[Digest]) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    /// Appends one leaf hash and every perfect node it completes.
    pub fn push(&mut self, leaf: Digest) {
        let mut level = 0usize;
        let mut hash = leaf;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(hash);
            // A node with an even count at its level was a right child: its parent is now
            // complete.
            if row.len() % 2 == 1 {
                return;
            }
            let [.., left, right] = row.as_slice() else {
                return;
            };
            hash = node_hash(left, right);
            level += 1;
        }
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |row| row.len() as u64)
    }

    /// The leaf hash at `index`, if the tree has it.
    #[must_use]
    pub fn leaf(&self, index: u64) -> Option<Digest> {
        self.perfect_node(0, index).ok()
    }
}

impl NodeSource for MemoryTree {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        self.levels
            .get(usize::from(level))
            .zip(usize::try_from(index).ok())
            .and_then(|(row, i)| row.get(i))
            .copied()
            .ok_or(MerkleError::MissingNode { level, index })
    }
}

/// The RFC 6962 tree hash of `leaves` (leaf hashes), computed straight from the recursive
/// definition. Linear time: a reference for tests, not for production paths.
#[doc(hidden)]
#[must_use]
pub fn naive_root(leaves: &[Digest]) -> Digest {
    match leaves {
        [] => Digest::EMPTY_INPUT,
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len() as u64) as usize;
            let (left, right) = leaves.split_at(k);
            node_hash(&naive_root(left), &naive_root(right))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    // ---------------------------------------------------------------------------------
    // Known-answer vectors.
    //
    // The eight leaf inputs, the roots at sizes 1..=8 and the proofs below are the RFC 6962
    // reference vectors published with Certificate Transparency:
    //   google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
    //     (kInputs, kSHA256Roots, kSHA256Paths, kSHA256Proofs)
    //   transparency-dev/merkle, proof/verify_test.go
    //     (leaves, roots, inclusionProofs, consistencyProofs; adds the 6 -> 7 proof)
    // Both number leaves from 1 in their path vectors; here indices are 0-based.
    // The node positions in `inclusion_shapes` / `consistency_shapes` come from
    //   transparency-dev/merkle, proof/proof_test.go (TestInclusion, TestConsistency).
    // ---------------------------------------------------------------------------------

    const INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (0-based leaf index, tree size, proof)
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (old size, new size, proof)
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn d(hex: &str) -> Digest {
        Digest::from_hex(hex).unwrap()
    }

    fn ds(hexes: &[&str]) -> Vec<Digest> {
        hexes.iter().map(|h| d(h)).collect()
    }

    fn vector_leaves() -> Vec<Digest> {
        INPUTS
            .iter()
            .map(|h| leaf_hash(&hex::decode(h).unwrap()))
            .collect()
    }

    /// Distinct pseudo-random leaf hashes.
    fn leaves(n: u64) -> Vec<Digest> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    // ---------------------------------------------------------------------------------
    // Reference implementations straight from the RFC's recursive definitions.
    // ---------------------------------------------------------------------------------

    /// RFC 9162 2.1.3.1 PATH(m, D[n]).
    fn naive_path(m: usize, leaves: &[Digest]) -> Vec<Digest> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        let (left, right) = leaves.split_at(k);
        if m < k {
            let mut p = naive_path(m, left);
            p.push(naive_root(right));
            p
        } else {
            let mut p = naive_path(m - k, right);
            p.push(naive_root(left));
            p
        }
    }

    /// RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b).
    fn naive_subproof(m: usize, leaves: &[Digest], b: bool) -> Vec<Digest> {
        let n = leaves.len();
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split_point(n as u64) as usize;
        let (left, right) = leaves.split_at(k);
        if m <= k {
            let mut p = naive_subproof(m, left, b);
            p.push(naive_root(right));
            p
        } else {
            let mut p = naive_subproof(m - k, right, false);
            p.push(naive_root(left));
            p
        }
    }

    fn naive_consistency(m: usize, leaves: &[Digest]) -> Vec<Digest> {
        naive_subproof(m, leaves, true)
    }

    /// A consistent node source for trees of any size up to `u64::MAX`: leaf `i` is leaf
    /// `i % 16` of a 16-leaf base tree, so every perfect node above level 4 of the same
    /// level is the same hash and can be looked up in O(1).
    struct PeriodicSource {
        base: MemoryTree,
        /// `high[l]` is the perfect node at level `l` for `l >= 4`.
        high: Vec<Digest>,
        lookups: Cell<u64>,
    }

    impl PeriodicSource {
        fn new() -> Self {
            let base = MemoryTree::from_leaves(&leaves(16));
            let mut high = vec![Digest::ZERO; 64];
            high[4] = root(&base, 16).unwrap();
            for l in 5..64 {
                high[l] = node_hash(&high[l - 1], &high[l - 1]);
            }
            Self {
                base,
                high,
                lookups: Cell::new(0),
            }
        }

        fn leaf(&self, index: u64) -> Digest {
            self.base.leaf(index % 16).unwrap()
        }
    }

    impl NodeSource for PeriodicSource {
        fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
            self.lookups.set(self.lookups.get() + 1);
            if level >= 64 {
                return Err(MerkleError::MissingNode { level, index });
            }
            if level < 4 {
                self.base.perfect_node(level, index % (16 >> level))
            } else {
                Ok(self.high[level as usize])
            }
        }
    }

    /// A store whose every read fails.
    struct BrokenSource;

    impl NodeSource for BrokenSource {
        fn perfect_node(&self, _level: u8, _index: u64) -> Result<Digest, MerkleError> {
            Err(MerkleError::Source("disk on fire".into()))
        }
    }

    // ---------------------------------------------------------------------------------
    // Tamper checks shared by the vector tests and the property tests.
    // ---------------------------------------------------------------------------------

    fn flipped(proof: &[Digest], i: usize) -> Vec<Digest> {
        let mut p = proof.to_vec();
        p[i].0[0] ^= 0x08;
        p
    }

    /// Every corruption of a valid inclusion proof must be rejected.
    fn assert_inclusion_tamper_fails(
        leaf: &Digest,
        index: u64,
        size: u64,
        proof: &[Digest],
        root: &Digest,
    ) {
        let fails = |l: &Digest, i: u64, s: u64, p: &[Digest], r: &Digest| {
            verify_inclusion(l, i, s, p, r).is_err()
        };
        for i in 0..proof.len() {
            assert!(
                fails(leaf, index, size, &flipped(proof, i), root),
                "flip {i}"
            );
        }
        if index > 0 {
            assert!(fails(leaf, index - 1, size, proof, root), "index - 1");
        }
        assert!(fails(leaf, index + 1, size, proof, root), "index + 1");
        assert!(fails(leaf, index ^ 2, size, proof, root), "index ^ 2");
        assert!(fails(leaf, index, size * 2, proof, root), "size * 2");
        assert!(fails(leaf, index, size / 2, proof, root), "size / 2");
        let mut wrong_leaf = *leaf;
        wrong_leaf.0[31] ^= 1;
        assert!(fails(&wrong_leaf, index, size, proof, root), "wrong leaf");
        assert!(
            fails(leaf, index, size, proof, &Digest::EMPTY_INPUT),
            "empty root"
        );
        let mut longer = proof.to_vec();
        longer.push(*root);
        assert!(fails(leaf, index, size, &longer, root), "extended");
        let mut prefixed = vec![*root];
        prefixed.extend_from_slice(proof);
        assert!(fails(leaf, index, size, &prefixed, root), "prefixed");
        if let Some((_, shorter)) = proof.split_last() {
            assert!(fails(leaf, index, size, shorter, root), "truncated");
        }
    }

    /// Every corruption of a valid, non-empty consistency proof must be rejected.
    fn assert_consistency_tamper_fails(
        old: u64,
        new: u64,
        old_root: &Digest,
        new_root: &Digest,
        proof: &[Digest],
    ) {
        let fails = |o: u64, n: u64, r1: &Digest, r2: &Digest, p: &[Digest]| {
            verify_consistency(o, n, r1, r2, p).is_err()
        };
        for i in 0..proof.len() {
            assert!(
                fails(old, new, old_root, new_root, &flipped(proof, i)),
                "flip {i}"
            );
        }
        assert!(fails(old - 1, new, old_root, new_root, proof), "old - 1");
        assert!(fails(old + 1, new, old_root, new_root, proof), "old + 1");
        assert!(fails(old ^ 2, new, old_root, new_root, proof), "old ^ 2");
        assert!(fails(old, new * 2, old_root, new_root, proof), "new * 2");
        assert!(fails(old, new / 2, old_root, new_root, proof), "new / 2");
        assert!(fails(old, new, new_root, old_root, proof), "swapped roots");
        assert!(
            fails(old, new, &Digest::ZERO, new_root, proof),
            "wrong old root"
        );
        assert!(
            fails(old, new, old_root, &Digest::ZERO, proof),
            "wrong new root"
        );
        assert!(fails(old, new, old_root, new_root, &[]), "empty proof");
        let mut longer = proof.to_vec();
        longer.push(*new_root);
        assert!(fails(old, new, old_root, new_root, &longer), "extended");
        let mut prefixed = vec![proof[0]];
        prefixed.extend_from_slice(proof);
        assert!(fails(old, new, old_root, new_root, &prefixed), "prefixed");
        assert!(
            fails(old, new, old_root, new_root, &proof[..proof.len() - 1]),
            "truncated"
        );
    }

    // ---------------------------------------------------------------------------------
    // Known answers.
    // ---------------------------------------------------------------------------------

    #[test]
    fn leaf_and_node_hash_use_rfc_prefixes() {
        assert_eq!(leaf_hash(b""), Digest::of(&[0x00]));
        assert_eq!(leaf_hash(b"abc"), Digest::of(b"\x00abc"));
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut buf = vec![0x01];
        buf.extend_from_slice(&a.0);
        buf.extend_from_slice(&b.0);
        assert_eq!(node_hash(&a, &b), Digest::of(&buf));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn empty_tree_root_is_hash_of_empty_input() {
        assert_eq!(root(&MemoryTree::new(), 0).unwrap(), Digest::EMPTY_INPUT);
        assert_eq!(root(&BrokenSource, 0).unwrap(), Digest::EMPTY_INPUT);
        assert_eq!(CompactRange::new().root(), Digest::EMPTY_INPUT);
        assert_eq!(naive_root(&[]), Digest::EMPTY_INPUT);
        assert_eq!(
            Digest::EMPTY_INPUT.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn known_roots_for_sizes_1_to_8() {
        let leaves = vector_leaves();
        let tree = MemoryTree::from_leaves(&leaves);
        let mut range = CompactRange::new();
        for (i, leaf) in leaves.iter().enumerate() {
            range.push(*leaf).unwrap();
            let size = i as u64 + 1;
            let want = d(ROOTS[i]);
            assert_eq!(range.root(), want, "compact range, size {size}");
            assert_eq!(root(&tree, size).unwrap(), want, "root(), size {size}");
            assert_eq!(naive_root(&leaves[..=i]), want, "naive, size {size}");
        }
    }

    #[test]
    fn known_inclusion_proofs() {
        let leaves = vector_leaves();
        let tree = MemoryTree::from_leaves(&leaves);
        for (index, size, hexes) in INCLUSION {
            let want = ds(hexes);
            let proof = inclusion_proof(&tree, index, size).unwrap();
            assert_eq!(proof, want, "inclusion proof {index} in {size}");
            let r = d(ROOTS[size as usize - 1]);
            let leaf = leaves[index as usize];
            verify_inclusion(&leaf, index, size, &proof, &r).unwrap();
            assert_eq!(root_from_inclusion(&leaf, index, size, &proof).unwrap(), r);
            assert_inclusion_tamper_fails(&leaf, index, size, &proof, &r);
        }
    }

    #[test]
    fn known_consistency_proofs() {
        let tree = MemoryTree::from_leaves(&vector_leaves());
        for (old, new, hexes) in CONSISTENCY {
            let want = ds(hexes);
            let proof = consistency_proof(&tree, old, new).unwrap();
            assert_eq!(proof, want, "consistency proof {old} -> {new}");
            let (r1, r2) = (d(ROOTS[old as usize - 1]), d(ROOTS[new as usize - 1]));
            verify_consistency(old, new, &r1, &r2, &proof).unwrap();
            if !proof.is_empty() {
                assert_consistency_tamper_fails(old, new, &r1, &r2, &proof);
            }
        }
    }

    /// A proof element as a node position: a stored perfect node, or the hash of an
    /// imperfect subtree on the right border (transparency-dev's "rehash" runs).
    #[derive(Clone, Copy)]
    enum At {
        N(u8, u64),
        R(u64, u64),
    }

    fn resolve(tree: &MemoryTree, at: &[At]) -> Vec<Digest> {
        at.iter()
            .map(|a| match *a {
                At::N(level, index) => tree.perfect_node(level, index).unwrap(),
                At::R(start, end) => subtree_hash(tree, start, end).unwrap(),
            })
            .collect()
    }

    #[test]
    fn inclusion_proofs_pick_the_published_nodes() {
        use At::{N, R};
        let tree = MemoryTree::from_leaves(&leaves(95));
        let cases: &[(u64, u64, &[At])] = &[
            (1, 0, &[]),
            (2, 0, &[N(0, 1)]),
            (2, 1, &[N(0, 0)]),
            (3, 1, &[N(0, 0), N(0, 2)]),
            (7, 0, &[N(0, 1), N(1, 1), R(4, 7)]),
            (7, 3, &[N(0, 2), N(1, 0), R(4, 7)]),
            (7, 4, &[N(0, 5), N(0, 6), N(2, 0)]),
            (7, 6, &[N(1, 2), N(2, 0)]),
            (5, 3, &[N(0, 2), N(1, 0), N(0, 4)]),
            (6, 4, &[N(0, 5), N(2, 0)]),
            (15, 10, &[N(0, 11), N(1, 4), R(12, 15), N(3, 0)]),
            (31, 24, &[N(0, 25), N(1, 13), R(28, 31), N(3, 2), N(4, 0)]),
            (
                95,
                81,
                &[N(0, 80), N(1, 41), N(2, 21), R(88, 95), N(4, 4), N(6, 0)],
            ),
        ];
        for (size, index, at) in cases {
            assert_eq!(
                inclusion_proof(&tree, *index, *size).unwrap(),
                resolve(&tree, at),
                "inclusion {index} in {size}"
            );
        }
    }

    #[test]
    fn consistency_proofs_pick_the_published_nodes() {
        use At::{N, R};
        let tree = MemoryTree::from_leaves(&leaves(95));
        let cases: &[(u64, u64, &[At])] = &[
            (1, 2, &[N(0, 1)]),
            (1, 4, &[N(0, 1), N(1, 1)]),
            (1, 6, &[N(0, 1), N(1, 1), N(1, 2)]),
            (2, 3, &[N(0, 2)]),
            (2, 8, &[N(1, 1), N(2, 1)]),
            (3, 7, &[N(0, 2), N(0, 3), N(1, 0), R(4, 7)]),
            (4, 7, &[R(4, 7)]),
            (5, 7, &[N(0, 4), N(0, 5), N(0, 6), N(2, 0)]),
            (6, 7, &[N(1, 2), N(0, 6), N(2, 0)]),
            (7, 8, &[N(0, 6), N(0, 7), N(1, 2), N(2, 0)]),
            (3, 5, &[N(0, 2), N(0, 3), N(1, 0), N(0, 4)]),
            (4, 6, &[N(1, 2)]),
            (1, 7, &[N(0, 1), N(1, 1), R(4, 7)]),
            (10, 15, &[N(1, 4), N(1, 5), R(12, 15), N(3, 0)]),
            (24, 31, &[N(3, 2), R(24, 31), N(4, 0)]),
            (
                81,
                95,
                &[
                    N(0, 80),
                    N(0, 81),
                    N(1, 41),
                    N(2, 21),
                    R(88, 95),
                    N(4, 4),
                    N(6, 0),
                ],
            ),
        ];
        for (old, new, at) in cases {
            assert_eq!(
                consistency_proof(&tree, *old, *new).unwrap(),
                resolve(&tree, at),
                "consistency {old} -> {new}"
            );
        }
    }

    // ---------------------------------------------------------------------------------
    // Exhaustive small trees and fixed larger sizes against the reference.
    // ---------------------------------------------------------------------------------

    /// Every index, every old size, for every tree up to 40 leaves.
    #[test]
    fn exhaustive_small_trees_match_reference() {
        let all = leaves(40);
        let tree = MemoryTree::from_leaves(&all);
        for n in 1..=40u64 {
            let prefix = &all[..n as usize];
            let r = root(&tree, n).unwrap();
            assert_eq!(r, naive_root(prefix), "root {n}");
            for i in 0..n {
                let proof = inclusion_proof(&tree, i, n).unwrap();
                assert_eq!(proof, naive_path(i as usize, prefix), "path {i} in {n}");
                assert_eq!(Some(proof.len()), inclusion_proof_len(i, n));
                verify_inclusion(&all[i as usize], i, n, &proof, &r).unwrap();
            }
            for m in 1..=n {
                let proof = consistency_proof(&tree, m, n).unwrap();
                assert_eq!(proof, naive_consistency(m as usize, prefix), "{m} -> {n}");
                assert_eq!(Some(proof.len()), consistency_proof_len(m, n));
                let r1 = root(&tree, m).unwrap();
                verify_consistency(m, n, &r1, &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn fixed_larger_sizes_match_reference() {
        let all = leaves(1025);
        let tree = MemoryTree::from_leaves(&all);
        for n in [1000u64, 1024, 1025] {
            let prefix = &all[..n as usize];
            let r = root(&tree, n).unwrap();
            assert_eq!(r, naive_root(prefix), "root {n}");
            for i in (0..n).step_by(97).chain([511, 512, n - 2, n - 1]) {
                let proof = inclusion_proof(&tree, i, n).unwrap();
                assert_eq!(proof, naive_path(i as usize, prefix), "path {i} in {n}");
                verify_inclusion(&all[i as usize], i, n, &proof, &r).unwrap();
                assert_inclusion_tamper_fails(&all[i as usize], i, n, &proof, &r);
            }
            for m in (1..n).step_by(89).chain([512, 513, n - 1]) {
                let proof = consistency_proof(&tree, m, n).unwrap();
                assert_eq!(proof, naive_consistency(m as usize, prefix), "{m} -> {n}");
                let r1 = root(&tree, m).unwrap();
                verify_consistency(m, n, &r1, &r, &proof).unwrap();
                assert_consistency_tamper_fails(m, n, &r1, &r, &proof);
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Edge cases and errors: never a panic, always a precise error.
    // ---------------------------------------------------------------------------------

    #[test]
    fn out_of_range_requests_are_errors() {
        let tree = MemoryTree::from_leaves(&leaves(5));
        assert_eq!(
            inclusion_proof(&tree, 5, 5),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&tree, 0, 0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            inclusion_proof(&tree, u64::MAX, u64::MAX),
            Err(MerkleError::IndexOutOfRange {
                index: u64::MAX,
                size: u64::MAX
            })
        );
        assert_eq!(
            consistency_proof(&tree, 4, 3),
            Err(MerkleError::InvalidSizes { old: 4, new: 3 })
        );
        assert_eq!(
            consistency_proof(&tree, 0, 3),
            Err(MerkleError::InvalidSizes { old: 0, new: 3 })
        );
        assert_eq!(
            consistency_proof(&tree, 0, 0),
            Err(MerkleError::InvalidSizes { old: 0, new: 0 })
        );
        assert_eq!(
            consistency_proof(&tree, u64::MAX, 1),
            Err(MerkleError::InvalidSizes {
                old: u64::MAX,
                new: 1
            })
        );
        assert_eq!(consistency_proof(&tree, 5, 5), Ok(vec![]));
        // Beyond what the store holds: a missing node, not a panic or a wrong answer.
        assert_eq!(
            root(&tree, 6),
            Err(MerkleError::MissingNode { level: 1, index: 2 })
        );
        assert!(matches!(
            inclusion_proof(&tree, 0, 8),
            Err(MerkleError::MissingNode { .. })
        ));
        assert!(matches!(
            consistency_proof(&tree, 3, u64::MAX),
            Err(MerkleError::MissingNode { .. })
        ));
        assert!(matches!(
            root(&tree, u64::MAX),
            Err(MerkleError::MissingNode { .. })
        ));
    }

    #[test]
    fn subtree_hash_rejects_ranges_that_are_not_subtrees() {
        let tree = MemoryTree::from_leaves(&leaves(16));
        for (start, end) in [(3, 2), (1, 3), (2, 5), (4, 9), (u64::MAX, 0), (1, u64::MAX)] {
            assert_eq!(
                subtree_hash(&tree, start, end),
                Err(MerkleError::InvalidRange { start, end }),
                "[{start}, {end})"
            );
        }
        let all = leaves(16);
        for (start, end) in [(0, 16), (8, 13), (4, 7), (6, 8), (5, 6), (12, 16)] {
            assert_eq!(
                subtree_hash(&tree, start, end).unwrap(),
                naive_root(&all[start as usize..end as usize]),
                "[{start}, {end})"
            );
        }
        assert_eq!(subtree_hash(&tree, 7, 7).unwrap(), Digest::EMPTY_INPUT);
    }

    #[test]
    fn verifiers_reject_impossible_parameters() {
        let h = Digest::of(b"x");
        for (index, size) in [(0, 0), (1, 0), (2, 1), (1, 1), (u64::MAX, u64::MAX)] {
            assert!(
                matches!(
                    verify_inclusion(&h, index, size, &[], &h),
                    Err(ProofError::InvalidParameters(_))
                ),
                "{index} in {size}"
            );
        }
        // A single-leaf tree: the root is the leaf and the proof is empty.
        verify_inclusion(&h, 0, 1, &[], &h).unwrap();
        assert!(matches!(
            verify_inclusion(&h, 0, 1, &[h], &h),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        ));
        assert!(matches!(
            verify_inclusion(&h, 0, 1, &[], &Digest::EMPTY_INPUT),
            Err(ProofError::RootMismatch { .. })
        ));
        for (old, new) in [(0, 0), (0, 1), (1, 0), (2, 1), (u64::MAX, 0)] {
            assert!(
                matches!(
                    verify_consistency(old, new, &h, &h, &[]),
                    Err(ProofError::InvalidParameters(_))
                ),
                "{old} -> {new}"
            );
        }
        // Equal sizes: empty proof, equal roots.
        verify_consistency(3, 3, &h, &h, &[]).unwrap();
        verify_consistency(u64::MAX, u64::MAX, &h, &h, &[]).unwrap();
        assert!(matches!(
            verify_consistency(3, 3, &h, &Digest::ZERO, &[]),
            Err(ProofError::RootMismatch { .. })
        ));
        assert!(matches!(
            verify_consistency(3, 3, &h, &h, &[h]),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        ));
        // Growing trees always need a proof.
        assert!(matches!(
            verify_consistency(1, 2, &h, &h, &[]),
            Err(ProofError::WrongLength {
                expected: 1,
                got: 0
            })
        ));
        // Oversized proofs are rejected by length before any hashing.
        let big = vec![h; 10_000];
        assert!(matches!(
            verify_inclusion(&h, 0, u64::MAX, &big, &h),
            Err(ProofError::WrongLength { got: 10_000, .. })
        ));
        assert!(matches!(
            verify_consistency(1, u64::MAX, &h, &h, &big),
            Err(ProofError::WrongLength { got: 10_000, .. })
        ));
    }

    #[test]
    fn errors_name_the_numbers() {
        let e = MerkleError::IndexOutOfRange { index: 9, size: 7 }.to_string();
        assert!(e.contains('9') && e.contains('7'), "{e}");
        let e = MerkleError::InvalidSizes { old: 12, new: 3 }.to_string();
        assert!(e.contains("12") && e.contains('3'), "{e}");
        let e = MerkleError::MissingNode {
            level: 4,
            index: 77,
        }
        .to_string();
        assert!(e.contains("level 4") && e.contains("index 77"), "{e}");
        let e = ProofError::WrongLength {
            expected: 5,
            got: 6,
        }
        .to_string();
        assert!(e.contains('5') && e.contains('6'), "{e}");
        let e = verify_inclusion(&Digest::ZERO, 10, 3, &[], &Digest::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10") && e.contains('3'), "{e}");
        let e = verify_consistency(8, 2, &Digest::ZERO, &Digest::ZERO, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains('8') && e.contains('2'), "{e}");
        let e = ProofError::RootMismatch {
            expected: Digest::ZERO,
            computed: Digest::EMPTY_INPUT,
        }
        .to_string();
        assert!(e.contains(&Digest::EMPTY_INPUT.to_hex()), "{e}");
    }

    #[test]
    fn store_failures_propagate() {
        let err = MerkleError::Source("disk on fire".into());
        assert_eq!(root(&BrokenSource, 5), Err(err.clone()));
        assert_eq!(inclusion_proof(&BrokenSource, 1, 5), Err(err.clone()));
        assert_eq!(consistency_proof(&BrokenSource, 2, 5), Err(err.clone()));
        assert_eq!(CompactRange::load(&BrokenSource, 5), Err(err));
        // Trivial answers need no store.
        assert_eq!(inclusion_proof(&BrokenSource, 0, 1), Ok(vec![]));
        assert_eq!(consistency_proof(&BrokenSource, 4, 4), Ok(vec![]));
    }

    #[test]
    fn compact_range_parts_are_checked() {
        let h = Digest::of(b"p");
        assert_eq!(
            CompactRange::from_parts(5, vec![h]),
            Err(MerkleError::PeakCount {
                size: 5,
                expected: 2,
                got: 1
            })
        );
        assert!(CompactRange::from_parts(0, vec![h]).is_err());
        assert!(CompactRange::from_parts(u64::MAX, vec![h; 63]).is_err());
        let r = CompactRange::from_parts(5, vec![h, h]).unwrap();
        assert_eq!((r.size(), r.peaks()), (5, &[h, h][..]));
        assert_eq!(CompactRange::peak_positions(0), vec![]);
        assert_eq!(CompactRange::peak_positions(1), vec![(0, 0)]);
        assert_eq!(CompactRange::peak_positions(6), vec![(2, 0), (1, 2)]);
        assert_eq!(
            CompactRange::peak_positions(13),
            vec![(3, 0), (2, 2), (0, 12)]
        );
        let max = CompactRange::peak_positions(u64::MAX);
        assert_eq!(max.len(), 64);
        assert_eq!(max[0], (63, 0));
        assert_eq!(max[63], (0, u64::MAX - 1));
    }

    #[test]
    fn compact_range_resumes_from_stored_nodes() {
        let all = leaves(100);
        let tree = MemoryTree::from_leaves(&all);
        for size in [0u64, 1, 2, 37, 64, 99] {
            let mut range = CompactRange::load(&tree, size).unwrap();
            let mut positions = Vec::new();
            for (level, index) in CompactRange::peak_positions(size) {
                positions.push(tree.perfect_node(level, index).unwrap());
            }
            assert_eq!(
                range,
                CompactRange::from_parts(size, positions).unwrap(),
                "{size}"
            );
            for leaf in &all[size as usize..] {
                range.push(*leaf).unwrap();
            }
            assert_eq!(range.root(), naive_root(&all), "resumed at {size}");
        }
    }

    #[test]
    fn compact_range_stops_at_the_largest_size() {
        let source = PeriodicSource::new();
        let mut range = CompactRange::load(&source, u64::MAX).unwrap();
        let before = range.clone();
        assert_eq!(
            range.push(Digest::ZERO),
            Err(MerkleError::TreeFull { size: u64::MAX })
        );
        assert_eq!(range, before, "a refused push changes nothing");
        assert_eq!(range.root(), root(&source, u64::MAX).unwrap());

        // The last possible push completes 63 parents at once.
        let mut range = CompactRange::load(&source, u64::MAX - 1).unwrap();
        let nodes = range.push(source.leaf(u64::MAX - 1)).unwrap();
        assert_eq!(nodes.len(), 1);
        let mut range = CompactRange::load(&source, (1 << 63) - 1).unwrap();
        let nodes = range.push(source.leaf((1 << 63) - 1)).unwrap();
        assert_eq!(nodes.len(), 64);
        assert_eq!(nodes[63].level, 63);
        assert_eq!(nodes[63].hash, source.high[63]);
        assert_eq!(range.root(), source.high[63]);
    }

    /// Roots and proofs for trees far too large to build, including `u64::MAX` leaves: no
    /// overflow, the proofs verify, and the look-ups stay logarithmic.
    #[test]
    fn extreme_sizes_work_and_stay_logarithmic() {
        let src = PeriodicSource::new();
        let sizes = [
            1u64,
            2,
            (1 << 32) + 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &n in &sizes {
            let r = root(&src, n).unwrap();
            for i in [0, 1, n / 2, n.saturating_sub(2), n - 1] {
                if i >= n {
                    continue;
                }
                src.lookups.set(0);
                let proof = inclusion_proof(&src, i, n).unwrap();
                assert!(src.lookups.get() <= 128, "{} look-ups", src.lookups.get());
                verify_inclusion(&src.leaf(i), i, n, &proof, &r).unwrap();
            }
            for m in [1, 2, 3, n / 2 + 1, n.saturating_sub(2), n - 1, n] {
                if m == 0 || m > n {
                    continue;
                }
                src.lookups.set(0);
                let proof = consistency_proof(&src, m, n).unwrap();
                assert!(src.lookups.get() <= 129, "{} look-ups", src.lookups.get());
                let r1 = root(&src, m).unwrap();
                verify_consistency(m, n, &r1, &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn proof_lengths_are_bounded() {
        // The longest proofs a 64-bit tree can have: 64 hashes for inclusion, 65 for
        // consistency (documented in docs/FORMAT.md; an API may cap input at these).
        assert_eq!(
            inclusion_proof_len(0, u64::MAX),
            Some(MAX_INCLUSION_PROOF_LEN)
        );
        assert_eq!(
            consistency_proof_len(u64::MAX - 2, u64::MAX),
            Some(MAX_CONSISTENCY_PROOF_LEN)
        );
        let src = PeriodicSource::new();
        let (m, n) = (u64::MAX - 2, u64::MAX);
        let proof = consistency_proof(&src, m, n).unwrap();
        assert_eq!(proof.len(), 65);
        let (r1, r2) = (root(&src, m).unwrap(), root(&src, n).unwrap());
        verify_consistency(m, n, &r1, &r2, &proof).unwrap();
        assert_eq!(inclusion_proof(&src, 0, n).unwrap().len(), 64);
    }

    #[test]
    fn memory_tree_reports_missing_nodes() {
        let tree = MemoryTree::from_leaves(&leaves(3));
        assert_eq!(tree.size(), 3);
        assert_eq!(MemoryTree::new().size(), 0);
        assert!(tree.perfect_node(1, 0).is_ok());
        assert_eq!(
            tree.perfect_node(1, 1),
            Err(MerkleError::MissingNode { level: 1, index: 1 })
        );
        assert_eq!(
            tree.perfect_node(255, u64::MAX),
            Err(MerkleError::MissingNode {
                level: 255,
                index: u64::MAX
            })
        );
        assert_eq!(tree.leaf(3), None);
    }

    #[test]
    fn map_sources_work_through_references() {
        let mut map = BTreeMap::new();
        let mut range = CompactRange::new();
        for leaf in leaves(6) {
            for n in range.push(leaf).unwrap() {
                map.insert((n.level, n.index), n.hash);
            }
        }
        let by_ref: &dyn NodeSource = &map;
        assert_eq!(root(&by_ref, 6).unwrap(), range.root());
        assert_eq!(root(by_ref, 6).unwrap(), range.root());
    }

    /// Not a unit test: measures proof generation at 10^6 leaves. Run with
    /// `cargo test --release -- --ignored --nocapture inclusion_proof_speed`.
    #[test]
    #[ignore]
    fn inclusion_proof_speed() {
        const N: u64 = 1_000_000;
        let tree = MemoryTree::from_leaves(&leaves(N));
        let rounds = 20_000u64;
        let start = std::time::Instant::now();
        let mut total = 0usize;
        for k in 0..rounds {
            let i = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % N;
            total += inclusion_proof(&tree, i, N).unwrap().len();
        }
        let per = start.elapsed() / rounds as u32;
        let start = std::time::Instant::now();
        for k in 0..rounds {
            let m = 1 + k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (N - 1);
            total += consistency_proof(&tree, m, N).unwrap().len();
        }
        let per_c = start.elapsed() / rounds as u32;
        println!("inclusion proof at {N} leaves: {per:?}; consistency proof: {per_c:?} ({total})");
        assert!(per < std::time::Duration::from_micros(50));
    }

    // ---------------------------------------------------------------------------------
    // Property tests.
    // ---------------------------------------------------------------------------------

    fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
        (1u64..=300).prop_flat_map(|n| (Just(n), 0..n))
    }

    fn old_and_new() -> impl Strategy<Value = (u64, u64)> {
        (1u64..=300).prop_flat_map(|n| (1..=n, Just(n)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_root_matches_reference(n in 1u64..=300) {
            let all = leaves(n);
            let tree = MemoryTree::from_leaves(&all);
            prop_assert_eq!(root(&tree, n).unwrap(), naive_root(&all));
        }

        #[test]
        fn prop_inclusion_proofs_verify_and_resist_tampering((n, i) in size_and_index()) {
            let all = leaves(n);
            let tree = MemoryTree::from_leaves(&all);
            let r = naive_root(&all);
            let proof = inclusion_proof(&tree, i, n).unwrap();
            prop_assert_eq!(&proof, &naive_path(i as usize, &all));
            prop_assert_eq!(Some(proof.len()), inclusion_proof_len(i, n));
            prop_assert_eq!(root_from_inclusion(&all[i as usize], i, n, &proof), Ok(r));
            verify_inclusion(&all[i as usize], i, n, &proof, &r).unwrap();
            assert_inclusion_tamper_fails(&all[i as usize], i, n, &proof, &r);
        }

        #[test]
        fn prop_consistency_proofs_verify_and_resist_tampering((m, n) in old_and_new()) {
            let all = leaves(n);
            let tree = MemoryTree::from_leaves(&all);
            let (r1, r2) = (naive_root(&all[..m as usize]), naive_root(&all));
            let proof = consistency_proof(&tree, m, n).unwrap();
            prop_assert_eq!(&proof, &naive_consistency(m as usize, &all));
            prop_assert_eq!(Some(proof.len()), consistency_proof_len(m, n));
            verify_consistency(m, n, &r1, &r2, &proof).unwrap();
            if m < n {
                assert_consistency_tamper_fails(m, n, &r1, &r2, &proof);
            } else {
                prop_assert!(proof.is_empty());
            }
        }

        /// The compact range gives the right root after every push, and the nodes it emits
        /// are exactly a complete node store.
        #[test]
        fn prop_compact_range_emits_a_complete_store(n in 1u64..=300, probe in any::<u64>()) {
            let all = leaves(n);
            let mut range = CompactRange::new();
            let mut map = HashMap::new();
            for (k, leaf) in all.iter().enumerate() {
                for node in range.push(*leaf).unwrap() {
                    prop_assert!(map.insert((node.level, node.index), node.hash).is_none());
                }
                prop_assert_eq!(range.root(), naive_root(&all[..=k]));
                prop_assert_eq!(range.peaks().len(), (k as u64 + 1).count_ones() as usize);
            }
            // A tree of n leaves has 2n - popcount(n) perfect nodes.
            prop_assert_eq!(map.len() as u64, 2 * n - u64::from(n.count_ones()));
            let tree = MemoryTree::from_leaves(&all);
            for (&(level, index), hash) in &map {
                prop_assert_eq!(tree.perfect_node(level, index), Ok(*hash));
            }
            let size = 1 + probe % n;
            let i = (probe >> 20) % size;
            let m = 1 + (probe >> 40) % size;
            prop_assert_eq!(root(&map, size), root(&tree, size));
            prop_assert_eq!(inclusion_proof(&map, i, size), inclusion_proof(&tree, i, size));
            prop_assert_eq!(consistency_proof(&map, m, size), consistency_proof(&tree, m, size));
            prop_assert_eq!(CompactRange::load(&map, n), Ok(range));
        }

        /// Any size up to u64::MAX, any index and old size: proofs verify, no overflow, and
        /// look-ups stay within the logarithmic bound.
        #[test]
        fn prop_huge_trees(n in 1u64..=u64::MAX, a in any::<u64>(), b in any::<u64>()) {
            let src = PeriodicSource::new();
            let r = root(&src, n).unwrap();
            let i = a % n;
            src.lookups.set(0);
            let proof = inclusion_proof(&src, i, n).unwrap();
            prop_assert!(src.lookups.get() <= 128);
            verify_inclusion(&src.leaf(i), i, n, &proof, &r).unwrap();
            let m = 1 + b % n;
            src.lookups.set(0);
            let proof = consistency_proof(&src, m, n).unwrap();
            prop_assert!(src.lookups.get() <= 129);
            let r1 = root(&src, m).unwrap();
            verify_consistency(m, n, &r1, &r, &proof).unwrap();
            if m < n {
                prop_assert!(verify_consistency(m, n, &r, &r1, &proof).is_err());
            }
        }

        /// Arbitrary garbage never panics the verifiers.
        #[test]
        fn prop_verifiers_never_panic(
            index in any::<u64>(),
            size in any::<u64>(),
            len in 0usize..70,
            seed in any::<u64>(),
        ) {
            let proof: Vec<Digest> = (0..len as u64).map(|k| Digest::of(&(seed ^ k).to_be_bytes())).collect();
            let h = Digest::of(&seed.to_le_bytes());
            let _ = verify_inclusion(&h, index, size, &proof, &h);
            let _ = verify_consistency(index, size, &h, &h, &proof);
            prop_assert!(inclusion_proof_len(index, size).unwrap_or(0) <= MAX_INCLUSION_PROOF_LEN);
            prop_assert!(
                consistency_proof_len(index, size).unwrap_or(0) <= MAX_CONSISTENCY_PROOF_LEN
            );
        }
    }
}
