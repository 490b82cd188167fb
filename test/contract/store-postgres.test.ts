/**
 * The StoreBackend contract (store-backend.contract.ts) and the records registry over the
 * PostgreSQL backend, plain and encrypted, on a private server (test/support/postgres.ts).
 * Each backend gets a table of its own (its namespace).
 */
import { after, before, describe } from "mocha";
import type { StoreBackend } from "../../lib/stores/backend";
import { PostgresBackend, type PostgresBackendOptions } from "../../lib/stores/postgres";
import { POSTGRES_MISSING, postgresBin, roleOf, startPostgres, type PgServer } from "../support/postgres";
import { storeBackendContract, type BackendUnderTest } from "./store-backend.contract";
import { recordsContract } from "./records.contract";

describe("contract/store-postgres", () => {
  let pg: PgServer | undefined;
  before(async function () {
    // No server binaries: nothing to run against (scripts/ensure-peers.sh installs them).
    if (!postgresBin()) {
      console.warn(POSTGRES_MISSING);
      this.skip();
    }
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.remove();
  });

  let n = 0;
  const options = (namespace: string, passphrase?: string): PostgresBackendOptions => {
    return {
      ...roleOf(pg as PgServer),
      namespace,
      passphrase,
      scryptN: passphrase ? 1 << 12 : undefined,
    };
  };
  const where = new WeakMap<StoreBackend, string>();
  const made = (namespace: string, passphrase?: string) => {
    const b = new PostgresBackend(options(namespace, passphrase));
    where.set(b, namespace);
    return b;
  };

  const backends: BackendUnderTest[] = [
    {
      name: "postgres",
      make: async () => made(`contract_${++n}`),
      reopen: async (b) => made(where.get(b) as string),
    },
    {
      name: "encrypted postgres",
      make: async () => made(`contract_${++n}`, "contract-passphrase"),
      reopen: async (b) => made(where.get(b) as string, "contract-passphrase"),
    },
  ];
  for (const b of backends) storeBackendContract(b);
  for (const b of backends) recordsContract({ name: b.name, make: b.make });
});
