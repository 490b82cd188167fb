import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { FrameParser, encodeMessage, type CoapMessage } from "../../lib/transports/coap-tcp/frame";

/** A bare TCP peer for feeding a CoAP-over-TCP server bytes it should refuse. */
export interface RawPeer {
  socket: Socket;
  messages: CoapMessage[];
  send: (bytes: Buffer | CoapMessage) => void;
  /** Resolves with the first received message that matches. */
  waitFor: (pred: (m: CoapMessage) => boolean) => Promise<CoapMessage>;
  /** Resolves once the server has closed the connection. */
  closed: Promise<void>;
}

export async function rawPeer(port: number): Promise<RawPeer> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  const parser = new FrameParser(1 << 24);
  const messages: CoapMessage[] = [];
  const waiters: Array<{ pred: (m: CoapMessage) => boolean; resolve: (m: CoapMessage) => void }> = [];
  socket.on("data", (chunk: Buffer) => {
    for (const m of parser.push(chunk).messages) {
      messages.push(m);
      for (const w of [...waiters]) {
        if (w.pred(m)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  });
  socket.on("error", () => undefined);
  const closed = once(socket, "close").then(() => undefined);
  return {
    socket,
    messages,
    send: (bytes) => socket.write(Buffer.isBuffer(bytes) ? bytes : encodeMessage(bytes)),
    waitFor: (pred) => {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        void closed.then(() => reject(new Error("connection closed before the expected message")));
      });
    },
    closed,
  };
}
