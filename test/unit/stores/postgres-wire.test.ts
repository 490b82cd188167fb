/**
 * A PostgreSQL server going down as a connection completes: the server process sends
 * "terminating connection due to unexpected postmaster exit" (57P02) right behind the
 * ReadyForQuery that ends the startup, and both may arrive in one TCP chunk. The pg driver
 * then emits "error" on a client that the pool has just handed out; with nobody listening,
 * that throws out of the socket's handler and ends Node-RED ("[red] Uncaught Exception"),
 * which the fleet test once caught when it killed PostgreSQL mid-storm. Here a socket on
 * loopback speaks the server's side of the startup (PostgreSQL's protocol, "Message
 * Flow: Start-up") and sends exactly that chunk, every time.
 */
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "mocha";
import { StoreError } from "../../../lib/stores/backend";
import { PostgresBackend } from "../../../lib/stores/postgres";

/** One backend message: a type byte, a length that counts itself, the body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "ascii");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const authOk = () => message("R", Buffer.from([0, 0, 0, 0]));
const readyForQuery = () => message("Z", Buffer.from("I", "ascii"));
function fatal(code: string, text: string): Buffer {
  const field = (k: string, v: string) => Buffer.concat([Buffer.from(k + v, "utf8"), Buffer.from([0])]);
  return message(
    "E",
    Buffer.concat([
      field("S", "FATAL"),
      field("V", "FATAL"),
      field("C", code),
      field("M", text),
      Buffer.from([0]),
    ]),
  );
}

describe("unit/stores/postgres-wire", () => {
  let server: Server;
  let port = 0;
  const sockets = new Set<Socket>();
  before(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
      let got = Buffer.alloc(0);
      socket.on("data", (d: Buffer) => {
        got = Buffer.concat([got, d]);
        // The StartupMessage: a length that counts itself, then protocol 3.0 and parameters.
        if (got.length < 4 || got.length < got.readInt32BE(0)) return;
        got = Buffer.alloc(0);
        socket.end(
          Buffer.concat([
            authOk(),
            readyForQuery(),
            fatal("57P02", "terminating connection due to unexpected postmaster exit"),
          ]),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("an error right behind the connection's ReadyForQuery is the store's IO error, not an uncaught exception", async () => {
    const errors: unknown[] = [];
    const uncaught = (err: unknown) => errors.push(err);
    // Mocha's own handler would turn it into a failure too; this one says what it was.
    process.prependListener("uncaughtException", uncaught);
    try {
      for (let i = 0; i < 5; i++) {
        const b = new PostgresBackend({
          host: "127.0.0.1",
          port,
          database: "d",
          user: "u",
          password: "not-in-any-message",
          namespace: `wire_${i}`,
        });
        await assert.rejects(b.open(), (err: unknown) => {
          assert.ok(err instanceof StoreError, String(err));
          assert.equal(err.code, "IO");
          assert.doesNotMatch(err.message, /not-in-any-message/);
          return true;
        });
        await b.close();
      }
      // A turn of the event loop for anything emitted late.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(errors.map(String), []);
    } finally {
      process.off("uncaughtException", uncaught);
    }
  });
});
