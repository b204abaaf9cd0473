#!/usr/bin/env python3
"""Verify an akte data directory without akte.

usage: verify_store.py DATA_DIR [--tenant ID] [--json]

This is an independent re-implementation of the checks described in docs/FORMAT.md,
written from that document alone, to show that an archivist can check an akte store
with nothing but Python 3.11 and its standard library. For every tenant (or the one
named with --tenant) it checks:

  * FORMAT (version 2, "akte-store 2", or version 1, a store without pack files),
    ORIGIN and keys/checkpoint.pub;
  * the journal segments in order: header (magic, version, first sequence number,
    CRC-32C), record framing (magic, length, CRC-32C), the canonical entry encoding,
    sequence numbers, times, the prev-hash chain, and the attachments against the
    inline payloads they belong to; a torn tail at the end of the last segment is
    reported as a warning (akte cuts it back on open), damage inside history as a
    problem;
  * the RFC 6962 Merkle tree, built incrementally as a compact range (O(log n)
    memory): at every stored checkpoint's size the root must equal the checkpoint's
    root, and the checkpoint (a C2SP signed note) must carry a valid Ed25519
    signature by the tenant's key; every other signature line must be a witness
    cosignature (cosignature/v1) by a key in keys/witnesses or keys/witnesses-removed,
    and verify;
  * the pack files in content/packs/ (missing in a version-1 store), front to back:
    the pack header (magic, version, number, CRC-32C), every record header (magic,
    CRC-32C, state, codec, reserved bytes, lengths below 1048576, raw payload length
    equal to the original length, a zstd payload not empty), records back to back up
    to exactly the end of the file, removed records' payloads all zeros, numbers from 0
    without gaps, and no other files (names starting with "." are ignored). After
    damage, reading resumes at the next well-formed record header, so later records
    are still found; each finding names the pack file and byte offset. A torn tail of
    the last pack (bytes that are not a complete record, or a last record whose payload
    does not match its digest, with no well-formed record after it) is a warning, like
    a torn journal tail: it was never acknowledged;
  * every content object that content payloads still refer to (their reference count,
    less `release` references, is above zero): it is intact if the copy akte serves
    passes the checks, that is the first present pack record of its digest (in pack
    number and offset order) whose header is well formed, or if there is none, its
    object file: header, codec, for zstd exactly one frame (its structure walked, window
    at most 128 MiB) filling the payload, the length and SHA-256 of the original bytes.
    A damaged copy is a problem naming the pack file and record offset, or the object
    file.
    Also the layout of content/objects. Packed objects are counted in the same report
    fields as object files (objects_checked, objects_unreferenced, ...); the report
    adds per tenant the counts packs, pack_records (present) and pack_records_removed,
    and findings in a pack carry the byte offset ("offset" in JSON).

Everything streams: segments and objects are read in pieces, never whole (one entry,
at most 16 MiB by the format, is the largest thing held; a pack record's payload, below
1 MiB, is read whole). Memory grows only with the number of distinct content digests.

Findings are problems (damage, or a rule of FORMAT.md broken: exit status 1) or
warnings (states FORMAT.md describes as harmless, such as a torn tail left by a crash,
an empty last segment, or a zstd object that could not be decoded here). Every finding
names the tenant and, as applicable, the entry number, checkpoint size, file, byte
offset and digest.

Optional helpers, used only when present: the `cryptography` package for a faster
Ed25519 check (the strict checks of FORMAT.md are always done here), and the
`zstandard` package or else the `zstd` command-line tool to decode zstd objects.
Without either, zstd objects are still checked up to the frame structure and
reported as "not checked: no zstd decoder"; that alone does not fail the run.

Exit status: 0 clean, 1 problems found, 2 usage error.
"""

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading

try:  # optional, only to speed up the Ed25519 equation
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - depends on the machine
    Ed25519PublicKey = None

try:  # optional zstd decoder
    import zstandard
except ImportError:  # pragma: no cover - depends on the machine
    zstandard = None

CHUNK = 1 << 20  # read size for streaming; bounds memory per read

# FORMAT.md, "Data directory": version 2 added pack files; a version-1 directory is a
# version-2 directory without content/packs/.
FORMAT_MARKERS = (b"akte-store 2\n", b"akte-store 1\n")
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")

SEGMENT_NAME = re.compile(r"([0-9]{20})\.seg\Z")
SEGMENT_MAGIC = b"AKTE-JNL"
SEGMENT_HEADER_LEN = 24
RECORD_MAGIC = b"AKR1"
RECORD_HEADER_LEN = 12
MAX_BODY = 16_777_216

ENTRY_VERSION = 1
PAYLOAD_CONTENT, PAYLOAD_INLINE, PAYLOAD_REFERENCE = 1, 2, 3
ATTACHMENT_PRESENT, ATTACHMENT_REDACTED = 1, 2
TOKEN = re.compile(rb"[a-z0-9._-]+\Z")  # kind and role names

CHECKPOINT_NAME = re.compile(r"([0-9]{20})\.note\Z")
MAX_NOTE = 1 << 20
MAX_SIGNATURES = 100
EM_DASH_SPACE = "\u2014 "
WITNESS_LISTS = ("witnesses", "witnesses-removed")  # in keys/ (FORMAT.md, Witnesses)
MAX_WITNESSES = 32
MAX_WITNESS_LIST = {"witnesses": 64 * 1024, "witnesses-removed": 1 << 20}

OBJECT_MAGIC = b"\x89AKO\r\n\x1a\n"
OBJECT_HEADER_LEN = 24
DIGEST_HEX = re.compile(r"[0-9a-f]{64}\Z")
FAN_HEX = re.compile(r"[0-9a-f]{2}\Z")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_MAX_WINDOW = 1 << 27

PACK_NAME = re.compile(r"([0-9]{20})\.pack\Z")
PACK_MAGIC = b"AKTE-PAK"
PACK_VERSION = 1
PACK_HEADER_LEN = 24
PACK_RECORD_MAGIC = b"AKP1"
PACK_RECORD_HEADER_LEN = 56
PACK_PRESENT, PACK_REMOVED = 1, 2
MAX_PACKED = 1_048_576  # original and payload lengths of a record are below this

EMPTY_ROOT = hashlib.sha256(b"").digest()


class Malformed(Exception):
    """A structure does not follow docs/FORMAT.md."""


# --------------------------------------------------------------------------- CRC-32C

def _crc32c_table():
    """The byte table of CRC-32C, reflected polynomial 0x82F63B78 (Castagnoli)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


CRC32C_TABLE = _crc32c_table()


class Crc32c:
    """Incremental CRC-32C: update() with pieces, value() at the end."""

    def __init__(self):
        self._crc = 0xFFFFFFFF

    def update(self, data):
        crc, table = self._crc, CRC32C_TABLE  # locals: this loop is the hot path
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def value(self):
        return self._crc ^ 0xFFFFFFFF


def crc32c(data):
    crc = Crc32c()
    crc.update(data)
    return crc.value()


# --------------------------------------------------------------------------- Ed25519
# Verification only, after RFC 8032 section 5.1.7, with the strict rules of
# FORMAT.md ("Verifying a note"): S below the group order, and neither A nor R of
# small order. Points are in extended coordinates (X, Y, Z, T) as in RFC 8032 6.

ED_P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)
ED_IDENTITY = (0, 1, 1, 0)


def _ed_add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % ED_P
    b = (p[1] + p[0]) * (q[1] + q[0]) % ED_P
    c = 2 * p[3] * q[3] * ED_D % ED_P
    d = 2 * p[2] * q[2] % ED_P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % ED_P, g * h % ED_P, f * g % ED_P, e * h % ED_P)


def _ed_mul(scalar, point):
    result = ED_IDENTITY
    while scalar:
        if scalar & 1:
            result = _ed_add(result, point)
        point = _ed_add(point, point)
        scalar >>= 1
    return result


def _ed_equal(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % ED_P == 0 and (p[1] * q[2] - q[1] * p[2]) % ED_P == 0


def _ed_decode(encoded):
    """Decode a 32-byte point; None if it is not a canonical encoding of a point."""
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= ED_P:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, ED_P - 2, ED_P) % ED_P
    if x2 == 0:
        if sign:
            return None
        x = 0
    else:
        x = pow(x2, (ED_P + 3) // 8, ED_P)
        if (x * x - x2) % ED_P:
            x = x * ED_SQRT_M1 % ED_P
        if (x * x - x2) % ED_P:
            return None
        if x & 1 != sign:
            x = ED_P - x
    return (x, y, 1, x * y % ED_P)


ED_BASE = _ed_decode((4 * pow(5, ED_P - 2, ED_P) % ED_P).to_bytes(32, "little"))


def _ed_small_order(point):
    return _ed_equal(_ed_mul(8, point), ED_IDENTITY)


def ed25519_verify(public_key, signature, message):
    """True iff `signature` is a valid strict Ed25519 signature of `message`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _ed_decode(public_key), _ed_decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= ED_L or _ed_small_order(a) or _ed_small_order(r):
        return False
    if Ed25519PublicKey is not None:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        except InvalidSignature:
            return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    return _ed_equal(_ed_mul(s, ED_BASE), _ed_add(r, _ed_mul(k % ED_L, a)))


