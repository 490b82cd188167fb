import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "mocha";
import { parseEnrollmentGroup } from "../../../lib/dialects/plgd-dps/enrollment";
import { listenDps, type DpsListener } from "../../../lib/dialects/plgd-dps/listen";
import { PATHS } from "../../../lib/dialects/plgd-dps/ocf";
import { DpsService } from "../../../lib/dialects/plgd-dps/server";
import { libcoapClient } from "../../support/coaptcp-peers";
import { makeDpsFixture } from "../../support/dps-fixtures";

const fx = makeDpsFixture();
const dir = mkdtempSync(join(tmpdir(), "dps-libcoap-"));

/** libcoap -v 7 logs each PDU as "v:1 t:CON c:POST ... [ ..., Block1:3/M/1024, ... ]". */
function sentBlocks(log: string): Set<number> {
  const out = new Set<number>();
  for (const line of log.split("\n")) {
    const m = /c:POST .*Block1:(\d+)\//.exec(line);
    if (m) out.add(Number(m[1]));
  }
  return out;
}

describe("plgd DPS with libcoap's coap-client-openssl as the device (issue 8, defect 7)", () => {
  let listener: DpsListener;
  let url: string;
  const file = join(dir, "upload.bin");

  before(async () => {
    listener = await listenDps({
      service: new DpsService({ groups: [parseEnrollmentGroup(fx.groupConfig())] }),
      host: "127.0.0.1",
      port: 0,
      tls: { cert: fx.dpsServer.cert, key: fx.dpsServer.key },
    });
    url = `coaps+tcp://127.0.0.1:${listener.port}/${PATHS.credentials}`;
    writeFileSync(file, Buffer.alloc(8 * 1024, 0x41));
  });
  after(() => listener?.close());

  it("without a client certificate: 4.01 for the first block of an 8 KiB upload, no 2.31 Continue", async () => {
    const r = await libcoapClient(["-m", "post", "-b", "1024", "-v", "7", "-f", file, "-B", "10", url]);
    const log = `${r.stdout.toString()}\n${r.stderr}`;
    assert.match(log, /c:4\.01/);
    assert.doesNotMatch(log, /c:2\.31/);
    assert.deepEqual([...sentBlocks(log)], [0]);
  });

  it("with a certificate of an unknown manufacturer: 4.03 at the first block", async () => {
    const cert = join(dir, "other.pem");
    const key = join(dir, "other.key");
    writeFileSync(cert, fx.other.device.cert);
    writeFileSync(key, fx.other.device.key);
    const r = await libcoapClient([
      "-m",
      "post",
      "-b",
      "1024",
      "-v",
      "7",
      "-c",
      cert,
      "-j",
      key,
      "-f",
      file,
      "-B",
      "10",
      url,
    ]);
    const log = `${r.stdout.toString()}\n${r.stderr}`;
    assert.match(log, /c:4\.03/);
    assert.doesNotMatch(log, /c:2\.31/);
    assert.deepEqual([...sentBlocks(log)], [0]);
  });

  it("an enrolled device's upload goes through block by block (the body is then judged: 4.00)", async () => {
    const r = await libcoapClient([
      "-m",
      "post",
      "-b",
      "1024",
      "-v",
      "7",
      "-c",
      fx.demo.deviceCert,
      "-j",
      fx.demo.deviceKey,
      "-f",
      file,
      "-B",
      "10",
      url,
    ]);
    const log = `${r.stdout.toString()}\n${r.stderr}`;
    assert.match(log, /c:2\.31/);
    assert.equal(sentBlocks(log).size, 8);
    assert.match(log, /c:4\.00/);
  });
});
