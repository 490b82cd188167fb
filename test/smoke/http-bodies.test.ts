/**
 * Our HTTP endpoints on the real `node-red` program, where Node-RED's admin app (and its
 * body parsers: json and urlencoded, 5 MB, inflating gzip) sits in front of httpNode: with
 * default settings, with the admin app and the HTTP nodes apart, and with httpNodeRoot
 * set to a prefix. Every request is sent from this process (Node-RED runs in its own), at
 * Node-RED's most verbose log level.
 */
import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { Agent } from "node:http";
import { gzipSync } from "node:zlib";
import { deploy, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import { curl, rssOf, send } from "./http-raw";

const KEY = "smoke-provision-key";
const SECRET = "smoke-provision-secret";
const TOKEN = "smoke-management-token";
const EXTERNAL_KEY = "smoke-external-key";

function flows() {
  const tab = { id: "hb-tab", type: "tab", label: "http bodies" };
  const profile = {
    id: "hb-profile",
    type: "provisioning-profile",
    name: "smoke",
    strategy: "allow-create",
    credentialsType: "ACCESS_TOKEN",
    credentials: { key: KEY, secret: SECRET },
  };
  const tb = (id: string, path: string, rateLimit: number, rateBurst: number, y: number) => ({
    id,
    type: "provision-response",
    z: "hb-tab",
    x: 100,
    y,
    profile: "hb-profile",
    mqtt: "off",
    http: true,
    httpPath: path,
    coap: false,
    rateLimit,
    rateBurst,
    wires: [[], []],
  });
  const bs = {
    id: "hb-bs",
    type: "bootstrap-service",
    z: "hb-tab",
    x: 100,
    y: 300,
    store: "",
    allowPlain: true,
    initEnabled: true,
    initExternalId: "smoke-device",
    initThingId: "thing-1",
    initChannels: "c1",
    wires: [[], []],
    credentials: { managementToken: TOKEN, initExternalKey: EXTERNAL_KEY, initThingKey: "smoke-thing-key" },
  };
  return [
    tab,
    profile,
    tb("hb-tb", "/api/v1/provision", 0, 100, 100),
    tb("hb-tb-slow", "/throttled/provision", 0.5, 1, 200),
    bs,
  ];
}

const FAILURE = { status: "FAILURE", errorMsg: "Failed to provision device!" };
/** Malformed JSON holding a 9-character prefix of the key and secret, and NUL bytes. */
const HOSTILE = Buffer.from(
  `{"provisionDeviceKey":"${KEY.slice(0, 9)}\u0000","provisionDeviceSecret":"${SECRET.slice(0, 9)}\u0000`,
);
const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
const valid = (name: string) =>
  JSON.stringify({ deviceName: name, provisionDeviceKey: KEY, provisionDeviceSecret: SECRET });

const variants = [
  { label: "default settings (editor and HTTP nodes at /)", settings: "", admin: "", nodes: "" },
  {
    label: "httpAdminRoot and httpNodeRoot apart",
    settings: `httpAdminRoot: "/admin",`,
    admin: "/admin",
    nodes: "",
  },
  { label: "httpNodeRoot set to a prefix", settings: `httpNodeRoot: "/nodes",`, admin: "", nodes: "/nodes" },
];

for (const rt of runtimes()) {
  for (const v of variants) {
    describe(`${rt.label}, ${v.label}: our endpoints read their own bodies`, () => {
      let nr: RunningNodeRed;
      let base: string;
      const tbUrl = () => `${base}/api/v1/provision`;
      const mgmt = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
      before(async () => {
        nr = await startNodeRed(rt, {
          settings: `${v.settings} logging: { console: { level: "trace" } },`,
        });
        await deploy({ ...nr, url: nr.url + v.admin }, flows());
        base = nr.url + v.nodes;
      });
      after(async () => {
        await nr?.stop();
      });

      it("ThingsBoard: malformed and deep JSON get 200 with FAILURE JSON; no JSON type is still read", async () => {
        const bad = await send(tbUrl(), { headers: { "content-type": "application/json" }, body: HOSTILE });
        assert.equal(bad.status, 200);
        assert.match(String(bad.headers["content-type"]), /application\/json/);
        assert.deepEqual(JSON.parse(bad.text), FAILURE);
        const deepOne = await send(tbUrl(), {
          headers: { "content-type": "application/json" },
          body: deep(20000),
        });
        assert.equal(deepOne.status, 200);
        assert.deepEqual(JSON.parse(deepOne.text), FAILURE);
        const form = await send(tbUrl(), {
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "a=b&c=d",
        });
        assert.deepEqual(JSON.parse(form.text), FAILURE);
        for (const type of [undefined, "text/plain", "application/x-www-form-urlencoded"]) {
          const ok = await send(tbUrl(), {
            headers: type ? { "content-type": type } : {},
            body: valid(`no-json-type-${type ?? "none"}`),
          });
          assert.equal(ok.status, 200);
          assert.equal((JSON.parse(ok.text) as { status: string }).status, "SUCCESS", `content type ${type}`);
        }
      });

      it("ThingsBoard: a gzip body and an oversized body are refused before they are read", async () => {
        // The answer comes while the declared body is still unsent: nothing waited for it.
        const gz = await send(tbUrl(), {
          headers: {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "content-length": 100000,
          },
          partial: gzipSync(Buffer.alloc(50000, 0x20)).subarray(0, 100),
        });
        assert.equal(gz.status, 200);
        assert.deepEqual(JSON.parse(gz.text), FAILURE);
        const big = await send(tbUrl(), {
          headers: { "content-type": "application/json", "content-length": 4_800_000 },
          partial: '{"provisionDeviceKey":"',
        });
        assert.equal(big.status, 200);
        assert.deepEqual(JSON.parse(big.text), FAILURE);
      });

      it("Mainflux: management answers JSON bodies; bad ones get its JSON errors", async () => {
        const thing = `thing-${Date.now()}`;
        const created = await send(`${base}/things/configs`, {
          headers: mgmt,
          body: JSON.stringify({
            external_id: `ext-${thing}`,
            external_key: "k",
            thing_id: thing,
            thing_key: "tk",
          }),
        });
        assert.equal(created.status, 201, created.text);
        const state = await send(`${base}/things/state/${thing}`, {
          method: "PUT",
          headers: mgmt,
          body: JSON.stringify({ state: 1 }),
        });
        assert.equal(state.status, 200, state.text);
        const shown = await send(`${base}/things/configs/${thing}`, { method: "GET", headers: mgmt });
        assert.equal((JSON.parse(shown.text) as { state: number }).state, 1);
        const bad = await send(`${base}/things/configs`, { headers: mgmt, body: HOSTILE });
        assert.equal(bad.status, 400);
        assert.equal(
          (JSON.parse(bad.text) as { message: string }).message,
          "something went wrong with the request",
        );
        const deepOne = await send(`${base}/things/configs`, { headers: mgmt, body: `{"a":${deep(20000)}}` });
        assert.equal(deepOne.status, 400);
        assert.ok(JSON.parse(deepOne.text));
        const gz = await send(`${base}/things/configs`, {
          headers: { ...mgmt, "content-encoding": "gzip", "content-length": 100000 },
          partial: gzipSync(Buffer.alloc(50000, 0x20)).subarray(0, 100),
        });
        assert.equal(gz.status, 415);
        assert.ok(JSON.parse(gz.text));
        const big = await send(`${base}/things/configs`, {
          headers: { ...mgmt, "content-length": 4_800_000 },
          partial: "{",
        });
        assert.equal(big.status, 413);
        assert.ok(JSON.parse(big.text));
        const boot = await send(`${base}/things/bootstrap/smoke-device`, {
          method: "GET",
          headers: { authorization: `Thing ${EXTERNAL_KEY}` },
        });
        assert.equal(boot.status, 200);
      });

      it("the editor's API still parses its JSON (a redeploy), and the new routes answer", async () => {
        await deploy({ ...nr, url: nr.url + v.admin }, flows());
        const ok = await send(tbUrl(), {
          headers: { "content-type": "application/json" },
          body: valid("redeployed"),
        });
        assert.equal((JSON.parse(ok.text) as { status: string }).status, "SUCCESS");
      });

      if (v.admin !== "" || v.nodes !== "") return;

      it("10 parallel 4.8 MB bodies leave resident memory within a small bound", async () => {
        const pid = nr.child.pid as number;
        const rss0 = rssOf(pid);
        const body = Buffer.alloc(4_800_000, 0x20);
        body.write('{"provisionDeviceKey":"', 0);
        body.write('"}', body.length - 2);
        const answers = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            send(i % 2 ? tbUrl() : `${base}/things/configs`, {
              headers: i % 2 ? { "content-type": "application/json" } : mgmt,
              body,
              timeoutMs: 60000,
            }),
          ),
        );
        assert.deepEqual(
          answers.map((a) => a.status),
          [413, 200, 413, 200, 413, 200, 413, 200, 413, 200],
        );
        const grown = rssOf(pid) - rss0;
        assert.ok(grown < 64 * 1024 * 1024, `resident memory grew by ${Math.round(grown / 1048576)} MB`);
      });

      it("1,000 bad requests at trace level: no log line quotes them, and few lines are written", async () => {
        const mark = nr.output().length;
        const agent = new Agent({ keepAlive: true, maxSockets: 8 });
        const bodies = [HOSTILE, Buffer.from("\u0000\u0001{{{" + KEY.slice(0, 9)), Buffer.from(deep(5000))];
        for (let round = 0; round < 100; round++) {
          await Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              send(i % 2 ? tbUrl() : `${base}/things/configs`, {
                headers: i % 2 ? { "content-type": "application/json" } : mgmt,
                body: bodies[(round + i) % bodies.length],
                agent,
              }),
            ),
          );
        }
        agent.destroy();
        const ok = await send(tbUrl(), {
          headers: { "content-type": "application/json" },
          body: valid("after-abuse"),
        });
        assert.equal((JSON.parse(ok.text) as { status: string }).status, "SUCCESS");
        const lines = nr
          .output()
          .slice(mark)
          .split("\n")
          .filter((l) => l.trim() !== "");
        for (const l of lines) {
          assert.ok(
            !l.includes(KEY.slice(0, 9)) && !l.includes(SECRET.slice(0, 9)),
            `a log line quotes a key: ${l}`,
          );
          assert.ok(!l.includes("\u0000"), "a log line holds a NUL byte");
          assert.doesNotMatch(l, /SyntaxError|at .*\(.*:\d+:\d+\)|<!DOCTYPE/, `a stack trace or page: ${l}`);
        }
        assert.ok(
          lines.length <= 20,
          `${lines.length} log lines for 1,000 bad requests:\n${lines.slice(0, 30).join("\n")}`,
        );
      });

      it("a throttled ThingsBoard request gets 429 with Retry-After (curl)", async () => {
        const url = `${base}/throttled/provision`;
        const args = [
          "-X",
          "POST",
          "-H",
          "content-type: application/json",
          "--data",
          valid(`throttled-${Date.now()}`),
          url,
        ];
        const first = await curl(args);
        assert.match(first, /^HTTP\/1\.1 200/);
        const second = await curl(args);
        assert.match(second, /^HTTP\/1\.1 429/);
        assert.match(second, /\r\nretry-after: 2\r\n/i);
        assert.match(second, /"status":"FAILURE"/);
      });

      it("the claim goes with our nodes: after they are removed, the path is Node-RED's again", async () => {
        await deploy({ ...nr, url: nr.url + v.admin }, [{ id: "hb-tab", type: "tab", label: "empty" }]);
        const res = await send(tbUrl(), { headers: { "content-type": "application/json" }, body: "{}" });
        assert.equal(res.status, 404);
        // The editor's parser reads this body again: nothing of ours is left in front of it.
        const bad = await send(tbUrl(), { headers: { "content-type": "application/json" }, body: "{" });
        assert.equal(bad.status, 400);
        assert.doesNotMatch(bad.text, /FAILURE/);
      });
    });
  }
}
