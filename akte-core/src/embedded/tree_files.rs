//! A tenant's perfect Merkle nodes and record locations, in two flat files.
//!
//! Both are derived from the journal alone and have a fixed shape, so an array on disk
//! serves them better than a key-value database: a proof reads ~20 nodes and an entry read one location,
//! each a `pread` from the page cache, and appending an entry costs two `pwrite`s instead
//! of three or more keys.
//!
//! * `nodes`: every perfect node of the tree, 32 bytes each, in the order they
//!   complete (post-order): leaf 0; leaf 1, node (1, 0); leaf 2; leaf 3, (1, 1), (2, 0); ...
//!   After n leaves the file holds 2n − popcount(n) nodes.
//! * `locations`: the record location of entry `seq` (segment u64, offset u64,
//!   big-endian) at byte `16 · seq`.
//!
//! The files are written as entries are applied and flushed before the index database durably records
//! a journal position covering them ([`TreeFiles::sync`]), so wherever its position is, the
//! files hold at least that much; opening cuts anything beyond it and replays the journal.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::embedded::fsutil::{self, IoContext, IoFailure};
use crate::journal::Location;
use crate::merkle::NewNode;

const NODE_LEN: u64 = 32;
/// A location record: the 16-byte location, then a CRC-32C over the entry's sequence
/// number and those 16 bytes. The check catches a changed bit that would still leave the
/// locations in order (which the order check alone would miss) and a record written at
/// the wrong place. Files of the older 16-byte records fail it and are rebuilt.
const LOCATION_LEN: u64 = 20;

fn location_record(seq: u64, location: Location) -> [u8; LOCATION_LEN as usize] {
    let mut b = [0u8; LOCATION_LEN as usize];
    b[..16].copy_from_slice(&location.to_bytes());
    let crc = location_crc(seq, &b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

fn location_from_record(seq: u64, b: &[u8; LOCATION_LEN as usize]) -> Option<Location> {
    let stored = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    if stored != location_crc(seq, &b[..16]) {
        return None;
    }
    Location::from_bytes(&b[..16])
}

fn location_crc(seq: u64, location: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_be_bytes()), location)
}

/// Number of perfect nodes of a tree of `n` leaves.
pub fn nodes_for(n: u64) -> u64 {
    n.saturating_mul(2) - u64::from(n.count_ones())
}

/// Post-order position of the perfect node at `level` and `index` (`None` if it would lie
/// beyond any tree akte can hold).
pub fn node_position(level: u8, index: u64) -> Option<u64> {
    // The node completes when leaf m = (index + 1) · 2^level − 1 is pushed: the nodes before
    // are those of a tree of m leaves, then come that leaf and its `level` new ancestors.
    let m = index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(u32::from(level))?)?
        .checked_sub(1)?;
    nodes_for(m).checked_add(u64::from(level))
}

/// The two files of one tenant.
#[derive(Debug)]
pub(crate) struct TreeFiles {
    nodes: File,
    nodes_path: PathBuf,
    locations: File,
    locations_path: PathBuf,
}

fn open_rw(path: &Path) -> Result<File, IoFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .at("open", path)
}

impl TreeFiles {
    /// Opens (creating if needed) the files `nodes` and `locations` in `dir` (the
    /// tenant's index directory).
    pub(crate) fn open(dir: &Path) -> Result<TreeFiles, IoFailure> {
        fsutil::create_dir_all_durable(dir)?;
        let nodes_path = dir.join("nodes");
        let locations_path = dir.join("locations");
        let existed = nodes_path.exists() && locations_path.exists();
        let files = TreeFiles {
            nodes: open_rw(&nodes_path)?,
            nodes_path,
            locations: open_rw(&locations_path)?,
            locations_path,
        };
        if !existed {
            fsutil::fsync_dir(dir)?;
        }
        Ok(files)
    }

