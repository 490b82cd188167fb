/** Builds the backend a credential-store-config node describes. */
import { join } from "node:path";
import { StoreError, type StoreBackend } from "./backend";
import { ContextBackend, type ContextApi } from "./context";
import { FileBackend } from "./file";
import { TokenFileBackend } from "./token-file";

export type StoreKind = "file" | "token-file" | "context";

export interface StoreConfig {
  backend?: string;
  /** file: the directory; empty = `<userDir>/provisioning-credentials`. */
  directory?: string;
  /** token-file: empty = $THINGSBOARD_ACCESS_TOKEN, else ./tb_access_token. */
  tokenPath?: string;
  /** context: a store name from settings.js contextStorage; empty = the default store. */
  contextStore?: string;
  contextPrefix?: string;
  /** file only: values sealed with a key derived from `encryptionKey`. */
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

export function storeKind(v: unknown): StoreKind {
  if (v === undefined || v === "" || v === "file") return "file";
  if (v === "token-file" || v === "context") return v;
  throw new StoreError("UNSUPPORTED", `unknown store backend "${String(v).slice(0, 40)}"`);
}

/** Synchronous, so a config node has its backend at once; `open()` does the slow part. */
export function createStore(cfg: StoreConfig, deps: StoreDeps): OpenableStore {
  const kind = storeKind(cfg.backend);
  if (kind === "file") {
    const directory = cfg.directory?.trim() || join(deps.userDir, DEFAULT_DIRECTORY_NAME);
    if (cfg.encrypt && !cfg.encryptionKey)
      throw new StoreError("WRONG_KEY", "encryption is on but no encryption key is set");
    return new FileBackend({
      directory,
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
