/**
 * A burst of devices (a fleet coming back after an outage) connects faster than a busy
 * server accepts. The kernel queues the connections not yet accepted up to the listen
 * backlog and drops SYNs past it, and each device so dropped waits out SYN retransmission
 * (1, 3, 7, 15 s). Every listener that serves devices asks for a queue as deep as the
 * connections it takes (lib/transports/accept-queue.ts), not Node's default of 511: the
 * embedded MQTT broker, Azure DPS over HTTPS and plgd's coaps+tcp.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "mocha";
import { PROJECT_ROOT } from "../../support/node-red";
import { makeTestPki, type TestPki } from "../../support/pki";
import { startProcess, type Started } from "../../support/process";

// Each server in a process of its own, so that it can be frozen (SIGSTOP): nothing accepts,
// and the kernel's queue is all that holds the connections. No request is ever sent, so the
// servers need no service behind them.
const SERVERS: Record<string, string> = {
  "the embedded MQTT broker": `
    require("./dist/lib/transports/embedded-broker")
      .startEmbeddedBroker({ host: "127.0.0.1", port: 0, hooks: {} })
      .then((b) => console.log("port " + b.port));`,
  "Azure DPS over HTTPS": `
    const tls = { key: require("fs").readFileSync(process.env.KEY), cert: require("fs").readFileSync(process.env.CERT) };
    require("./dist/lib/dialects/azure-dps/server-https")
      .startAzureHttpsServer({}, { host: "127.0.0.1", port: 0, tls })
      .then((s) => console.log("port " + s.port));`,
  "coaps+tcp (plgd DPS)": `
    const fs = require("fs");
    const { CoapTcpServer } = require("./dist/lib/transports/coap-tcp/server");
    const s = new CoapTcpServer({
      tls: { key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) },
      handler: async () => ({ code: "2.05" }),
    });
    s.listen(0, "127.0.0.1").then((a) => console.log("port " + a.port));`,
};

/** More than Node's default backlog (511) lets wait. */
const BURST = 800;

describe("unit/transports/listen-backlog", () => {
  let pki: TestPki;
  before(() => {
    pki = makeTestPki("Backlog");
  });
  after(() => rmSync(pki.dir, { recursive: true, force: true }));

  for (const [name, code] of Object.entries(SERVERS)) {
    describe(name, () => {
      let server: Started;
      let port: number;
      before(async () => {
        server = await startProcess(process.execPath, ["-e", code], /port (\d+)/, {
          cwd: PROJECT_ROOT,
          env: { ...process.env, KEY: pki.serverKeyPath, CERT: pki.serverCertPath },
        });
        port = Number(/port (\d+)/.exec(server.output())?.[1]);
      });
      after(() => server.stop());

      it(`${BURST} connections at once while it accepts none are all queued by the kernel, none dropped`, async function () {
        // Past the backlog the kernel drops SYNs, and those connections would wait here for
        // their retransmission, beyond this test's time.
        this.timeout(20000);
        // The kernel caps every backlog at net.core.somaxconn (4096 since Linux 5.4, 128 before).
        const cap = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
        if (cap < BURST) this.skip();
        const pid = server.child.pid as number;
        process.kill(pid, "SIGSTOP");
        const sockets: Socket[] = [];
        try {
          await Promise.all(
            Array.from({ length: BURST }, () => {
              const s = connect({ host: "127.0.0.1", port });
              sockets.push(s);
              s.on("error", () => undefined);
              return new Promise<void>((resolve) => s.once("connect", () => resolve()));
            }),
          );
          assert.equal(sockets.filter((s) => !s.connecting).length, BURST);
        } finally {
          process.kill(pid, "SIGCONT");
          for (const s of sockets) s.destroy();
        }
      });
    });
  }
});
