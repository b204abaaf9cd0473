#!/usr/bin/env python3
"""Verify akte evidence without akte: transfer ZIPs, document evidence, consistency.

usage:
  verify_transfer.py PACKAGE.zip [PACKAGE.zip ...] [--key KEY] [--json]
  verify_transfer.py --evidence EVIDENCE.json DIR [--key KEY] [--json]
  verify_transfer.py --consistency OLD NEW PROOF [--key KEY]

An independent implementation of docs/FORMAT.md, section "Evidence", written from that
document alone with nothing but the Python 3 standard library (Ed25519 included).

For a transfer ZIP (or a document's evidence package) it checks, as "Verifying evidence"
describes: the evidence file's form; the verifier key and its fingerprint (against
--key, the tenant's verifier key string, if given); the checkpoint's signature; listed
witness cosignatures; the XML's size and SHA-256; every file's size and SHA-256; that the
journal entry given for each file decodes and lists the file as content; every inclusion
proof against the checkpoint's root; and that the ZIP holds nothing else. With --evidence
it checks a standalone evidence file against the files in DIR. Every problem names the
damaged object (subject, name and code, as the document defines them).

With --consistency it checks that checkpoint NEW extends checkpoint OLD with the proof
file PROOF. OLD and NEW may each be a checkpoint note, an evidence file or a transfer ZIP;
without --key the key in OLD (an evidence file or ZIP) is used.

Without --key the key in the evidence is used and its fingerprint shown: compare it with
the agency's out of band. Files are read in pieces and hashed as they stream; no read
goes past the size the evidence states plus one byte.

Exit status: 0 clean, 1 problems found, 2 usage error.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import struct
import sys
import unicodedata
import zipfile
import zlib

EVIDENCE_FORMAT = "akte-evidence/v1"
EVIDENCE_SUFFIX = "_akte-evidence.json"
MAX_EVIDENCE = 268435456  # 256 MiB
MAX_PROOF = 64
MAX_NOTE = 1 << 20
MAX_SIGNATURES = 100
CHUNK = 1 << 16
MIN_TIME = -8334601228800000000
MAX_TIME = 8210266876799999999

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
TOKEN_RE = re.compile(rb"[a-z0-9._-]+\Z")
SIZE_RE = re.compile(r"(0|[1-9][0-9]*)\Z")
KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}\Z")

TOP_KEYS = ["format", "kind", "process_id", "document_id", "checkpoint", "verifier_key",
            "key_fingerprint", "witnesses", "message", "objects"]
FILE_KEYS = ["name", "size", "sha256"]
OBJECT_KEYS = ["name", "size", "sha256", "seq", "entry", "proof"]

# Unicode White_Space (key names may contain none of these).
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                  "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


class Malformed(Exception):
    """Input that does not have the documented form."""


class Usage(Exception):
    """A usage error (exit status 2)."""


# ------------------------------------------------------------------------------ Ed25519
# RFC 8032 verification, strict as FORMAT.md asks: S below the group order, neither the
# public key nor R of small order, and R equal byte for byte to the canonical encoding of
# [S]B - [k]A. Points are decoded as the Evidence section describes (y taken modulo p);
# a verifier key must moreover be the canonical encoding of its point.

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _ed_add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _ed_mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _ed_add(result, point)
        point = _ed_add(point, point)
        scalar >>= 1
    return result


def _ed_decode(data):
    """Decode a 32-byte point; None if no point has this y."""
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y = (y & ((1 << 255) - 1)) % _P
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = (_P - x) % _P
    return (x, y, 1, x * y % _P)


def _ed_encode(point):
    x, y, z, _ = point
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ed_small_order(point):
    q = _ed_mul(8, point)
    return q[0] % _P == 0 and (q[1] - q[2]) % _P == 0


_BASE = _ed_decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))
_VERIFIED = {}


def ed25519_verify(public, signature, message):
    """Strict Ed25519 verification (results are remembered for repeated inputs)."""
    key = (public, signature, message)
    if key not in _VERIFIED:
        _VERIFIED[key] = _ed25519_verify(public, signature, message)
    return _VERIFIED[key]


def _ed25519_verify(public, signature, message):
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _ed_decode(public)
    r = _ed_decode(signature[:32])
    if a is None or r is None or _ed_small_order(a) or _ed_small_order(r):
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(),
                       "little") % _L
    minus_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    expected = _ed_add(_ed_mul(s, _BASE), _ed_mul(k, minus_a))
    return _ed_encode(expected) == signature[:32]


# ------------------------------------------------------------------- keys and notes

def b64decode_canonical(text):
    """Standard base64 with padding and zero unused bits, nothing else."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise Malformed("not base64")
    if base64.b64encode(raw).decode("ascii") != text:
        raise Malformed("not canonical base64")
    return raw


