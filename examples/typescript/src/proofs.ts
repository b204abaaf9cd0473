// Checking akte's proofs without akte: signed checkpoints (C2SP signed note, Ed25519 with
// Node's built-in crypto), journal entries (docs/FORMAT.md, "Entry encoding") and RFC 9162
// inclusion proofs. The verifier key and origin come from the agency out of band, never
// from the server being checked.

import { createHash, createPublicKey, verify } from "node:crypto";

export class ProofError extends Error {}

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Canonical standard base64 (FORMAT.md, "Conventions"). */
function b64(s: string): Buffer {
  const raw = Buffer.from(s, "base64");
  if (raw.toString("base64") !== s) throw new ProofError(`not canonical base64: ${s}`);
  return raw;
}

export interface VerifierKey {
  name: string;
  keyId: Buffer;
  type: number;
  publicKey: Buffer;
}

/** Parses `<name>+<key id>+<base64(type || public key)>` and checks the key id. */
export function parseVerifierKey(text: string): VerifierKey {
  const t = text.trim();
  const first = t.indexOf("+");
  const second = t.indexOf("+", first + 1);
  if (first <= 0 || second < 0) throw new ProofError(`not a verifier key: ${t}`);
  const name = t.slice(0, first);
  const keyIdHex = t.slice(first + 1, second);
  const raw = b64(t.slice(second + 1));
  if (!/^[0-9a-fA-F]{8}$/.test(keyIdHex)) throw new ProofError("the key id must be 8 hex digits");
  if (raw.length !== 33 || (raw[0] !== 0x01 && raw[0] !== 0x04)) {
    throw new ProofError("the key must be a type byte and 32 bytes");
  }
  const keyId = Buffer.from(keyIdHex, "hex");
  const want = sha256(Buffer.from(name + "\n"), raw).subarray(0, 4);
  if (!keyId.equals(want)) throw new ProofError("the key id does not match name and key");
  return { name, keyId, type: raw[0], publicKey: raw.subarray(1) };
}

export interface Checkpoint {
  origin: string;
  size: bigint;
  root: Buffer;
}

// DER prefix of an Ed25519 public key in SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");

/** Checks the agency's signature on a checkpoint note and returns the checkpoint. */
export function verifyCheckpoint(note: Buffer, key: VerifierKey, origin: string): Checkpoint {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new ProofError("the note has no signature block");
  const text = note.subarray(0, split + 1);
  const sigs = note.subarray(split + 2).toString("utf8");
  if (!sigs.endsWith("\n")) throw new ProofError("the signature block does not end with LF");
  const publicKey = createPublicKey({
    key: Buffer.concat([ED25519_SPKI, key.publicKey]),
    format: "der",
    type: "spki",
  });
  let signed = false;
  for (const line of sigs.slice(0, -1).split("\n")) {
    if (!line.startsWith("\u2014 ")) throw new ProofError(`malformed signature line ${line}`);
    const rest = line.slice(2);
    const space = rest.indexOf(" ");
    const raw = b64(rest.slice(space + 1));
    if (rest.slice(0, space) !== key.name || !raw.subarray(0, 4).equals(key.keyId)) continue;
    if (key.type !== 0x01 || raw.length !== 68) throw new ProofError("not an Ed25519 signature");
    if (!verify(null, text, publicKey, raw.subarray(4))) {
      throw new ProofError("the checkpoint's signature does not verify");
    }
    signed = true;
  }
  if (!signed) throw new ProofError(`no signature by ${key.name} on the checkpoint`);
  const lines = text.toString("utf8").split("\n");
  if (lines[0] !== origin) throw new ProofError(`checkpoint of ${lines[0]}, expected ${origin}`);
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new ProofError("invalid tree size");
  const root = b64(lines[2]);
  if (root.length !== 32) throw new ProofError("the root must be 32 bytes");
  return { origin, size: BigInt(lines[1]), root };
}

export const leafHash = (encoded: Buffer): Buffer => sha256(Buffer.from([0]), encoded);

/** RFC 9162 section 2.1.3.2; throws unless `leaf` is leaf `index` of the tree `root`. */
export function verifyInclusion(
  leaf: Buffer,
  index: bigint,
  size: bigint,
  path: Buffer[],
  root: Buffer,
): void {
  if (index >= size) throw new ProofError(`leaf ${index} is not in a tree of ${size}`);
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new ProofError("the proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = sha256(Buffer.from([1]), p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = sha256(Buffer.from([1]), r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n || !r.equals(root)) throw new ProofError("the proof does not lead to the root");
}

export interface Entry {
  seq: bigint;
  kind: string;
  object: string;
  payloads: { kind: number; role: string; size: bigint; sha256: Buffer }[];
}

/** Decodes the canonical entry encoding strictly (docs/FORMAT.md, "Entry encoding"). */
export function decodeEntry(data: Buffer): Entry {
  let pos = 0;
  const take = (n: number): Buffer => {
    if (pos + n > data.length) throw new ProofError("the entry ends early");
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const text = (lo: number, hi: number): string => {
    const n = take(2).readUInt16BE();
    if (n < lo || n > hi) throw new ProofError(`a text field of ${n} bytes`);
    return take(n).toString("utf8");
  };
  if (take(1)[0] !== 1) throw new ProofError("unknown entry version");
  const seq = take(8).readBigUInt64BE();
  take(8); // time
  take(32); // prev
  text(1, 256); // actor
  const kind = text(1, 64);
  const object = text(0, 512);
  const count = take(2).readUInt16BE();
  const payloads = [];
  for (let i = 0; i < count; i++) {
    const k = take(1)[0];
    if (k < 1 || k > 3) throw new ProofError(`unknown payload kind ${k}`);
    const role = text(1, 64);
    const size = take(8).readBigUInt64BE();
    payloads.push({ kind: k, role, size, sha256: Buffer.from(take(32)) });
  }
  if (pos !== data.length) throw new ProofError("trailing bytes after the entry");
  return { seq, kind, object, payloads };
}

/** Proves that `content` is committed to by `encodedEntry`, which is in the tree of a
 * checkpoint signed with the agency's key. */
export function verifyDocument(
  content: Buffer,
  encodedEntry: Buffer,
  path: Buffer[],
  note: Buffer,
  key: VerifierKey,
  origin: string,
): { entry: Entry; checkpoint: Checkpoint } {
  const checkpoint = verifyCheckpoint(note, key, origin);
  const entry = decodeEntry(encodedEntry);
  const digest = sha256(content);
  const committed = entry.payloads.some(
    (p) => p.kind === 1 && p.sha256.equals(digest) && p.size === BigInt(content.length),
  );
  if (!committed) throw new ProofError(`entry ${entry.seq} does not commit to these bytes`);
  verifyInclusion(leafHash(encodedEntry), entry.seq, checkpoint.size, path, checkpoint.root);
  return { entry, checkpoint };
}