# --------------------------------------------------------------------------- keys, notes

def b64decode_canonical(text):
    """Decode base64, accepting only the canonical form (FORMAT.md, Conventions)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:
        raise Malformed("invalid base64: %s" % e)
    if base64.b64encode(raw).decode("ascii") != text:
        raise Malformed("non-canonical base64")
    return raw


def valid_key_name(name):
    return (name != "" and "+" not in name
            and not any(c.isspace() or is_control(c) for c in name))


def is_control(char):
    """Unicode general category Cc: U+0000..U+001F and U+007F..U+009F."""
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


def parse_verifier_key(text, key_type=0x01):
    """Parse `<name>+<key id>+<base64(type || key)>` of type `key_type`; return
    (name, key id, public key)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise Malformed("verifier key needs name, key id and key")
    name, kid_hex, b64 = parts
    if not valid_key_name(name) or not re.fullmatch(r"[0-9a-fA-F]{8}", kid_hex):
        raise Malformed("malformed verifier key")
    raw = b64decode_canonical(b64)
    if len(raw) != 33 or raw[0] != key_type:
        raise Malformed("not a verifier key of type 0x%02x" % key_type)
    public_key = raw[1:]
    kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if kid != bytes.fromhex(kid_hex):
        raise Malformed("key id does not match the name and key")
    point = _ed_decode(public_key)
    if point is None or _ed_small_order(point):
        raise Malformed("public key is not a valid Ed25519 point")
    return name, kid, public_key


def read_verifier_key_file(path):
    with open(path, "rb") as f:
        data = f.read(64 * 1024 + 1)
    if len(data) > 64 * 1024:
        raise Malformed("verifier key file is too large")
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError: caller reports it
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or "\r" in text:
        raise Malformed("verifier key file must hold one line")
    return parse_verifier_key(text)


def parse_note(data):
    """Split a signed note; return (text, [(name, key id, signature bytes)])."""
    if len(data) > MAX_NOTE:
        raise Malformed("note is larger than 1 MiB")
    note = data.decode("utf-8")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise Malformed("note contains a control character")
    split = note.rfind("\n\n")
    if split < 0:
        raise Malformed("note has no blank line before its signatures")
    text, block = note[:split + 1], note[split + 2:]
    if block == "" or not block.endswith("\n"):
        raise Malformed("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Malformed("note has more than %d signatures" % MAX_SIGNATURES)
    signatures = []
    for line in lines:
        if not line.startswith(EM_DASH_SPACE) or " " not in line[2:]:
            raise Malformed("malformed signature line")
        name, b64 = line[2:].split(" ", 1)
        raw = b64decode_canonical(b64)
        if not valid_key_name(name) or len(raw) < 5:
            raise Malformed("malformed signature line")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def verify_note(data, key):
    """Return the note's text if it is validly signed by `key` (name, key id, public key).

    Lines by other keys are not looked at here (a stored checkpoint's witness lines are
    checked by other_line_problems); every line by this key must verify, and there must
    be at least one.
    """
    name, kid, public_key = key
    text, signatures = parse_note(data)
    found = False
    for sig_name, sig_kid, signature in signatures:
        if (sig_name, sig_kid) != (name, kid):
            continue
        if not ed25519_verify(public_key, signature, text.encode()):
            raise Malformed("bad signature by %s+%s" % (name, kid.hex()))
        found = True
    if not found:
        raise Malformed("no signature by the tenant's key %s+%s" % (name, kid.hex()))
    return text


def cosignature_verifies(public_key, text, signature):
    """A cosignature/v1 line's bytes after the key id (8-byte big-endian time, 64-byte
    Ed25519 signature) over the note text (FORMAT.md "Cosignature")."""
    if len(signature) != 72:
        return False
    timestamp = int.from_bytes(signature[:8], "big")
    if timestamp >= 1 << 63:
        return False
    message = ("cosignature/v1\ntime %d\n" % timestamp + text).encode("utf-8")
    return ed25519_verify(public_key, signature[8:], message)


def other_line_problems(text, signatures, tenant_key, witnesses):
    """FORMAT.md "Witnesses in the data directory": every line that is not the tenant's
    must match (name and type-0x04 key id) a registered or removed witness and verify.
    `witnesses` maps (name, key id) to public keys. Returns one message per bad line."""
    problems = []
    for number, (name, kid, signature) in enumerate(signatures, 1):
        if (name, kid) == (tenant_key[0], tenant_key[1]):
            continue  # checked by verify_note
        keys = witnesses.get((name, kid))
        if not keys:
            problems.append("signature line %d by unknown key %s+%s" % (number, name, kid.hex()))
        elif not any(cosignature_verifies(k, text, signature) for k in keys):
            problems.append("signature line %d by witness %s+%s does not verify"
                            % (number, name, kid.hex()))
    return problems


def parse_checkpoint(text):
    """Parse a checkpoint text; return (origin, tree size, root hash)."""
    if not text.endswith("\n"):
        raise Malformed("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] == "" or any(is_control(c) for c in lines[0]):
        raise Malformed("checkpoint needs origin, size and root")
    if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]) or int(lines[1]) >= 1 << 64:
        raise Malformed("bad tree size %r" % lines[1])
    root = b64decode_canonical(lines[2])
    if len(root) != 32:
        raise Malformed("root hash is not 32 bytes")
    if any(ext == "" for ext in lines[3:]):
        raise Malformed("empty extension line")
    return lines[0], int(lines[1]), root


# --------------------------------------------------------------------------- Merkle tree

def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The peaks of an RFC 6962 tree: one perfect subtree per one bit of its size.

    Appending merges equal-height peaks like a binary counter, so memory stays at
    O(log n) hashes; the root folds the peaks from the right (FORMAT.md, "Tree hash").
    """

    def __init__(self):
        self.size = 0
        self._peaks = []  # (height, hash), highest first

    def append(self, leaf):
        self._peaks.append((0, leaf))
        while len(self._peaks) >= 2 and self._peaks[-1][0] == self._peaks[-2][0]:
            (height, right), (_, left) = self._peaks.pop(), self._peaks.pop()
            self._peaks.append((height + 1, node_hash(left, right)))
        self.size += 1

    def root(self):
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1][1]
        for _, peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


# --------------------------------------------------------------------------- entries

class Cursor:
    """Reads fields from a byte string and fails cleanly at its end."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Malformed("entry ends inside a field")
        piece = self.data[self.pos:self.pos + n]
        self.pos += n
        return piece

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def text(self, what, low, high):
        """A u16-length-prefixed UTF-8 string without control characters."""
        raw = self.take(self.u16())
        if not low <= len(raw) <= high:
            raise Malformed("%s has %d bytes, allowed %d..%d" % (what, len(raw), low, high))
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("%s is not UTF-8" % what)
        if any(is_control(c) for c in value):
            raise Malformed("%s contains a control character" % what)
        return value

    def token(self, what):
        """A u16-length-prefixed name of 1 to 64 bytes of a-z 0-9 . _ -."""
        raw = self.take(self.u16())
        if not 1 <= len(raw) <= 64 or not TOKEN.match(raw):
            raise Malformed("%s %r is not 1..64 bytes of a-z 0-9 . _ -" % (what, raw))
        return raw.decode("ascii")


