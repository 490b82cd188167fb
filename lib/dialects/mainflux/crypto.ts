/**
 * The two secure modes.
 *
 * Mainflux's own ("cfb"): the AES key is the raw bytes of the configured string (16, 24
 * or 32 of them), every message is IV(16) || AES-CFB(key, IV, data), full-block CFB as
 * Go's cipher.NewCFBEncrypter does it (OpenSSL's aes-*-cfb). No integrity, no replay
 * protection: that is what the service speaks, so it is what this side speaks.
 *
 * The stronger one ("gcm", in the spirit of Magistrala, NOT Mainflux-compatible):
 * AES-256-GCM under a named key, the request carrying its own issued-at time and a
 * single-use request id, and the response bound to that request id. Format below and
 * in the node help.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { StoreBackend } from "../../stores/backend";
import { parseJsonBounded } from "../../util/json-limits";

/** A GCM request holds a version, an id, a time and a nonce: a few hundred bytes. */
const GCM_REQUEST_BYTES = 4096;

export const IV_BYTES = 16;
export const CFB_KEY_LENGTHS = [16, 24, 32] as const;

export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyError";
  }
}

/** The raw bytes of the configured string, refused unless AES can use them as they are. */
export function cfbKey(configured: string | Buffer): Buffer {
  const key = typeof configured === "string" ? Buffer.from(configured, "utf8") : Buffer.from(configured);
  if (!(CFB_KEY_LENGTHS as readonly number[]).includes(key.length)) {
    throw new KeyError(
      `the encryption key must be 16, 24 or 32 bytes long (AES-128/192/256); it is ${key.length} bytes. ` +
        "Mainflux uses the raw bytes of the configured string as the AES key, so a key of any other length " +
        "(such as the 50-character one in the upstream docker .env) cannot work",
    );
  }
  return key;
}

function cfbAlgorithm(key: Buffer): string {
  return `aes-${key.length * 8}-cfb`;
}

/** IV || AES-CFB(key, IV, plain). */
export function cfbEncrypt(key: Buffer, plain: Buffer, iv: Buffer = randomBytes(IV_BYTES)): Buffer {
  if (iv.length !== IV_BYTES) throw new KeyError("the IV must be 16 bytes");
  const c = createCipheriv(cfbAlgorithm(key), key, iv);
  return Buffer.concat([iv, c.update(plain), c.final()]);
}

/** The inverse of cfbEncrypt. CFB cannot tell a wrong key: the caller checks the result. */
export function cfbDecrypt(key: Buffer, data: Buffer): Buffer {
  if (data.length < IV_BYTES) throw new KeyError(`the ciphertext is shorter than the ${IV_BYTES}-byte IV`);
  const d = createDecipheriv(cfbAlgorithm(key), key, data.subarray(0, IV_BYTES));
  return Buffer.concat([d.update(data.subarray(IV_BYTES)), d.final()]);
}

export const THING_PREFIX = "Thing ";

/** The secure Authorization header: `Thing ` + hex(IV || AES-CFB(key, IV, external key)). */
export function cfbAuthorization(key: Buffer, externalKey: string, iv?: Buffer): string {
  return THING_PREFIX + cfbEncrypt(key, Buffer.from(externalKey, "utf8"), iv).toString("hex");
}

/** The external key inside a secure header value (after `Thing `); throws KeyError when it cannot be read. */
export function cfbExternalKey(key: Buffer, hexValue: string): string {
  if (hexValue.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hexValue))
    throw new KeyError("the encrypted external key is not hexadecimal");
  return cfbDecrypt(key, Buffer.from(hexValue, "hex")).toString("utf8");
}

// ---------------------------------------------------------------------------------------
// GCM mode

export const GCM_SCHEME = "Thing-GCM ";
export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;
export const GCM_VERSION = "mainflux-bootstrap-gcm/v1";
export const GCM_DEFAULT_WINDOW_S = 300;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/*
 * Wire format of the GCM mode (also in the node help):
 *   request  Authorization: Thing-GCM <keyId>.<base64url(nonce12 || ct || tag16)>
 *            plaintext {"v":1,"external_id","external_key","request_id":32 hex,"iat":unix s}
 *            AAD "mainflux-bootstrap-gcm/v1 request|<keyId>|<external_id>"
 *   response 200, application/octet-stream, X-Bootstrap-Key-Id: <keyId>,
 *            body nonce12 || ct || tag16 of the plain JSON answer,
 *            AAD "mainflux-bootstrap-gcm/v1 response|<keyId>|<external_id>|<request_id>"
 */

/** 32 raw bytes: 64 hex characters, or a 32-byte string taken as it is. */
export function gcmKey(configured: string): Buffer {
  if (/^[0-9a-fA-F]{64}$/.test(configured)) return Buffer.from(configured, "hex");
  const raw = Buffer.from(configured, "utf8");
  if (raw.length === 32) return raw;
  throw new KeyError(
    `the GCM key must be 32 bytes (AES-256): 64 hexadecimal characters or a 32-byte string; it is ${raw.length} bytes`,
  );
}

export function checkKeyId(keyId: string): string {
  if (!KEY_ID.test(keyId)) throw new KeyError("the key id must be 1 to 64 letters, digits, '.', '_' or '-'");
  return keyId;
}

