import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileBackend } from "../../../lib/stores/file";
import { fileNameFor } from "../../../lib/stores/file-names";
import type { JsonValue } from "../../../lib/stores/backend";

describe("unit/stores/file", () => {
  const root = mkdtempSync(join(tmpdir(), "store-file-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const freshDir = () => join(root, `s${++n}`);
  const FAST = 1 << 12;

  function code(c: string) {
    return (err: unknown) => {
      assert.equal((err as { code?: string }).code, c, String(err));
      return true;
    };
  }

  function snapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const f of readdirSync(dir).sort()) out[f] = readFileSync(join(dir, f), "latin1");
    return out;
  }

  const SECRET = "s3cr3t-T0KEN-value-that-must-not-leak";
  const pem =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

  it("round trip: set, get, list without values, delete, and again after reopening", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir });
    const value = { token: SECRET, certificate: pem, nested: { a: [1, 2, null] } };
    const stored = await s.set("tb/device-1", value, {
      protocol: "thingsboard",
      endpoint: "mqtts://tb.example:8883",
      kind: "ACCESS_TOKEN",
      obtainedAt: "2026-01-02T03:04:05.000Z",
    });
    assert.deepEqual(stored.value, value);
    assert.equal(stored.meta.protocol, "thingsboard");
    await s.set("plain-string", "just a string");
    const got = await s.get("tb/device-1");
    assert.deepEqual(got?.value, value);
    assert.equal(got?.meta.obtainedAt, "2026-01-02T03:04:05.000Z");
    assert.equal(got?.meta.endpoint, "mqtts://tb.example:8883");
    assert.equal(got?.expired, false);
    assert.equal((await s.get("plain-string"))?.value, "just a string");
    assert.equal(await s.get("missing"), undefined);

    const list = await s.list();
    assert.deepEqual(
      list.map((e) => e.key),
      ["plain-string", "tb/device-1"],
    );
    for (const e of list) assert.equal("value" in e, false);
    assert.equal(JSON.stringify(list).includes(SECRET), false);
    await s.close();

    const again = new FileBackend({ directory: dir });
    assert.deepEqual(
      (await again.list()).map((e) => e.key),
      ["plain-string", "tb/device-1"],
    );
    assert.deepEqual((await again.get("tb/device-1"))?.value, value);
    assert.equal(await again.delete("tb/device-1"), true);
    assert.equal(await again.delete("tb/device-1"), false);
    assert.equal(await again.get("tb/device-1"), undefined);
    assert.deepEqual(
      (await again.list()).map((e) => e.key),
      ["plain-string"],
    );
    await again.close();
  });

  it("one file per key; any key maps to a valid name; modes 0700 and 0600", async () => {
    const dir = join(freshDir(), "nested", "store");
    const s = new FileBackend({ directory: dir });
    const keys = [
      "a/b/../c",
      "..",
      "with space and ü and 日本",
      "x".repeat(200),
      "ü".repeat(150),
      "CaSe",
      "case",
    ];
    for (const [i, k] of keys.entries()) await s.set(k, { i });
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const files = readdirSync(dir);
    assert.equal(files.length, keys.length);
    for (const f of files) {
      assert.match(f, /^[kh]-[0-9a-f]+\.json$/);
      assert.ok(f.length <= 255);
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    }
    // Hex keeps "CaSe" and "case" apart even on case-insensitive file systems.
    assert.notEqual(fileNameFor("CaSe").toLowerCase(), fileNameFor("case").toLowerCase());
    await s.close();
    const again = new FileBackend({ directory: dir });
    assert.deepEqual((await again.list()).map((e) => e.key).sort(), [...keys].sort());
    for (const [i, k] of keys.entries()) assert.deepEqual((await again.get(k))?.value, { i });
    await again.close();
  });

  it("encryption at rest: no secret bytes on disk, metadata readable, reopen with the key", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir, passphrase: "correct horse", scryptN: FAST });
    await s.set("dev", { token: SECRET, privateKey: pem }, { protocol: "thingsboard", kind: "ACCESS_TOKEN" });
    await s.set("dev2", SECRET);
    for (const f of readdirSync(dir)) {
      const bytes = readFileSync(join(dir, f));
      assert.equal(bytes.includes(SECRET), false, f);
      assert.equal(bytes.includes("PRIVATE KEY"), false, f);
      assert.equal(bytes.includes("correct horse"), false, f);
    }
    const raw = JSON.parse(readFileSync(join(dir, fileNameFor("dev")), "utf8")) as Record<string, unknown>;
    assert.equal((raw.meta as { protocol: string }).protocol, "thingsboard");
    assert.equal(raw.value, undefined);
    // A fresh IV per write: the same value sealed twice differs.
    const before = readFileSync(join(dir, fileNameFor("dev2")), "utf8");
    await s.set("dev2", SECRET);
    assert.notEqual(readFileSync(join(dir, fileNameFor("dev2")), "utf8"), before);
    assert.equal((await s.list()).length, 2);
    await s.close();

    const again = new FileBackend({ directory: dir, passphrase: "correct horse" });
    assert.deepEqual((await again.get("dev"))?.value, { token: SECRET, privateKey: pem });
    assert.equal((await again.get("dev2"))?.value, SECRET);
    await again.close();
  });

  it("the default scrypt cost works", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir, passphrase: "pw" });
    await s.set("k", { token: SECRET });
    await s.close();
    const header = JSON.parse(readFileSync(join(dir, "store.json"), "utf8")) as { kdf: { N: number } };
    assert.equal(header.kdf.N, 1 << 15);
    assert.deepEqual((await new FileBackend({ directory: dir, passphrase: "pw" }).get("k"))?.value, {
      token: SECRET,
    });
  });

  it("a wrong key gives WRONG_KEY and overwrites nothing", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir, passphrase: "right", scryptN: FAST });
    await s.set("dev", { token: SECRET });
    await s.close();
    const before = snapshot(dir);

    const wrong = new FileBackend({ directory: dir, passphrase: "wrong" });
    await assert.rejects(wrong.open(), code("WRONG_KEY"));
    await assert.rejects(wrong.get("dev"), code("WRONG_KEY"));
    await assert.rejects(wrong.set("dev", { token: "other" }), code("WRONG_KEY"));
    await assert.rejects(wrong.set("new", { token: "other" }), code("WRONG_KEY"));
    await assert.rejects(wrong.delete("dev"), code("WRONG_KEY"));
    await assert.rejects(wrong.list(), code("WRONG_KEY"));
    await wrong.close();
    assert.deepEqual(snapshot(dir), before);

    // Without any key, sealed entries cannot be read, and are not replaced by plain ones.
    const none = new FileBackend({ directory: dir });
    assert.deepEqual(
      (await none.list()).map((e) => e.key),
      ["dev"],
    );
    await assert.rejects(none.get("dev"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "WRONG_KEY");
      assert.equal(e.message.includes(SECRET), false);
      return true;
    });
    await assert.rejects(none.set("dev", "plain"), code("WRONG_KEY"));
    await none.close();
    assert.deepEqual(snapshot(dir), before);
  });

  it("a corrupt file gives CORRUPT, stays out of list, is not overwritten; delete removes it", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir, passphrase: "pw", scryptN: FAST });
    await s.set("good", { token: "good-token" });
    await s.set("tampered", { token: SECRET });
    await s.close();
    writeFileSync(join(dir, fileNameFor("broken")), '{"format":1,"key":"bro');
    const tamperedPath = join(dir, fileNameFor("tampered"));
    const rec = JSON.parse(readFileSync(tamperedPath, "utf8")) as { sealed: { data: string } };
    const data = Buffer.from(rec.sealed.data, "base64");
    data[0] ^= 1;
    rec.sealed.data = data.toString("base64");
    writeFileSync(tamperedPath, JSON.stringify(rec));
    const before = snapshot(dir);

    const again = new FileBackend({ directory: dir, passphrase: "pw" });
    await assert.rejects(again.get("broken"), code("CORRUPT"));
    await assert.rejects(again.get("tampered"), code("CORRUPT"));
    await assert.rejects(again.set("broken", { token: "x1234" }), code("CORRUPT"));
    await assert.rejects(again.set("tampered", { token: "x1234" }), code("CORRUPT"));
    await assert.rejects(
      again.update("tampered", () => ({ value: "y" })),
      code("CORRUPT"),
    );
    assert.deepEqual(snapshot(dir), before);
    assert.deepEqual(
      (await again.list()).map((e) => e.key),
      ["good", "tampered"],
    );
    assert.deepEqual((await again.get("good"))?.value, { token: "good-token" });
    assert.equal(await again.delete("broken"), true);
    await again.set("broken", { token: "fresh" });
    assert.deepEqual((await again.get("broken"))?.value, { token: "fresh" });
    await again.close();

    writeFileSync(join(dir, "store.json"), "{ not json");
    await assert.rejects(new FileBackend({ directory: dir, passphrase: "pw" }).open(), code("CORRUPT"));
  });

  it("a directory path that is a file, or lies under a file, gives a clear IO error", async () => {
    const file = join(freshDir() + "-file");
    writeFileSync(file, "i am a file");
    const a = new FileBackend({ directory: file });
    await assert.rejects(a.open(), (e: Error & { code?: string }) => {
      assert.equal(e.code, "IO");
      assert.match(e.message, /not a directory/);
      return true;
    });
    await assert.rejects(a.set("k", "v"), code("IO"));
    await assert.rejects(new FileBackend({ directory: join(file, "below") }).get("k"), code("IO"));
    assert.equal(readFileSync(file, "utf8"), "i am a file");
  });

  it("a read-only directory gives READ_ONLY on write, reads still work (chattr +i: root ignores chmod)", async function () {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir });
    await s.set("kept", { token: "kept-token" });
    if (spawnSync("chattr", ["+i", dir]).status !== 0) {
      await s.close();
      // Skipped: chattr +i is not available here (needs ext2/3/4 or similar and CAP_LINUX_IMMUTABLE)
      this.skip();
    }
    try {
      await assert.rejects(s.set("kept", { token: "other" }), code("READ_ONLY"));
      await assert.rejects(s.set("new", { token: "other" }), code("READ_ONLY"));
      await assert.rejects(s.delete("kept"), code("READ_ONLY"));
      assert.deepEqual((await s.get("kept"))?.value, { token: "kept-token" });
      assert.deepEqual(readdirSync(dir), [fileNameFor("kept")]);
      // Creating a new encrypted store inside it cannot write its header.
      const sub = join(dir, "sub");
      await assert.rejects(new FileBackend({ directory: sub }).open(), code("READ_ONLY"));
    } finally {
      spawnSync("chattr", ["-i", dir]);
      await s.close();
    }
  });

  /** Makes a tree readable (and its folders searchable) by everyone. */
  function chmodRecursive(dir: string): void {
    chmodSync(dir, 0o755);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) chmodRecursive(p);
      else chmodSync(p, 0o644);
    }
  }

  it("an unreadable directory gives READ_ONLY for a non-root writer (child process as nobody)", async function () {
    if (typeof process.getuid !== "function" || process.getuid() !== 0) {
      // Skipped: needs root to start a child as another user
      this.skip();
    }
    const dir = freshDir();
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700);
    // The child runs as nobody, who may not be able to read the checkout (a clone in a 0700
    // temporary folder): it gets its own readable copy of the compiled lib/.
    const lib = mkdtempSync(join(tmpdir(), "lib-for-nobody-"));
    cpSync(join(__dirname, "..", "..", "..", "lib"), lib, { recursive: true });
    chmodRecursive(lib);
    const script = `
    const { FileBackend } = require(${JSON.stringify(join(lib, "stores", "file.js"))});
    new FileBackend({ directory: ${JSON.stringify(dir)} }).get("k").then(
      () => console.log("ok"), (e) => console.log(e.code));`;
    const r = spawnSync(process.execPath, ["-e", script], { uid: 65534, gid: 65534, encoding: "utf8" });
    assert.equal(r.stdout.trim(), "READ_ONLY", r.stderr);
  });

  it("temp files left by a crashed writer are removed on open; live ones are kept", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir });
    await s.set("k", { v: 1 });
    await s.close();
    const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
    const deadPid = Number(dead.stdout.trim());
    const stale = `.tmp-${fileNameFor("k")}-${deadPid}-0123456789ab`;
    const live = `.tmp-${fileNameFor("k")}-1-0123456789ab`; // pid 1 is alive
    writeFileSync(join(dir, stale), '{"half');
    writeFileSync(join(dir, live), '{"half');
    const again = new FileBackend({ directory: dir });
    assert.deepEqual((await again.get("k"))?.value, { v: 1 });
    assert.equal(existsSync(join(dir, stale)), false);
    assert.equal(existsSync(join(dir, live)), true);
    assert.deepEqual(
      (await again.list()).map((e) => e.key),
      ["k"],
    );
    await again.close();
  });

  it("many simultaneous writes to one key leave one whole written value", async () => {
    const dir = freshDir();
    const a = new FileBackend({ directory: dir, passphrase: "pw", scryptN: FAST });
    const b = new FileBackend({ directory: dir, passphrase: "pw" });
    const written: JsonValue[] = [];
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const v = { i, pad: String(i).repeat(20000) };
      written.push(v);
      jobs.push((i % 2 ? a : b).set("same", v));
    }
    await Promise.all(jobs);
    const final = (await a.get("same"))?.value;
    assert.ok(written.some((w) => JSON.stringify(w) === JSON.stringify(final)));
    assert.deepEqual((await b.get("same"))?.value, final);
    assert.deepEqual(readdirSync(dir).sort(), [fileNameFor("same"), "store.json"].sort());
    JSON.parse(readFileSync(join(dir, fileNameFor("same")), "utf8"));

    // Through one instance the writes are serialised in call order: the last call wins.
    await Promise.all([1, 2, 3, 4, 5].map((i) => a.set("ordered", i)));
    assert.equal((await a.get("ordered"))?.value, 5);
    await a.close();
    await b.close();
  });

  it("values and keys that cannot be stored are refused and nothing is written", async () => {
    const dir = freshDir();
    const s = new FileBackend({ directory: dir });
    await s.set("k", { token: "kept-1" });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(s.set("k", (() => 1) as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("k", cyclic as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("k", undefined as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("", "x"), code("INVALID_KEY"));
    await assert.rejects(s.set("a\nb", "x"), code("INVALID_KEY"));
    await assert.rejects(s.get(undefined as unknown as string), code("INVALID_KEY"));
    assert.deepEqual((await s.get("k"))?.value, { token: "kept-1" });
    assert.deepEqual(readdirSync(dir), [fileNameFor("k")]);
    await s.close();
    await assert.rejects(s.set("k", "after close"), code("IO"));
    const again = new FileBackend({ directory: dir });
    assert.deepEqual((await again.get("k"))?.value, { token: "kept-1" }, "nothing is written after close");
    await again.close();
  });
});
