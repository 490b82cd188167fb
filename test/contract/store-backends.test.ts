/**
 * Every StoreBackend under one contract (store-backend.contract.ts), and the records
 * registry (lib/service/records.ts) over every backend that holds more than one entry.
 */
import { after, before, describe } from "mocha";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoreBackend } from "../../lib/stores/backend";
import { ContextBackend, type ContextApi } from "../../lib/stores/context";
import { FileBackend } from "../../lib/stores/file";
import { JournalBackend } from "../../lib/stores/journal";
import { MemoryBackend } from "../../lib/stores/memory";
import { TokenFileBackend } from "../../lib/stores/token-file";
import { realGlobalContext, startStoreServer, stopStoreServer, storeHelper } from "../support/store-helper";
import { storeBackendContract, type BackendUnderTest } from "./store-backend.contract";
import { recordsContract } from "./records.contract";

describe("contract/store-backends", () => {
  const root = mkdtempSync(join(tmpdir(), "store-contract-"));
  let ctx: ContextApi;
  before(async () => {
    await startStoreServer();
    ctx = await realGlobalContext();
  });
  after(async () => {
    await storeHelper.unload();
    await stopStoreServer();
    rmSync(root, { recursive: true, force: true });
  });

  let n = 0;
  const fresh = () => {
    const d = join(root, `d${++n}`);
    mkdirSync(d);
    return d;
  };
  /** A cheap scrypt cost: the contract is about semantics, not key derivation. */
  const SCRYPT_N = 1 << 12;
  const PASSPHRASE = "contract-passphrase";

  const where = new WeakMap<StoreBackend, string>();
  function remember<B extends StoreBackend>(b: B, place: string): B {
    where.set(b, place);
    return b;
  }

  const backends: BackendUnderTest[] = [
    { name: "memory", make: async () => new MemoryBackend() },
    {
      name: "file",
      make: async () => {
        const directory = join(fresh(), "s");
        return remember(new FileBackend({ directory }), directory);
      },
      reopen: async (b) => new FileBackend({ directory: where.get(b) as string }),
    },
    {
      name: "encrypted file",
      make: async () => {
        const directory = join(fresh(), "s");
        return remember(new FileBackend({ directory, passphrase: PASSPHRASE, scryptN: SCRYPT_N }), directory);
      },
      reopen: async (b) =>
        new FileBackend({ directory: where.get(b) as string, passphrase: PASSPHRASE, scryptN: SCRYPT_N }),
    },
    {
      name: "journal",
      make: async () => {
        const directory = join(fresh(), "s");
        return remember(new JournalBackend({ directory }), directory);
      },
      reopen: async (b) => new JournalBackend({ directory: where.get(b) as string }),
    },
    {
      name: "encrypted journal",
      make: async () => {
        const directory = join(fresh(), "s");
        return remember(
          new JournalBackend({ directory, passphrase: PASSPHRASE, scryptN: SCRYPT_N }),
          directory,
        );
      },
      reopen: async (b) =>
        new JournalBackend({ directory: where.get(b) as string, passphrase: PASSPHRASE, scryptN: SCRYPT_N }),
    },
    {
      name: "Node-RED context (the runtime's global context)",
      make: async () => {
        const prefix = `contract${++n}_`;
        return remember(new ContextBackend({ context: ctx, prefix }), prefix);
      },
      reopen: async (b) => new ContextBackend({ context: ctx, prefix: where.get(b) as string }),
    },
    {
      // One token under any key, metadata kept in memory only: no reopen, no second entry.
      name: "token file",
      make: async () => new TokenFileBackend({ path: join(fresh(), "tb_access_token") }),
      singleEntry: true,
    },
  ];

  for (const b of backends) storeBackendContract(b);
  for (const b of backends) if (!b.singleEntry) recordsContract({ name: b.name, make: b.make });
});
