/**
 * examples/haproxy.cfg is a configuration HAProxy accepts (`haproxy -c`, its certificate
 * path pointed at a throwaway PEM), and it sends the PROXY header to the listeners that
 * read it and not to Node-RED's HTTP port, which does not; examples/nginx-coap-udp.conf
 * keeps a device on one backend.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "mocha";
import { HAPROXY_MISSING, haproxyCheck, haproxyPresent } from "../../support/haproxy";
import { PROJECT_ROOT } from "../../support/node-red";
import { makeTestPki } from "../../support/pki";

const EXAMPLES = join(PROJECT_ROOT, "examples");

/** Each backend's server lines, by backend name. */
function backends(cfg: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of cfg.split("\n")) {
    const t = line.trim();
    const section = /^(global|defaults|frontend|backend|listen)\b\s*(\S*)/.exec(line);
    if (section) {
      current = section[1] === "backend" ? [] : undefined;
      if (current) out.set(section[2], current);
    } else if (current && t.startsWith("server ")) current.push(t);
  }
  return out;
}

describe("unit/transports/proxy-examples", () => {
  it("examples/haproxy.cfg passes haproxy -c", function () {
    if (!haproxyPresent()) {
      console.warn(HAPROXY_MISSING);
      this.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), "haproxy-example-"));
    try {
      const pki = makeTestPki("Example");
      const pem = join(dir, "provisioning.pem");
      writeFileSync(pem, pki.serverCert + pki.serverKey);
      const cfg = readFileSync(join(EXAMPLES, "haproxy.cfg"), "utf8");
      assert.ok(cfg.includes("/etc/haproxy/certs/provisioning.pem"));
      const file = join(dir, "haproxy.cfg");
      writeFileSync(file, cfg.replace("/etc/haproxy/certs/provisioning.pem", pem));
      const ok = haproxyCheck(file);
      assert.equal(ok.code, 0, ok.output);
      assert.match(ok.output, /Configuration file is valid/);
      // The check can fail: a misspelt keyword is refused.
      writeFileSync(
        file,
        cfg.replace("send-proxy-v2\n", "send-proxy-v3\n").replace("/etc/haproxy/certs/provisioning.pem", pem),
      );
      assert.notEqual(haproxyCheck(file).code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("examples/haproxy.cfg: PROXY v2 to the MQTT, CoAP-over-TCP and Azure HTTPS listeners, none to Node-RED's HTTP", () => {
    const cfg = readFileSync(join(EXAMPLES, "haproxy.cfg"), "utf8");
    assert.match(cfg, /default-server [^\n]*\bsend-proxy-v2\b/);
    assert.match(cfg, /^defaults[\s\S]*?mode tcp/m);
    const b = backends(cfg);
    for (const name of [
      "nodered_mqtt",
      "nodered_mqtts",
      "nodered_coaps_tcp",
      "nodered_coap_tcp",
      "nodered_azure_https",
    ]) {
      const servers = b.get(name) ?? [];
      assert.equal(servers.length, 3, `${name} lists three instances`);
      for (const s of servers) assert.ok(!/no-send-proxy/.test(s), `${name}: ${s}`);
    }
    const http = b.get("nodered_http") ?? [];
    assert.equal(http.length, 3);
    for (const s of http) assert.match(s, /no-send-proxy-v2/);
    assert.match(cfg, /option forwardfor/);
    assert.match(cfg, /"trust proxy"/);
  });

  it("examples/nginx-coap-udp.conf: UDP, one device to one backend, the source-address caveat stated", () => {
    const conf = readFileSync(join(EXAMPLES, "nginx-coap-udp.conf"), "utf8");
    const active = conf
      .split("\n")
      .filter((l) => !l.trim().startsWith("#"))
      .join("\n");
    assert.match(active, /stream\s*\{/);
    assert.match(active, /listen 5683 udp/);
    assert.match(active, /hash \$remote_addr consistent;/);
    assert.equal((active.match(/^\s*server 10\.0\.0\.\d+:5683;/gm) ?? []).length, 3);
    // Transparent proxying needs routing the example cannot know: offered, not switched on.
    assert.ok(!/proxy_bind/.test(active));
    assert.match(conf, /# proxy_bind \$remote_addr transparent;/);
  });
});