function seal(key: Buffer, plain: Buffer, aad: string, nonce: Buffer = randomBytes(GCM_NONCE_BYTES)): Buffer {
  const c = createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(Buffer.from(aad, "utf8"));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) throw new KeyError("the sealed data is too short");
  const nonce = sealed.subarray(0, GCM_NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - GCM_TAG_BYTES);
  const d = createDecipheriv("aes-256-gcm", key, nonce);
  d.setAAD(Buffer.from(aad, "utf8"));
  d.setAuthTag(tag);
  try {
    return Buffer.concat([
      d.update(sealed.subarray(GCM_NONCE_BYTES, sealed.length - GCM_TAG_BYTES)),
      d.final(),
    ]);
  } catch {
    throw new KeyError("the data does not authenticate under this key");
  }
}

const requestAad = (keyId: string, externalId: string) => `${GCM_VERSION} request|${keyId}|${externalId}`;
const responseAad = (keyId: string, externalId: string, requestId: string) =>
  `${GCM_VERSION} response|${keyId}|${externalId}|${requestId}`;

export interface GcmRequest {
  externalId: string;
  externalKey: string;
  requestId: string;
  /** Unix seconds. */
  issuedAt: number;
}

/** The Authorization header of a GCM request, and the request id the answer is bound to. */
export function gcmAuthorization(
  key: Buffer,
  keyId: string,
  externalId: string,
  externalKey: string,
  now: number = Date.now(),
  requestId: string = randomBytes(16).toString("hex"),
): { header: string; requestId: string } {
  const body = JSON.stringify({
    v: 1,
    external_id: externalId,
    external_key: externalKey,
    request_id: requestId,
    iat: Math.floor(now / 1000),
  });
  const token = seal(key, Buffer.from(body, "utf8"), requestAad(keyId, externalId)).toString("base64url");
  return { header: `${GCM_SCHEME}${keyId}.${token}`, requestId };
}

/** Splits `<keyId>.<token>` (the part after `Thing-GCM `). */
export function gcmParts(value: string): { keyId: string; token: string } {
  const dot = value.indexOf(".");
  if (dot <= 0) throw new KeyError("the GCM authorization is not <key id>.<token>");
  const keyId = value.slice(0, dot);
  const token = value.slice(dot + 1);
  if (!KEY_ID.test(keyId) || !/^[A-Za-z0-9_-]+$/.test(token))
    throw new KeyError("the GCM authorization is not <key id>.<token>");
  return { keyId, token };
}

/** Opens and checks the shape of a GCM request; the window and replay checks are the caller's. */
export function gcmOpenRequest(key: Buffer, keyId: string, externalId: string, token: string): GcmRequest {
  const plain = open(key, Buffer.from(token, "base64url"), requestAad(keyId, externalId));
  const parsed = parseJsonBounded(plain, { maxBytes: GCM_REQUEST_BYTES });
  if (!parsed.ok) throw new KeyError("the GCM request is not JSON within its limits");
  const v = parsed.value;
  const o = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
  if (
    o.v !== 1 ||
    o.external_id !== externalId ||
    typeof o.external_key !== "string" ||
    typeof o.request_id !== "string" ||
    !/^[0-9a-f]{32}$/.test(o.request_id) ||
    typeof o.iat !== "number" ||
    !Number.isInteger(o.iat)
  )
    throw new KeyError("the GCM request does not match the requested external id");
  return { externalId, externalKey: o.external_key, requestId: o.request_id, issuedAt: o.iat };
}

export function gcmSealResponse(
  key: Buffer,
  keyId: string,
  externalId: string,
  requestId: string,
  plain: Buffer,
): Buffer {
  return seal(key, plain, responseAad(keyId, externalId, requestId));
}

export function gcmOpenResponse(
  key: Buffer,
  keyId: string,
  externalId: string,
  requestId: string,
  sealed: Buffer,
): Buffer {
  return open(key, sealed, responseAad(keyId, externalId, requestId));
}

/**
 * Remembers request ids until their window has passed, so a captured request cannot be
 * played again. Bounded: when full, ids that expired are dropped first, then the oldest.
 * Over a store shared by several instances (StoreBackend.shared: PostgreSQL) an id is
 * also claimed there, single use until its window has passed (backend.claimOnce), so a
 * request captured at one instance and played to another is refused too; the memory
 * here then only spares the store a write for a replay to the same instance.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly max = 100000,
    private readonly store?: StoreBackend,
  ) {}

  /**
   * True the first time an id is offered, across every instance over a shared store.
   * A store that cannot be written refuses (STORE passes up as an error): accepting
   * would let a replay through.
   */
  async claim(id: string, expiresAtMs: number, now: number = Date.now()): Promise<boolean> {
    if (!this.consume(id, expiresAtMs, now)) return false;
    if (!this.store?.shared) return true;
    const ttl = Math.max(1, Math.ceil(expiresAtMs - now));
    // Hashed: the key names no request id; "#" keeps it apart from records (lib/service/records.ts).
    const key = `mainflux/#replay/${createHash("sha256").update(id, "utf8").digest("hex")}`;
    return this.store.claimOnce(key, ttl);
  }

  /** True the first time an id is offered (and remembers it until expiresAtMs). */
  consume(id: string, expiresAtMs: number, now: number = Date.now()): boolean {
    const until = this.seen.get(id);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.max) this.prune(now);
    this.seen.set(id, expiresAtMs);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  private prune(now: number): void {
    for (const [id, until] of this.seen) if (until <= now) this.seen.delete(id);
    // Still full: the oldest insertions go (Map keeps insertion order).
    for (const id of this.seen.keys()) {
      if (this.seen.size < this.max) break;
      this.seen.delete(id);
    }
  }
}
