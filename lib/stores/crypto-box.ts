import { createCipheriv, createDecipheriv, randomBytes, scrypt, type ScryptOptions } from "node:crypto";
import { StoreError } from "./backend";

/** What an encrypted value looks like on disk; every field is base64. */
export interface SealedBox {
  alg: "aes-256-gcm";
  iv: string;
  tag: string;
  data: string;
}

export interface KdfParams {
  name: "scrypt";
  /** base64, random per store directory. */
  salt: string;
  N: number;
  r: number;
  p: number;
}

/** Costs about 100 ms and 32 MiB once per open: slow for guessing, fine for a deploy. */
export const DEFAULT_SCRYPT_N = 1 << 15;

export function newKdfParams(N = DEFAULT_SCRYPT_N): KdfParams {
  return { name: "scrypt", salt: randomBytes(16).toString("base64"), N, r: 8, p: 1 };
}

export function deriveKey(passphrase: string, kdf: KdfParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + (1 << 20) };
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize("NFC"), Buffer.from(kdf.salt, "base64"), 32, opts, (err, key) =>
      err
        ? reject(new StoreError("UNSUPPORTED", `cannot derive the encryption key (${err.message})`))
        : resolve(key),
    );
  });
}

/** AES-256-GCM with a fresh 12-byte IV; `aad` binds the box to its place (the entry key). */
export function seal(key: Buffer, plaintext: Buffer, aad: string): SealedBox {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(aad, "utf8"));
  const data = Buffer.concat([c.update(plaintext), c.final()]);
  return {
    alg: "aes-256-gcm",
    iv: iv.toString("base64"),
    tag: c.getAuthTag().toString("base64"),
    data: data.toString("base64"),
  };
}

/** Undefined when the tag does not verify (wrong key or altered bytes); the caller names which. */
export function unseal(key: Buffer, box: SealedBox, aad: string): Buffer | undefined {
  try {
    const iv = Buffer.from(box.iv, "base64");
    const tag = Buffer.from(box.tag, "base64");
    if (box.alg !== "aes-256-gcm" || iv.length !== 12 || tag.length !== 16) return undefined;
    const d = createDecipheriv("aes-256-gcm", key, iv);
    d.setAAD(Buffer.from(aad, "utf8"));
    d.setAuthTag(tag);
    return Buffer.concat([d.update(Buffer.from(box.data, "base64")), d.final()]);
  } catch {
    return undefined;
  }
}

export function isSealedBox(v: unknown): v is SealedBox {
  const b = v as Partial<SealedBox> | null;
  return (
    typeof b === "object" &&
    b !== null &&
    typeof b.alg === "string" &&
    typeof b.iv === "string" &&
    typeof b.tag === "string" &&
    typeof b.data === "string"
  );
}

export function isKdfParams(v: unknown): v is KdfParams {
  const k = v as Partial<KdfParams> | null;
  return (
    typeof k === "object" &&
    k !== null &&
    k.name === "scrypt" &&
    typeof k.salt === "string" &&
    Number.isInteger(k.N) &&
    Number.isInteger(k.r) &&
    Number.isInteger(k.p)
  );
}
