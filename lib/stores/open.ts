/** Builds the backend a credential-store-config node describes. */
import { join } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { StoreError, type StoreBackend } from "./backend";
import { ContextBackend, type ContextApi } from "./context";
import { FileBackend } from "./file";
import { JournalBackend } from "./journal";
import { PostgresBackend } from "./postgres";
import { urlHasPassword } from "./postgres-config";
import { TokenFileBackend } from "./token-file";

/**
 * file: one file per entry (easy to inspect, for a device's few entries); journal: one
 * append-only log with group commit (for a registry of many devices: each write durable
 * before it resolves, many writes per fsync); token-file: ThingsBoard's tb_access_token;
 * context: a Node-RED context store; postgres: a table in a PostgreSQL database, shared by
 * several Node-RED instances.
 */
export type StoreKind = "file" | "journal" | "token-file" | "context" | "postgres";

export interface StoreConfig {
  backend?: string;
  /**
   * file: the directory. Empty: the store's own folder `<userDir>/provisioning-stores/<ownFolder>`
   * when `ownFolder` is given, else the folder every such store shared before,
   * `<userDir>/provisioning-credentials` (kept for stores deployed before, so their entries stay).
   */
  directory?: string;
  /** file: the name of this store's own default folder (the config node's id). */
  ownFolder?: string;
  /** token-file: empty = $THINGSBOARD_ACCESS_TOKEN, else ./tb_access_token. */
  tokenPath?: string;
  /** context: a store name from settings.js contextStorage; empty = the default store. */
  contextStore?: string;
  contextPrefix?: string;
  /** postgres: a URL (postgres://user@host:port/database) with no password in it, or the fields below. */
  pgUrl?: string;
  pgHost?: string;
  pgPort?: number;
  pgDatabase?: string;
  pgUser?: string;
  /** postgres: the password (a credential; `${ENV}` resolved by the node). */
  pgPassword?: string;
  /** postgres: TLS from a tls-config node; the server's certificate is always verified. */
  pgTls?: ConnectionOptions;
  /** postgres: the store's table. */
  pgNamespace?: string;
  pgPoolSize?: number;
  /** file, journal and postgres: values sealed with a key derived from `encryptionKey`. */
  encrypt?: boolean;
  encryptionKey?: string;
  /** For tests: scrypt cost of a new encrypted directory. */
  scryptN?: number;
}

export interface StoreDeps {
  /** Node-RED's user directory (RED.settings.userDir). */
  userDir: string;
  /** The global context, for the context backend. */
  context?: ContextApi;
  /** Store names configured in settings.js; unknown names are refused (Node-RED would silently use the default). */
  contextStores?: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** A backend that can be opened ahead of its first use, so problems show at deploy. */
export type OpenableStore = StoreBackend & { open(): Promise<void> };

export const DEFAULT_DIRECTORY_NAME = "provisioning-credentials";
/** Where stores with no directory get a folder each, named by `ownFolderName()`. */
export const OWN_FOLDERS_NAME = "provisioning-stores";

/**
 * A folder name for a config node id: letters, digits, "_" and "-" stay, every other
 * character becomes "~" and its code point in hex, so "." and "/" never reach the path
 * and two ids never share a name.
 */
export function ownFolderName(id: string): string {
  const name = id.replace(/[^A-Za-z0-9_-]/gu, (c) => `~${(c.codePointAt(0) as number).toString(16)}~`);
  if (name === "") throw new StoreError("UNSUPPORTED", "a store's own folder needs a non-empty id");
  return name;
}

/** The directory a file or journal store uses (see `StoreConfig.directory`). */
export function fileDirectory(cfg: StoreConfig, userDir: string): string {
  const set = cfg.directory?.trim();
  if (set) return set;
  if (cfg.ownFolder !== undefined) return join(userDir, OWN_FOLDERS_NAME, ownFolderName(cfg.ownFolder));
  return join(userDir, DEFAULT_DIRECTORY_NAME);
}

export function storeKind(v: unknown): StoreKind {
  if (v === undefined || v === "" || v === "file") return "file";
  if (v === "journal" || v === "token-file" || v === "context" || v === "postgres") return v;
  throw new StoreError("UNSUPPORTED", `unknown store backend "${String(v).slice(0, 40)}"`);
}

/** Synchronous, so a config node has its backend at once; `open()` does the slow part. */
export function createStore(cfg: StoreConfig, deps: StoreDeps): OpenableStore {
  const kind = storeKind(cfg.backend);
  if (kind === "file" || kind === "journal") {
    const directory = fileDirectory(cfg, deps.userDir);
    if (cfg.encrypt && !cfg.encryptionKey)
      throw new StoreError("WRONG_KEY", "encryption is on but no encryption key is set");
    const opts = { directory, passphrase: cfg.encrypt ? cfg.encryptionKey : undefined, scryptN: cfg.scryptN };
    return kind === "file" ? new FileBackend(opts) : new JournalBackend(opts);
  }
  if (kind === "postgres") {
    if (cfg.encrypt && !cfg.encryptionKey)
      throw new StoreError("WRONG_KEY", "encryption is on but no encryption key is set");
    // The URL is kept in the flow file: a password there would be readable by anyone with it.
    if (urlHasPassword(cfg.pgUrl))
      throw new StoreError(
        "UNSUPPORTED",
        "the PostgreSQL URL is kept in the flow file: give the password in the password field, not in the URL",
      );
    return new PostgresBackend({
      url: cfg.pgUrl,
      host: cfg.pgHost?.trim() || undefined,
      port: cfg.pgPort,
      database: cfg.pgDatabase?.trim() || undefined,
      user: cfg.pgUser?.trim() || undefined,
      password: cfg.pgPassword || undefined,
      tls: cfg.pgTls,
      namespace: cfg.pgNamespace?.trim() || undefined,
      poolSize: cfg.pgPoolSize,
      passphrase: cfg.encrypt ? cfg.encryptionKey : undefined,
      scryptN: cfg.scryptN,
    });
  }
  if (kind === "token-file")
    return new TokenFileBackend({ path: cfg.tokenPath?.trim(), env: deps.env, cwd: deps.cwd });
  if (!deps.context) throw new StoreError("UNSUPPORTED", "no context is available for the context store");
  const store = cfg.contextStore?.trim() || undefined;
  if (store !== undefined && deps.contextStores && !deps.contextStores.includes(store))
    throw new StoreError(
      "UNSUPPORTED",
      `the context store "${store}" is not configured in settings.js contextStorage`,
    );
  return new ContextBackend({ context: deps.context, store, prefix: cfg.contextPrefix?.trim() || undefined });
}
