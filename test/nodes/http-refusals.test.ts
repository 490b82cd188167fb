/**
 * The serving nodes' HTTP endpoints in a Node-RED runtime (node-red-node-test-helper):
 * a body parser in front of them (as Node-RED's admin app is, in the real program) never
 * reads their requests, and a thousand bad requests are summarised in the log, with no
 * byte of what was sent.
 */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { gzipSync } from "node:zlib";
import { after, afterEach, before, describe, it } from "mocha";
import { KEY, request, SECRET } from "../support/tbserve-fixtures";
import {
  helper,
  serveHttpNode,
  startServer,
  statusOf,
  stopServer,
  testStoreModule,
  type SpiedMethod,
  type TestNode,
} from "../support/node-helper";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const responseNode = require("../../nodes/provision-response") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const profileNode = require("../../nodes/provisioning-profile") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const serviceNode = require("../../nodes/bootstrap-service") as unknown;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express = require("express") as { json(o: { limit: string }): unknown };

const TOKEN = "refusals-management-token";
const FAILURE = '{"status":"FAILURE","errorMsg":"Failed to provision device!"}';

/** Mounts body-parser's json on httpNode before any flow node, as the admin app sits in front. */
function parserInFront(RED: { httpNode: { use(h: unknown): void } }): void {
  RED.httpNode.use(express.json({ limit: "5mb" }));
}

const nodes = [parserInFront, testStoreModule, profileNode, responseNode, serviceNode];

function flow(): Array<Record<string, unknown>> {
  return [
    { id: "tab", type: "tab" },
    {
      id: "prof",
      type: "provisioning-profile",
      name: "fleet",
      strategy: "allow-create",
      credentialsType: "ACCESS_TOKEN",
    },
    {
      id: "srv",
      z: "tab",
      type: "provision-response",
      profile: "prof",
      mqtt: "off",
      http: true,
      rateLimit: 0,
      wires: [[], []],
    },
    { id: "bs", z: "tab", type: "bootstrap-service", store: "", allowPlain: true, wires: [[], []] },
  ];
}

const creds = { prof: { key: KEY, secret: SECRET }, bs: { managementToken: TOKEN } };

/** Malformed JSON with 9-character prefixes of the key and secret, and NUL bytes. */
const HOSTILE = `{"provisionDeviceKey":"${KEY.slice(0, 9)}\u0000","provisionDeviceSecret":"${SECRET.slice(0, 9)}\u0000`;

function post(
  url: string,
  headers: Record<string, string | number>,
  body: Buffer | string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers, agent: false });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** What `node` itself logged (the spies are shared by every node of every load). */
function logged(node: TestNode): string[] {
  return [node.warn, node.error].flatMap((spy: SpiedMethod) =>
    spy.args.filter((_a, i) => spy.thisValues[i] === node).map((a) => JSON.stringify(a)),
  );
}

const texts = (id: string) => logged(helper.getNode(id));

describe("serving nodes over HTTP: bodies behind a parser, refusals in the log", () => {
  before(() => startServer());
  after(() => stopServer());
  afterEach(() => helper.unload());

  it("a body parser in front of httpNode does not read their requests", async () => {
    await helper.load(nodes, flow(), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    await statusOf(helper.getNode("bs"), ["green"]);
    const { url, server } = await serveHttpNode();
    try {
      const json = { "content-type": "application/json" };
      assert.deepEqual(await post(`${url}/api/v1/provision`, json, HOSTILE), { status: 200, text: FAILURE });
      const ok = await post(`${url}/api/v1/provision`, {}, request({ deviceName: "untyped" }));
      assert.equal((JSON.parse(ok.text) as { status: string }).status, "SUCCESS");
      const mgmt = { ...json, authorization: `Bearer ${TOKEN}` };
      const created = await post(
        `${url}/things/configs`,
        mgmt,
        JSON.stringify({ external_id: "e1", external_key: "k1", thing_id: "t1", thing_key: "tk1" }),
      );
      assert.equal(created.status, 201, created.text);
      const bad = await post(`${url}/things/configs`, mgmt, HOSTILE);
      assert.equal(bad.status, 400);
      assert.equal((JSON.parse(bad.text) as { error: string }).error, "malformed entity specification");
    } finally {
      server.close();
    }
  });

  it("1,000 bad requests: a bounded number of log lines, none quoting them", async () => {
    await helper.load(nodes, flow(), creds);
    await statusOf(helper.getNode("srv"), ["green"]);
    await statusOf(helper.getNode("bs"), ["green"]);
    const { url, server } = await serveHttpNode();
    try {
      const gz = gzipSync(Buffer.from(HOSTILE));
      const mgmt = { "content-type": "application/json", authorization: `Bearer ${TOKEN}` };
      for (let round = 0; round < 100; round++) {
        await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            i % 2
              ? post(
                  `${url}/api/v1/provision`,
                  { "content-type": "application/json", "content-encoding": "gzip" },
                  gz,
                )
              : post(`${url}/things/configs`, { ...mgmt, "content-encoding": "gzip" }, gz),
          ),
        );
      }
      const during = [...texts("srv"), ...texts("bs")];
      assert.ok(during.length <= 3, `${during.length} lines while refusing:\n${during.join("\n")}`);
      assert.ok(during.some((l) => l.includes("refused-first")));
    } finally {
      server.close();
    }
    const srv = helper.getNode("srv");
    const bs = helper.getNode("bs");
    // The helper restores its spies before the nodes close: record what close logs here.
    const lines: string[] = [];
    for (const n of [srv, bs])
      Object.assign(n, {
        warn: (m: unknown) => lines.push(JSON.stringify(m)),
        error: (m: unknown) => lines.push(JSON.stringify(m)),
      });
    await helper.unload();
    // Closing writes what was still counted: one summary per node.
    assert.ok(lines.length <= 2, lines.join("\n"));
    assert.equal(lines.filter((l) => l.includes("refused-summary")).length, 2, lines.join("\n"));
    const all = JSON.stringify([lines, helper.log().args]);
    for (const s of [KEY.slice(0, 9), SECRET.slice(0, 9), "\\u0000"])
      assert.ok(!all.includes(s), `the log holds ${s}`);
  });
});
