/**
 * N instances over one PostgreSQL table, as the scale tests make them: a private server
 * for the suite (./postgres.ts), skipped with a warning where PostgreSQL is not installed,
 * and backends with pools of their own over one namespace, closed after the suite. Call
 * it inside a describe().
 */
import { after, before } from "mocha";
import { PostgresBackend } from "../../lib/stores/postgres";
import { POSTGRES_MISSING, postgresBin, roleOf, startPostgres, type PgServer } from "./postgres";

export interface PgInstances {
  /** Two backends (two instances) over one new table named `<prefix>_<n>`, open. */
  over(prefix: string): Promise<[PostgresBackend, PostgresBackend]>;
}

export function pgInstances(): PgInstances {
  let pg: PgServer | undefined;
  const open: PostgresBackend[] = [];
  let n = 0;
  before(async function () {
    if (!postgresBin()) {
      console.warn(POSTGRES_MISSING);
      this.skip();
    }
    pg = await startPostgres();
  });
  after(async () => {
    for (const b of open) await b.close();
    await pg?.remove();
  });
  return {
    over: async (prefix) => {
      const opts = { ...roleOf(pg as PgServer), namespace: `${prefix}_${++n}` };
      const a = new PostgresBackend(opts);
      const b = new PostgresBackend({ ...opts });
      open.push(a, b);
      await Promise.all([a.open(), b.open()]);
      return [a, b];
    },
  };
}