# The entry time range (FORMAT.md "Entry encoding"): -262143-01-01T00:00:00Z to
# +262142-12-31T23:59:59.999999Z in microseconds since the epoch.
ENTRY_TIME_MIN = -8_334_601_228_800_000_000
ENTRY_TIME_MAX = 8_210_266_876_799_999_999


def decode_entry(data):
    """Decode the canonical entry encoding (FORMAT.md, "Entry encoding") strictly."""
    cur = Cursor(data)
    version = cur.u8()
    if version != ENTRY_VERSION:
        raise Malformed("unknown entry version %d" % version)
    entry = {"seq": cur.u64()}
    entry["time"] = struct.unpack(">q", cur.take(8))[0]
    if not ENTRY_TIME_MIN <= entry["time"] <= ENTRY_TIME_MAX:
        raise Malformed("entry time %d µs is out of range" % entry["time"])
    entry["prev"] = cur.take(32)
    entry["actor"] = cur.text("actor", 1, 256)
    entry["kind"] = cur.token("kind")
    entry["object"] = cur.text("object", 0, 512)
    count = cur.u16()
    if count > 4096:
        raise Malformed("%d payloads, at most 4096 allowed" % count)
    payloads = []
    for _ in range(count):
        kind = cur.u8()
        if kind not in (PAYLOAD_CONTENT, PAYLOAD_INLINE, PAYLOAD_REFERENCE):
            raise Malformed("unknown payload kind %d" % kind)
        payloads.append({"kind": kind, "role": cur.token("role"), "size": cur.u64(),
                         "digest": cur.take(32)})
    entry["payloads"] = payloads
    if cur.pos != len(data):
        raise Malformed("%d trailing bytes after the entry" % (len(data) - cur.pos))
    return entry


# --------------------------------------------------------------------------- segments

class Damage(Exception):
    """A record (or header) cannot be read: its framing or checksum is wrong."""

    def __init__(self, offset, message):
        super().__init__(message)
        self.offset = offset


class BodyReader:
    """Reads a record body of known length piece by piece, CRC-ing every byte."""

    def __init__(self, f, length, crc):
        self.f, self.left, self.crc = f, length, crc

    def read(self, n):
        if n > self.left:
            raise Malformed("record body ends inside a field")
        data = self.f.read(n)
        if len(data) != n:
            raise Malformed("file ends inside the record")
        self.crc.update(data)
        self.left -= n
        return data

    def sha256(self, n):
        """Hash the next n bytes without holding them all."""
        sha = hashlib.sha256()
        while n:
            piece = self.read(min(n, CHUNK))
            sha.update(piece)
            n -= len(piece)
        return sha.digest()

    def drain(self):
        while self.left:
            self.read(min(self.left, CHUNK))


def read_body(body):
    """Split a record body into the entry bytes and a list of attachments."""
    (entry_len,) = struct.unpack(">I", body.read(4))
    entry = body.read(entry_len)
    (count,) = struct.unpack(">H", body.read(2))
    attachments = []
    for _ in range(count):
        state, digest = body.read(1)[0], body.read(32)
        (length,) = struct.unpack(">I", body.read(4))
        if state == ATTACHMENT_PRESENT:
            attachments.append((state, digest, length, body.sha256(length)))
        elif state == ATTACHMENT_REDACTED:
            # Destruction zeroes the bytes but keeps the length, so no record moves.
            if any(body.read(length)):
                raise Malformed("redacted attachment is not zero-filled")
            attachments.append((state, digest, length, None))
        else:
            raise Malformed("unknown attachment state %d" % state)
    if body.left:
        raise Malformed("%d trailing bytes in the record body" % body.left)
    return entry, attachments


def read_record(f, offset, file_size):
    """Read the record at `offset`; return (entry bytes, attachments, end offset).

    Raises Damage when magic, length or CRC are wrong. A body whose CRC matches but
    whose structure is wrong is also Damage: its entry bytes cannot be trusted.
    """
    header = f.read(RECORD_HEADER_LEN)
    if len(header) < RECORD_HEADER_LEN:
        raise Damage(offset, "incomplete record header (%d bytes)" % len(header))
    if header[:4] != RECORD_MAGIC:
        raise Damage(offset, "bad record magic %s" % header[:4].hex())
    (length,) = struct.unpack(">I", header[4:8])
    end = offset + RECORD_HEADER_LEN + length
    if length > MAX_BODY or end > file_size:
        raise Damage(offset, "implausible record length %d" % length)
    crc = Crc32c()
    crc.update(header[4:8])
    body = BodyReader(f, length, crc)
    try:
        entry, attachments = read_body(body)
        error = None
    except Malformed as e:
        body.drain()  # finish the CRC: a wrong CRC explains the error better
        error = e
    if crc.value() != struct.unpack(">I", header[8:12])[0]:
        raise Damage(offset, "record CRC-32C mismatch")
    if error is not None:
        raise Damage(offset, "record body: %s" % error)
    return entry, attachments, end


def valid_record_after(path, start, file_size):
    """Offset of the first valid record (magic, plausible length, CRC) at or after
    `start`, or None. This is how FORMAT.md tells a torn tail from damage in history."""
    with open(path, "rb") as f:
        pos = start
        while pos < file_size:
            f.seek(pos)
            window = f.read(CHUNK + len(RECORD_MAGIC) - 1)
            hit = window.find(RECORD_MAGIC)
            while hit >= 0:
                if _is_valid_record(f, pos + hit, file_size):
                    return pos + hit
                hit = window.find(RECORD_MAGIC, hit + 1)
            pos += CHUNK
    return None


def _is_valid_record(f, offset, file_size):
    f.seek(offset)
    header = f.read(RECORD_HEADER_LEN)
    if len(header) < RECORD_HEADER_LEN:
        return False
    (length,) = struct.unpack(">I", header[4:8])
    if length > MAX_BODY or offset + RECORD_HEADER_LEN + length > file_size:
        return False
    crc = Crc32c()
    crc.update(header[4:8])
    left = length
    while left:
        piece = f.read(min(left, CHUNK))
        crc.update(piece)
        left -= len(piece)
    return crc.value() == struct.unpack(">I", header[8:12])[0]


def read_segment_header(f):
    header = f.read(SEGMENT_HEADER_LEN)
    if len(header) < SEGMENT_HEADER_LEN:
        raise Damage(0, "segment header is incomplete (%d bytes)" % len(header))
    if header[:8] != SEGMENT_MAGIC:
        raise Damage(0, "bad segment magic")
    if crc32c(header[:20]) != struct.unpack(">I", header[20:24])[0]:
        raise Damage(0, "segment header CRC-32C mismatch")
    version, first = struct.unpack(">IQ", header[8:20])
    if version != 1:
        raise Damage(0, "unknown segment version %d" % version)
    return first


# --------------------------------------------------------------------------- content objects

class ObjectCorrupt(Exception):
    pass


class NoZstdDecoder(Exception):
    pass


