/**
 * MQTT packets written and read by hand (MQTT 3.1.1, OASIS, sections 2 and 3; MQTT 5.0
 * section 3.1 for the CONNECT of a version 5 client), for tests that need what a library
 * client would never send: pipelined requests, keepalive 0 and silence, a chosen source
 * address.
 */
import { connect as netConnect, type Socket } from "node:net";

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);
}

export function connectPacket(
  opts: { clientId?: string; username?: string; keepalive?: number; version?: 4 | 5 } = {},
): Buffer {
  const version = opts.version ?? 4;
  const flags = 0x02 | (opts.username !== undefined ? 0x80 : 0);
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(opts.keepalive ?? 0);
  const parts = [str("MQTT"), Buffer.from([version, flags]), keepalive];
  if (version === 5) parts.push(Buffer.from([0])); // no properties
  parts.push(str(opts.clientId ?? ""));
  if (opts.username !== undefined) parts.push(str(opts.username));
  return packet(0x10, Buffer.concat(parts));
}

export function subscribePacket(id: number, topic: string, qos: 0 | 1): Buffer {
  const pid = Buffer.alloc(2);
  pid.writeUInt16BE(id);
  return packet(0x82, Buffer.concat([pid, str(topic), Buffer.from([qos])]));
}

export function publishPacket(topic: string, payload: string, qos: 0 | 1 = 0, id = 1): Buffer {
  const parts = [str(topic)];
  if (qos > 0) {
    const pid = Buffer.alloc(2);
    pid.writeUInt16BE(id);
    parts.push(pid);
  }
  parts.push(Buffer.from(payload, "utf8"));
  return packet(0x30 | (qos << 1), Buffer.concat(parts));
}

export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** The topic and payload of a PUBLISH read by `RawSession`. */
export function publishOf(p: RawPacket): { topic: string; payload: string } {
  const len = p.body.readUInt16BE(0);
  const topic = p.body.subarray(2, 2 + len).toString("utf8");
  const qos = (p.flags >> 1) & 3;
  const start = 2 + len + (qos > 0 ? 2 : 0);
  return { topic, payload: p.body.subarray(start).toString("utf8") };
}

/** A TCP connection that splits what it reads into MQTT packets. */
export class RawSession {
  readonly packets: RawPacket[] = [];
  /** Settles when the socket is closed, by either side. */
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (;;) {
        if (this.buf.length < 2) break;
        let len = 0;
        let mul = 1;
        let i = 1;
        let complete = false;
        for (; i < this.buf.length && i <= 4; i++) {
          len += (this.buf[i] & 0x7f) * mul;
          mul *= 128;
          if ((this.buf[i] & 0x80) === 0) {
            complete = true;
            break;
          }
        }
        if (!complete || this.buf.length < i + 1 + len) break;
        const first = this.buf[0];
        this.packets.push({
          type: first >> 4,
          flags: first & 15,
          body: this.buf.subarray(i + 1, i + 1 + len),
        });
        this.buf = this.buf.subarray(i + 1 + len);
      }
      this.wake();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        resolve();
        this.wake();
      }),
    );
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static open(port: number, localAddress?: string): Promise<RawSession> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: "127.0.0.1", port, localAddress });
      socket.once("connect", () => resolve(new RawSession(socket)));
      socket.once("error", reject);
    });
  }

  write(...packets: Buffer[]): void {
    this.socket.write(Buffer.concat(packets));
  }

  /** Resolves once `pred` holds for what was read, or when the socket closes (then with false). */
  until(pred: (packets: RawPacket[]) => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (pred(this.packets)) return resolve(true);
        if (this.socket.destroyed || this.socket.readableEnded) return resolve(pred(this.packets));
        this.waiters.push(check);
      };
      check();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const CONNACK = 2;
export const PUBLISH = 3;
export const SUBACK = 9;
