/**
 * The header of an encrypted store directory (`store.json`): the scrypt parameters and a
 * key check sealed under the derived key, so that a wrong passphrase is told apart from a
 * damaged entry. Shared by the file and the journal backend.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { StoreError } from "./backend";
import { atomicCreate, ioError } from "./fs-util";
import { HEADER_FILE } from "./file-names";
import {
  deriveKey,
  isKdfParams,
  isSealedBox,
  newKdfParams,
  seal,
  unseal,
  type KdfParams,
  type SealedBox,
} from "./crypto-box";

const HEADER_FORMAT = "node-red-contrib-provisioning/credential-store";
const KEY_CHECK = "credential-store key check v1";
const HEADER_AAD = "header";

export interface StoreHeader {
  format: string;
  version: 1;
  kdf: KdfParams;
  check: SealedBox;
}

/** A new header for `passphrase` (fresh salt), and the key it holds the check of. */
export async function newStoreHeader(
  passphrase: string,
  scryptN?: number,
): Promise<{ key: Buffer; header: StoreHeader }> {
  const kdf = newKdfParams(scryptN);
  const key = await deriveKey(passphrase, kdf);
  const header: StoreHeader = {
    format: HEADER_FORMAT,
    version: 1,
    kdf,
    check: seal(key, Buffer.from(KEY_CHECK), HEADER_AAD),
  };
  return { key, header };
}

/**
 * The key a stored header (parsed JSON, or undefined when it did not parse) gives for
 * `passphrase`: CORRUPT when it is damaged, WRONG_KEY when the key check does not open.
 * `header` and `store` name them in messages ("the store header <header>", "the store <store>").
 */
export async function keyFromHeader(
  parsed: unknown,
  passphrase: string,
  header: string,
  store: string,
): Promise<Buffer> {
  const h = parsed as Partial<StoreHeader> | undefined;
  if (
    typeof h !== "object" ||
    h === null ||
    h.format !== HEADER_FORMAT ||
    !isKdfParams(h.kdf) ||
    !isSealedBox(h.check)
  )
    throw new StoreError("CORRUPT", `the store header ${header} is damaged`);
  const key = await deriveKey(passphrase, h.kdf);
  const check = unseal(key, h.check, HEADER_AAD);
  if (!check || check.toString() !== KEY_CHECK)
    throw new StoreError("WRONG_KEY", `the encryption key does not open the store ${store}`);
  return key;
}

/**
 * The key from the header in `dir`, made at first open; the key check tells WRONG_KEY
 * from CORRUPT. `scryptN` is the cost of a NEW header only.
 */
export async function openStoreKey(dir: string, passphrase: string, scryptN?: number): Promise<Buffer> {
  const path = join(dir, HEADER_FILE);
  for (;;) {
    let text: string | undefined;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(err, `cannot read ${path}`);
    }
    if (text === undefined) {
      const { key, header } = await newStoreHeader(passphrase, scryptN);
      const created = await atomicCreate(path, JSON.stringify(header, null, 2) + "\n").catch(
        (err: unknown) => {
          throw ioError(err, `cannot create ${path}`);
        },
      );
      if (created) return key;
      continue; // another instance created it at the same moment: use theirs
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new StoreError("CORRUPT", `the store header ${path} is not valid JSON`);
    }
    return keyFromHeader(parsed, passphrase, path, `in ${dir}`);
  }
}