def zstd_frame_end(f, pos, limit):
    """Walk one zstd frame's structure from `pos` (RFC 8878 3.1.1) without decoding;
    return the offset just after it. Also enforces akte's 128 MiB window limit. The frame
    must end at or before `limit` (the end of the object file or of the record's payload):
    the walk stops as soon as it passes it, so it never reads past the payload."""
    f.seek(pos)
    head = f.read(min(6, max(limit - pos, 0)))
    if len(head) < 5 or head[:4] != ZSTD_MAGIC:
        raise ObjectCorrupt("payload is not a zstd frame")
    fhd = head[4]
    single_segment = (fhd >> 5) & 1
    if (fhd >> 3) & 1:
        raise ObjectCorrupt("reserved bit set in the zstd frame header")
    if not single_segment:
        if len(head) < 6:
            raise ObjectCorrupt("zstd frame header is truncated")
        exponent, mantissa = head[5] >> 3, head[5] & 7
        base = 1 << (10 + exponent)
        if base + base // 8 * mantissa > ZSTD_MAX_WINDOW:
            raise ObjectCorrupt("zstd window larger than 128 MiB")
    fcs_len = [single_segment, 2, 4, 8][fhd >> 6]
    did_len = [0, 1, 2, 4][fhd & 3]
    pos += 5 + (0 if single_segment else 1) + did_len + fcs_len
    while True:
        if pos + 3 > limit:
            raise ObjectCorrupt("zstd frame is truncated")
        f.seek(pos)
        raw = f.read(3)
        if len(raw) != 3:
            raise ObjectCorrupt("zstd frame is truncated")
        block = int.from_bytes(raw, "little")
        last, kind, size = block & 1, (block >> 1) & 3, block >> 3
        if kind == 3:
            raise ObjectCorrupt("reserved zstd block type")
        pos += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if last:
            break
    if (fhd >> 2) & 1:
        pos += 4  # content checksum
    return pos


def _zstd_module_pieces(source):
    """Decode one zstd frame from the file object `source` with the zstandard module."""
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    reader = dctx.stream_reader(source, read_across_frames=False)
    while True:
        try:
            piece = reader.read(CHUNK)
        except zstandard.ZstdError as e:
            raise ObjectCorrupt("zstd payload does not decode: %s" % e)
        if not piece:
            return
        yield piece


