/**
 * Reads a journal store's directory (lib/stores/journal.ts) from outside, while the
 * process that writes it runs or after it was killed: the latest record of every key, the
 * way the backend's own open reads them (segments in order, a BASE record superseding the
 * segments before it, a torn or damaged tail ending a segment). For tests that inspect a
 * registry on disk; written from the frame format in the backend's header comment
 * (u32 LE body length, u32 LE CRC-32 of the body, u8 type, u16 LE key length, key, JSON).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";

const PUT = 1;
const DELETE = 2;
const BASE = 3;
const SEGMENT = /^seg-(\d{10})\.log$/;

export function isJournal(dir: string): boolean {
  return readdirSync(dir).some((n) => SEGMENT.test(n));
}

/** Every live entry: its key and the record as stored ({ m: meta, v: value } or { m, s: sealed }). */
export function readJournal(dir: string): Map<string, { m?: unknown; v?: unknown; s?: unknown }> {
  const live = new Map<string, { m?: unknown; v?: unknown; s?: unknown }>();
  const segments = readdirSync(dir)
    .filter((n) => SEGMENT.test(n))
    .sort();
  for (const name of segments) {
    const buf = readFileSync(join(dir, name));
    for (let off = 0; off + 8 <= buf.length;) {
      const len = buf.readUInt32LE(off);
      const body = buf.subarray(off + 8, off + 8 + len);
      if (body.length !== len || len < 3 || crc32(body) >>> 0 !== buf.readUInt32LE(off + 4)) break;
      const type = body[0];
      const keyLen = body.readUInt16LE(1);
      const key = body.subarray(3, 3 + keyLen).toString("utf8");
      if (type === BASE) live.clear();
      else if (type === DELETE) live.delete(key);
      else if (type === PUT) live.set(key, JSON.parse(body.subarray(3 + keyLen).toString("utf8")) as never);
      off += 8 + len;
    }
  }
  return live;
}
