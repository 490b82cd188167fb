import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Records } from "../../../lib/service/records";
import { JournalBackend } from "../../../lib/stores/journal";
import { within } from "../../support/events";

describe("unit/stores/journal", () => {
  const root = mkdtempSync(join(tmpdir(), "store-journal-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const freshDir = () => join(root, `s${++n}`);
  const FAST = 1 << 12;
  const segments = (dir: string) =>
    readdirSync(dir)
      .filter((f) => /^seg-\d{10}\.log$/.test(f))
      .sort();

  function code(c: string) {
    return (err: unknown) => {
      assert.equal((err as { code?: string }).code, c, String(err));
      return true;
    };
  }

  it("a write resolves only after the fdatasync that covers it; writes queued meanwhile share the next one", async () => {
    const dir = freshDir();
    const batches: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let syncStarted!: () => void;
    const started = new Promise<void>((r) => (syncStarted = r));
    const s = new JournalBackend({
      directory: dir,
      beforeSync: async (records) => {
        batches.push(records);
        if (batches.length === 1) {
          syncStarted();
          await gate;
        }
      },
    });
    await s.open();
    let firstDone = false;
    const first = s.set("g/first", { n: 0 }).then(() => (firstDone = true));
    await started;
    const rest = Array.from({ length: 200 }, (_, i) => s.set(`g/${i}`, { n: i }));
    // New keys need no read before their append: one turn of the event loop queues them all.
    await new Promise((r) => setImmediate(r));
    assert.equal(s.stats().queued, 200);
    assert.equal(firstDone, false, "a write resolved before its fdatasync");
    assert.equal(s.counters.syncs, 0);
    release();
    await first;
    await Promise.all(rest);
    assert.deepEqual(batches, [1, 200]);
    assert.equal(s.counters.syncs, 2);
    assert.equal(s.counters.records, 201);
    await s.close();
    const again = new JournalBackend({ directory: dir });
    assert.equal((await again.list("g/")).length, 201);
    assert.deepEqual((await again.get("g/199"))?.value, { n: 199 });
    await again.close();
  });

  it("under a storm of concurrent writes far fewer fsyncs than writes", async () => {
    const s = new JournalBackend({ directory: freshDir() });
    const N = 3000;
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        await s.set(`storm/${i}`, { i, token: "t".repeat(40) });
      }
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    const { records, syncs } = s.counters;
    console.log(
      `      ${records} writes at concurrency 100: ${syncs} fdatasyncs (${(syncs / records).toFixed(3)} a write)`,
    );
    assert.equal(records, N);
    // One record per sync would be no group commit at all.
    assert.ok(syncs < records / 2, `${syncs} syncs for ${records} writes`);
    assert.equal(s.stats().keys, N);
    await s.close();
  });

  it("deletes in a crowded index (long probe runs) leave every other key findable, before and after reopening", async () => {
    const dir = freshDir();
    const s = new JournalBackend({ directory: dir });
    const N = 5000;
    let next = 0;
    const run = (fn: (i: number) => Promise<unknown>) =>
      Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < N) await fn(next++);
        }),
      );
    await run((i) => s.set(`d/${i}`, { i }));
    next = 0;
    await run(async (i) => {
      if (i % 3 === 0) assert.equal(await s.delete(`d/${i}`), true);
    });
    const verify = async (b: JournalBackend) => {
      for (let i = 0; i < N; i++) {
        const got = await b.get(`d/${i}`);
        if (i % 3 === 0) assert.equal(got, undefined, `d/${i} was deleted`);
        else assert.deepEqual(got?.value, { i }, `d/${i}`);
      }
      assert.equal(b.stats().keys, N - Math.ceil(N / 3));
    };
    await verify(s);
    await s.close();
    const again = new JournalBackend({ directory: dir });
    await verify(again);
    await again.close();
  });

  for (const encrypted of [false, true]) {
    it(`kill -9 mid-storm: every acknowledged write is there after reopening, a torn tail is dropped (${encrypted ? "encrypted" : "plain"})`, async () => {
      const dir = freshDir();
      const pass = encrypted ? "journal-crash-pass" : "";
      const KEYS = 300;
      const child = spawn(
        process.execPath,
        [join(__dirname, "fixtures", "journal-writer.js"), dir, pass, "50"],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      let err = "";
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      const exited = once(child, "exit");
      await within<void>(60000, "1,500 acknowledged writes", (resolve) => {
        let acked = 0;
        child.stdout.on("data", (c: Buffer) => {
          const text = c.toString();
          out += text;
          acked += text.split("ok ").length - 1;
          if (acked >= 1500) {
            child.kill("SIGKILL");
            resolve();
          }
        });
        child.once("exit", () => resolve());
      });
      const [, signal] = (await exited) as [number | null, string | null];
      assert.equal(signal, "SIGKILL", `writer was not killed: ${err}`);
      const acked = [...out.matchAll(/^ok (\d+)$/gm)].map((m) => Number(m[1]));
      const lastAcked = new Map<number, number>();
      for (const i of acked) lastAcked.set(i % KEYS, Math.max(i, lastAcked.get(i % KEYS) ?? -1));

      const check = async () => {
        const s = new JournalBackend({ directory: dir, passphrase: pass || undefined });
        for (const [k, i] of lastAcked) {
          const got = (await s.get(`k/${k}`))?.value as { i: number; body: string } | undefined;
          assert.ok(got, `k/${k} (acknowledged as ${i}) is missing`);
          assert.ok(got.i >= i && got.i % KEYS === k, `k/${k} holds ${got.i}, acknowledged ${i}`);
          assert.equal(got.body, "x".repeat(200 + (got.i % 50)));
        }
        return s;
      };
      const s1 = await check();
      await s1.close();

      // A torn record at the end (a header that promises more than is there), as a crash
      // in the middle of a write leaves it: dropped on open, and appending goes on.
      const last = join(dir, segments(dir).at(-1) as string);
      const before = statSync(last).size;
      const torn = Buffer.alloc(30, 7);
      torn.writeUInt32LE(500, 0);
      appendFileSync(last, torn);
      const s2 = await check();
      assert.equal(statSync(last).size, before);
      await s2.set("after/crash", { ok: true });
      await s2.close();
      const s3 = await check();
      assert.deepEqual((await s3.get("after/crash"))?.value, { ok: true });
      await s3.close();
    });
  }

  it("compaction keeps every live value and no deleted one, also with writes under way and after reopening", async () => {
    const dir = freshDir();
    const opts = { directory: dir, segmentBytes: 16 * 1024, compactMinBytes: 64 * 1024 };
    const s = new JournalBackend(opts);
    const expected = new Map<string, number>();
    const body = "v".repeat(400);
    for (let round = 0; round < 30; round++) {
      await Promise.all(
        Array.from({ length: 40 }, (_, k) => {
          expected.set(`c/${k}`, round);
          return s.set(`c/${k}`, { round, body });
        }),
      );
    }
    for (let k = 0; k < 10; k++) {
      assert.equal(await s.delete(`c/${k}`), true);
      expected.delete(`c/${k}`);
    }
    assert.ok(s.counters.compactions > 0, "the log was mostly dead records and no compaction ran");
    // Compaction and writes at the same time.
    const writes = Array.from({ length: 40 }, (_, k) => {
      if (k < 20) {
        expected.set(`c/${k}`, 99);
        return s.set(`c/${k}`, { round: 99, body });
      }
      expected.delete(`c/${k}`);
      return s.delete(`c/${k}`);
    });
    await Promise.all([s.compact(), ...writes]);
    await s.compact();
    const verify = async (b: JournalBackend) => {
      for (let k = 0; k < 40; k++) {
        const got = (await b.get(`c/${k}`))?.value as { round: number } | undefined;
        assert.equal(got?.round, expected.get(`c/${k}`), `c/${k}`);
      }
      assert.deepEqual(
        (await b.list("c/")).map((e) => e.key),
        [...expected.keys()].sort(),
      );
    };
    await verify(s);
    const { logBytes, liveBytes } = s.stats();
    assert.ok(logBytes < 3 * liveBytes + 1024, `log ${logBytes} bytes for ${liveBytes} live`);
    await s.close();
    assert.ok(segments(dir).length <= 2, segments(dir).join(" "));
    const again = new JournalBackend(opts);
    await verify(again);
    await again.close();
  });

  it("list while every key is overwritten and the log compacted lists each key once", async () => {
    const s = new JournalBackend({ directory: freshDir(), segmentBytes: 8192 });
    const N = 500;
    const keys = Array.from({ length: N }, (_, i) => `l/${String(i).padStart(3, "0")}`);
    await Promise.all(keys.map((k) => s.set(k, { v: 1 }, { kind: "first" })));
    const [listed] = await Promise.all([
      s.list("l/"),
      ...keys.map((k) => s.set(k, { v: 2 }, { kind: "second" })),
      s.compact(),
    ]);
    assert.deepEqual(
      listed.map((e) => e.key),
      keys,
    );
    assert.deepEqual(
      (await s.list("l/")).map((e) => e.meta.kind),
      Array(N).fill("second"),
    );
    assert.deepEqual(await s.list("none/"), []);
    await s.close();
  });

  it("a compaction stopped between its rename and removing the old segments: the old ones are ignored and removed", async () => {
    const dir = freshDir();
    const s = new JournalBackend({ directory: dir, segmentBytes: 4096 });
    for (let i = 0; i < 40; i++) await s.set(`r/${i % 4}`, { i, body: "b".repeat(300) });
    await s.delete("r/0");
    const old = segments(dir);
    const saved = join(root, `saved-${old[0]}`);
    copyFileSync(join(dir, old[0]), saved);
    await s.compact();
    await s.close();
    assert.ok(!segments(dir).includes(old[0]));
    // Put the first old segment back, as if the crash came before its unlink; and a
    // compaction's temp file that never got renamed.
    copyFileSync(saved, join(dir, old[0]));
    writeFileSync(join(dir, `${old[1]}.abcd.tmp`), "partial");
    const again = new JournalBackend({ directory: dir });
    assert.equal(await again.get("r/0"), undefined);
    for (let k = 1; k < 4; k++) assert.equal(((await again.get(`r/${k}`))?.value as { i: number }).i, 36 + k);
    assert.ok(!existsSync(join(dir, old[0])));
    assert.ok(!readdirSync(dir).some((f) => f.endsWith(".tmp")));
    await again.close();
  });

  it("a record and its index claims go to the log in one batch, claims first; a claim whose record is not written writes nothing", async () => {
    const dir = freshDir();
    const batches: number[] = [];
    const s = new JournalBackend({ directory: dir, beforeSync: (records) => void batches.push(records) });
    type Rec = { name: string; ids: string[] };
    const records = new Records<Rec>(s, { dialect: "test", indexes: { cred: (r) => r.ids } });
    const add = (name: string, ids: string[]) =>
      records.claim("cred", ids, { group: "g", id: name }, (cur) =>
        cur ? { result: false } : { next: { name, ids }, result: true },
      );
    assert.deepEqual(await add("a", ["x", "y"]), { taken: false, result: true });
    assert.deepEqual(batches, [3], "two claims and the record in one fdatasync");
    // Present already: create writes nothing, and neither do its claims.
    assert.deepEqual(await add("a", ["z"]), { taken: false, result: false });
    assert.equal(s.counters.records, 3);
    assert.equal((await add("b", ["y"])).taken, true);
    assert.equal(s.counters.records, 3);
    // Parallel claims of one value: one record holds it, and the log has its claim.
    const both = await Promise.all([add("c", ["w"]), add("d", ["w"])]);
    assert.equal(both.filter((o) => !o.taken && o.result).length, 1);
    assert.equal(s.counters.records, 5);
    await s.close();
    // The log holds each claim ahead of its record: cut after the claims, the claims stay
    // (stale, taken over by the next claim) and the record is gone.
    const seg = join(dir, segments(dir)[0]);
    const frames: { key: string; end: number }[] = [];
    const log = readFileSync(seg);
    for (let off = 0; off < log.length;) {
      const len = 8 + log.readUInt32LE(off);
      frames.push({
        key: log.toString("utf8", off + 11, off + 11 + log.readUInt16LE(off + 9)),
        end: off + len,
      });
      off += len;
    }
    assert.deepEqual(
      frames.slice(0, 3).map((f) => f.key.replace(/#cred\/[0-9a-f]+$/, "#cred/…")),
      ["test/#cred/…", "test/#cred/…", "test/g/a"],
    );
    writeFileSync(seg, log.subarray(0, frames[1].end));
    const again = new JournalBackend({ directory: dir });
    const reread = new Records<Rec>(again, { dialect: "test", indexes: { cred: (r) => r.ids } });
    assert.equal(await reread.get({ group: "g", id: "a" }), undefined);
    assert.equal(await reread.lookup("cred", "x"), undefined);
    const retried = await reread.claim("cred", ["x", "y"], { group: "g", id: "e" }, (cur) =>
      cur ? { result: false } : { next: { name: "e", ids: ["x", "y"] }, result: true },
    );
    assert.equal(retried.taken, false);
    assert.equal((await reread.lookup("cred", "y"))?.address.id, "e");
    await again.close();
  });

  it("list(prefix) finds the keys of a first segment through writes, deletes, overwrites and reopening", async () => {
    const dir = freshDir();
    const keysOf = async (s: JournalBackend, prefix: string) => (await s.list(prefix)).map((e) => e.key);
    let s = new JournalBackend({ directory: dir });
    await s.set("other/x", { n: 0 });
    assert.deepEqual(await keysOf(s, "tb/"), []);
    await s.set("tb/a", { n: 1 });
    await s.set("tb/a", { n: 2 });
    await s.set("tb/b", { n: 3 });
    assert.deepEqual(await keysOf(s, "tb/"), ["tb/a", "tb/b"]);
    await s.delete("tb/a");
    assert.deepEqual(await keysOf(s, "tb/"), ["tb/b"]);
    await s.close();
    s = new JournalBackend({ directory: dir });
    assert.deepEqual(await keysOf(s, "tb/"), ["tb/b"]);
    assert.deepEqual(await keysOf(s, "tb/b"), ["tb/b"]);
    await s.delete("tb/b");
    assert.deepEqual(await keysOf(s, "tb/"), []);
    await s.set("tb-credentials/c", { n: 4 });
    await s.close();
    s = new JournalBackend({ directory: dir });
    assert.deepEqual(await keysOf(s, "tb/"), []);
    assert.deepEqual(await keysOf(s, "tb"), ["tb-credentials/c"]);
    assert.deepEqual(await keysOf(s, ""), ["other/x", "tb-credentials/c"]);
    await s.compact();
    assert.deepEqual(await keysOf(s, "tb-credentials/"), ["tb-credentials/c"]);
    await s.close();
  });

  it("modes, one writer per directory, WRONG_KEY and CORRUPT as the file backend has them", async () => {
    const dir = freshDir();
    const s = new JournalBackend({ directory: dir, passphrase: "right", scryptN: FAST });
    await s.set("secret", { token: "s3cr3t-journal" });
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    for (const f of segments(dir))
      assert.doesNotMatch(readFileSync(join(dir, f), "latin1"), /s3cr3t-journal/);
    await assert.rejects(new JournalBackend({ directory: dir }).get("secret"), code("IO"));
    // The damaged record is found by get (its CRC), not served.
    const seg = join(dir, segments(dir)[0]);
    const bytes = readFileSync(seg);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(seg, bytes);
    await assert.rejects(s.get("secret"), code("CORRUPT"));
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(seg, bytes);
    await s.close();
    await assert.rejects(
      new JournalBackend({ directory: dir, passphrase: "wrong", scryptN: FAST }).get("secret"),
      code("WRONG_KEY"),
    );
    const plain = new JournalBackend({ directory: dir });
    await assert.rejects(plain.get("secret"), code("WRONG_KEY"));
    // Refused rather than replaced: an entry this store cannot read.
    await assert.rejects(plain.set("secret", { token: "other" }), code("WRONG_KEY"));
    await plain.close();
    // A damaged record in a sealed segment is damage, not a torn tail.
    const s2 = new JournalBackend({ directory: dir, passphrase: "right", scryptN: FAST, segmentBytes: 1 });
    await s2.set("a", { v: 1 });
    await s2.set("b", { v: 2 });
    await s2.close();
    const first = join(dir, segments(dir)[0]);
    const b2 = readFileSync(first);
    b2[20] ^= 0xff;
    writeFileSync(first, b2);
    await assert.rejects(new JournalBackend({ directory: dir, passphrase: "right" }).open(), code("CORRUPT"));
  });

  it("a read-only directory: reads work, writes give READ_ONLY (chattr +i: root ignores chmod)", async function () {
    const dir = freshDir();
    const s = new JournalBackend({ directory: dir });
    await s.set("kept", { token: "kept-token" });
    await s.close();
    if (spawnSync("chattr", ["+i", dir]).status !== 0) {
      // Skipped: chattr +i is not available here (needs ext2/3/4 or similar and CAP_LINUX_IMMUTABLE)
      this.skip();
    }
    const ro = new JournalBackend({ directory: dir });
    try {
      assert.deepEqual((await ro.get("kept"))?.value, { token: "kept-token" });
      assert.deepEqual(
        (await ro.list()).map((e) => e.key),
        ["kept"],
      );
      await assert.rejects(ro.set("kept", { token: "other" }), code("READ_ONLY"));
      await assert.rejects(ro.delete("kept"), code("READ_ONLY"));
      await assert.rejects(new JournalBackend({ directory: join(dir, "sub") }).open(), code("READ_ONLY"));
    } finally {
      await ro.close();
      spawnSync("chattr", ["-i", dir]);
    }
  });

  it("100,000 keys: the index holds well under 20 MB, and open reads them in chunks (figures printed)", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const held = () => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const dir = freshDir();
    const N = 100_000;
    const w = new JournalBackend({ directory: dir });
    let next = 0;
    const value = { credentialsType: "ACCESS_TOKEN", credentialsValue: "t".repeat(20), profile: "default" };
    const worker = async () => {
      while (next < N) {
        const i = next++;
        await w.set(`thingsboard/devices/default/device-${i}`, value, { kind: "ACCESS_TOKEN" });
      }
    };
    await Promise.all(Array.from({ length: 500 }, worker));
    await w.close();

    const base = held();
    const r = new JournalBackend({ directory: dir });
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    const t0 = performance.now();
    await r.open();
    const openMs = performance.now() - t0;
    clearInterval(ticker);
    const grown = held() - base;
    const { keys, indexBytes, logBytes } = r.stats();
    console.log(
      `      ${keys} keys, log ${(logBytes / 1048576).toFixed(1)} MiB: open ${openMs.toFixed(0)} ms ` +
        `(longest turn of the event loop ${longest.toFixed(1)} ms), held ${(grown / 1048576).toFixed(1)} MiB ` +
        `(${(grown / keys).toFixed(0)} bytes a key; index ${(indexBytes / 1048576).toFixed(1)} MiB)`,
    );
    assert.equal(keys, N);
    assert.ok(grown < 20 * 1048576, `${grown} bytes held for ${N} keys`);
    assert.deepEqual((await r.get("thingsboard/devices/default/device-77777"))?.value, value);
    await r.close();
  }).timeout(600000);
});
