/**
 * What users of the PostgreSQL backend depend on, on a private server
 * (test/support/postgres.ts): several instances on one table stay exactly-once, a dump
 * holds no token, a wrong key is refused, a server crash is IO and then over, and no text
 * holds a password.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { Client } from "pg";
import { StoreError, type EntryChange, type JsonValue } from "../../../lib/stores/backend";
import { PostgresBackend, type PostgresBackendOptions } from "../../../lib/stores/postgres";
import { PROJECT_ROOT } from "../../support/node-red";
import { run } from "../../support/process";
import { POSTGRES_MISSING, postgresBin, roleOf, startPostgres, type PgServer } from "../../support/postgres";

function coded(code: StoreError["code"]) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, String(err));
    assert.equal(err.code, code, String(err));
    return true;
  };
}

describe("unit/stores/postgres", () => {
  let pg: PgServer;
  const open: PostgresBackend[] = [];
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

  let n = 0;
  const options = (extra: Partial<PostgresBackendOptions> = {}): PostgresBackendOptions => ({
    ...roleOf(pg),
    namespace: `t_${++n}`,
    ...extra,
  });
  const backend = (opts: PostgresBackendOptions) => {
    const b = new PostgresBackend(opts);
    open.push(b);
    return b;
  };
  /** Two "instances": backends of their own (pools of their own) over one table. */
  const twoInstances = async (extra: Partial<PostgresBackendOptions> = {}) => {
    const opts = options(extra);
    const a = backend(opts);
    const b = backend({ ...opts });
    await Promise.all([a.open(), b.open()]);
    return [a, b] as const;
  };
  const rows = async (table: string) => pg.query(`SELECT * FROM "${table}" ORDER BY key`, [], pg.database);

  it("six instances opening one new table at once all open it (the DDL is serialised)", async () => {
    for (let round = 0; round < 5; round++) {
      const opts = options({ passphrase: round % 2 ? "shared" : undefined, scryptN: 1 << 12, poolSize: 1 });
      const many = Array.from({ length: 6 }, () => new PostgresBackend({ ...opts }));
      try {
        await Promise.all(many.map((b) => b.open()));
        await many[0]!.set("k", { round });
        const seen = await Promise.all(many.map(async (b) => (await b.get("k"))?.value));
        assert.deepEqual(
          seen,
          Array.from({ length: 6 }, () => ({ round })),
        );
      } finally {
        await Promise.all(many.map((b) => b.close()));
      }
    }
  });

  it("two instances racing createIfAbsent on 200 keys: exactly one winner each, both see it", async () => {
    const [a, b] = await twoInstances();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        Promise.all([
          a.createIfAbsent(`race/c${i}`, { by: "a", i }),
          b.createIfAbsent(`race/c${i}`, { by: "b", i }),
        ]),
      ),
    );
    for (const [ra, rb] of results) {
      assert.equal(Number(ra.created) + Number(rb.created), 1, "exactly one of the two created it");
      assert.deepEqual(ra.entry.value, rb.entry.value, "both name the same winner");
    }
    const wonByA = results.filter(([ra]) => ra.created).length;
    // Which instance wins is up to the scheduler; each stored value is its winner's.
    for (const [i, [ra, rb]] of results.entries())
      assert.deepEqual((await b.get(`race/c${i}`))?.value, (ra.created ? ra : rb).entry.value);
    assert.ok(wonByA >= 0 && wonByA <= 200);
  });

  it("two instances racing update() on one key 200 times: no update is lost", async () => {
    const [a, b] = await twoInstances();
    const inc = (cur: { value: JsonValue } | undefined) => ({
      value: { n: (cur ? (cur.value as { n: number }).n : 0) + 1 },
    });
    await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).update("race/counter", inc)));
    assert.deepEqual((await a.get("race/counter"))?.value, { n: 200 });
    // And create-unless-present through update(): one of 2 x 50 writes.
    const made = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 ? a : b).update("race/once", (cur) => (cur ? undefined : { value: { by: i } })),
      ),
    );
    assert.equal(made.filter((m) => m !== undefined).length, 1);
  });

  it("two instances: claims, counters and two uniques hold across them", async () => {
    const [a, b] = await twoInstances();
    const claims = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        Promise.all([a.claimOnce(`req/${i}`, 60000), b.claimOnce(`req/${i}`, 60000)]),
      ),
    );
    for (const [x, y] of claims) assert.equal(Number(x) + Number(y), 1);
    const counts = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).count("fail/addr", 3600000)),
    );
    assert.deepEqual(
      [...counts].sort((x, y) => x - y),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    // A Mainflux external id and a thing id, taken together or not at all.
    const take = (s: PostgresBackend, ext: string, thing: string) =>
      s.updateMany([`u/ext/${ext}`, `u/thing/${thing}`], (cur) =>
        [...cur.values()].some((e) => e)
          ? undefined
          : new Map<string, EntryChange>([
              [`u/ext/${ext}`, { value: { thing } }],
              [`u/thing/${thing}`, { value: { ext } }],
            ]),
      );
    const taken = await Promise.all(
      Array.from({ length: 40 }, (_, i) => take(i % 2 ? a : b, `e${i % 4}`, `t${Math.floor(i / 8)}`)),
    );
    const listed = await a.list("u/");
    const exts = listed.filter((e) => e.key.startsWith("u/ext/")).map((e) => e.key);
    const things = listed.filter((e) => e.key.startsWith("u/thing/")).map((e) => e.key);
    assert.equal(exts.length, things.length, "every external id has its thing id, and back");
    assert.equal(taken.filter((t) => t).length, exts.length);
    for (const key of exts) {
      const thing = ((await a.get(key))?.value as { thing: string }).thing;
      assert.deepEqual((await b.get(`u/thing/${thing}`))?.value, { ext: key.slice("u/ext/".length) });
    }
  });

  it("sealed: the table holds no token and no value in plain text", async () => {
    const opts = options({ passphrase: "the passphrase", scryptN: 1 << 12 });
    const b = backend(opts);
    await b.set(
      "dev/1",
      { token: "SECRET-TOKEN-1", nested: { k: "SECRET-KEY-1" } },
      { kind: "ACCESS_TOKEN" },
    );
    await b.update("dev/2", () => ({ value: { token: "SECRET-TOKEN-2" } }));
    await b.createIfAbsent("dev/3", "SECRET-TOKEN-3");
    await b.updateMany(["dev/4"], () => new Map([["dev/4", { value: { token: "SECRET-TOKEN-4" } }]]));
    const dump = JSON.stringify(await rows(opts.namespace as string));
    assert.doesNotMatch(dump, /SECRET/);
    assert.match(dump, /aes-256-gcm/);
    assert.match(dump, /"kind":"ACCESS_TOKEN"/, "metadata stays readable for listing");
    assert.deepEqual((await b.get("dev/1"))?.value, {
      token: "SECRET-TOKEN-1",
      nested: { k: "SECRET-KEY-1" },
    });
    assert.equal((await b.get("dev/3"))?.value, "SECRET-TOKEN-3");
    // A row moved to another key does not open there (the key is bound to the box).
    await pg.query(
      `UPDATE "${opts.namespace}" SET value = (SELECT value FROM "${opts.namespace}" WHERE key = 'dev/1') WHERE key = 'dev/2'`,
      [],
      pg.database,
    );
    await assert.rejects(b.get("dev/2"), coded("CORRUPT"));
  });

  it("a wrong encryption key is WRONG_KEY, and so is no key on an encrypted store", async () => {
    const opts = options({ passphrase: "right key", scryptN: 1 << 12 });
    const right = backend(opts);
    await right.set("k", { token: "t1" });
    const wrong = backend({ ...opts, passphrase: "wrong key" });
    await assert.rejects(wrong.open(), coded("WRONG_KEY"));
    await assert.rejects(wrong.get("k"), coded("WRONG_KEY"));
    await assert.rejects(wrong.set("k", { token: "overwritten" }), coded("WRONG_KEY"));
    const none = backend({ ...opts, passphrase: undefined });
    await assert.rejects(none.open(), (err: unknown) => {
      coded("WRONG_KEY")(err);
      assert.match((err as Error).message, /encrypted/);
      return true;
    });
    assert.deepEqual((await right.get("k"))?.value, { token: "t1" }, "nothing was overwritten");
    // Two instances opening a new encrypted store at once agree on one header.
    const fresh = options({ passphrase: "shared", scryptN: 1 << 12 });
    const [x, y] = [backend(fresh), backend({ ...fresh })];
    await Promise.all([x.open(), y.open()]);
    await x.set("a", { v: 1 });
    assert.deepEqual((await y.get("a"))?.value, { v: 1 });
  });

  it("server killed with SIGKILL: operations fail with IO, none hangs or crashes, then all work again", async () => {
    const opts = options({ connectTimeoutMs: 2000, queryTimeoutMs: 5000 });
    const b = backend(opts);
    await b.set("k", { v: 1 });
    // Idle connections in the pool when the server dies: their "error" must not throw.
    await Promise.all([b.get("k"), b.get("k")]);
    // An operation in flight when it dies: updateMany waits for a row another session holds.
    const holder = new Client({ connectionString: pg.url() });
    holder.on("error", () => undefined);
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query(`SELECT * FROM "${opts.namespace}" WHERE key = 'k' FOR UPDATE`);
    // Its outcome is taken at once, so the rejection during the kill is never unhandled.
    const waiting = b
      .updateMany(["k"], () => new Map([["k", { value: { v: 2 } }]]))
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    // Wait until the server shows it waiting for the lock (an event in the server, not a sleep).
    for (;;) {
      const w = await pg.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1",
        [pg.database],
      );
      if ((w[0] as { n: number }).n > 0) break;
    }
    await pg.kill();
    coded("IO")(await waiting);
    await holder.end().catch(() => undefined);
    for (const op of [
      () => b.get("k"),
      () => b.set("k", { v: 3 }),
      () => b.update("k", () => ({ value: { v: 4 } })),
      () => b.createIfAbsent("k2", { v: 1 }),
      () => b.claimOnce("c", 1000),
      () => b.count("n", 1000),
      () => b.list(),
      () => b.delete("k"),
    ])
      await assert.rejects(op(), (err: unknown) => {
        coded("IO")(err);
        assert.ok(!(err as Error).message.includes(pg.password), "no password in the error");
        return true;
      });
    // A store opened while the server is down fails, and opens once it is back.
    const late = backend({ ...opts });
    await assert.rejects(late.open(), coded("IO"));
    await pg.start();
    assert.deepEqual((await b.get("k"))?.value, { v: 1 }, "what was committed before the crash is there");
    await b.set("k", { v: 5 });
    assert.deepEqual((await late.get("k"))?.value, { v: 5 });
    assert.equal((await b.updateMany(["k"], () => new Map([["k", null]])))?.get("k"), undefined);
  });

  it("a server that answers nothing: operations fail with IO after their timeout, then work again", async () => {
    const b = backend(options({ connectTimeoutMs: 1000, queryTimeoutMs: 1000 }));
    await b.set("k", { v: 1 });
    pg.pause();
    try {
      // An idle pooled connection (query timeout) and a new one (connect timeout) both give up.
      const results = await Promise.allSettled([b.get("k"), b.set("k", { v: 2 }), b.list()]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        coded("IO")((r as PromiseRejectedResult).reason);
      }
    } finally {
      pg.resume();
    }
    // Whichever of them reached the server before it froze may have been applied.
    assert.ok([1, 2].includes(((await b.get("k"))?.value as { v: number }).v));
    await b.set("k", { v: 3 });
    assert.deepEqual((await b.get("k"))?.value, { v: 3 });
  });

  it("errors and descriptions never hold the password, from the fields or from a URL", async () => {
    const secret = "pa:ss@w/rd%secret";
    const viaUrl = backend({
      url: `postgres://${pg.user}:${encodeURIComponent(secret)}@127.0.0.1:${pg.port}/${pg.database}`,
      namespace: "t_url",
    });
    assert.equal(viaUrl.describe(), `postgres ${pg.database}@127.0.0.1:${pg.port} table t_url`);
    await assert.rejects(viaUrl.open(), (err: unknown) => {
      coded("IO")(err);
      const msg = (err as Error).message;
      assert.match(msg, /password authentication failed/);
      assert.ok(!msg.includes(secret) && !msg.includes(encodeURIComponent(secret)), msg);
      return true;
    });
    // The field wins over the URL's password, and the URL's database is used.
    const fixed = backend({
      url: `postgres://${pg.user}:${encodeURIComponent(secret)}@127.0.0.1:${pg.port}/${pg.database}`,
      password: pg.password,
      namespace: `t_${++n}`,
    });
    await fixed.set("k", { v: 1 });
    assert.ok(!fixed.describe().includes(pg.password));
    for (const bad of [
      { url: "postgres://u:hunter2@[bad" },
      { url: "mysql://u:hunter2@h/db" },
      { url: "postgres://u:hunter2@h/db?sslmode=allow" },
      { url: "postgres://u:hunter2@h/db?sslrootcert=/x" },
    ])
      assert.throws(
        () => new PostgresBackend(bad),
        (err: unknown) => {
          coded("UNSUPPORTED")(err);
          assert.doesNotMatch((err as Error).message, /hunter2/);
          return true;
        },
      );
  });

  it("pg is loaded when a store opens, not when the backend module is", async () => {
    const probe = `
      const { createStore } = require("./dist/lib/stores/open");
      const loaded = () => Object.keys(require.cache).some((k) => /[\\/]node_modules[\\/]pg[\\/]/.test(k));
      const s = createStore({ backend: "postgres", pgHost: "127.0.0.1", pgPort: ${pg.port}, pgDatabase: "x" }, { userDir: "/tmp" });
      const before = loaded();
      s.open().catch(() => undefined).then(() => { console.log(JSON.stringify({ before, after: loaded() })); return s.close(); });
    `;
    const r = await run(process.execPath, ["-e", probe], { cwd: PROJECT_ROOT });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.toString()), { before: false, after: true });
  });

  it("namespaces: checked, quoted, one table each; list escapes LIKE's wildcards", async () => {
    for (const bad of ["", "1abc", "a-b", 'x"; DROP TABLE y; --', "a".repeat(49), "ä"])
      assert.throws(() => new PostgresBackend(options({ namespace: bad || "?" })), coded("UNSUPPORTED"));
    const one = backend(options({ namespace: "Mixed_Case" }));
    const two = backend(options({ namespace: "mixed_case" }));
    await one.set("a%/x", { v: 1 });
    await one.set("ab/x", { v: 2 });
    await one.set("a_/y", { v: 3 });
    await one.set("a\\/z", { v: 4 });
    assert.deepEqual((await two.list()).length, 0, "another namespace is another table");
    assert.deepEqual(
      (await one.list("a%")).map((e) => e.key),
      ["a%/x"],
    );
    assert.deepEqual(
      (await one.list("a_")).map((e) => e.key),
      ["a_/y"],
    );
    assert.deepEqual(
      (await one.list("a\\")).map((e) => e.key),
      ["a\\/z"],
    );
    assert.deepEqual(
      (await one.list("a")).map((e) => e.key),
      ["a%/x", "a\\/z", "a_/y", "ab/x"],
    );
    assert.throws(() => new PostgresBackend(options({ poolSize: 0 })), coded("UNSUPPORTED"));
  });

  it("pruning removes expired claims and counters only, a bounded number at a time", async () => {
    const opts = options();
    const b = backend(opts);
    const seed = async () => {
      for (let i = 0; i < 5; i++)
        await b.set(
          `claims/${i}`,
          { claimedAt: "2001-01-01T00:00:00.000Z" },
          { kind: "store-claim", expiresAt: "2001-01-01T00:01:00.000Z" },
        );
      await b.set(
        "fail/x",
        { n: 3, since: "2001-01-01T00:00:00.000Z" },
        { kind: "store-count", expiresAt: "2001-01-01T01:00:00.000Z" },
      );
    };
    await seed();
    await b.set("cert/old", { token: "kept" }, { expiresAt: "2001-01-01T00:00:00.000Z" });
    assert.equal(await b.pruneExpired(4), 4);
    assert.equal(await b.pruneExpired(), 2);
    assert.equal(await b.pruneExpired(), 0);
    assert.equal((await b.get("cert/old"))?.expired, true, "an expired credential stays, flagged");
    // Lazily: a claim starts one prune in the background, and close() waits for it.
    await seed();
    assert.equal(await b.claimOnce("claims/live", 3600000), true);
    await b.close();
    const again = backend({ ...opts });
    assert.deepEqual(
      (await again.list()).map((e) => e.key),
      ["cert/old", "claims/live"],
    );
  });
});
