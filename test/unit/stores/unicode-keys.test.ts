import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoreBackend } from "../../../lib/stores/backend";
import { ContextBackend, type ContextApi } from "../../../lib/stores/context";
import { FileBackend } from "../../../lib/stores/file";
import { MemoryBackend } from "../../../lib/stores/memory";
import { TokenFileBackend } from "../../../lib/stores/token-file";
import { ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { DeviceRegistry } from "../../../lib/service/registry";
import {
  realGlobalContext,
  startStoreServer,
  stopStoreServer,
  storeHelper,
} from "../../support/store-helper";

// Three names that UTF-8 encoding (Buffer.from, TextEncoder) maps to the same bytes
// EF BF BD when the first two hold lone surrogates (WHATWG Encoding: "replacement").
const LONE_HIGH = "\ud800-x";
const LONE_LOW = "\udc00-x";
const REPLACEMENT = "\ufffd-x";

const root = mkdtempSync(join(tmpdir(), "store-unicode-"));
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
const dir = () => {
  const d = join(root, `d${++n}`);
  mkdirSync(d);
  return d;
};

function invalidKey(err: unknown): boolean {
  assert.equal((err as { code?: string }).code, "INVALID_KEY", String(err));
  assert.match((err as Error).message, /well-formed Unicode|lone surrogate/);
  return true;
}

async function refusesLoneSurrogates(s: StoreBackend, value: Record<string, string>) {
  for (const key of [LONE_HIGH, LONE_LOW, "tb/fleet/a\ud800", "\udfff"]) {
    await assert.rejects(s.set(key, value), invalidKey);
    await assert.rejects(s.get(key), invalidKey);
    await assert.rejects(
      s.update(key, () => ({ value })),
      invalidKey,
    );
    await assert.rejects(s.delete(key), invalidKey);
  }
  // The well-formed neighbours still work, a surrogate pair (an emoji) included.
  await s.set(REPLACEMENT, value);
  assert.deepEqual((await s.get(REPLACEMENT))?.value, value);
  await s.set("\ud83d\ude00-x", value);
  assert.deepEqual((await s.get("\ud83d\ude00-x"))?.value, value);
}

test("memory store: keys with lone surrogates are refused, U+FFFD and pairs are kept", async () => {
  const s = new MemoryBackend();
  await refusesLoneSurrogates(s, { token: "t" });
  assert.deepEqual((await s.list()).map((e) => e.key).sort(), ["\ud83d\ude00-x", REPLACEMENT].sort());
});

test("file store: lone surrogates never map to the U+FFFD file", async () => {
  const s = new FileBackend({ directory: join(dir(), "s") });
  await refusesLoneSurrogates(s, { token: "t" });
  assert.equal((await s.list()).length, 2);
  await s.close();
});

test("token file store: keys with lone surrogates are refused", async () => {
  const s = new TokenFileBackend({ path: join(dir(), "tb_access_token") });
  await refusesLoneSurrogates(s, { token: "token-value-1" });
  await s.close();
});

test("context store: lone surrogates never map to the U+FFFD variable", async () => {
  const s = new ContextBackend({ context: ctx, prefix: "uni_" });
  await refusesLoneSurrogates(s, { token: "t" });
  assert.equal((await s.list()).length, 2);
});

test("registry: device names and profiles with lone surrogates are refused as INVALID", async () => {
  const reg = new DeviceRegistry(new MemoryBackend(), "thingsboard");
  for (const name of [LONE_HIGH, LONE_LOW]) {
    assert.throws(
      () => reg.key("fleet", name),
      (err: Error & { code?: string }) => err.code === "INVALID" && /device name.*Unicode/.test(err.message),
    );
    await assert.rejects(
      reg.add("fleet", { name }),
      (err: Error & { code?: string }) => err.code === "INVALID",
    );
  }
  assert.throws(
    () => reg.key("\ud800", "dev"),
    (err: Error & { code?: string }) => err.code === "INVALID" && /profile name/.test(err.message),
  );
  assert.equal(await reg.add("fleet", { name: REPLACEMENT }), true);
  assert.equal(await reg.add("fleet", { name: REPLACEMENT }), false);
  assert.deepEqual(
    (await reg.list()).map((d) => d.name),
    [REPLACEMENT],
  );
});

test("Mainflux configurations: external ids and thing ids with lone surrogates are INVALID, not a store failure", async () => {
  const reg = new ConfigRegistry(new MemoryBackend());
  await reg.load();
  for (const cfg of [
    { external_id: LONE_HIGH, external_key: "k" },
    { external_id: LONE_LOW, external_key: "k" },
    { external_id: "ok-id", external_key: "k", thing_id: LONE_LOW },
  ]) {
    await assert.rejects(
      async () => reg.add(cfg),
      (err: Error & { code?: string }) => err.code === "INVALID" && /Unicode/.test(err.message),
    );
  }
  assert.equal((await reg.add({ external_id: REPLACEMENT, external_key: "k" })).external_id, REPLACEMENT);
  assert.equal(reg.size, 1);
});
