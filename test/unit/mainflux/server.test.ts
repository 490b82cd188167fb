import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, describe, it } from "mocha";
import {
  cfbAuthorization,
  cfbDecrypt,
  cfbKey,
  gcmAuthorization,
  gcmKey,
} from "../../../lib/dialects/mainflux/crypto";
import { MAX_MANAGE_BODY_BYTES } from "../../../lib/dialects/mainflux/wire";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { answerBeforeBody } from "../../support/http-peers";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import {
  bootstrapHandler,
  MainfluxBootstrapService,
  type HandlerOptions,
} from "../../../lib/dialects/mainflux/server";
import { CONFIG_KEY_PREFIX, ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { RateLimiter } from "../../../lib/service/rate-limit";
import { MemoryBackend } from "../../../lib/stores/memory";
import type { ServiceAuditEvent } from "../../../lib/service/audit";
import { FailureLimiter } from "../../../lib/service/failure-limit";
import {
  CFB_KEY,
  curl,
  EXTERNAL_ID,
  EXTERNAL_KEY,
  GCM_KEY_HEX,
  pythonDevice,
  SAMPLE_CONFIG,
  startService,
  THING_ID,
  THING_KEY,
  TOKEN,
  type RunningService,
} from "../../support/mainflux-fixtures";

const enc = encodeURIComponent;

function body(b: Buffer): Record<string, unknown> {
  return JSON.parse(b.toString("utf8")) as Record<string, unknown>;
}

describe("mainflux bootstrap service: the upstream answers, through curl", () => {
  let svc: RunningService;
  let snapshot: string;
  const key = cfbKey(CFB_KEY);

  before(async () => {
    svc = await startService({ cfbKey: key, managementToken: TOKEN });
    await svc.registry.add(SAMPLE_CONFIG);
    snapshot = JSON.stringify(await svc.backend.get(`${CONFIG_KEY_PREFIX}${EXTERNAL_ID}`));
  });
  after(() => svc.close());

  const unchanged = async () =>
    assert.equal(JSON.stringify(await svc.backend.get(`${CONFIG_KEY_PREFIX}${EXTERNAL_ID}`)), snapshot);

  it("200: plain bootstrap answers thing id, key, channels and content", async () => {
    const r = await curl([
      "-H",
      `Authorization: Thing ${EXTERNAL_KEY}`,
      `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
    ]);
    assert.equal(r.status, 200);
    const b = body(r.body);
    assert.equal(b.thing_id, THING_ID);
    assert.equal(b.thing_key, THING_KEY);
    assert.deepEqual(b.channels, [
      { id: "c3642289-501d-4974-82f2-ecccc71b2d83", name: "ch", metadata: { type: "control" } },
      { id: "ff13ca9c" },
    ]);
    assert.equal(b.content, '{"interval": 5}');
    assert.equal(svc.audit.at(-1)?.outcome, "provisioned");
    assert.ok(!JSON.stringify(svc.audit).includes(EXTERNAL_KEY), "audit holds no secret");
  });

  it("400: no external id", async () => {
    const r = await curl(["-H", `Authorization: Thing ${EXTERNAL_KEY}`, `${svc.url}/things/bootstrap/`]);
    assert.equal(r.status, 400);
    assert.deepEqual(body(r.body), {
      error: "missing entity id",
      message: "something went wrong with the request",
    });
  });

  it("401: no Authorization header, or one without the Thing prefix", async () => {
    for (const h of [[], ["-H", `Authorization: ${EXTERNAL_KEY}`], ["-H", "Authorization: Thing "]]) {
      const r = await curl([...h, `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`]);
      assert.equal(r.status, 401);
      assert.equal(body(r.body).error, "missing or invalid bearer entity key");
    }
    await unchanged();
  });

  it("404: unknown external id (checked before the key)", async () => {
    const r = await curl(["-H", "Authorization: Thing whatever", `${svc.url}/things/bootstrap/nobody`]);
    assert.equal(r.status, 404);
    assert.deepEqual(body(r.body), {
      error: "entity not found",
      message: "failed to read bootstrap configuration",
    });
  });

  it("403: wrong external key", async () => {
    const r = await curl([
      "-H",
      "Authorization: Thing wrong",
      `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
    ]);
    assert.equal(r.status, 403);
    assert.equal(body(r.body).message, "failed to get bootstrap configuration for given external key");
    await unchanged();
  });

  it("200 secure: raw IV || AES-CFB(JSON), readable with the key", async () => {
    const r = await curl([
      "-H",
      `Authorization: ${cfbAuthorization(key, EXTERNAL_KEY)}`,
      `${svc.url}/things/bootstrap/secure/${enc(EXTERNAL_ID)}`,
    ]);
    assert.equal(r.status, 200);
    assert.match(r.headers, /content-type: application\/json/i);
    assert.equal(body(cfbDecrypt(key, r.body)).thing_key, THING_KEY);
  });

  it("403 secure: non-hex, odd-length, shorter than the IV, wrong encryption key", async () => {
    const other = cfbAuthorization(cfbKey("another-key-16by"), EXTERNAL_KEY);
    for (const h of [
      "Thing zz",
      "Thing abc",
      `Thing ${"00".repeat(10)}`,
      other,
      `Thing ${"00".repeat(16)}`,
    ]) {
      const r = await curl([
        "-H",
        `Authorization: ${h}`,
        `${svc.url}/things/bootstrap/secure/${enc(EXTERNAL_ID)}`,
      ]);
      assert.equal(r.status, 403, h);
      assert.equal(
        body(r.body).message,
        "failed to get bootstrap configuration for given encrypted external key",
      );
    }
    await unchanged();
  });

  it("the Python device bootstraps in secure mode; with a wrong key it gets 403", async () => {
    const ok = await pythonDevice(svc.url, EXTERNAL_ID, EXTERNAL_KEY, CFB_KEY);
    assert.equal(ok.status, 200);
    assert.equal((JSON.parse(ok.body) as { thing_id: string }).thing_id, THING_ID);
    const bad = await pythonDevice(svc.url, EXTERNAL_ID, EXTERNAL_KEY, "0123456789abcdef");
    assert.equal(bad.status, 403);
  });

  it("management: 401 without or with a wrong token, 415, 400, 413, 409, 201, 200, 204", async () => {
    const cfgUrl = `${svc.url}/things/configs`;
    const json = ["-H", "Content-Type: application/json"];
    const auth = ["-H", `Authorization: Bearer ${TOKEN}`];
    let r = await curl(["-X", "POST", ...json, "-d", "{}", cfgUrl]);
    assert.equal(r.status, 401);
    r = await curl(["-X", "POST", ...json, "-H", "Authorization: Bearer nope", "-d", "{}", cfgUrl]);
    assert.equal(r.status, 401);
    r = await curl(["-X", "POST", ...auth, "-H", "Content-Type: text/plain", "-d", "{}", cfgUrl]);
    assert.equal(r.status, 415);
    r = await curl(["-X", "POST", ...auth, ...json, "-d", "{not json", cfgUrl]);
    assert.equal(r.status, 400);
    assert.equal(body(r.body).error, "malformed entity specification");
    r = await curl(["-X", "POST", ...auth, ...json, "-d", JSON.stringify({ external_key: "k" }), cfgUrl]);
    assert.equal(r.status, 400);
    r = await curl([
      "-X",
      "POST",
      ...auth,
      ...json,
      "--data-binary",
      `{"content":"${"x".repeat(MAX_MANAGE_BODY_BYTES)}"}`,
      cfgUrl,
    ]);
    assert.equal(r.status, 413);
    r = await curl(["-X", "POST", ...auth, ...json, "-d", JSON.stringify(SAMPLE_CONFIG), cfgUrl]);
    assert.equal(r.status, 409);
    await unchanged();
    r = await curl([
      "-X",
      "POST",
      ...auth,
      ...json,
      "-d",
      JSON.stringify({ external_id: "dev-2", external_key: "k2", channels: ["a"] }),
      cfgUrl,
    ]);
    assert.equal(r.status, 201);
    const loc = /location: (\/things\/configs\/\S+)/i.exec(r.headers)?.[1] ?? "";
    assert.match(loc, /^\/things\/configs\/[0-9a-f-]{36}$/);
    const thing = loc.split("/").pop() as string;
    r = await curl([...auth, `${svc.url}${loc}`]);
    assert.equal(r.status, 200);
    assert.equal(body(r.body).external_id, "dev-2");
    r = await curl(["-X", "PUT", ...auth, ...json, "-d", '{"state": 2}', `${svc.url}/things/state/${thing}`]);
    assert.equal(r.status, 400);
    r = await curl(["-X", "PUT", ...auth, ...json, "-d", '{"state": 1}', `${svc.url}/things/state/${thing}`]);
    assert.equal(r.status, 200);
    r = await curl(["-X", "PUT", ...auth, ...json, "-d", '{"state": 1}', `${svc.url}/things/state/unknown`]);
    assert.equal(r.status, 404);
    r = await curl(["-X", "PUT", ...auth, ...json, "-d", '{"name": "renamed"}', `${svc.url}${loc}`]);
    assert.equal(r.status, 200);
    assert.equal((await svc.registry.getByThing(thing))?.name, "renamed");
    assert.equal((await svc.registry.getByThing(thing))?.state, 1);
    r = await curl(["-X", "DELETE", ...auth, `${svc.url}${loc}`]);
    assert.equal(r.status, 204);
    r = await curl([...auth, `${svc.url}${loc}`]);
    assert.equal(r.status, 404);
    await unchanged();
  });

  it("a disconnected configuration (state 0) is still answered, as upstream does", async () => {
    assert.equal((await svc.registry.get(EXTERNAL_ID))?.state, 0);
    const r = await curl([
      "-H",
      `Authorization: Thing ${EXTERNAL_KEY}`,
      `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
    ]);
    assert.equal(r.status, 200);
  });
});

describe("mainflux bootstrap service: options and failures", () => {
  it("503 when the store fails; management not served without a token", async () => {
    const backend = new (await import("../../../lib/stores/memory")).MemoryBackend();
    const svc = await startService({ backend });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      // Secure mode is off without a key: refused, not crashed.
      let r = await curl([
        "-H",
        "Authorization: Thing 00",
        `${svc.url}/things/bootstrap/secure/${enc(EXTERNAL_ID)}`,
      ]);
      assert.equal(r.status, 403);
      assert.match(body(r.body).error as string, /not enabled/);
      r = await curl([
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
        `${svc.url}/things/configs`,
      ]);
      assert.equal(r.status, 404);
      backend.get = () => Promise.reject(Object.assign(new Error("disk gone"), { code: "IO" }));
      r = await curl([
        "-H",
        `Authorization: Thing ${EXTERNAL_KEY}`,
        `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
      ]);
      assert.equal(r.status, 503);
      assert.ok(!r.body.toString().includes("disk gone"));
    } finally {
      await svc.close();
    }
  });

  it("plain can be switched off; the older field names can be served", async () => {
    const svc = await startService({ allowPlain: false, cfbKey: cfbKey(CFB_KEY), fields: "mainflux" });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      let r = await curl([
        "-H",
        `Authorization: Thing ${EXTERNAL_KEY}`,
        `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
      ]);
      assert.equal(r.status, 403);
      r = await curl([
        "-H",
        `Authorization: ${cfbAuthorization(cfbKey(CFB_KEY), EXTERNAL_KEY)}`,
        `${svc.url}/things/bootstrap/secure/${enc(EXTERNAL_ID)}`,
      ]);
      const b = body(cfbDecrypt(cfbKey(CFB_KEY), r.body));
      assert.equal(b.mainflux_id, THING_ID);
      assert.equal(b.mainflux_key, THING_KEY);
      assert.ok(Array.isArray(b.mainflux_channels));
    } finally {
      await svc.close();
    }
  });

  it("GCM: answered once; a replay, a stale request and a wrong key id are 403", async () => {
    const now = Date.UTC(2026, 5, 1);
    const key = gcmKey(GCM_KEY_HEX);
    const svc = await startService({ gcm: { keyId: "k1", key, windowSeconds: 300 }, now: () => now });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      const url = `${svc.url}/things/bootstrap/secure/${enc(EXTERNAL_ID)}`;
      const { header } = gcmAuthorization(key, "k1", EXTERNAL_ID, EXTERNAL_KEY, now);
      let r = await curl(["-H", `Authorization: ${header}`, url]);
      assert.equal(r.status, 200);
      assert.match(r.headers, /x-bootstrap-key-id: k1/i);
      r = await curl(["-H", `Authorization: ${header}`, url]);
      assert.equal(r.status, 403);
      assert.match(body(r.body).error as string, /already used/);
      const stale = gcmAuthorization(key, "k1", EXTERNAL_ID, EXTERNAL_KEY, now - 301000).header;
      r = await curl(["-H", `Authorization: ${stale}`, url]);
      assert.equal(r.status, 403);
      assert.match(body(r.body).error as string, /time window/);
      const other = gcmAuthorization(key, "k2", EXTERNAL_ID, EXTERNAL_KEY, now).header;
      r = await curl(["-H", `Authorization: ${other}`, url]);
      assert.equal(r.status, 403);
      const wrong = gcmAuthorization(key, "k1", EXTERNAL_ID, "wrong", now).header;
      r = await curl(["-H", `Authorization: ${wrong}`, url]);
      assert.equal(r.status, 403);
      // CFB is off on this service.
      r = await curl(["-H", `Authorization: ${cfbAuthorization(cfbKey(CFB_KEY), EXTERNAL_KEY)}`, url]);
      assert.equal(r.status, 403);
    } finally {
      await svc.close();
    }
  });

  it("serves under a base path and leaves other paths alone", async () => {
    const svc = await startService({ basePath: "/mf" });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      const r = await curl([
        "-H",
        `Authorization: Thing ${EXTERNAL_KEY}`,
        `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`,
      ]);
      assert.equal(r.status, 200);
      const root = svc.url.replace(/\/mf$/, "");
      const miss = await curl([`${root}/things/bootstrap/${enc(EXTERNAL_ID)}`]);
      assert.equal(miss.status, 404);
    } finally {
      await svc.close();
    }
  });
});

/** A service behind bootstrapHandler with `opts`; `before` may touch each request first. */
async function handlerServer(
  opts: HandlerOptions,
  before?: (req: IncomingMessage, res: ServerResponse, go: () => void) => void,
) {
  const service = new MainfluxBootstrapService({
    registry: new ConfigRegistry(new MemoryBackend()),
    managementToken: TOKEN,
  });
  await service.registry.add(SAMPLE_CONFIG);
  const handler = bootstrapHandler(service, opts);
  const server = createServer((req, res) =>
    before ? before(req, res, () => handler(req, res)) : handler(req, res),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    handler,
    service,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe("mainflux bootstrap service over HTTP: bodies within limits, throttling answered", () => {
  const auth = `Bearer ${TOKEN}`;

  it("429 with Retry-After for requests over the rate limit (curl)", async () => {
    let t = 0;
    const limiter = new RateLimiter({ perSecond: 1 / 3, burst: 1 }, () => t);
    const s = await handlerServer({ limiter, retryAfterSeconds: 3 });
    try {
      const url = `${s.url}/things/bootstrap/${enc(EXTERNAL_ID)}`;
      const args = ["-H", `Authorization: Thing ${EXTERNAL_KEY}`, url];
      assert.equal((await curl(args)).status, 200);
      const r = await curl(args);
      assert.equal(r.status, 429);
      assert.match(r.headers, /\r\nretry-after: 3(\r\n|$)/i);
      assert.equal(typeof body(r.body).message, "string");
      t = 3000;
      assert.equal((await curl(args)).status, 200);
    } finally {
      s.close();
    }
  });

  it("a 429 from the service (its brute-force limit) gets a Retry-After even when it set none", async () => {
    const s = await handlerServer({ retryAfterSeconds: 7 });
    s.service.handle = () =>
      Promise.resolve({
        status: 429,
        headers: { "content-type": "application/json" },
        body: Buffer.from("{}"),
      });
    try {
      const r = await curl(["-H", `Authorization: Thing ${EXTERNAL_KEY}`, `${s.url}/things/bootstrap/x`]);
      assert.equal(r.status, 429);
      assert.match(r.headers, /\r\nretry-after: 7(\r\n|$)/i);
    } finally {
      s.close();
    }
  });

  it("management: gzip is 415 and an oversized body 413 before either is read; deep JSON is 400", async () => {
    const refused: string[] = [];
    const s = await handlerServer({ onRefused: (r) => refused.push(r) });
    try {
      const headers = { authorization: auth, "content-type": "application/json" };
      const gz = await answerBeforeBody(
        `${s.url}/things/configs`,
        { ...headers, "content-encoding": "gzip", "content-length": 100000 },
        gzipSync("{}").subarray(0, 5),
      );
      assert.equal(gz.status, 415);
      assert.equal(JSON.parse(gz.text).message, "unsupported content type");
      const big = await answerBeforeBody(
        `${s.url}/things/configs`,
        { ...headers, "content-length": 4_800_000 },
        "{",
      );
      assert.equal(big.status, 413);
      assert.deepEqual(refused, ["encoding", "too-large"]);
      const deep = await curl([
        "-X",
        "POST",
        "-H",
        `Authorization: ${auth}`,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        `{"external_id":${"[".repeat(20000)}${"]".repeat(20000)}}`,
        `${s.url}/things/configs`,
      ]);
      assert.equal(deep.status, 400);
      assert.equal(body(deep.body).error, "malformed entity specification");
    } finally {
      s.close();
    }
  });

  it("management answers a body a parser already read (the stream has ended)", async () => {
    const s = await handlerServer({}, (req, _res, go) => {
      // As body-parser's json leaves a request: stream read to its end, body parsed.
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        Object.assign(req, { _body: true, body: JSON.parse(Buffer.concat(chunks).toString() || "{}") });
        go();
      });
    });
    try {
      const r = await curl([
        "-X",
        "PUT",
        "-H",
        `Authorization: ${auth}`,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        '{"state":1}',
        `${s.url}/things/state/${enc(THING_ID)}`,
      ]);
      assert.equal(r.status, 200);
    } finally {
      s.close();
    }
  });

  it("claims exactly the requests it serves", async () => {
    const s = await handlerServer({ basePath: "/bs" });
    try {
      assert.equal(s.handler.claims("POST", "/bs/things/configs"), true);
      assert.equal(s.handler.claims("GET", "/bs/things/bootstrap/x"), true);
      assert.equal(s.handler.claims("POST", "/things/configs"), false);
      assert.equal(s.handler.claims("POST", "/bs/other"), false);
    } finally {
      s.close();
    }
  });
});

describe("mainflux bootstrap service: brute force (issue 8, defect 8)", () => {
  /** One GET over a kept-alive connection from the given loopback address. */
  function get(
    url: string,
    key: string,
    agent: http.Agent,
  ): Promise<{ status: number; retryAfter?: string; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { agent, headers: { authorization: `Thing ${key}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers["retry-after"],
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      });
      req.setTimeout(15000, () => req.destroy(new Error("no answer within 15 s")));
      req.on("error", reject);
    });
  }

  it("refuses 2,000 wrong external keys from one address after 100 with 429, audited; others are served", async () => {
    const locks: ServiceAuditEvent[] = [];
    // Delays of 1-2 ms keep the run short; the counts, not the timing, are asserted.
    const failures = new FailureLimiter(
      { slowAfter: 5, lockAfter: 100, baseDelayMs: 1, maxDelayMs: 2 },
      Date.now,
      (l) => locks.push(MainfluxBootstrapService.lockEvent(l)),
    );
    const svc = await startService({ failures });
    const attacker = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.1" });
    const honest = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: "127.0.0.2" });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      const url = `${svc.url}/things/bootstrap/${enc(EXTERNAL_ID)}`;
      const statuses: Record<number, number> = {};
      for (let i = 0; i < 2000; i++) {
        const r = await get(url, `wrong-${i}`, attacker);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 429) assert.ok(Number(r.retryAfter) > 3000, r.retryAfter);
        if (i % 500 === 499) {
          const ok = await get(url, EXTERNAL_KEY, honest);
          assert.equal(ok.status, 200);
          assert.equal(body(Buffer.from(ok.body)).thing_key, THING_KEY);
        }
      }
      assert.deepEqual(statuses, { 403: 100, 429: 1900 });
      // The right key from the locked address waits for the lock to end.
      assert.equal((await get(url, EXTERNAL_KEY, attacker)).status, 429);
      const a = svc.audit;
      assert.equal(a.filter((e) => e.outcome === "locked").length, 1901);
      assert.equal(a.filter((e) => e.outcome === "provisioned" && e.remote?.endsWith("127.0.0.2")).length, 4);
      assert.ok(a.filter((e) => e.outcome === "provisioned").every((e) => e.delayedMs === undefined));
      assert.equal(a.filter((e) => (e.delayedMs ?? 0) > 0).length, 95);
      assert.deepEqual(
        locks.map((e) => [e.remote, e.deviceName]),
        [
          ["127.0.0.1", undefined],
          [undefined, EXTERNAL_ID],
        ],
      );
      assert.equal(svc.service.lockedNow(), 2);
      const text = JSON.stringify([a, locks]);
      for (const s of [EXTERNAL_KEY, "wrong-1", THING_KEY]) assert.ok(!text.includes(s), s);
    } finally {
      attacker.destroy();
      honest.destroy();
      await svc.close();
    }
  });

  it("parallel wrong keys cannot overshoot the lock; unknown ids (a device polling) are not counted", async () => {
    const failures = new FailureLimiter({ slowAfter: 1000, lockAfter: 10 });
    const svc = await startService({ failures });
    try {
      await svc.registry.add(SAMPLE_CONFIG);
      const s = svc.service;
      // A device polling before its configuration exists is never slowed or locked.
      for (let i = 0; i < 50; i++)
        assert.equal((await s.bootstrap(false, "not-yet", "Thing k", "127.0.0.8")).status, 404);
      assert.equal(s.lockedNow(), 0);
      const tries = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          s.bootstrap(false, EXTERNAL_ID, `Thing w-${i}`, "127.0.0.9").then((r) => r.status),
        ),
      );
      // The check and the count happen with no await between them.
      assert.equal(tries.filter((t) => t === 403).length, 10);
      assert.equal(tries.filter((t) => t === 429).length, 30);
    } finally {
      await svc.close();
    }
  });
});
