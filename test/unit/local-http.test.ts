/**
 * "This Node-RED" as the device nodes reach it (nodes/shared/local-http.ts): the address
 * node-red's red.js getListenPath() prints for itself, with httpNodeRoot, for whatever
 * settings the runtime was started with.
 */
import assert from "node:assert/strict";
import { describe, it } from "mocha";
import type { NodeAPI } from "node-red";
import { absoluteUrl, localHttpBase } from "../../nodes/shared/local-http";

const red = (settings: Record<string, unknown>) => ({ settings }) as unknown as NodeAPI;

describe("unit/local-http", () => {
  it("names the runtime's own port, host, protocol and httpNodeRoot", async () => {
    assert.equal(localHttpBase(red({ uiPort: 41880 }), "off"), "http://127.0.0.1:41880");
    assert.equal(
      localHttpBase(red({ uiPort: 1, uiHost: "0.0.0.0", httpNodeRoot: "/" }), "off"),
      "http://127.0.0.1:1",
    );
    assert.equal(localHttpBase(red({ uiPort: 2, uiHost: "::" }), "off"), "http://localhost:2");
    assert.equal(localHttpBase(red({ uiPort: 3, uiHost: "::1" }), "off"), "http://[::1]:3");
    assert.equal(localHttpBase(red({ uiPort: 4, uiHost: "10.1.2.3" }), "off"), "http://10.1.2.3:4");
    assert.equal(
      localHttpBase(red({ uiPort: 8443, https: { key: "k", cert: "c" }, httpNodeRoot: "/api/" }), "off"),
      "https://127.0.0.1:8443/api",
    );
    // uiPort 0 asks the system for a port; red.js keeps the one it got in serverPort.
    assert.equal(localHttpBase(red({ uiPort: 0, serverPort: 43210 }), "off"), "http://127.0.0.1:43210");
    assert.equal(localHttpBase(red({}), "off"), "http://127.0.0.1:1880", "Node-RED's default");
    assert.throws(
      () => localHttpBase(red({ uiPort: 5, httpNodeRoot: false }), "no node routes"),
      (e: Error & { code?: string }) => e.code === "CONFIG" && e.message === "no node routes",
    );
  });

  it("makes a URL starting with / absolute on this Node-RED, and leaves others alone", async () => {
    const r = red({ uiPort: 41880, httpNodeRoot: "/red" });
    assert.equal(absoluteUrl(r, "/", "off"), "http://127.0.0.1:41880/red");
    assert.equal(absoluteUrl(r, "/bootstrap/", "off"), "http://127.0.0.1:41880/red/bootstrap");
    assert.equal(absoluteUrl(r, "https://b.example.com:8202", "off"), "https://b.example.com:8202");
    assert.equal(
      absoluteUrl(r, "//b.example.com", "off"),
      "//b.example.com",
      "protocol-relative is not ours",
    );
  });
});
