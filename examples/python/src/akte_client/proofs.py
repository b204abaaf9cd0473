"""Checking akte's proofs without akte: signed checkpoints (C2SP signed note, Ed25519),
journal entries (docs/FORMAT.md, "Entry encoding") and RFC 9162 inclusion proofs.

Written from docs/FORMAT.md alone, on the `cryptography` package for Ed25519 and the
standard library for the rest. Nothing here trusts the server: the verifier key and the
origin must come from the agency out of band (a letter, the archive's records, a website),
not from the server whose records are being checked.
"""

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014 "


class ProofError(Exception):
    """A proof, signature or encoding does not check out."""


def _b64(s):
    """Canonical standard base64 (FORMAT.md, "Conventions")."""
    try:
        raw = base64.b64decode(s, validate=True)
    except ValueError as e:
        raise ProofError("not base64: %r" % s) from e
    if base64.b64encode(raw).decode() != s:
        raise ProofError("not canonical base64: %r" % s)
    return raw


@dataclass(frozen=True)
class VerifierKey:
    """A note verifier key `<name>+<key id>+<base64(type || public key)>`."""

    name: str
    key_id: bytes
    key_type: int
    public_key: bytes

    @staticmethod
    def parse(text):
        text = text.strip()
        try:
            name, key_id, rest = text.split("+", 2)
        except ValueError as e:
            raise ProofError("not a verifier key: %r" % text) from e
        if not name or any(c.isspace() for c in name):
            raise ProofError("invalid key name %r" % name)
        if len(key_id) != 8:
            raise ProofError("the key id must be 8 hex digits")
        raw = _b64(rest)
        if len(raw) != 33 or raw[0] not in (0x01, 0x04):
            raise ProofError("the key must be a type byte 0x01 or 0x04 and 32 bytes")
        kid = bytes.fromhex(key_id)
        want = hashlib.sha256(name.encode() + b"\n" + raw[:1] + raw[1:]).digest()[:4]
        if kid != want:
            raise ProofError("the key id does not match name and key")
        return VerifierKey(name, kid, raw[0], raw[1:])


@dataclass(frozen=True)
class Checkpoint:
    """The signed state of a tenant's journal: origin, tree size and Merkle root."""

    origin: str
    size: int
    root: bytes


def verify_checkpoint(note, key, origin):
    """Checks the tenant's Ed25519 signature on a checkpoint note (bytes) and returns the
    checkpoint. `key` is the tenant's VerifierKey, `origin` the journal expected."""
    if not isinstance(note, bytes):
        raise ProofError("the note must be bytes")
    text_end = note.rfind(b"\n\n")
    if text_end < 0:
        raise ProofError("the note has no signature block")
    text, sigs = note[: text_end + 1], note[text_end + 2 :]
    if not sigs.endswith(b"\n"):
        raise ProofError("the signature block does not end with a line feed")
    signed = False
    for line in sigs[:-1].decode("utf-8").split("\n"):
        if not line.startswith(EM_DASH):
            raise ProofError("malformed signature line %r" % line)
        name, _, b64 = line[len(EM_DASH) :].partition(" ")
        raw = _b64(b64)
        if len(raw) < 5:
            raise ProofError("signature line too short")
        if name != key.name or raw[:4] != key.key_id:
            continue  # another signer, e.g. a witness: not ours to check
        if key.key_type != 0x01 or len(raw) != 68:
            raise ProofError("not an Ed25519 note signature")
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[4:], text)
        except InvalidSignature as e:
            raise ProofError("the checkpoint's signature does not verify") from e
        signed = True
    if not signed:
        raise ProofError("no signature by %s on the checkpoint" % key.name)
    lines = text.decode("utf-8").split("\n")
    if len(lines) < 4:
        raise ProofError("a checkpoint has origin, size and root")
    if lines[0] != origin:
        raise ProofError("checkpoint of %r, expected %r" % (lines[0], origin))
    size = lines[1]
    if not size.isdigit() or (len(size) > 1 and size[0] == "0"):
        raise ProofError("invalid tree size %r" % size)
    root = _b64(lines[2])
    if len(root) != 32:
        raise ProofError("the root must be 32 bytes")
    return Checkpoint(lines[0], int(size), root)


def leaf_hash(encoded_entry):
    """RFC 6962 leaf hash of an encoded journal entry."""
    return hashlib.sha256(b"\x00" + encoded_entry).digest()


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2: is `leaf` the leaf `index` of the tree of `size` leaves
    with `root`? Raises ProofError if not."""
    if index >= size:
        raise ProofError("leaf %d is not in a tree of %d leaves" % (index, size))
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if len(p) != 32:
            raise ProofError("proof hashes are 32 bytes")
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError("the inclusion proof does not lead to the root")


@dataclass(frozen=True)
class Payload:
    """One digest an entry commits to: kind 1 content, 2 inline record, 3 reference."""

    kind: int
    role: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class Entry:
    """A decoded journal entry."""

    seq: int
    time_us: int
    prev: bytes
    actor: str
    kind: str
    object: str
    payloads: tuple


def decode_entry(data):
    """Decodes the canonical entry encoding strictly (docs/FORMAT.md, "Entry encoding")."""
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise ProofError("the entry ends early")
        out = data[pos : pos + n]
        pos += n
        return out

    def u16():
        return struct.unpack(">H", take(2))[0]

    def text(lo, hi):
        n = u16()
        if not lo <= n <= hi:
            raise ProofError("a text field of %d bytes" % n)
        return take(n).decode("utf-8")

    if take(1) != b"\x01":
        raise ProofError("unknown entry version")
    seq, time_us = struct.unpack(">Qq", take(16))
    prev = take(32)
    actor, kind, obj = text(1, 256), text(1, 64), text(0, 512)
    payloads = []
    for _ in range(u16()):
        pkind = take(1)[0]
        if pkind not in (1, 2, 3):
            raise ProofError("unknown payload kind %d" % pkind)
        role = text(1, 64)
        size = struct.unpack(">Q", take(8))[0]
        payloads.append(Payload(pkind, role, size, take(32)))
    if pos != len(data):
        raise ProofError("trailing bytes after the entry")
    return Entry(seq, time_us, prev, actor, kind, obj, tuple(payloads))


def verify_document(content, encoded_entry, proof_path, checkpoint_note, key, origin):
    """Proves, without trusting the server, that `content` (the bytes of a rendition) is
    committed to by the journal entry `encoded_entry`, and that this entry is in the tree a
    checkpoint signed with the agency's `key` covers. Returns (entry, checkpoint)."""
    cp = verify_checkpoint(checkpoint_note, key, origin)
    entry = decode_entry(encoded_entry)
    digest = hashlib.sha256(content).digest()
    if not any(p.kind == 1 and p.sha256 == digest and p.size == len(content) for p in entry.payloads):
        raise ProofError("entry %d does not commit to these bytes" % entry.seq)
    verify_inclusion(leaf_hash(encoded_entry), entry.seq, cp.size, proof_path, cp.root)
    return entry, cp