    /// Records entry `seq`: its location and the nodes its leaf completed (as
    /// `CompactRange::push` returns them, the leaf first).
    pub(crate) fn write(
        &self,
        seq: u64,
        location: Location,
        nodes: &[NewNode],
    ) -> Result<(), IoFailure> {
        self.locations
            .write_all_at(&location_record(seq, location), seq * LOCATION_LEN)
            .at("write", &self.locations_path)?;
        // The nodes of one push are consecutive: the leaf's position, then one per level.
        let Some(first) = nodes.first() else {
            return Ok(());
        };
        let Some(pos) = node_position(first.level, first.index) else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(nodes.len() * NODE_LEN as usize);
        for n in nodes {
            bytes.extend_from_slice(n.hash.as_bytes());
        }
        self.nodes
            .write_all_at(&bytes, pos * NODE_LEN)
            .at("write", &self.nodes_path)
    }

    /// The perfect node at `level` and `index`, if the file holds it.
    pub(crate) fn node(&self, level: u8, index: u64) -> Result<Option<Digest>, IoFailure> {
        let Some(pos) = node_position(level, index) else {
            return Ok(None);
        };
        let Some(at) = pos.checked_mul(NODE_LEN) else {
            return Ok(None);
        };
        let mut b = [0u8; NODE_LEN as usize];
        match self.nodes.read_exact_at(&mut b, at) {
            Ok(()) => Ok(Some(Digest(b))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).at("read", &self.nodes_path),
        }
    }

    /// The location of entry `seq`, if the file holds it.
    pub(crate) fn location(&self, seq: u64) -> Result<Option<Location>, IoFailure> {
        let mut b = [0u8; LOCATION_LEN as usize];
        let Some(at) = seq.checked_mul(LOCATION_LEN) else {
            return Ok(None);
        };
        match self.locations.read_exact_at(&mut b, at) {
            Ok(()) => Ok(location_from_record(seq, &b)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).at("read", &self.locations_path),
        }
    }

    /// How many entries the files hold completely (both files agree on at least this many).
    pub(crate) fn entries(&self) -> Result<u64, IoFailure> {
        let locs = self
            .locations
            .metadata()
            .at("stat", &self.locations_path)?
            .len()
            / LOCATION_LEN;
        let nodes = self.nodes.metadata().at("stat", &self.nodes_path)?.len() / NODE_LEN;
        // The largest n <= locs whose nodes are all there.
        let mut n = locs;
        while n > 0 && nodes_for(n) > nodes {
            n -= 1;
        }
        Ok(n)
    }

    /// How many entries, from the start, the files hold consistently: every node above the
    /// leaves is the hash of its two children, and record locations strictly increase.
    /// Damage past that point (a changed byte, a lost block) makes the engine rebuild the
    /// index from the journal instead of serving wrong proofs. One sequential read of
    /// both files.
    pub(crate) fn consistent_entries(&self) -> Result<u64, IoFailure> {
        use std::io::{BufReader, Read, Seek, SeekFrom};
        let n = self.entries()?;
        let mut nodes = BufReader::with_capacity(1 << 20, &self.nodes);
        (&self.nodes)
            .seek(SeekFrom::Start(0))
            .at("seek", &self.nodes_path)?;
        let mut locations = BufReader::with_capacity(1 << 20, &self.locations);
        (&self.locations)
            .seek(SeekFrom::Start(0))
            .at("seek", &self.locations_path)?;
        // The perfect subtrees on the right edge, as (level, hash), lowest last.
        let mut stack: Vec<(u8, Digest)> = Vec::new();
        let mut last_location: Option<Location> = None;
        let mut node = [0u8; NODE_LEN as usize];
        let mut loc = [0u8; LOCATION_LEN as usize];
        for seq in 0..n {
            locations
                .read_exact(&mut loc)
                .at("read", &self.locations_path)?;
            let Some(location) = location_from_record(seq, &loc) else {
                return Ok(seq);
            };
            if last_location
                .is_some_and(|l| (l.segment, l.offset) >= (location.segment, location.offset))
            {
                return Ok(seq);
            }
            last_location = Some(location);
            nodes.read_exact(&mut node).at("read", &self.nodes_path)?;
            let mut hash = Digest(node);
            let mut level = 0u8;
            while stack.last().is_some_and(|(l, _)| *l == level) {
                let Some((_, left)) = stack.pop() else { break };
                nodes.read_exact(&mut node).at("read", &self.nodes_path)?;
                let stored = Digest(node);
                if stored != crate::merkle::node_hash(&left, &hash) {
                    return Ok(seq);
                }
                hash = stored;
                level += 1;
            }
            stack.push((level, hash));
        }
        Ok(n)
    }

