/**
 * A burst of devices (a fleet coming back after an outage) connects faster than a busy
 * broker accepts. The kernel queues the connections not yet accepted up to the listen
 * backlog and drops SYNs past it, and each device so dropped waits out SYN retransmission
 * (1, 3, 7, 15 s). The embedded broker asks for a queue as deep as its connection backstop
 * (2 x its session cap + headroom), not Node's default of 511.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "mocha";
import { PROJECT_ROOT } from "../../support/node-red";
import { startProcess, type Started } from "../../support/process";

// The broker in a process of its own, so that it can be frozen (SIGSTOP): nothing accepts,
// and the kernel's queue is all that holds the connections.
const BROKER = `
const { startEmbeddedBroker } = require("./dist/lib/transports/embedded-broker");
startEmbeddedBroker({ host: "127.0.0.1", port: 0, hooks: {} }).then((b) => console.log("port " + b.port));
`;

/** More than Node's default backlog (511) lets wait. */
const BURST = 800;

describe("unit/transports/embedded-backlog", () => {
  let broker: Started;
  let port: number;
  before(async () => {
    broker = await startProcess(process.execPath, ["-e", BROKER], /port (\d+)/, { cwd: PROJECT_ROOT });
    port = Number(/port (\d+)/.exec(broker.output())?.[1]);
  });
  after(() => broker.stop());

  it(`${BURST} connections at once while the broker accepts none are all queued by the kernel, none dropped`, async function () {
    // Past the backlog the kernel drops SYNs, and those connections would wait here for
    // their retransmission, beyond this test's time.
    this.timeout(20000);
    // The kernel caps every backlog at net.core.somaxconn (4096 since Linux 5.4, 128 before).
    const cap = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    if (cap < BURST) this.skip();
    const pid = broker.child.pid as number;
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
