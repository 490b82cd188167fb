/**
 * The PostgreSQL backend over TLS, against a private server offering TLS with a test CA's
 * certificate (test/support/pki.ts): the CA given is trusted, the server's certificate is
 * verified whatever the options say, and a server the CA did not sign is refused as IO.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { StoreError } from "../../../lib/stores/backend";
import { PostgresBackend, type PostgresBackendOptions } from "../../../lib/stores/postgres";
import { makeTestPki, type TestPki } from "../../support/pki";
import { POSTGRES_MISSING, postgresBin, startPostgres, type PgServer } from "../../support/postgres";

describe("unit/stores/postgres-tls", () => {
  let pg: PgServer;
  let pki: TestPki;
  let other: TestPki;
  before(async function () {
    if (!postgresBin()) {
      console.warn(POSTGRES_MISSING);
      this.skip();
    }
    pki = makeTestPki("PgTls");
    other = makeTestPki("Other");
    pg = await startPostgres({ tls: { cert: pki.serverCert, key: pki.serverKey } });
  });
  after(async () => {
    await pg?.remove();
    for (const p of [pki, other]) if (p) rmSync(p.dir, { recursive: true, force: true });
  });

  let n = 0;
  const options = (tls: PostgresBackendOptions["tls"]): PostgresBackendOptions => ({
    host: "127.0.0.1",
    port: pg.port,
    database: pg.database,
    user: pg.user,
    password: pg.password,
    namespace: `tls_${++n}`,
    tls,
    connectTimeoutMs: 5000,
  });
  const isIo = (err: unknown) => {
    assert.ok(err instanceof StoreError, String(err));
    assert.equal(err.code, "IO", String(err));
    assert.doesNotMatch(err.message, new RegExp(pg.password));
    return true;
  };

  it("with the CA of the server's certificate: the connection is TLS", async () => {
    const b = new PostgresBackend(options({ ca: pki.caCert }));
    await b.set("k", { token: "over-tls" });
    assert.deepEqual((await b.get("k"))?.value, { token: "over-tls" });
    const rows = await pg.query(
      "SELECT count(*)::int AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1 AND s.ssl",
      [pg.user],
    );
    assert.ok((rows[0] as { n: number }).n > 0, "the store's connections use TLS");
    await b.close();
  });

  it("another CA, or none, is refused as IO, even when the options ask not to verify", async () => {
    for (const tls of [
      { ca: other.caCert },
      {},
      { ca: other.caCert, rejectUnauthorized: false },
      { rejectUnauthorized: false },
    ]) {
      const b = new PostgresBackend(options(tls));
      await assert.rejects(b.open(), isIo);
      await b.close();
    }
  });
});