    /// Cuts both files back to the first `n` entries.
    pub(crate) fn truncate(&self, n: u64) -> Result<(), IoFailure> {
        self.locations
            .set_len(n * LOCATION_LEN)
            .at("truncate", &self.locations_path)?;
        self.nodes
            .set_len(nodes_for(n) * NODE_LEN)
            .at("truncate", &self.nodes_path)
    }

    /// Flushes both files, before the index database may durably record a position that relies on them.
    pub(crate) fn sync(&self) -> Result<(), IoFailure> {
        fsutil::sync_data(&self.locations, &self.locations_path)?;
        fsutil::sync_data(&self.nodes, &self.nodes_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::CompactRange;

    #[test]
    fn positions_follow_the_order_in_which_nodes_complete() {
        let mut range = CompactRange::new();
        let mut order = Vec::new();
        for i in 0..1000u64 {
            for n in range.push(Digest::of(&i.to_be_bytes())).unwrap() {
                order.push((n.level, n.index));
            }
            assert_eq!(order.len() as u64, nodes_for(i + 1));
        }
        for (pos, (level, index)) in order.iter().enumerate() {
            assert_eq!(node_position(*level, *index), Some(pos as u64));
        }
        assert_eq!(node_position(63, u64::MAX), None);
    }

    #[test]
    fn nodes_and_locations_round_trip_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let files = TreeFiles::open(dir.path()).unwrap();
        let mut range = CompactRange::new();
        let mut all = Vec::new();
        for seq in 0..37u64 {
            let nodes = range.push(Digest::of(&seq.to_be_bytes())).unwrap();
            let loc = Location {
                segment: seq / 10,
                offset: seq * 100,
            };
            files.write(seq, loc, &nodes).unwrap();
            all.extend(nodes);
        }
        assert_eq!(files.entries().unwrap(), 37);
        for n in &all {
            assert_eq!(files.node(n.level, n.index).unwrap(), Some(n.hash));
        }
        assert_eq!(files.location(36).unwrap().unwrap().offset, 3600);
        assert_eq!(files.location(37).unwrap(), None);
        files.truncate(20).unwrap();
        assert_eq!(files.entries().unwrap(), 20);
        assert_eq!(files.node(0, 20).unwrap(), None);
        assert!(files.node(4, 0).unwrap().is_some());
        assert_eq!(files.location(20).unwrap(), None);
        assert_eq!(files.consistent_entries().unwrap(), 20);
        // A changed inner node or location is found where it is.
        let pos = node_position(1, 5).unwrap();
        files
            .nodes
            .write_all_at(&[0xff; 4], pos * NODE_LEN)
            .unwrap();
        assert_eq!(files.consistent_entries().unwrap(), 11);
        files.truncate(11).unwrap();
        files
            .locations
            .write_all_at(&[0; 16], 3 * LOCATION_LEN)
            .unwrap();
        assert_eq!(files.consistent_entries().unwrap(), 3);
        // A changed bit that leaves the locations in order (100 -> 104) is found too.
        assert_eq!(files.location(1).unwrap().unwrap().offset, 100);
        files
            .locations
            .write_all_at(&[104], LOCATION_LEN + 15)
            .unwrap();
        assert_eq!(files.location(1).unwrap(), None);
        assert_eq!(files.consistent_entries().unwrap(), 1);
    }
}