def _zstd_tool_pieces(tool, path=None, offset=0, data=None):
    """Decode with the zstd command-line tool: the payload of the file `path` from
    `offset` to its end, or the bytes `data`."""
    if data is None:
        # The child reads the payload straight from the file (its offset set past the
        # header), so no thread is needed to feed it. zstd_frame_end() has already made
        # sure there is exactly one frame, so "zstd decodes every frame" does not matter.
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            proc = subprocess.Popen([tool, "-d", "-c", "-q", "--memory=128MB"], stdin=fd,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            os.close(fd)
        feeder = None
    else:
        # Fed through a pipe by a thread, so that neither side blocks on a full pipe.
        proc = subprocess.Popen([tool, "-d", "-c", "-q", "--memory=128MB"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

        def feed():
            try:
                proc.stdin.write(data)
            except OSError:
                pass  # the tool stopped early (or was killed); its exit status says why
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    finished = False
    try:
        while True:
            piece = proc.stdout.read(CHUNK)
            if not piece:
                finished = True
                break
            yield piece
    finally:
        if not finished:
            proc.kill()  # the caller stopped early (too many bytes)
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        status = proc.wait()
        if feeder is not None:
            feeder.join()
    if status != 0:
        raise ObjectCorrupt("zstd payload does not decode: %s" % (err or "zstd failed"))


def _zstd_pieces(path):
    """Yield the decoded bytes of the zstd payload of object `path`, piece by piece."""
    if zstandard is not None:
        with open(path, "rb") as f:
            f.seek(OBJECT_HEADER_LEN)
            yield from _zstd_module_pieces(f)
        return
    tool = shutil.which("zstd")
    if tool is None:
        raise NoZstdDecoder()
    yield from _zstd_tool_pieces(tool, path=path, offset=OBJECT_HEADER_LEN)


def _zstd_payload_pieces(payload):
    """Yield the decoded bytes of a pack record's zstd payload (below 1 MiB, held in
    memory; what it decodes to is still handed out piece by piece)."""
    if zstandard is not None:
        yield from _zstd_module_pieces(io.BytesIO(payload))
        return
    tool = shutil.which("zstd")
    if tool is None:
        raise NoZstdDecoder()
    # The payload is fed through a pipe: the pack goes on after it with the next record,
    # which the tool would try to decode as one more frame.
    yield from _zstd_tool_pieces(tool, data=payload)


def verify_object(path, digest_hex):
    """Check one object file (FORMAT.md, "Verifying an object without akte").

    Returns its original length; raises ObjectCorrupt or NoZstdDecoder.
    """
    if os.path.islink(path) or not os.path.isfile(path):
        raise ObjectCorrupt("missing or not a regular file")
    file_len = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(OBJECT_HEADER_LEN)
        if len(header) != OBJECT_HEADER_LEN:
            raise ObjectCorrupt("shorter than the 24-byte header")
        if header[:8] != OBJECT_MAGIC:
            raise ObjectCorrupt("bad object magic")
        if header[8] != 1:
            raise ObjectCorrupt("unknown object format version %d" % header[8])
        if header[10:16] != bytes(6):
            raise ObjectCorrupt("reserved header bytes are not zero")
        codec = header[9]
        (length,) = struct.unpack(">Q", header[16:24])
        if codec == 0:
            if file_len != OBJECT_HEADER_LEN + length:
                raise ObjectCorrupt("raw payload length differs from the header")
            pieces = _file_pieces(f)
        elif codec == 1:
            if zstd_frame_end(f, OBJECT_HEADER_LEN, file_len) != file_len:
                raise ObjectCorrupt("zstd frame does not end where the file ends")
            pieces = None
        else:
            raise ObjectCorrupt("unknown codec %d" % codec)
        if pieces is not None:
            return _check_original(pieces, length, digest_hex)
    return _check_original(_zstd_pieces(path), length, digest_hex)


def _file_pieces(f):
    f.seek(OBJECT_HEADER_LEN)
    while True:
        piece = f.read(CHUNK)
        if not piece:
            return
        yield piece


def _bytes_pieces(data):
    yield data


def _check_original(pieces, length, digest_hex):
    sha, produced = hashlib.sha256(), 0
    for piece in pieces:
        produced += len(piece)
        if produced > length:
            pieces.close()
            raise ObjectCorrupt("payload is longer than the header's length %d" % length)
        sha.update(piece)
    if produced != length:
        raise ObjectCorrupt("payload has %d bytes, header says %d" % (produced, length))
    if sha.hexdigest() != digest_hex:
        raise ObjectCorrupt("content hashes to %s" % sha.hexdigest())
    return length


def stray_object_entries(objects_dir):
    """Yield (path, reason) for everything in objects/ that is not an object file,
    and (path, None) for every object file (FORMAT.md, "Directory layout")."""
    for fan in sorted(os.listdir(objects_dir)):
        fan_path = os.path.join(objects_dir, fan)
        if not FAN_HEX.match(fan) or os.path.islink(fan_path) or not os.path.isdir(fan_path):
            yield fan_path, "does not belong in objects/"
            continue
        for name in sorted(os.listdir(fan_path)):
            path = os.path.join(fan_path, name)
            if not DIGEST_HEX.match(name) or not name.startswith(fan):
                yield path, "not an object name for this directory"
            elif os.path.islink(path) or not os.path.isfile(path):
                yield path, "not a regular file"
            else:
                yield path, None


# --------------------------------------------------------------------------- pack files

def decode_pack_record_header(h):
    """Check a 56-byte record header by the rules of FORMAT.md ("Pack files", "Record");
    return (state, codec, digest, original length L, payload length P) or raise
    Malformed with the reason."""
    if h[:4] != PACK_RECORD_MAGIC:
        raise Malformed("bad record magic %s" % h[:4].hex())
    if crc32c(h[:52]) != struct.unpack(">I", h[52:56])[0]:
        raise Malformed("record header CRC-32C mismatch")
    state, codec = h[4], h[5]
    if state not in (PACK_PRESENT, PACK_REMOVED):
        raise Malformed("unknown record state %d" % state)
    if codec not in (0, 1):
        raise Malformed("unknown codec %d" % codec)
    if h[6:8] != b"\x00\x00":
        raise Malformed("reserved record bytes are not zero")
    digest = h[8:40]
    length, payload_len = struct.unpack(">QI", h[40:52])
    if length >= MAX_PACKED:
        raise Malformed("original length %d is not below %d" % (length, MAX_PACKED))
    if payload_len >= MAX_PACKED:
        raise Malformed("payload length %d is not below %d" % (payload_len, MAX_PACKED))
    if codec == 0 and payload_len != length:
        raise Malformed("raw record of %d bytes with a payload of %d bytes"
                        % (length, payload_len))
    if codec == 1 and payload_len == 0:
        raise Malformed("empty zstd payload")
    return state, codec, digest, length, payload_len


def read_pack_record(f, offset, file_size):
    """The record header at `offset`, if it is well formed and the whole record lies
    within the file; else raise Malformed."""
    if file_size - offset < PACK_RECORD_HEADER_LEN:
        raise Malformed("%d bytes at the end of the file, shorter than a record header"
                        % (file_size - offset))
    f.seek(offset)
    header = decode_pack_record_header(f.read(PACK_RECORD_HEADER_LEN))
    if offset + PACK_RECORD_HEADER_LEN + header[4] > file_size:
        raise Malformed("record of %d bytes runs past the end of the file (%d bytes left)"
                        % (PACK_RECORD_HEADER_LEN + header[4], file_size - offset))
    return header


def next_pack_record(f, start, file_size):
    """Offset of the first well-formed record header (magic, CRC-32C and the header
    rules, the record within the file) at or after `start`, or None: after damage, reading
    resumes there, and with none the damage at the end of the last pack is a torn tail
    (FORMAT.md, "Crash safety of packs")."""
    pos = start
    while pos + PACK_RECORD_HEADER_LEN <= file_size:
        f.seek(pos)
        window = f.read(CHUNK + PACK_RECORD_HEADER_LEN - 1)
        hit = window.find(PACK_RECORD_MAGIC)
        while 0 <= hit < CHUNK:
            try:
                read_pack_record(f, pos + hit, file_size)
                return pos + hit
            except Malformed:
                hit = window.find(PACK_RECORD_MAGIC, hit + 1)
        pos += CHUNK
    return None


class PackedCopy:
    """A present record of a pack file: one copy of an object."""

    __slots__ = ("path", "offset", "codec", "length", "payload_len")

    def __init__(self, path, offset, codec, length, payload_len):
        self.path, self.offset, self.codec = path, offset, codec
        self.length, self.payload_len = length, payload_len


def verify_packed(copy, digest_hex):
    """Check a present record's payload as an object file's payload would be checked
    (FORMAT.md, "Verifying pack files" step 4). Returns the original length; raises
    ObjectCorrupt or NoZstdDecoder."""
    with open(copy.path, "rb") as f:
        f.seek(copy.offset + PACK_RECORD_HEADER_LEN)
        payload = f.read(copy.payload_len)  # below 1 MiB by the header rules
    if len(payload) != copy.payload_len:
        raise ObjectCorrupt("the record runs past the end of the pack")
    if copy.codec == 0:
        pieces = _bytes_pieces(payload)
    else:
        if zstd_frame_end(io.BytesIO(payload), 0, len(payload)) != len(payload):
            raise ObjectCorrupt("zstd frame does not end where the payload ends")
        pieces = _zstd_payload_pieces(payload)
    return _check_original(pieces, copy.length, digest_hex)


class PackScan:
    """What reading a tenant's content/packs/ found: the present records by digest, the
    digests of removed ones, and the places where records could not be read (whose
    objects are unknown)."""

    def __init__(self):
        self.copies = {}  # digest -> [PackedCopy], in pack and offset order
        self.removed = {}  # digest -> (path, offset) of a removed record
        self.unreadable = []  # (path, offset) where a record header could not be read
        self.packs = self.present = self.removed_records = 0

    def region_for_missing(self):
        """The place to name for a referenced object found nowhere: the first place where
        records could not be read (their digests are unknown), and how many more there
        are; None if every record was read."""
        if not self.unreadable:
            return None
        path, offset = self.unreadable[0]
        return path, offset, len(self.unreadable) - 1


def scan_packs(packs_dir, report):
    """Read every pack file front to back (FORMAT.md, "Verifying pack files", steps 1 to
    3) and report what is not well formed. A missing packs/ is a store without packs."""
    scan = PackScan()
    if not os.path.isdir(packs_dir) or os.path.islink(packs_dir):
        if os.path.lexists(packs_dir):
            report.problem("content store: packs/ is not a directory", path=packs_dir)
        return scan
    numbered = []
    for name in sorted(os.listdir(packs_dir)):
        path = os.path.join(packs_dir, name)
        if name.startswith("."):
            continue  # temporary file of an atomic write (FORMAT.md, Data directory)
        match = PACK_NAME.match(name)
        if not match:
            report.problem("content store: does not belong in packs/", path=path)
        elif os.path.islink(path) or not os.path.isfile(path):
            report.problem("content store: pack is not a regular file", path=path)
        else:
            numbered.append((int(match.group(1)), path))
    numbered.sort()
    # Numbers start at 0 and grow by one with each new pack (FORMAT.md, "Pack files").
    expected = 0
    for number, _ in numbered:
        if number > expected:
            what = ("pack file %d is" % expected if number == expected + 1 else
                    "pack files %d to %d are" % (expected, number - 1))
            report.problem("%s missing (pack numbers go up by one from 0)" % what,
                           path=os.path.join(packs_dir, "%020d.pack" % expected))
        expected = number + 1
    for i, (number, path) in enumerate(numbered):
        scan.packs += 1
        try:
            _scan_pack(path, number, i == len(numbered) - 1, scan, report)
        except OSError as e:
            report.problem("pack file: %s" % e, path=path)
            scan.unreadable.append((path, 0))
    return scan


def _scan_pack(path, number, is_last, scan, report):
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(PACK_HEADER_LEN)
        reason = None
        if len(header) < PACK_HEADER_LEN:
            reason = "pack header is incomplete (%d bytes)" % len(header)
        elif header[:8] != PACK_MAGIC:
            reason = "bad pack magic %s" % header[:8].hex()
        elif crc32c(header[:20]) != struct.unpack(">I", header[20:24])[0]:
            reason = "pack header CRC-32C mismatch"
        else:
            version, header_number = struct.unpack(">IQ", header[8:20])
            if version != PACK_VERSION:
                reason = "unknown pack format version %d" % version
            elif header_number != number:
                reason = "pack header says pack %d, the file name %d" % (header_number, number)
        if reason is not None:
            if is_last and file_size <= PACK_HEADER_LEN:
                # A crash while starting a pack (FORMAT.md, "Crash safety of packs").
                report.warning("pack header at byte offset 0: %s; a pack being started when "
                               "akte stopped, akte removes it on open" % reason,
                               path=path, offset=0)
            else:
                report.problem("pack header at byte offset 0: %s" % reason, path=path, offset=0)
            scan.unreadable.append((path, 0))
            return
        offset, last_present, tail = PACK_HEADER_LEN, None, None
        while offset < file_size:
            try:
                state, codec, digest, length, payload_len = read_pack_record(f, offset, file_size)
            except Malformed as e:
                resume = next_pack_record(f, offset + 1, file_size)
                if resume is None and is_last:
                    tail = (offset, str(e))  # decided below, with the record before it
                    break
                where = (" (a well-formed record starts at byte offset %d)" % resume
                         if resume is not None else "")
                report.problem("damaged pack record at byte offset %d: %s%s"
                               % (offset, e, where), path=path, offset=offset)
                scan.unreadable.append((path, offset))
                if resume is None:
                    break
                offset = resume
                continue
            end = offset + PACK_RECORD_HEADER_LEN + payload_len
            if state == PACK_REMOVED:
                scan.removed_records += 1
                scan.removed.setdefault(digest, (path, offset))
                f.seek(offset + PACK_RECORD_HEADER_LEN)
                if any(f.read(payload_len)):  # below 1 MiB by the header rules
                    report.problem("removed pack record at byte offset %d: its payload is "
                                   "not all zeros" % offset, path=path, offset=offset,
                                   digest=digest.hex())
                last_present = None
            else:
                scan.present += 1
                copy = PackedCopy(path, offset, codec, length, payload_len)
                scan.copies.setdefault(digest, []).append(copy)
                last_present = (digest, copy)
            offset = end
        if not is_last:
            return
        # A torn tail of the last pack: bytes that are not a complete record, or a last
        # complete record whose payload does not match its digest, with no well-formed
        # record after it. Never acknowledged, so a warning (FORMAT.md, "Crash safety of
        # packs"); a journal reference to such a record is still a problem, found by the
        # content check.
        if tail is not None:
            scan.unreadable.append((path, tail[0]))  # what was there is unknown
        if last_present is not None:
            digest, copy = last_present
            try:
                verify_packed(copy, digest.hex())
            except NoZstdDecoder:
                pass
            except ObjectCorrupt as e:
                # Its digest is known: if the journal refers to it, the content check
                # reports the damaged copy.
                tail = (copy.offset, "last record: %s" % e)
        if tail is not None:
            at, why = tail
            report.warning("torn tail of the last pack at byte offset %d (%d bytes, %s); akte "
                           "cuts it on open unless its index already covers it"
                           % (at, file_size - at, why), path=path, offset=at)


# --------------------------------------------------------------------------- a tenant

class TenantReport:
    def __init__(self, tenant, path):
        self.tenant, self.path = tenant, path
        self.origin = None
        self.entries = self.segments = 0
        self.checkpoints = self.checkpoints_verified = 0
        self.objects_checked = self.objects_unchecked = 0
        self.objects_released = self.objects_unreferenced = 0
        self.packs = self.pack_records = self.pack_records_removed = 0
        self.attachments_redacted = 0
        self.problems, self.warnings = [], []

    def problem(self, message, **where):
        """Record a problem; `where` names entry, tree size, path, byte offset and/or
        digest."""
        self.problems.append(_finding(self.tenant, message, where))

    def warning(self, message, **where):
        """Record something worth knowing that is not damage (see FORMAT.md)."""
        self.warnings.append(_finding(self.tenant, message, where))

    def as_dict(self):
        return {
            "tenant": self.tenant, "origin": self.origin, "entries": self.entries,
            "segments": self.segments, "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "objects_checked": self.objects_checked,
            "objects_not_checked": self.objects_unchecked,
            "objects_released": self.objects_released,
            "objects_unreferenced": self.objects_unreferenced,
            "packs": self.packs, "pack_records": self.pack_records,
            "pack_records_removed": self.pack_records_removed,
            "attachments_redacted": self.attachments_redacted,
            "problems": self.problems, "warnings": self.warnings,
        }


LOCATION_KEYS = ("entry", "size", "path", "offset", "digest")


def _finding(tenant, message, where):
    found = {"tenant": tenant, "message": message}
    found.update((k, where[k]) for k in LOCATION_KEYS if where.get(k) is not None)
    return found


class ContentRefs:
    """Reference counts per content digest, as FORMAT.md defines them: +1 per content
    payload, -1 per reference payload with role `release`, never below zero."""

    def __init__(self):
        self.refs = {}  # digest -> [count, size, first entry]

    def add(self, digest, size, seq, report):
        ref = self.refs.setdefault(digest, [0, size, seq])
        if ref[1] != size:
            report.problem("content %s has size %d here but %d in entry %d"
                           % (digest.hex(), size, ref[1], ref[2]), entry=seq,
                           digest=digest.hex())
        ref[0] += 1

    def release(self, digest, seq, report):
        ref = self.refs.get(digest)
        if ref is None or ref[0] <= 0:
            # FORMAT.md: the count never goes below zero; such a release changes nothing.
            report.warning("release of content that has no reference left",
                           entry=seq, digest=digest.hex())
            return
        ref[0] -= 1


class TenantVerifier:
    def __init__(self, data_dir, tenant):
        self.dir = os.path.join(data_dir, "tenants", tenant)
        self.report = TenantReport(tenant, self.dir)
        self.tree = CompactRange()
        self.checkpoints = {}  # tree size -> (root, path), signatures already checked
        self.content = ContentRefs()
        self.prev_leaf = bytes(32)
        self.prev_time = None
        self.redacted = []  # (digest, entry, segment) of attachments removed by destruction
        self.witnesses = {}  # (name, type-0x04 key id) -> [public keys], both witness lists
        self.destroyed = set()  # digests that destruction entries list as destroyed

    def run(self):
        key = self.load_origin_and_key()
        self.witnesses = self.load_witnesses()
        self.load_checkpoints(key)
        self.check_checkpoint_at_size()  # a checkpoint of size 0
        self.walk_journal()
        for size, (_, path) in sorted(self.checkpoints.items()):
            if size > self.tree.size:
                self.report.problem("checkpoint of size %d is beyond the %d readable entries"
                                    % (size, self.tree.size), size=size, path=path)
        for digest, seq, path in self.redacted:
            if digest not in self.destroyed:
                self.report.problem("attachment removed, but no destruction entry lists it",
                                    entry=seq, path=path, digest=digest.hex())
        self.check_content()
        return self.report

    # -- ORIGIN, key, checkpoints

    def load_origin_and_key(self):
        r = self.report
        path = os.path.join(self.dir, "ORIGIN")
        try:
            with open(path, "rb") as f:
                raw = f.read(4096)
            if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
                raise Malformed("must be one line ending in LF")
            r.origin = raw[:-1].decode("utf-8")
            if not r.origin.endswith("/" + r.tenant):
                raise Malformed("origin %r does not end in /%s" % (r.origin, r.tenant))
        except (OSError, ValueError, Malformed) as e:
            r.problem("ORIGIN: %s" % e, path=path)
        path = os.path.join(self.dir, "keys", "checkpoint.pub")
        try:
            key = read_verifier_key_file(path)
        except (OSError, ValueError, Malformed) as e:
            r.problem("verifier key: %s" % e, path=path)
            return None
        if r.origin is not None and key[0] != r.origin:
            r.warning("verifier key name %r is not the origin %r" % (key[0], r.origin),
                      path=path)
        return key

    def load_witnesses(self):
        """The keys of keys/witnesses and keys/witnesses-removed (no file: none), as a map
        (name, type-0x04 key id) -> [public keys]. A line that breaks the list format is a
        problem and is not used."""
        witnesses = {}
        for list_name in WITNESS_LISTS:
            path = os.path.join(self.dir, "keys", list_name)
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_WITNESS_LIST[list_name] + 1)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.report.problem("witness list: %s" % e, path=path)
                continue
            try:
                if len(data) > MAX_WITNESS_LIST[list_name]:
                    raise Malformed("larger than %d bytes" % MAX_WITNESS_LIST[list_name])
                text = data.decode("utf-8")
                if text != "" and not text.endswith("\n"):
                    raise Malformed("the last line does not end in LF")
            except (ValueError, Malformed) as e:
                self.report.problem("witness list: %s" % e, path=path)
                continue
            seen = []
            for number, line in enumerate(text.split("\n")[:-1], 1):
                try:
                    name, kid, public_key = parse_verifier_key(line, 0x04)
                    if line.split("+", 2)[1] != kid.hex():
                        raise Malformed("key id not in lower case")
                    if list_name == "witnesses":
                        if any(n == name or p == public_key for n, _, p in seen):
                            raise Malformed("name or public key listed twice")
                        if len(seen) >= MAX_WITNESSES:
                            raise Malformed("more than %d witnesses" % MAX_WITNESSES)
                    elif (name, kid, public_key) in seen:
                        raise Malformed("key listed twice")
                except Malformed as e:
                    self.report.problem("witness list line %d: %s" % (number, e), path=path)
                    continue
                seen.append((name, kid, public_key))
                keys = witnesses.setdefault((name, kid), [])
                if public_key not in keys:
                    keys.append(public_key)
        return witnesses

    def load_checkpoints(self, key):
        directory = os.path.join(self.dir, "checkpoints")
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        for name in names:
            path = os.path.join(directory, name)
            match = CHECKPOINT_NAME.match(name)
            if name.startswith("."):
                continue  # temporary file of an atomic write (FORMAT.md, Data directory)
            if not match or not os.path.isfile(path):
                self.report.warning("unexpected file in checkpoints/", path=path)
                continue
            self.report.checkpoints += 1
            named_size = int(match.group(1))
            try:
                size, root = self.load_checkpoint(path, key)
            except (OSError, ValueError, Malformed) as e:
                self.report.problem("checkpoint: %s" % e, size=named_size, path=path)
                continue
            if size != named_size:
                self.report.problem("checkpoint file name says size %d, text says %d"
                                    % (named_size, size), size=named_size, path=path)
                continue
            self.checkpoints[size] = (root, path)

    def load_checkpoint(self, path, key):
        if key is None:
            raise Malformed("cannot check the signature: no valid verifier key")
        with open(path, "rb") as f:
            data = f.read(MAX_NOTE + 1)
        text = verify_note(data, key)
        origin, size, root = parse_checkpoint(text)
        if origin != self.report.origin:
            raise Malformed("origin %r is not this tenant's %r" % (origin, self.report.origin))
        for message in other_line_problems(text, parse_note(data)[1], key, self.witnesses):
            self.report.problem("checkpoint: %s" % message, size=size, path=path)
        return size, root

    def check_checkpoint_at_size(self):
        found = self.checkpoints.get(self.tree.size)
        if found is None:
            return
        root, path = found
        if root != self.tree.root():
            self.report.problem("checkpoint root %s differs from the journal's root %s "
                                "at size %d" % (root.hex(), self.tree.root().hex(),
                                                self.tree.size), size=self.tree.size, path=path)
        else:
            self.report.checkpoints_verified += 1

    # -- journal

    def segment_files(self):
        directory = os.path.join(self.dir, "journal")
        segments = []
        for name in sorted(os.listdir(directory)):
            match = SEGMENT_NAME.match(name)
            if name.startswith("."):
                continue  # temporary file of an atomic write (FORMAT.md, Data directory)
            if match and os.path.isfile(os.path.join(directory, name)):
                segments.append((int(match.group(1)), os.path.join(directory, name)))
            else:
                self.report.warning("unexpected file in journal/",
                                    path=os.path.join(directory, name))
        return sorted(segments)

    def walk_journal(self):
        try:
            segments = self.segment_files()
        except OSError as e:
            self.report.problem("journal: %s" % e, path=os.path.join(self.dir, "journal"))
            return
        if not segments:
            self.report.problem("no journal segment", path=os.path.join(self.dir, "journal"))
        for i, (first, path) in enumerate(segments):
            self.report.segments += 1
            is_last = i == len(segments) - 1
            if not self.walk_segment(path, first, is_last, is_only=len(segments) == 1):
                if not is_last:
                    self.report.problem("journal not checked beyond this point (entry %d)"
                                        % self.tree.size, path=path)
                return

    def walk_segment(self, path, first, is_last, is_only):
        """Check one segment; return False if the journal cannot be read past it."""
        r = self.report
        if first != self.tree.size:
            r.problem("segment starts at entry %d, expected %d" % (first, self.tree.size),
                      path=path)
            return False
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            try:
                header_first = read_segment_header(f)
            except Damage as e:
                if is_last and not is_only and file_size < SEGMENT_HEADER_LEN:
                    r.warning("torn header of an interrupted segment change; akte removes "
                              "it on open", path=path)
                    return True
                r.problem("segment header: %s" % e, path=path)
                return False
            if header_first != first:
                r.problem("segment header says first entry %d, file name %d"
                          % (header_first, first), path=path)
                return False
            if file_size == SEGMENT_HEADER_LEN and is_last and not is_only:
                r.warning("empty last segment from an interrupted segment change; akte "
                          "removes it on open", path=path)
            offset = SEGMENT_HEADER_LEN
            while offset < file_size:
                f.seek(offset)
                try:
                    entry, attachments, end = read_record(f, offset, file_size)
                except Damage as e:
                    return self.damaged_record(path, e, file_size, is_last)
                self.check_entry(entry, attachments, path, offset)
                offset = end
        return True

    def damaged_record(self, path, damage, file_size, is_last):
        """Damage at the end of the last segment with nothing valid after it is a torn
        tail (an unacknowledged write); anything else is damage inside history."""
        r, at = self.report, damage.offset
        after = valid_record_after(path, at + 1, file_size) if is_last else None
        if is_last and after is None:
            r.warning("torn tail at byte offset %d (%d bytes, %s); akte cuts it on open"
                      % (at, file_size - at, damage), entry=self.tree.size, path=path)
            return True
        where = " (a valid record starts at byte offset %d)" % after if after else ""
        r.problem("damaged record at byte offset %d: %s%s" % (at, damage, where),
                  entry=self.tree.size, path=path)
        return False

    def check_entry(self, entry_bytes, attachments, path, offset):
        r, seq = self.report, self.tree.size
        try:
            entry = decode_entry(entry_bytes)
        except Malformed as e:
            r.problem("entry at byte offset %d: %s" % (offset, e), entry=seq, path=path)
            entry = None
        if entry is not None:
            if entry["seq"] != seq:
                r.problem("entry has seq %d at position %d" % (entry["seq"], seq),
                          entry=seq, path=path)
            if entry["prev"] != self.prev_leaf:
                r.problem("prev hash does not match the leaf hash of entry %d" % (seq - 1),
                          entry=seq, path=path)
            if self.prev_time is not None and entry["time"] < self.prev_time:
                r.problem("time goes backwards", entry=seq, path=path)
            self.prev_time = entry["time"]
            self.check_attachments(entry, attachments, seq, path)
            self.count_content(entry, seq)
        self.prev_leaf = leaf_hash(entry_bytes)
        self.tree.append(self.prev_leaf)
        r.entries += 1
        self.check_checkpoint_at_size()

    def check_attachments(self, entry, attachments, seq, path):
        inline = [p for p in entry["payloads"] if p["kind"] == PAYLOAD_INLINE]
        if len(inline) != len(attachments):
            self.report.problem("%d inline payloads but %d attachments"
                                % (len(inline), len(attachments)), entry=seq, path=path)
            return
        for i, (payload, (state, digest, length, actual)) in enumerate(zip(inline, attachments)):
            where = "attachment %d (%s): " % (i, payload["role"])
            if digest != payload["digest"]:
                self.report.problem(where + "digest differs from the inline payload's",
                                    entry=seq, path=path, digest=payload["digest"].hex())
            elif length != payload["size"]:
                self.report.problem(where + "%d bytes, payload says %d"
                                    % (length, payload["size"]), entry=seq, path=path)
            elif state == ATTACHMENT_PRESENT and actual != digest:
                self.report.problem(where + "bytes hash to %s" % actual.hex(),
                                    entry=seq, path=path, digest=digest.hex())
            elif state == ATTACHMENT_REDACTED:
                self.report.attachments_redacted += 1  # destroyed: the entry still holds
                self.redacted.append((digest, seq, path))

    def count_content(self, entry, seq):
        for p in entry["payloads"]:
            if p["kind"] == PAYLOAD_CONTENT:
                self.content.add(p["digest"], p["size"], seq, self.report)
            elif p["kind"] == PAYLOAD_REFERENCE and p["role"] == "release":
                self.content.release(p["digest"], seq, self.report)
            elif p["kind"] == PAYLOAD_REFERENCE and p["role"] == "destroyed":
                self.destroyed.add(p["digest"])

    # -- content

    def check_content(self):
        r = self.report
        content = os.path.join(self.dir, "content")
        objects = os.path.join(content, "objects")
        present = set()  # digests (hex) of object files
        if os.path.isdir(objects):
            for path, reason in stray_object_entries(objects):
                if reason is None:
                    present.add(os.path.basename(path))
                else:
                    r.problem("content store: %s" % reason, path=path)
        packs = scan_packs(os.path.join(content, "packs"), r)
        r.packs, r.pack_records = packs.packs, packs.present
        r.pack_records_removed = packs.removed_records
        packed = set(packs.copies)  # digests (bytes) with a present pack record
        for digest, (count, size, first) in sorted(self.content.refs.items()):
            hex_digest = digest.hex()
            if count == 0:
                # Every reference was released: the object may be gone (destroyed) or
                # still there waiting for removal; either way it is not checked.
                if hex_digest not in present and digest not in packed:
                    r.objects_released += 1
                continue
            path = os.path.join(objects, hex_digest[:2], hex_digest)
            has_file = hex_digest in present
            present.discard(hex_digest)
            packed.discard(digest)
            self.check_object(digest, size, first, packs, path if has_file else None)
        # Objects no entry refers to (any more): left by a crash between storing content
        # and journalling it, or released and not yet removed. Harmless for the history,
        # so only counted; an object both in a pack and in a file of its own counts once.
        r.objects_unreferenced = len(present | {d.hex() for d in packed})

    def check_object(self, digest, size, first, packs, file_path):
        """Journal step 4 for one referenced object: intact if the copy akte serves passes
        the checks (FORMAT.md, "Verifying pack files"): the first present pack record of its
        digest with a well-formed header, else its object file."""
        r, hex_digest = self.report, digest.hex()
        candidates = [(c.path, c.offset, lambda c=c: verify_packed(c, hex_digest))
                      for c in packs.copies.get(digest, ())[:1]]
        if file_path is not None and not candidates:
            candidates.append((file_path, None, lambda: verify_object(file_path, hex_digest)))
        if not candidates:
            object_path = os.path.join(self.dir, "content", "objects", hex_digest[:2],
                                       hex_digest)
            region = packs.region_for_missing()
            if digest in packs.removed:
                path, offset = packs.removed[digest]
                r.problem("content object missing: its pack record at byte offset %d was "
                          "removed (destruction), but references to it remain" % offset,
                          entry=first, path=path, offset=offset, digest=hex_digest)
            elif region is None:
                r.problem("content object missing", entry=first, path=object_path,
                          digest=hex_digest)
            else:
                # The record may be in bytes that could not be read: name them.
                more = " (and %d more such places)" % region[2] if region[2] else ""
                r.problem("content object missing: no present pack record and no object "
                          "file %s; the unreadable pack bytes at byte offset %d may have "
                          "held it%s" % (object_path, region[1], more), entry=first,
                          path=region[0], offset=region[1], digest=hex_digest)
            return
        damaged, unchecked, length = [], None, None
        for path, offset, check in candidates:
            where = "" if offset is None else "pack record at byte offset %d: " % offset
            try:
                length = check()
            except NoZstdDecoder:
                unchecked = unchecked or (path, offset)
                continue
            except (OSError, ObjectCorrupt) as e:
                damaged.append((path, offset, where + str(e)))
                continue
            break
        if length is not None:
            for bad_path, bad_offset, message in damaged:
                r.warning("damaged copy of a content object that has an intact copy: %s"
                          % message, entry=first, path=bad_path, offset=bad_offset,
                          digest=hex_digest)
            if length != size:
                r.problem("content object holds %d bytes, entry says %d" % (length, size),
                          entry=first, path=path, offset=offset, digest=hex_digest)
                return
            r.objects_checked += 1
        elif unchecked is not None:
            r.objects_unchecked += 1
            r.warning("not checked: no zstd decoder", path=unchecked[0], offset=unchecked[1],
                      digest=hex_digest)
        else:
            for path, offset, message in damaged:
                r.problem("content object: %s" % message, entry=first, path=path,
                          offset=offset, digest=hex_digest)


# --------------------------------------------------------------------------- driver

def list_tenants(data_dir):
    """Return (tenant ids, problems with other names in tenants/)."""
    tenants_dir = os.path.join(data_dir, "tenants")
    if not os.path.isdir(tenants_dir):
        return [], ["%s: missing" % tenants_dir]
    tenants, problems = [], []
    for name in sorted(os.listdir(tenants_dir)):
        path = os.path.join(tenants_dir, name)
        if name.startswith("."):
            continue  # a tenant being created (.new-<id>) or a temporary file
        if TENANT_ID.match(name) and os.path.isdir(path) and not os.path.islink(path):
            tenants.append(name)
        else:
            problems.append("%s: not a tenant directory (akte refuses to open the store)"
                            % path)
    return tenants, problems


def check_format_file(data_dir):
    """None if FORMAT is right, else a problem message."""
    try:
        with open(os.path.join(data_dir, "FORMAT"), "rb") as f:
            marker = f.read(max(len(m) for m in FORMAT_MARKERS) + 1)
    except OSError as e:
        return "FORMAT: %s" % e
    if marker not in FORMAT_MARKERS:
        return "FORMAT is %r, this verifier knows %s" % (
            marker, " and ".join(repr(m) for m in FORMAT_MARKERS))
    return None


def print_text(reports, global_problems):
    for message in global_problems:
        print("PROBLEM %s" % message)
    for r in reports:
        print("tenant %s (origin %s)" % (r.tenant, r.origin))
        print("  entries: %d in %d segment(s)" % (r.entries, r.segments))
        print("  checkpoints: %d of %d verified" % (r.checkpoints_verified, r.checkpoints))
        print("  content objects: %d checked, %d not checked (no zstd decoder), "
              "%d released and removed, %d unreferenced"
              % (r.objects_checked, r.objects_unchecked, r.objects_released,
                 r.objects_unreferenced))
        print("  packs: %d file(s), %d present and %d removed record(s)"
              % (r.packs, r.pack_records, r.pack_records_removed))
        print("  attachments: %d redacted by destruction" % r.attachments_redacted)
        for kind, findings in (("WARNING", r.warnings), ("PROBLEM", r.problems)):
            for f in findings:
                where = "".join(" %s=%s" % (k, f[k]) for k in LOCATION_KEYS if k in f)
                print("  %s tenant=%s%s: %s" % (kind, f["tenant"], where, f["message"]))
        print("  result: %s" % ("clean" if not r.problems else
                                "%d problem(s)" % len(r.problems)))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify an akte data directory without akte.")
    parser.add_argument("data_dir", metavar="DATA_DIR")
    parser.add_argument("--tenant", metavar="ID", help="verify only this tenant")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)  # exits with status 2 on usage errors

    if not os.path.isdir(args.data_dir) or not os.path.exists(
            os.path.join(args.data_dir, "FORMAT")):
        print("verify_store: %s is not an akte data directory" % args.data_dir, file=sys.stderr)
        return 2
    tenants, global_problems = list_tenants(args.data_dir)
    if args.tenant is not None:
        if args.tenant not in tenants:
            print("verify_store: no tenant %r in %s" % (args.tenant, args.data_dir),
                  file=sys.stderr)
            return 2
        tenants = [args.tenant]

    format_problem = check_format_file(args.data_dir)
    if format_problem:
        global_problems.append(format_problem)
    reports = [TenantVerifier(args.data_dir, t).run() for t in tenants]

    clean = not global_problems and not any(r.problems for r in reports)
    if args.json:
        json.dump({"clean": clean, "problems": global_problems,
                   "tenants": [r.as_dict() for r in reports]}, sys.stdout, indent=2)
        print()
    else:
        print_text(reports, global_problems)
        print("verify_store: %s" % ("clean" if clean else "PROBLEMS FOUND"))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