def is_control(char):
    return unicodedata.category(char) == "Cc"


def key_name_problem(name):
    if name == "":
        return "empty key name"
    if "+" in name or any(c in WHITE_SPACE or is_control(c) for c in name):
        return "invalid character in key name"
    return None


def key_id(name, typ, public):
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([typ]) + public).digest()[:4]


class VerifierKey:
    def __init__(self, name, typ, kid, public):
        self.name, self.type, self.kid, self.public = name, typ, kid, public

    def canonical(self):
        return "%s+%s+%s" % (self.name, self.kid.hex(),
                             base64.b64encode(bytes([self.type]) + self.public).decode())

    def fingerprint(self):
        return hashlib.sha256(self.public).hexdigest()


def parse_verifier_key(text):
    """A verifier key string (FORMAT.md "Verifier key", rules 1 to 6)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise Malformed("expected <name>+<key id>+<base64 key>")
    name, kid_hex, b64 = parts
    problem = key_name_problem(name)
    if problem:
        raise Malformed(problem)
    if not KEY_ID_RE.match(kid_hex):
        raise Malformed("the key id is not 8 hex digits")
    raw = b64decode_canonical(b64)
    if len(raw) != 33 or raw[0] not in (0x01, 0x04):
        raise Malformed("the key is not 33 bytes of type 0x01 or 0x04")
    typ, public = raw[0], raw[1:]
    if key_id(name, typ, public) != bytes.fromhex(kid_hex):
        raise Malformed("the key id does not match the key")
    point = _ed_decode(public)
    if point is None or _ed_small_order(point):
        raise Malformed("the public key is not a usable Ed25519 point")
    if _ed_encode(point) != public:
        raise Malformed("the public key is not the canonical encoding of its point")
    return VerifierKey(name, typ, bytes.fromhex(kid_hex), public)


def parse_note(data):
    """Split a signed note (FORMAT.md "Splitting a note"): (text, [(name, kid, sig)])."""
    if len(data) > MAX_NOTE:
        raise Malformed("note larger than 1 MiB")
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("note is not UTF-8")
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise Malformed("control character in note")
    split = s.rfind("\n\n")
    if split < 0:
        raise Malformed("no blank line in note")
    text, block = s[:split + 1], s[split + 2:]
    if block == "" or not block.endswith("\n"):
        raise Malformed("bad signature block")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Malformed("more than 100 signature lines")
    sigs = []
    for line in lines:
        if not line.startswith("\u2014 "):
            raise Malformed("signature line without em dash")
        rest = line[2:]
        if " " not in rest:
            raise Malformed("signature line without signature")
        name, b64 = rest.split(" ", 1)
        if key_name_problem(name) or b64 == "":
            raise Malformed("bad signature line")
        raw = b64decode_canonical(b64)
        if len(raw) < 5:
            raise Malformed("signature shorter than 5 bytes")
        sigs.append((name, raw[:4], raw[4:]))
    return text, sigs


def parse_checkpoint(text):
    """(origin, size, root, extension lines) of a checkpoint text (FORMAT.md "Checkpoint";
    the note's rules already exclude bytes below 0x20 other than LF; the origin has no
    control character of Unicode category Cc at all)."""
    if not text.endswith("\n"):
        raise Malformed("checkpoint text must end in LF")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] == "":
        raise Malformed("checkpoint needs origin, size and root")
    if any(is_control(c) for c in lines[0]):
        raise Malformed("the origin contains a control character")
    if not SIZE_RE.match(lines[1]) or int(lines[1]) >= 1 << 64:
        raise Malformed("bad tree size")
    root = b64decode_canonical(lines[2])
    if len(root) != 32:
        raise Malformed("root is not 32 bytes")
    if any(ext == "" for ext in lines[3:]):
        raise Malformed("empty extension line")
    return lines[0], int(lines[1]), root, lines[3:]


def note_verifies(text, sigs, key):
    """FORMAT.md "Verifying a note" with one trusted key of type 0x01."""
    matched = False
    for name, kid, sig in sigs:
        if name != key.name or kid != key.kid:
            continue
        matched = True
        if not ed25519_verify(key.public, sig, text.encode("utf-8")):
            return False
    return matched


def cosignature_time(sig):
    """The timestamp of a cosignature/v1 line's bytes after the key id (8-byte time and
    64-byte signature), or None if they cannot be one."""
    if len(sig) != 72:
        return None
    ts = int.from_bytes(sig[:8], "big")
    if ts >= 1 << 63:
        return None
    return ts


# --------------------------------------------------------------- entries and proofs

def decode_entry(data):
    """FORMAT.md "Entry encoding", strictly, with the time range of "Verifying evidence"."""
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise Malformed("entry ends early")
        out = data[pos:pos + n]
        pos += n
        return out

    def text(lo, hi):
        raw = take(struct.unpack(">H", take(2))[0])
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("string is not UTF-8")
        if not lo <= len(raw) <= hi or any(is_control(c) for c in s):
            raise Malformed("bad string field")
        return s

    def token(hi):
        raw = take(struct.unpack(">H", take(2))[0])
        if not 1 <= len(raw) <= hi or not TOKEN_RE.match(raw):
            raise Malformed("bad token field")
        return raw.decode("ascii")

    if take(1) != b"\x01":
        raise Malformed("unknown entry version")
    seq = struct.unpack(">Q", take(8))[0]
    time = struct.unpack(">q", take(8))[0]
    if not MIN_TIME <= time <= MAX_TIME:
        raise Malformed("time out of range")
    take(32)  # prev
    entry = {"seq": seq, "time": time, "actor": text(1, 256), "kind": token(64),
             "object": text(0, 512), "payloads": []}
    count = struct.unpack(">H", take(2))[0]
    if count > 4096:
        raise Malformed("more than 4096 payloads")
    for _ in range(count):
        kind = take(1)[0]
        if kind not in (1, 2, 3):
            raise Malformed("unknown payload kind")
        role = token(64)
        size = struct.unpack(">Q", take(8))[0]
        entry["payloads"].append((kind, role, size, take(32)))
    if pos != len(data):
        raise Malformed("trailing bytes after the entry")
    return entry


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_ok(leaf, index, size, proof, root):
    """FORMAT.md "Inclusion proof", Verifying."""
    if index >= size:
        return False
    last = size - 1
    inner = (index ^ last).bit_length()
    if len(proof) != inner + bin(index >> inner).count("1"):
        return False
    fn, sn, r = index, last, leaf
    for c in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(c, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_ok(m, n, root1, root2, proof):
    """FORMAT.md "Consistency proof", Verifying."""
    if m == 0 or m > n:
        return False
    if m == n:
        return proof == [] and root1 == root2
    last = m - 1
    inner = (last ^ (n - 1)).bit_length()
    border = bin(last >> inner).count("1")
    shift = (m & -m).bit_length() - 1
    expected = inner - shift + border + (0 if m & (m - 1) == 0 else 1)
    if len(proof) != expected:
        return False
    if m & (m - 1) == 0:
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = seed
    for c in rest:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


# -------------------------------------------------------------------- evidence form

def is_u64(v):
    return type(v) is int and 0 <= v < 1 << 64


def file_name_ok(name):
    return (isinstance(name, str) and 1 <= len(name.encode("utf-8", "surrogatepass")) <= 255
            and name not in (".", "..") and "/" not in name and "\\" not in name
            and not any(is_control(c) for c in name) and not name.endswith(EVIDENCE_SUFFIX))


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Malformed("a member name occurs twice")
    return dict(pairs)


def parse_evidence(data, zip_name=None):
    """The evidence file's rules 1 to 8 (rule 8 when zip_name is given)."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Malformed("not UTF-8 JSON")
    try:
        canonical = (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        raise Malformed("cannot be written in canonical form")
    if canonical != data:
        raise Malformed("not in canonical form")
    if not isinstance(value, dict) or list(value) != TOP_KEYS:
        raise Malformed("wrong members")
    ev = value
    if ev["format"] != EVIDENCE_FORMAT:
        raise Malformed("format is not %s" % EVIDENCE_FORMAT)
    for k in ("checkpoint", "verifier_key", "key_fingerprint"):
        if not isinstance(ev[k], str):
            raise Malformed("%s is not a string" % k)
    if not isinstance(ev["witnesses"], list) or not all(isinstance(w, str)
                                                        for w in ev["witnesses"]):
        raise Malformed("witnesses is not an array of strings")
    uuid = lambda v: isinstance(v, str) and UUID_RE.match(v)
    if ev["kind"] == "transfer":
        if not uuid(ev["process_id"]) or ev["document_id"] is not None:
            raise Malformed("a transfer needs a process_id and no document_id")
        if not isinstance(ev["message"], dict):
            raise Malformed("a transfer needs a message")
    elif ev["kind"] == "document":
        if not uuid(ev["document_id"]) or ev["process_id"] is not None:
            raise Malformed("a document needs a document_id and no process_id")
        if ev["message"] is not None:
            raise Malformed("a document has no message")
    else:
        raise Malformed("unknown kind")
    files = []
    if ev["message"] is not None:
        m = ev["message"]
        if list(m) != FILE_KEYS:
            raise Malformed("wrong message members")
        files.append(m)
    if not isinstance(ev["objects"], list):
        raise Malformed("objects is not an array")
    for o in ev["objects"]:
        if not isinstance(o, dict) or list(o) != OBJECT_KEYS:
            raise Malformed("wrong object members")
        if not is_u64(o["seq"]) or not isinstance(o["entry"], str):
            raise Malformed("bad seq or entry")
        o["entry_bytes"] = b64decode_canonical(o["entry"])
        if not isinstance(o["proof"], list) or len(o["proof"]) > MAX_PROOF:
            raise Malformed("bad proof")
        hashes = []
        for h in o["proof"]:
            if not isinstance(h, str):
                raise Malformed("a proof hash is not a string")
            raw = b64decode_canonical(h)
            if len(raw) != 32:
                raise Malformed("a proof hash is not 32 bytes")
            hashes.append(raw)
        o["proof_bytes"] = hashes
        files.append(o)
    names = set()
    for f in files:
        if not is_u64(f["size"]) or not isinstance(f["sha256"], str) \
                or not HEX64_RE.match(f["sha256"]):
            raise Malformed("bad size or sha256")
        if not file_name_ok(f["name"]) or f["name"] in names:
            raise Malformed("bad or repeated file name")
        names.add(f["name"])
    ident = ev["process_id"] or ev["document_id"]
    if zip_name is not None:
        if zip_name != ident + EVIDENCE_SUFFIX:
            raise Malformed("the evidence entry is not named after its process or document")
        if ev["kind"] == "transfer" and \
                ev["message"]["name"] != ident + "_Aussonderung.Aussonderung.0503.xml":
            raise Malformed("the message is not named after the process")
    return ev


# ------------------------------------------------------------------------- sources

class Failure(Exception):
    def __init__(self, code, detail):
        Exception.__init__(self, detail)
        self.code, self.detail = code, detail


def hash_stream(chunks, size, sha256_hex):
    """Hash the chunks (at most size + 1 bytes are asked for); compare count and digest."""
    sha = hashlib.sha256()
    count = 0
    for chunk in chunks:
        sha.update(chunk)
        count += len(chunk)
        if count > size:
            break
    if count != size:
        raise Failure("unreadable", "%d bytes instead of %d" % (count, size))
    if sha.hexdigest() != sha256_hex:
        raise Failure("sha256", "the bytes hash to %s" % sha.hexdigest())


def file_chunks(f, limit):
    """Pieces of an open file, at most `limit` bytes in all."""
    left = limit
    while left > 0:
        try:
            chunk = f.read(min(CHUNK, left))
        except OSError as e:
            raise Failure("unreadable", "cannot be read: %s" % e)
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


class ZipSource:
    def __init__(self, path):
        self.path = path
        self.zip = zipfile.ZipFile(path)
        self.raw = open(path, "rb")
        self.infos = self.zip.infolist()
        self.by_name = {i.orig_filename: i for i in self.infos}

    def close(self):
        self.zip.close()
        self.raw.close()

    def names(self):
        return [i.orig_filename for i in self.infos]

    def open_checked(self, name):
        """"Reading a file", checks 1 and 2; returns the entry and its data offset."""
        info = self.by_name.get(name)
        if info is None:
            raise Failure("missing", "not in the package")
        if info.flag_bits & 1:
            raise Failure("unreadable", "the entry is encrypted")
        if info.compress_type not in (0, 8):
            raise Failure("unreadable", "compression method %d" % info.compress_type)
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        try:
            cd_name = info.orig_filename.encode(encoding)
            self.raw.seek(info.header_offset)
            head = self.raw.read(30)
            ok = len(head) == 30 and head[:4] == b"PK\x03\x04"
            if ok:
                name_len, extra_len = struct.unpack("<HH", head[26:30])
                ok = self.raw.read(name_len) == cd_name
        except (OSError, ValueError, UnicodeError, OverflowError):
            ok = False
        if not ok:
            raise Failure("unreadable", "no local header with this name where the "
                          "central directory points")
        return info, info.header_offset + 30 + name_len + extra_len

    def chunks(self, info, data_start, limit):
        """The entry's bytes ("Reading a file", check 4): the compressed size's worth of
        stored bytes, or their inflation, which must end within them (bytes after the end
        of the deflate stream are ignored) and match the CRC-32. Stops after `limit`
        bytes of output."""
        left = info.compress_size
        inflater = zlib.decompressobj(-15) if info.compress_type == 8 else None
        crc = produced = 0
        try:
            self.raw.seek(data_start)
            pending = b""
            while produced < limit:
                if inflater is not None and inflater.eof:
                    break
                if not pending:
                    if left == 0:
                        break
                    pending = self.raw.read(min(CHUNK, left))
                    if not pending:
                        raise Failure("unreadable", "the ZIP ends inside the entry")
                    left -= len(pending)
                if inflater is None:
                    out, pending = pending, b""
                else:
                    out = inflater.decompress(pending, CHUNK)
                    pending = inflater.unconsumed_tail
                produced += len(out)
                crc = zlib.crc32(out, crc)
                yield out
        except (zlib.error, OSError, ValueError) as e:
            raise Failure("unreadable", "cannot be read: %s" % e)
        if produced >= limit:
            return
        if inflater is not None and not inflater.eof:
            raise Failure("unreadable", "incomplete deflate stream")
        if crc != info.CRC:
            raise Failure("unreadable", "CRC-32 mismatch")

    def read_evidence(self, name):
        info, start = self.open_checked(name)
        if info.file_size > MAX_EVIDENCE:
            raise Failure("too-large", "the ZIP states %d bytes" % info.file_size)
        data = bytearray()
        for chunk in self.chunks(info, start, MAX_EVIDENCE + 1):
            data += chunk
        if len(data) > MAX_EVIDENCE:
            raise Failure("too-large", "more than 256 MiB")
        return bytes(data)

    def check(self, name, size, sha256_hex):
        info, start = self.open_checked(name)
        if info.file_size != size:
            raise Failure("size", "the ZIP states %d bytes" % info.file_size)
        hash_stream(self.chunks(info, start, size + 1), size, sha256_hex)


class DirSource:
    def __init__(self, directory):
        self.dir = directory

    def check(self, name, size, sha256_hex):
        path = os.path.join(self.dir, name)
        if not file_name_ok(name) or not os.path.isfile(path):
            raise Failure("missing", "not in the directory")
        actual = os.path.getsize(path)
        if actual != size:
            raise Failure("size", "the file has %d bytes" % actual)
        try:
            f = open(path, "rb")
        except OSError as e:
            raise Failure("unreadable", "cannot be opened: %s" % e)
        with f:
            hash_stream(file_chunks(f, size + 1), size, sha256_hex)


# ------------------------------------------------------------------- verification

class Report:
    def __init__(self, source):
        self.source = source
        self.problems = []
        self.lines = []
        self.key = None
        self.key_given = False

    def problem(self, subject, name, code, detail):
        self.problems.append({"subject": subject, "name": name, "code": code,
                              "detail": detail})

    def clean(self):
        return not self.problems


def verify_zip(path, given_key):
    report = Report(path)
    try:
        source = ZipSource(path)
    except Exception as e:  # BadZipFile, OSError, ValueError, ... from a damaged ZIP
        report.problem("package", "", "unreadable", "not a readable ZIP: %s" % e)
        return report
    try:
        names = source.names()
        if len(set(names)) != len(names):
            report.problem("package", "", "duplicate-names", "two entries share a name")
            return report
        found = [n for n in names if n.endswith(EVIDENCE_SUFFIX)]
        if not found:
            report.problem("evidence", "", "missing", "no *%s entry" % EVIDENCE_SUFFIX)
            return report
        if len(found) > 1:
            report.problem("evidence", "", "ambiguous", "several *%s entries"
                           % EVIDENCE_SUFFIX)
            return report
        try:
            data = source.read_evidence(found[0])
        except Failure as f:
            report.problem("evidence", "", f.code, f.detail)
            return report
        covered = check_evidence(report, data, found[0], source, given_key)
        if covered is not None:
            covered.add(found[0])
            for n in names:
                if n not in covered:
                    report.problem("entry", n, "unlisted", "not covered by the evidence")
        return report
    finally:
        source.close()


def verify_dir(evidence_path, directory, given_key):
    report = Report(evidence_path)
    try:
        f = open(evidence_path, "rb")
    except OSError as e:
        raise Usage("cannot open %s: %s" % (evidence_path, e))
    if not os.path.isdir(directory):
        raise Usage("%s is not a directory" % directory)
    with f:
        try:
            data = f.read(MAX_EVIDENCE + 1)
        except OSError as e:
            report.problem("evidence", "", "unreadable", str(e))
            return report
    if len(data) > MAX_EVIDENCE:
        report.problem("evidence", "", "too-large", "more than 256 MiB")
        return report
    check_evidence(report, data, None, DirSource(directory), given_key)
    return report


def check_evidence(report, data, zip_name, source, given_key):
    """Steps 2 to 7; returns the names the evidence covers, or None."""
    try:
        ev = parse_evidence(data, zip_name)
    except Malformed as e:
        report.problem("evidence", "", "malformed", str(e))
        return None
    report.lines.append("evidence:   %s %s" % (ev["kind"], ev["process_id"] or ev["document_id"]))

    # Step 3: the key.
    evidence_key = None
    try:
        k = parse_verifier_key(ev["verifier_key"])
        if k.type != 0x01 or k.canonical() != ev["verifier_key"]:
            raise Malformed("not a canonical type 0x01 key")
        evidence_key = k
    except Malformed as e:
        report.problem("key", "", "malformed", "the evidence's key is not usable: %s" % e)
    if evidence_key is not None:
        if evidence_key.fingerprint() != ev["key_fingerprint"]:
            report.problem("key", "", "fingerprint", "the stated fingerprint is not the key's")
        elif given_key is not None and given_key.canonical() != ev["verifier_key"]:
            report.problem("key", "", "mismatch", "the evidence names another key than "
                           "the one given")
    trusted = given_key if given_key is not None else evidence_key
    report.key_given = given_key is not None
    if trusted is not None:
        report.key = trusted
        report.lines.append("key:        %s" % trusted.canonical())
        report.lines.append("            fingerprint %s (%s)" % (
            trusted.fingerprint(), "the key given" if given_key is not None else
            "taken from the evidence: compare this fingerprint out of band"))

    # Step 4: the checkpoint.
    checkpoint = None
    try:
        text, sigs = parse_note(ev["checkpoint"].encode("utf-8", "surrogatepass"))
        origin, size, root, _ = parse_checkpoint(text)
        checkpoint = (origin, size, root)
    except Malformed as e:
        report.problem("checkpoint", "", "malformed", str(e))
    if checkpoint is not None:
        verified = False
        if trusted is None:
            report.problem("checkpoint", "", "signature", "no usable key")
        elif not note_verifies(text, sigs, trusted):
            report.problem("checkpoint", "", "signature", "not signed by the key")
        elif origin != trusted.name:
            report.problem("checkpoint", "", "origin", "the checkpoint is of another journal")
        else:
            verified = True
        report.lines.append("checkpoint: %s size %d root %s (%s)" % (
            origin, size, base64.b64encode(root).decode(),
            "signature OK" if verified else "NOT VERIFIED"))
        # Step 5: witnesses.
        for w in ev["witnesses"]:
            check_witness(report, text, sigs, w)

    # Step 6: the message.
    covered = set()
    if ev["message"] is not None:
        m = ev["message"]
        covered.add(m["name"])
        try:
            source.check(m["name"], m["size"], m["sha256"])
            report.lines.append("message:    OK     %s %d bytes sha256 %s"
                                % (m["name"], m["size"], m["sha256"]))
        except Failure as f:
            report.problem("message", m["name"], f.code, f.detail)
            report.lines.append("message:    FAILED (%s) %s" % (f.code, m["name"]))

    # Step 7: the objects.
    for o in ev["objects"]:
        covered.add(o["name"])
        about = ""
        try:
            source.check(o["name"], o["size"], o["sha256"])
            try:
                entry = decode_entry(o["entry_bytes"])
            except Malformed as e:
                raise Failure("entry", "the entry does not decode: %s" % e)
            about = " (%s of %s by %s)" % (entry["kind"], entry["object"], entry["actor"])
            if entry["seq"] != o["seq"]:
                raise Failure("entry", "the entry is entry %d" % entry["seq"])
            digest = bytes.fromhex(o["sha256"])
            if not any(k == 1 and s == o["size"] and d == digest
                       for k, _, s, d in entry["payloads"]):
                raise Failure("entry", "the entry does not list the file as content")
            if checkpoint is not None:
                leaf = hashlib.sha256(b"\x00" + o["entry_bytes"]).digest()
                if not inclusion_ok(leaf, o["seq"], checkpoint[1], o["proof_bytes"],
                                    checkpoint[2]):
                    raise Failure("proof", "the inclusion proof does not lead to the "
                                  "checkpoint's root")
            report.lines.append("OK     %s %d bytes sha256 %s entry %d%s" % (
                o["name"], o["size"], o["sha256"], o["seq"], about))
        except Failure as f:
            report.problem("object", o["name"], f.code, f.detail)
            report.lines.append("FAILED (%s) %s entry %d" % (f.code, o["name"], o["seq"]))
    return covered


def check_witness(report, text, sigs, w):
    try:
        key = parse_verifier_key(w)
        if key.canonical() != w:
            raise Malformed("not canonical")
    except Malformed as e:
        report.problem("witness", w, "malformed", str(e))
        return
    kid = key_id(key.name, 0x04, key.public)
    line = next((s for s in sigs if s[0] == key.name and s[1] == kid), None)
    if line is None:
        report.problem("witness", key.name, "missing", "no cosignature of this witness")
        return
    ts = cosignature_time(line[2])
    msg = ("cosignature/v1\ntime %d\n" % ts + text).encode("utf-8") if ts is not None else b""
    if ts is None or not ed25519_verify(key.public, line[2][8:], msg):
        report.problem("witness", key.name, "cosignature", "the cosignature does not verify")
        return
    report.lines.append("witness:    %s cosigned at %d" % (key.name, ts))


# ---------------------------------------------------------------- consistency mode

def read_note_and_key(path):
    """A checkpoint note from a note file, an evidence file or a ZIP; and its key."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise Usage("cannot read %s: %s" % (path, e))
    data = None
    if head == b"PK":
        try:
            source = ZipSource(path)
        except Exception as e:
            raise Malformed("%s is not a readable ZIP: %s" % (path, e))
        try:
            found = [n for n in source.names() if n.endswith(EVIDENCE_SUFFIX)]
            if len(found) != 1:
                raise Malformed("%s has no single evidence entry" % path)
            try:
                data = source.read_evidence(found[0])
            except Failure as f:
                raise Malformed("%s: evidence %s" % (path, f.detail))
        finally:
            source.close()
    else:
        with open(path, "rb") as f:
            data = f.read(MAX_EVIDENCE + 1)
    if data[:1] == b"{":
        ev = parse_evidence(data)
        try:
            key = parse_verifier_key(ev["verifier_key"])
        except Malformed:
            key = None
        return ev["checkpoint"].encode("utf-8", "surrogatepass"), key
    return data, None


def check_consistency(old_path, new_path, proof_path, given_key):
    old_note, old_key = read_note_and_key(old_path)
    new_note, _ = read_note_and_key(new_path)
    try:
        with open(proof_path, "rb") as f:
            raw = f.read(1 << 16)
    except OSError as e:
        raise Usage("cannot read %s: %s" % (proof_path, e))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the proof file is not UTF-8")
    proof = []
    if text:
        if not text.endswith("\n"):
            raise Malformed("the proof file's last line does not end in LF")
        for line in text[:-1].split("\n"):
            h = b64decode_canonical(line)
            if len(h) != 32:
                raise Malformed("a proof line is not a 32-byte hash")
            proof.append(h)
    if len(proof) > 65:
        raise Malformed("the proof file has more than 65 hashes")
    key = given_key or old_key
    if key is None:
        raise Usage("no key: give --key, or an evidence file or ZIP as OLD")
    cps = []
    for which, note in (("old", old_note), ("new", new_note)):
        try:
            text, sigs = parse_note(note)
            cp = parse_checkpoint(text)
        except Malformed as e:
            raise Malformed("%s checkpoint: %s" % (which, e))
        if not note_verifies(text, sigs, key):
            raise Malformed("%s checkpoint is not signed by the key" % which)
        if cp[0] != key.name:
            raise Malformed("%s checkpoint is of another journal" % which)
        cps.append(cp)
    (_, m, root1, _), (origin, n, root2, _) = cps
    if n < m:
        raise Malformed("the new checkpoint is smaller than the old one: entries were removed")
    if m == 0:
        ok = proof == []
    else:
        ok = consistency_ok(m, n, root1, root2, proof)
    if not ok:
        raise Malformed("the consistency proof from size %d to %d does not verify" % (m, n))
    return "CONSISTENT: %s at size %d extends size %d" % (origin, n, m)


# ---------------------------------------------------------------------------- main

def print_report(report):
    print("package:    %s" % report.source)
    for line in report.lines:
        print(line)
    for p in report.problems:
        name = " " + p["name"] if p["name"] else ""
        print("PROBLEM %s%s: %s: %s" % (p["subject"], name, p["code"], p["detail"]))
    print("CLEAN" if report.clean() else "FAILED: %d problem(s)" % len(report.problems))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Verify akte evidence (docs/FORMAT.md, \"Evidence\") without akte.")
    parser.add_argument("paths", nargs="*", help="transfer ZIPs, or with --evidence the "
                        "directory, or with --consistency OLD NEW PROOF")
    parser.add_argument("--key", help="the tenant's verifier key string (trusted)")
    parser.add_argument("--evidence", metavar="EVIDENCE.json",
                        help="verify a standalone evidence file against DIR")
    parser.add_argument("--consistency", action="store_true",
                        help="check that checkpoint NEW extends OLD with PROOF")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        given = None
        if args.key is not None:
            try:
                given = parse_verifier_key(args.key.rstrip("\n"))
            except Malformed as e:
                raise Usage("--key is not a verifier key: %s" % e)
            if given.type != 0x01:
                raise Usage("--key must be the tenant's type 0x01 key")
        if args.consistency:
            if len(args.paths) != 3 or args.evidence:
                raise Usage("--consistency needs OLD NEW PROOF")
            try:
                print(check_consistency(*args.paths, given))
                return 0
            except Malformed as e:
                print("NOT CONSISTENT: %s" % e)
                return 1
        if args.evidence:
            if len(args.paths) != 1:
                raise Usage("--evidence needs exactly one directory")
            reports = [verify_dir(args.evidence, args.paths[0], given)]
        else:
            if not args.paths:
                raise Usage("give at least one transfer ZIP")
            for p in args.paths:
                if not os.path.isfile(p):
                    raise Usage("%s is not a file" % p)
            reports = [verify_zip(p, given) for p in args.paths]
    except Usage as e:
        print("verify_transfer.py: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        json.dump({"results": [{"source": r.source, "clean": r.clean(),
                                "problems": r.problems} for r in reports]},
                  sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        for i, r in enumerate(reports):
            if i:
                print()
            print_report(r)
    return 0 if all(r.clean() for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
