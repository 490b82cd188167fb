/** The test PostgreSQL of test/support/postgres.ts: up, password auth, killed and started again. */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { Client } from "pg";
import { postgresBin, startPostgres, type PgServer } from "../../support/postgres";

describe("unit/stores/postgres-server (the test server itself)", () => {
  let pg: PgServer;
  before(async function () {
    // Without the binaries there is no server to start; ensure-peers.sh installs them.
    if (!postgresBin()) this.skip();
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.remove();
  });

  it("accepts the store role with its password, refuses a wrong one, and comes back after a kill", async () => {
    const c = new Client({ connectionString: pg.url() });
    await c.connect();
    assert.equal((await c.query("SELECT current_user AS u")).rows[0].u, pg.user);
    await c.end();
    const wrong = new Client({
      host: pg.host,
      port: pg.port,
      user: pg.user,
      password: "wrong",
      database: pg.database,
    });
    await assert.rejects(wrong.connect(), /password authentication failed/);
    const before = pg.pid();
    await pg.kill();
    assert.equal(pg.pid(), undefined);
    await pg.start();
    assert.notEqual(pg.pid(), before);
    const rows = await pg.query("SELECT 1 AS one");
    assert.equal(rows[0].one, 1);
  });
});
