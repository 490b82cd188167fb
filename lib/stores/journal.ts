/**
 * The journal backend: one directory of append-only log segments. Every write (set,
 * update, delete) appends one framed record and resolves only once an fdatasync covers
 * it. Writes share fsyncs (group commit): records queued while one fsync runs go to the
 * disk together in one write and one fdatasync, so under load the cost of a durable write
 * is a fraction of a sync instead of two syncs (file, directory) per key as the file
 * backend pays. This is how write-ahead logs amortise their flushes (PostgreSQL's
 * commit_delay / group commit, LevelDB's log writer batching concurrent writers).
 *
 * Memory: an open-addressing hash table in typed arrays maps two 32-bit hashes of a key to
 * the place of its latest record (segment, offset, length): 20 bytes a slot, about 28 a
 * key, whatever the key's length. get() is one pread, which also verifies the key that the
 * record names; list() streams the segments (it is rare).
 *
 * Open reads the segments in chunks with a turn of the event loop between them and drops a
 * torn last record (a crash mid-write: the log is valid up to the last whole record, as
 * Redis's aof-load-truncated and LevelDB's log reader treat a torn tail). Compaction
 * rewrites the live records of the sealed segments into one new segment that starts with a
 * BASE record ("every segment numbered below me is superseded"), renames it over the last
 * sealed one and then removes the others; writes go on in the active segment meanwhile.
 *
 * Record frame: u32 LE body length, u32 LE CRC-32 of the body, body = u8 type, u16 LE key
 * length, the key in UTF-8, then for PUT the JSON {m: meta, v: value} or {m, s: sealed}.
 */
import { randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  stat,
  unlink,
  type FileHandle,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import * as zlib from "node:zlib";
import {
  StoreError,
  type CreateResult,
  type EntryMeta,
  type EntryMetaInput,
  type EntrySummary,
  type JsonValue,
  type ManyUpdate,
  type StoreBackend,
  type StoredEntry,
} from "./backend";
import { checkKey, isExpired, makeMeta, toEntry, valueText } from "./entry";
import { InFlight } from "./in-flight";
import { KeyLock } from "./key-lock";
import { TransientPruner, claimOnceVia, countVia, createIfAbsentVia, updateManyUnder } from "./primitives";
import { fsyncDir, ioError, processAlive } from "./fs-util";
import { isSealedBox, seal, unseal, type SealedBox } from "./crypto-box";
import { openStoreKey } from "./store-header";

export interface JournalBackendOptions {
  directory: string;
  /** When given, values are encrypted at rest with a key derived from it (as the file backend does). */
  passphrase?: string;
  /** scrypt cost N for a NEW store directory (a power of two); tests lower it. */
  scryptN?: number;
  /** A new segment is started once the active one holds this many bytes (default 64 MiB). */
  segmentBytes?: number;
  /** Compaction runs once the log holds at least this many bytes (default 8 MiB)... */
  compactMinBytes?: number;
  /** ...and at most this share of them is live (default 0.5). */
  compactLiveRatio?: number;
  /** For tests: awaited before each fdatasync of a batch, with the number of records in it. */
  beforeSync?: (records: number) => Promise<void> | void;
}

/** What the journal did, for tests and benchmarks. */
export interface JournalCounters {
  /** Records appended (set, update, delete). */
  records: number;
  /** fdatasync calls covering appended records (one per batch). */
  syncs: number;
  compactions: number;
}

const TYPE_PUT = 1;
const TYPE_DELETE = 2;
const TYPE_BASE = 3;
const HEAD = 8;
/** No record is larger: a length beyond it is a torn or damaged frame, not a reason to allocate. */
const MAX_BODY = 256 * 1024 * 1024;
const CHUNK = 64 * 1024;
/**
 * The first read of a scan: the parser may not be compiled yet, so it starts small, and
 * the chunk doubles only while one is parsed in under TURN_MS (halves above twice that):
 * before the JIT has compiled the parser, a 64 KB chunk took 10-16 ms here.
 */
const FIRST_CHUNK = 4 * 1024;
const TURN_MS = 2;
const LOCK_FILE = "journal.lock";
const SEGMENT_RE = /^seg-(\d{10})\.log$/;
const TEMP_SUFFIX = ".tmp";

const segmentName = (id: number) => `seg-${String(id).padStart(10, "0")}.log`;
/** Binds a sealed value to its key, so a record copied under another key fails to open. */
const aadFor = (key: string) => `entry:${key}`;

// ------------------------------------------------------------------ CRC-32 and key hashes

let crcTable: Int32Array | undefined;
function crc32js(buf: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
/** zlib.crc32 came with Node 20.15 and 22.2; older runtimes get the table version. */
const zcrc = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
const crc32 = (buf: Uint8Array): number => (zcrc ? zcrc(buf) : crc32js(buf));

/** FNV-1a over the key's UTF-8 bytes: picks the slot. */
function hash1(b: Uint8Array, from = 0, to = b.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}

/** A second, independent 32-bit hash (MurmurHash3's mixing, another seed): with hash1 it names the key. */
function hash2(b: Uint8Array, from = 0, to = b.length): number {
  let h = 0x9747b28c ^ (to - from);
  for (let i = from; i < to; i++) {
    h = Math.imul(h ^ b[i], 0x5bd1e995);
    h ^= h >>> 15;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * FNV-1a of a key's first segment with its slash ("thingsboard/"), never 0; 0 for a key
 * without a slash. The journal counts its keys per head, so a listing of a prefix nobody
 * holds (the registries' look for an earlier layout, at every open) reads nothing.
 */
function headHash(b: Uint8Array, from = 0, to = b.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    h = Math.imul(h ^ b[i], 0x01000193);
    if (b[i] === 0x2f) return h >>> 0 || 1;
  }
  return 0;
}

// ------------------------------------------------------------------ the index

/**
 * Linear probing over one typed array, five 32-bit words a slot (first hash, second hash,
 * segment, offset, length), so a probe or a rehash touches one cache line, not five
 * arrays. Segment 0 marks an empty slot. A key is named by both hashes: keys whose first
 * hash collides sit in neighbouring slots and are told apart by the second. Removal
 * shifts the following run back (Knuth, TAOCP vol. 3, 6.4, algorithm R), so there are no
 * tombstones.
 */
const W = 5;
class KeyIndex {
  private cap = 1024;
  private mask = this.cap - 1;
  private t = new Uint32Array(this.cap * W);
  size = 0;

  /** Bytes held by the table. */
  get bytes(): number {
    return this.t.byteLength;
  }

  get capacity(): number {
    return this.cap;
  }

  /**
   * Sizes an empty table for about `keys` keys at once, so that opening a large log does
   * not stop to rehash a table of 100,000 keys between two chunks.
   */
  reserve(keys: number): void {
    if (this.size > 0) return;
    let cap = this.cap;
    while (keys * 10 > cap * 7) cap *= 2;
    if (cap === this.cap) return;
    this.cap = cap;
    this.mask = cap - 1;
    this.t = new Uint32Array(cap * W);
  }

  segAt(i: number): number {
    return this.t[i * W + 2];
  }

  offAt(i: number): number {
    return this.t[i * W + 3];
  }

  lenAt(i: number): number {
    return this.t[i * W + 4];
  }

  /** Moves slot i's record (compaction). */
  setPlace(i: number, seg: number, off: number): void {
    this.t[i * W + 2] = seg;
    this.t[i * W + 3] = off;
  }

  find(a: number, b: number): number {
    const t = this.t;
    for (let i = a & this.mask; ; i = (i + 1) & this.mask) {
      const p = i * W;
      if (t[p + 2] === 0) return -1;
      if (t[p] === a && t[p + 1] === b) return i;
    }
  }

  /** Sets the place of a key; returns the length of the record it replaces, or -1. */
  put(a: number, b: number, seg: number, off: number, len: number): number {
    if ((this.size + 1) * 10 > this.cap * 7) this.grow();
    const t = this.t;
    let i = a & this.mask;
    for (; t[i * W + 2] !== 0; i = (i + 1) & this.mask) {
      const p = i * W;
      if (t[p] === a && t[p + 1] === b) {
        const prev = t[p + 4];
        t[p + 2] = seg;
        t[p + 3] = off;
        t[p + 4] = len;
        return prev;
      }
    }
    const p = i * W;
    t[p] = a;
    t[p + 1] = b;
    t[p + 2] = seg;
    t[p + 3] = off;
    t[p + 4] = len;
    this.size++;
    return -1;
  }

  /** Removes a key; returns the length of its record, or -1. */
  remove(a: number, b: number): number {
    let i = this.find(a, b);
    if (i < 0) return -1;
    const t = this.t;
    const prev = t[i * W + 4];
    this.size--;
    // Algorithm R: move later members of the run into the hole when their home allows it.
    for (let j = (i + 1) & this.mask; t[j * W + 2] !== 0; j = (j + 1) & this.mask) {
      const home = t[j * W] & this.mask;
      const between = i <= j ? i < home && home <= j : i < home || home <= j;
      if (between) continue;
      t.copyWithin(i * W, j * W, j * W + W);
      i = j;
    }
    t[i * W + 2] = 0;
    return prev;
  }

  private grow(): void {
    const old = this.t;
    const oldCap = this.cap;
    this.cap *= 2;
    this.mask = this.cap - 1;
    const t = new Uint32Array(this.cap * W);
    // Every key is distinct here: straight to the first free slot.
    const mask = this.mask;
    for (let i = 0; i < oldCap; i++) {
      const p = i * W;
      if (old[p + 2] === 0) continue;
      let j = old[p] & mask;
      while (t[j * W + 2] !== 0) j = (j + 1) & mask;
      const q = j * W;
      t[q] = old[p];
      t[q + 1] = old[p + 1];
      t[q + 2] = old[p + 2];
      t[q + 3] = old[p + 3];
      t[q + 4] = old[p + 4];
    }
    this.t = t;
  }
}

// ------------------------------------------------------------------ frames and segments

interface Frame {
  type: number;
  key: Buffer;
  payload: Buffer;
  /** Offset of the frame in its segment, and its whole length (head included). */
  off: number;
  len: number;
}

function encodeFrame(type: number, key: Buffer, payload?: Buffer): Buffer {
  const bodyLen = 3 + key.length + (payload?.length ?? 0);
  const buf = Buffer.allocUnsafe(HEAD + bodyLen);
  buf.writeUInt32LE(bodyLen, 0);
  buf.writeUInt8(type, HEAD);
  buf.writeUInt16LE(key.length, HEAD + 1);
  key.copy(buf, HEAD + 3);
  payload?.copy(buf, HEAD + 3 + key.length);
  buf.writeUInt32LE(crc32(buf.subarray(HEAD)), 4);
  return buf;
}

/** The frame at the start of `buf` (exactly one frame's bytes), or undefined when damaged. */
function decodeFrame(buf: Buffer, off: number): Frame | undefined {
  if (buf.length < HEAD + 3) return undefined;
  const bodyLen = buf.readUInt32LE(0);
  if (bodyLen !== buf.length - HEAD || crc32(buf.subarray(HEAD)) !== buf.readUInt32LE(4)) return undefined;
  const type = buf[HEAD];
  const keyLen = buf.readUInt16LE(HEAD + 1);
  if (3 + keyLen > bodyLen || (type !== TYPE_PUT && type !== TYPE_DELETE && type !== TYPE_BASE))
    return undefined;
  return {
    type,
    key: buf.subarray(HEAD + 3, HEAD + 3 + keyLen),
    payload: buf.subarray(HEAD + 3 + keyLen),
    off,
    len: buf.length,
  };
}

async function readExactly(fh: FileHandle, buf: Buffer, pos: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeExactly(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
    done += bytesWritten;
  }
}

/**
 * A frame as the scanner shows it: places in the chunk it was read into, one object for
 * every frame of a scan (open visits every record: no allocation per record but the CRC's
 * view). The chunk is never written to, so a subarray of it stays valid.
 */
interface FrameView {
  buf: Buffer;
  /** Where the frame starts in buf, its key, and its payload (to the end of the frame). */
  start: number;
  keyStart: number;
  keyEnd: number;
  type: number;
  /** Offset of the frame in its segment, and its whole length (head included). */
  off: number;
  len: number;
  h1: number;
  h2: number;
}

/**
 * Visits the frames of a segment up to `end`, a chunk at a time (each read is a turn of
 * the event loop, each chunk well under a millisecond of parsing). Resolves with the end of
 * the last whole frame: less than `end` when the rest is torn or damaged.
 */
async function scanSegment(
  fh: FileHandle,
  end: number,
  visit: (f: FrameView) => void,
  afterChunk?: () => Promise<boolean>,
  from = 0,
): Promise<number> {
  let buf = Buffer.alloc(0);
  let base = from; // file offset of buf[0]
  const v: FrameView = { buf, start: 0, keyStart: 0, keyEnd: 0, type: 0, off: 0, len: 0, h1: 0, h2: 0 };
  let chunk = FIRST_CHUNK;
  for (;;) {
    let i = 0;
    v.buf = buf;
    const t0 = performance.now();
    while (buf.length - i >= HEAD) {
      const bodyLen = buf.readUInt32LE(i);
      if (bodyLen < 3 || bodyLen > MAX_BODY) return base + i;
      if (buf.length - i < HEAD + bodyLen) break;
      const body = i + HEAD;
      if (crc32(buf.subarray(body, body + bodyLen)) !== buf.readUInt32LE(i + 4)) return base + i;
      const type = buf[body];
      const keyLen = buf.readUInt16LE(body + 1);
      if (3 + keyLen > bodyLen || (type !== TYPE_PUT && type !== TYPE_DELETE && type !== TYPE_BASE))
        return base + i;
      v.start = i;
      v.type = type;
      v.keyStart = body + 3;
      v.keyEnd = body + 3 + keyLen;
      v.off = base + i;
      v.len = HEAD + bodyLen;
      v.h1 = hash1(buf, v.keyStart, v.keyEnd);
      v.h2 = hash2(buf, v.keyStart, v.keyEnd);
      visit(v);
      i += HEAD + bodyLen;
    }
    const took = performance.now() - t0;
    if (took < TURN_MS) chunk = Math.min(CHUNK, chunk * 2);
    else if (took > 2 * TURN_MS) chunk = Math.max(FIRST_CHUNK, chunk >> 1);
    buf = buf.subarray(i);
    base += i;
    const filePos = base + buf.length;
    if (afterChunk && !(await afterChunk())) return base;
    if (filePos >= end) return base;
    const need = buf.length >= HEAD ? HEAD + buf.readUInt32LE(0) - buf.length : 0;
    const want = Math.min(end - filePos, Math.max(chunk, need));
    const next = Buffer.allocUnsafe(buf.length + want);
    buf.copy(next);
    const got = await readExactly(fh, next.subarray(buf.length), filePos);
    buf = next.subarray(0, buf.length + got);
    if (got === 0) return base;
  }
}

/** One open segment file; readers hold it so that compaction closes it only once they are done. */
class Segment {
  refs = 0;
  private retired = false;
  constructor(
    readonly id: number,
    readonly fh: FileHandle,
    public size: number,
  ) {}

  acquire(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0 && this.retired) void this.fh.close().catch(() => undefined);
  }

  retire(): void {
    this.retired = true;
    if (this.refs === 0) void this.fh.close().catch(() => undefined);
  }
}

interface Pending {
  type: number;
  key: Buffer;
  h1: number;
  h2: number;
  head: number;
  frame: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface DiskPayload {
  m: EntryMeta;
  v?: JsonValue;
  s?: SealedBox;
}

const META_FIELDS = ["protocol", "endpoint", "expiresAt", "kind"] as const;

function isMeta(m: unknown): m is EntryMeta {
  const o = m as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null) return false;
  if (typeof o.obtainedAt !== "string" || typeof o.updatedAt !== "string") return false;
  return META_FIELDS.every((f) => o[f] === undefined || typeof o[f] === "string");
}

function parsePayload(buf: Buffer): DiskPayload | undefined {
  try {
    const p = JSON.parse(buf.toString("utf8")) as Partial<DiskPayload> | null;
    if (typeof p !== "object" || p === null || !isMeta(p.m)) return undefined;
    if (p.s !== undefined ? !isSealedBox(p.s) : p.v === undefined) return undefined;
    return p as DiskPayload;
  } catch {
    return undefined;
  }
}

/** Directories a JournalBackend of this process has open: a second writer would corrupt the log. */
const openHere = new Set<string>();

// ------------------------------------------------------------------ the backend

export class JournalBackend implements StoreBackend {
  readonly kind = "journal";
  readonly shared = false;
  readonly counters: JournalCounters = { records: 0, syncs: 0, compactions: 0 };
  private readonly dir: string;
  private readonly lock = new KeyLock();
  private readonly inFlight = new InFlight(() => this.describe());
  private readonly pruner = new TransientPruner(this);
  private readonly segmentBytes: number;
  private readonly compactMinBytes: number;
  private readonly compactLiveRatio: number;
  private cryptoKey?: Buffer;
  private opening?: Promise<void>;
  private index = new KeyIndex();
  /** Live keys per first segment (headHash), for list(). */
  private heads = new Map<number, number>();
  private segments = new Map<number, Segment>();
  private active?: Segment;
  private liveBytes = 0;
  private totalBytes = 0;
  private queue: Pending[] = [];
  private rotateWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;
  /** Set when the log can no longer be appended to safely (a failed write could not be undone). */
  private failed?: StoreError;
  /** Set when the directory cannot be written: reads work, writes fail with READ_ONLY. */
  private readOnly?: StoreError;
  private compacting?: Promise<void>;
  /** After a compaction that failed (a full disk), the next waits until the log grew by compactMinBytes. */
  private compactAfter = 0;
  /** Listings under way, and a compaction waiting for them to end before it switches segments. */
  private listing = 0;
  private listWaiters: (() => void)[] = [];
  private closing = false;
  private locked = false;
  /** The log was read into the index (set once doOpen succeeded). */
  private loaded = false;

  constructor(private readonly opts: JournalBackendOptions) {
    if (!opts.directory) throw new StoreError("IO", "the journal store needs a directory");
    if (opts.passphrase !== undefined && opts.passphrase.length === 0)
      throw new StoreError("WRONG_KEY", "encryption is on but the encryption key is empty");
    this.dir = resolve(opts.directory);
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.compactMinBytes = opts.compactMinBytes ?? 8 * 1024 * 1024;
    this.compactLiveRatio = opts.compactLiveRatio ?? 0.5;
  }

  describe(): string {
    return `journal ${this.dir}${this.opts.passphrase !== undefined ? " (encrypted)" : ""}`;
  }

  /** Keys, bytes of the in-memory index, bytes of the log and of its live records. */
  stats(): {
    keys: number;
    indexBytes: number;
    logBytes: number;
    liveBytes: number;
    segments: number;
    queued: number;
  } {
    return {
      queued: this.queue.length,
      keys: this.index.size,
      indexBytes: this.index.bytes,
      logBytes: this.totalBytes,
      liveBytes: this.liveBytes,
      segments: this.segments.size,
    };
  }

  /**
   * Reads the log into the index; every operation waits for it, calling it early reports
   * problems at deploy. IO and READ_ONLY failures are retried by the next call.
   */
  open(): Promise<void> {
    if (this.inFlight.closed) return Promise.reject(this.inFlight.refusal());
    return this.ready();
  }

  private ready(): Promise<void> {
    if (!this.opening) {
      const p = this.doOpen();
      this.opening = p;
      p.catch((err: unknown) => {
        const code = (err as StoreError).code;
        if (this.opening === p && (code === "IO" || code === "READ_ONLY")) this.opening = undefined;
      });
    }
    return this.opening;
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    checkKey(key);
    // Open, and no record of the key (a device asking for the first time): the answer is
    // in the index, with nothing to read and nothing for close() to wait for.
    if (this.loaded && !this.inFlight.closed && !this.closing) {
      const kb = Buffer.from(key, "utf8");
      if (this.index.find(hash1(kb), hash2(kb)) < 0) return undefined;
    }
    return this.inFlight.run(async () => {
      await this.ready();
      const rec = await this.readRecord(key);
      return rec && toEntry(key, rec.value, { ...rec.meta });
    });
  }

  async set(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<StoredEntry> {
    checkKey(key);
    const text = valueText(value);
    const m = makeMeta(meta);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        this.checkWritable();
        // As the file backend: an entry we cannot read (damaged, or sealed under a key we
        // do not have) is not replaced.
        await this.readRecord(key);
        await this.append(TYPE_PUT, key, this.payloadOfText(key, text, m));
        return toEntry(key, JSON.parse(text) as JsonValue, { ...m });
      }),
    );
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        this.checkWritable();
        const kb = Buffer.from(key, "utf8");
        if (this.index.find(hash1(kb), hash2(kb)) < 0) return false;
        await this.append(TYPE_DELETE, key);
        return true;
      }),
    );
  }

  async update(key: string, fn: Parameters<StoreBackend["update"]>[1]): Promise<StoredEntry | undefined> {
    return this.updateWith(key, fn);
  }

  /**
   * update() with other entries written ahead of the key's, in one batch (see
   * StoreBackend.updateWith): their frames go into the queue together, so one write and
   * one fdatasync cover them all, and a torn tail keeps a prefix of them.
   */
  async updateWith(
    key: string,
    fn: Parameters<StoreBackend["update"]>[1],
    before?: Parameters<NonNullable<StoreBackend["updateWith"]>>[2],
  ): Promise<StoredEntry | undefined> {
    checkKey(key);
    return this.inFlight.run(() =>
      this.lock.run(key, async () => {
        await this.ready();
        this.checkWritable();
        const cur = await this.readRecord(key);
        const next = fn(cur && toEntry(key, cur.value, { ...cur.meta }));
        if (!next) return undefined;
        const text = valueText(next.value);
        const m = makeMeta(next.meta);
        const frames: { type: number; key: string; payload: Buffer }[] = [];
        for (const e of before?.() ?? []) {
          checkKey(e.key);
          const et = valueText(e.value);
          // As set(): an entry we cannot read is not replaced.
          await this.readRecord(e.key);
          frames.push({
            type: TYPE_PUT,
            key: e.key,
            payload: this.payloadOfText(e.key, et, makeMeta(e.meta)),
          });
        }
        frames.push({ type: TYPE_PUT, key, payload: this.payloadOfText(key, text, m) });
        await this.appendAll(frames);
        return toEntry(key, JSON.parse(text) as JsonValue, { ...m });
      }),
    );
  }

  createIfAbsent(key: string, value: JsonValue, meta?: EntryMetaInput): Promise<CreateResult> {
    return createIfAbsentVia((k, fn) => this.update(k, fn), key, value, meta);
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const taken = await claimOnceVia((k, fn) => this.update(k, fn), key, ttlMs);
    this.pruner.touched(key);
    return taken;
  }

  async count(key: string, windowMs: number): Promise<number> {
    const n = await countVia((k, fn) => this.update(k, fn), key, windowMs);
    this.pruner.touched(key);
    return n;
  }

  /**
   * The changes go into the log as one batch under one fdatasync, as updateWith's do: a
   * crash keeps a prefix of them (in key order), never a later one without an earlier.
   */
  async updateMany(
    keys: readonly string[],
    fn: ManyUpdate,
  ): Promise<Map<string, StoredEntry | undefined> | undefined> {
    return this.inFlight.run(async () => {
      await this.ready();
      return updateManyUnder(this.lock, keys, fn, {
        read: async (key) => {
          const rec = await this.readRecord(key);
          return rec && toEntry(key, rec.value, { ...rec.meta });
        },
        commit: async (changes) => {
          this.checkWritable();
          const frames: { type: number; key: string; payload?: Buffer }[] = [];
          for (const [key, c] of changes) {
            if (c !== null)
              frames.push({ type: TYPE_PUT, key, payload: this.payloadOfText(key, c.text, c.meta) });
            else {
              const kb = Buffer.from(key, "utf8");
              if (this.index.find(hash1(kb), hash2(kb)) >= 0) frames.push({ type: TYPE_DELETE, key });
            }
          }
          if (frames.length > 0) await this.appendAll(frames);
        },
      });
    });
  }

  /**
   * Streams the segments in order and keeps the records the index points at when the scan
   * reaches them; it reads on to the end of the log as it grows, so an entry overwritten
   * meanwhile is listed once (its newer record), and one written meanwhile may be listed.
   * Compaction does not switch segments while a listing runs.
   */
  async list(prefix = ""): Promise<EntrySummary[]> {
    return this.inFlight.run(async () => {
      await this.ready();
      const prefixBytes = Buffer.from(prefix, "utf8");
      const plen = prefixBytes.length;
      // No live key has this prefix's first segment: nothing to read.
      const head = headHash(prefixBytes);
      if (head !== 0 && !this.heads.has(head)) return [];
      const found = new Map<string, EntrySummary>();
      const scanned = new Map<number, number>();
      this.listing++;
      try {
        for (;;) {
          let seg: Segment | undefined;
          for (const s of this.segments.values())
            if ((scanned.get(s.id) ?? 0) < s.size && (!seg || s.id < seg.id)) seg = s;
          if (!seg) break;
          const id = seg.id;
          const from = scanned.get(id) ?? 0;
          scanned.set(id, seg.size);
          seg.acquire();
          try {
            await scanSegment(
              seg.fh,
              seg.size,
              (f) => {
                if (f.type !== TYPE_PUT || f.keyEnd - f.keyStart < plen) return;
                if (f.buf.compare(prefixBytes, 0, plen, f.keyStart, f.keyStart + plen) !== 0) return;
                const slot = this.index.find(f.h1, f.h2);
                if (slot < 0 || this.index.segAt(slot) !== id || this.index.offAt(slot) !== f.off) return;
                // A damaged payload stays out of the list; get() of its key reports CORRUPT.
                const p = parsePayload(f.buf.subarray(f.keyEnd, f.start + f.len));
                const key = f.buf.toString("utf8", f.keyStart, f.keyEnd);
                if (p) found.set(key, { key, meta: { ...p.m }, expired: isExpired(p.m) });
              },
              undefined,
              from,
            );
          } finally {
            seg.release();
          }
        }
      } catch (err) {
        throw ioError(err, `cannot read the journal in ${this.dir}`);
      } finally {
        if (--this.listing === 0) for (const wake of this.listWaiters.splice(0)) wake();
      }
      return [...found.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  /**
   * Rewrites the live records of every sealed segment into one, now, whatever the share of
   * dead records (normally it runs by itself once the log is mostly dead records).
   */
  async compact(): Promise<void> {
    await this.open();
    this.checkWritable();
    if (!this.compacting) this.startCompaction();
    await this.compacting;
  }

  /** Waits for operations under way and a compaction in progress; later calls are refused. */
  async close(): Promise<void> {
    await this.pruner.idle();
    await this.inFlight.close();
    this.closing = true;
    await this.opening?.catch(() => undefined);
    await this.compacting;
    for (const s of this.segments.values()) s.retire();
    this.segments.clear();
    this.active = undefined;
    if (this.locked) {
      this.locked = false;
      await unlink(join(this.dir, LOCK_FILE)).catch(() => undefined);
      openHere.delete(this.dir);
    }
  }

  // ---------------------------------------------------------------- reading

  private async readRecord(key: string): Promise<{ value: JsonValue; meta: EntryMeta } | undefined> {
    const kb = Buffer.from(key, "utf8");
    const slot = this.index.find(hash1(kb), hash2(kb));
    if (slot < 0) return undefined;
    const off = this.index.offAt(slot);
    const len = this.index.lenAt(slot);
    const seg = this.segments.get(this.index.segAt(slot));
    if (!seg) throw new StoreError("CORRUPT", `the journal has lost the segment of "${key}"`);
    seg.acquire();
    const buf = Buffer.allocUnsafe(len);
    let got: number;
    try {
      got = await readExactly(seg.fh, buf, off);
    } catch (err) {
      throw ioError(err, `cannot read "${key}" in ${this.dir}`);
    } finally {
      seg.release();
    }
    const f = got === len ? decodeFrame(buf, off) : undefined;
    if (!f || f.type !== TYPE_PUT) throw new StoreError("CORRUPT", `the record of "${key}" is damaged`);
    // Both hashes matched; the key itself decides (a full collision of both would land here).
    if (!f.key.equals(kb)) throw new StoreError("CORRUPT", `the record for "${key}" names another key`);
    const p = parsePayload(f.payload);
    if (!p) throw new StoreError("CORRUPT", `the record of "${key}" does not decode`);
    if (!p.s) return { value: p.v as JsonValue, meta: p.m };
    if (!this.cryptoKey)
      throw new StoreError(
        "WRONG_KEY",
        `the entry "${key}" is encrypted and this store has no encryption key`,
      );
    const plain = unseal(this.cryptoKey, p.s, aadFor(key));
    if (!plain) throw new StoreError("CORRUPT", `the entry "${key}" fails its integrity check`);
    try {
      return { value: JSON.parse(plain.toString("utf8")) as JsonValue, meta: p.m };
    } catch {
      throw new StoreError("CORRUPT", `the entry "${key}" does not decode`);
    }
  }

  // ---------------------------------------------------------------- writing

  private checkWritable(): void {
    if (this.readOnly) throw this.readOnly;
    if (this.failed) throw this.failed;
  }

  /**
   * A record's payload from its value's JSON text (valueText): the same bytes as
   * JSON.stringify of { m, v }, with the value turned into JSON once per write.
   */
  private payloadOfText(key: string, text: string, meta: EntryMeta): Buffer {
    if (this.cryptoKey) {
      const p: DiskPayload = { m: meta, s: seal(this.cryptoKey, Buffer.from(text), aadFor(key)) };
      return Buffer.from(JSON.stringify(p), "utf8");
    }
    return Buffer.from(`{"m":${JSON.stringify(meta)},"v":${text}}`, "utf8");
  }

  /** Queues one record; resolves once an fdatasync that covers it has returned. */
  private append(type: number, key: string, payload?: Buffer): Promise<void> {
    const kb = Buffer.from(key, "utf8");
    const frame = encodeFrame(type, kb, payload);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        type,
        key: kb,
        h1: hash1(kb),
        h2: hash2(kb),
        head: headHash(kb),
        frame,
        resolve,
        reject,
      });
      this.kick();
    });
  }

  /** Queues records at once (one batch, in this order); resolves once an fdatasync covers them all. */
  private appendAll(records: { type: number; key: string; payload?: Buffer }[]): Promise<void> {
    if (records.length === 1) return this.append(records[0].type, records[0].key, records[0].payload);
    const done = records.map((r) => {
      const kb = Buffer.from(r.key, "utf8");
      const frame = encodeFrame(r.type, kb, r.payload);
      return new Promise<void>((resolve, reject) => {
        this.queue.push({
          type: r.type,
          key: kb,
          h1: hash1(kb),
          h2: hash2(kb),
          head: headHash(kb),
          frame,
          resolve,
          reject,
        });
      });
    });
    // Kicked once all are queued: the flush takes the whole queue as one batch.
    this.kick();
    return Promise.all(done).then(() => undefined);
  }

  private kick(): void {
    if (!this.flushing) void this.flush();
  }

  /**
   * The group commit: whatever is queued goes out as one write and one fdatasync; what
   * arrives meanwhile waits for the next round, which starts as soon as this one ends.
   */
  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0 || this.rotateWaiters.length > 0) {
        const active = this.active as Segment;
        if (this.rotateWaiters.length > 0 || (active.size >= this.segmentBytes && this.queue.length > 0)) {
          const waiters = this.rotateWaiters.splice(0);
          try {
            await this.rotate();
            for (const w of waiters) w.resolve();
          } catch (err) {
            const e = ioError(err, `cannot start a new journal segment in ${this.dir}`);
            for (const w of waiters) w.reject(e);
            for (const p of this.queue.splice(0)) p.reject(e);
            continue;
          }
        }
        if (this.queue.length === 0) continue;
        const batch = this.queue.splice(0);
        await this.commit(batch);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const seg = this.active as Segment;
    const start = seg.size;
    const buf = batch.length === 1 ? batch[0].frame : Buffer.concat(batch.map((p) => p.frame));
    try {
      if (this.failed) throw this.failed;
      await writeExactly(seg.fh, buf, start);
      await this.opts.beforeSync?.(batch.length);
      await seg.fh.datasync();
      this.counters.syncs++;
    } catch (err) {
      const e = ioError(err, `cannot write the journal in ${this.dir}`);
      // Take the batch back out, so the log stays a sequence of acknowledged records. When
      // even that fails, nothing more is appended: the page cache may hold what the disk
      // refused (PostgreSQL's "fsyncgate", 2018), and only a fresh open knows the truth.
      if (!this.failed)
        await seg.fh.truncate(start).catch(() => {
          this.failed = new StoreError("IO", `the journal in ${this.dir} failed a write; reopen the store`);
        });
      for (const p of batch) p.reject(e);
      return;
    }
    seg.size = start + buf.length;
    this.totalBytes += buf.length;
    this.counters.records += batch.length;
    let off = start;
    for (const p of batch) {
      this.apply(p.type, p.h1, p.h2, p.head, seg.id, off, p.frame.length);
      off += p.frame.length;
      p.resolve();
    }
    this.maybeCompact();
  }

  private apply(
    type: number,
    h1: number,
    h2: number,
    head: number,
    seg: number,
    off: number,
    len: number,
  ): void {
    if (type === TYPE_PUT) {
      const prev = this.index.put(h1, h2, seg, off, len);
      this.liveBytes += len - Math.max(prev, 0);
      if (prev < 0) this.heads.set(head, (this.heads.get(head) ?? 0) + 1);
    } else if (type === TYPE_DELETE) {
      const prev = this.index.remove(h1, h2);
      if (prev >= 0) {
        this.liveBytes -= prev;
        const n = (this.heads.get(head) ?? 1) - 1;
        if (n > 0) this.heads.set(head, n);
        else this.heads.delete(head);
      }
    }
  }

  private async newSegment(id: number): Promise<Segment> {
    const fh = await open(join(this.dir, segmentName(id)), "wx+", 0o600);
    try {
      await fsyncDir(this.dir);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    return new Segment(id, fh, 0);
  }

  /** Seals the active segment and starts the next; only the flush loop calls it. */
  private async rotate(): Promise<void> {
    const next = await this.newSegment((this.active as Segment).id + 1);
    this.segments.set(next.id, next);
    this.active = next;
  }

  /** Resolves once the flush loop has sealed the segment that was active. */
  private requestRotate(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.rotateWaiters.push({ resolve, reject });
      this.kick();
    });
  }

  // ---------------------------------------------------------------- compaction

  private maybeCompact(): void {
    if (this.compacting || this.closing || this.failed || this.readOnly) return;
    if (this.totalBytes < Math.max(this.compactMinBytes, this.compactAfter)) return;
    if (this.liveBytes > this.totalBytes * this.compactLiveRatio) return;
    this.startCompaction();
  }

  private startCompaction(): void {
    const p = this.runCompaction()
      .then(
        () => {
          this.compactAfter = 0;
        },
        // The old segments stay as they were; a later trigger tries again, not the next
        // batch (each attempt starts a segment).
        () => {
          this.compactAfter = this.totalBytes + this.compactMinBytes;
        },
      )
      .finally(() => {
        if (this.compacting === p) this.compacting = undefined;
      });
    this.compacting = p;
  }

  private async runCompaction(): Promise<void> {
    await this.requestRotate();
    const activeId = (this.active as Segment).id;
    const sealed = [...this.segments.values()].filter((s) => s.id < activeId).sort((a, b) => a.id - b.id);
    if (sealed.length === 0) return;
    const last = sealed[sealed.length - 1].id;
    const tmp = join(this.dir, `${segmentName(last)}.${randomBytes(4).toString("hex")}${TEMP_SUFFIX}`);
    const out = await open(tmp, "wx+", 0o600);
    let keep = false;
    for (const s of sealed) s.acquire();
    try {
      const base = encodeFrame(TYPE_BASE, Buffer.alloc(0));
      let pos = 0;
      let pending: Buffer[] = [base];
      let pendingBytes = base.length;
      // Where each copied record went: old segment, old offset, new offset, its hashes.
      const moves: number[] = [];
      // Copies go out a chunk at a time, so compaction holds no more than a chunk or so.
      const writeOut = async (): Promise<boolean> => {
        if (pendingBytes > 0) {
          const chunk = pending.length === 1 ? pending[0] : Buffer.concat(pending);
          pending = [];
          pendingBytes = 0;
          await writeExactly(out, chunk, pos);
          pos += chunk.length;
        }
        return !this.closing;
      };
      for (const seg of sealed) {
        await scanSegment(
          seg.fh,
          seg.size,
          (f) => {
            if (f.type !== TYPE_PUT) return;
            const slot = this.index.find(f.h1, f.h2);
            if (slot < 0 || this.index.segAt(slot) !== seg.id || this.index.offAt(slot) !== f.off) return;
            // Offsets are 32-bit: a merged segment past 4 GiB is not written (it stays as it is).
            if (pos + pendingBytes + f.len > 0xffffffff)
              throw new StoreError("IO", "the live records exceed 4 GiB");
            moves.push(seg.id, f.off, pos + pendingBytes, f.h1, f.h2);
            pending.push(f.buf.subarray(f.start, f.start + f.len));
            pendingBytes += f.len;
          },
          writeOut,
        );
        if (!(await writeOut())) return;
      }
      await out.datasync();
      if (this.closing) return;
      await rename(tmp, join(this.dir, segmentName(last)));
      keep = true;
      await fsyncDir(this.dir);
      while (this.listing > 0) await new Promise<void>((wake) => this.listWaiters.push(wake));
      // The switch, in one synchronous step: readers see either the old segments and
      // places or the new ones. Records written meanwhile already point past them.
      const merged = new Segment(last, out, pos);
      for (const s of sealed) {
        this.segments.delete(s.id);
        s.retire();
      }
      this.segments.set(last, merged);
      for (let i = 0; i < moves.length; i += 5) {
        const slot = this.index.find(moves[i + 3], moves[i + 4]);
        if (slot >= 0 && this.index.segAt(slot) === moves[i] && this.index.offAt(slot) === moves[i + 1])
          this.index.setPlace(slot, last, moves[i + 2]);
      }
      this.totalBytes = 0;
      for (const s of this.segments.values()) this.totalBytes += s.size;
      this.counters.compactions++;
      for (const s of sealed)
        if (s.id !== last) await unlink(join(this.dir, segmentName(s.id))).catch(() => undefined);
      await fsyncDir(this.dir).catch(() => undefined);
    } finally {
      for (const s of sealed) s.release();
      if (!keep) {
        await out.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
      }
    }
  }

  // ---------------------------------------------------------------- opening

  private async doOpen(): Promise<void> {
    try {
      const created = await mkdir(this.dir, { recursive: true, mode: 0o700 });
      if (created !== undefined) await chmod(this.dir, 0o700);
    } catch (err) {
      throw ioError(err, `cannot create the store directory ${this.dir}`);
    }
    this.readOnly = undefined;
    await this.takeLock();
    try {
      if (this.opts.passphrase !== undefined)
        this.cryptoKey = await openStoreKey(this.dir, this.opts.passphrase, this.opts.scryptN);
      await this.load();
    } catch (err) {
      await this.releaseAll();
      throw err;
    }
    this.loaded = true;
  }

  /** One writer per directory: in this process by a set, across processes by a pid file. */
  private async takeLock(): Promise<void> {
    if (openHere.has(this.dir)) throw new StoreError("IO", `the journal in ${this.dir} is open already`);
    const path = join(this.dir, LOCK_FILE);
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(path, "wx", 0o600);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        this.locked = true;
        openHere.add(this.dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EACCES" || code === "EROFS" || code === "EPERM") {
          // Nobody can write here, so nobody can change the log under us: read only.
          this.readOnly = ioError(err, `cannot write the journal in ${this.dir}`);
          return;
        }
        if (code !== "EEXIST" || attempt > 2) throw ioError(err, `cannot lock the journal in ${this.dir}`);
      }
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      // After a restart in a container the new process often has the old pid: ours is stale.
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid))
        throw new StoreError("IO", `the journal in ${this.dir} is in use by process ${pid}`);
      await unlink(path).catch(() => undefined);
    }
  }

  private async releaseAll(): Promise<void> {
    for (const s of this.segments.values()) s.retire();
    this.segments.clear();
    this.active = undefined;
    this.index = new KeyIndex();
    this.heads = new Map();
    this.liveBytes = this.totalBytes = 0;
    if (this.locked) {
      this.locked = false;
      openHere.delete(this.dir);
      await unlink(join(this.dir, LOCK_FILE)).catch(() => undefined);
    }
  }

  private async load(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      throw ioError(err, `cannot read the store directory ${this.dir}`);
    }
    // A compaction that did not finish: its output was never renamed into place.
    if (!this.readOnly)
      for (const n of names)
        if (n.startsWith("seg-") && n.endsWith(TEMP_SUFFIX))
          await unlink(join(this.dir, n)).catch(() => undefined);
    let ids = names
      .map((n) => SEGMENT_RE.exec(n)?.[1])
      .filter((m): m is string => m !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    // The newest BASE segment supersedes every lower one (a compaction stopped before it
    // removed them).
    let from = 0;
    for (let n = ids.length - 1; n > 0 && from === 0; n--) if (await this.startsWithBase(ids[n])) from = n;
    if (!this.readOnly)
      for (const id of ids.slice(0, from))
        await unlink(join(this.dir, segmentName(id))).catch(() => undefined);
    ids = ids.slice(from);
    // The table sized once for what the log may hold (a record of a registry is a few
    // hundred bytes): growing it while reading rehashes every key read so far.
    let logBytes = 0;
    for (const id of ids)
      logBytes += await stat(join(this.dir, segmentName(id))).then(
        (st) => st.size,
        () => 0,
      );
    this.index.reserve(Math.floor(logBytes / 256));
    for (const [n, id] of ids.entries()) {
      const path = join(this.dir, segmentName(id));
      let size: number;
      let end: number;
      let seg: Segment;
      try {
        seg = new Segment(id, await open(path, this.readOnly ? "r" : "r+"), 0);
        this.segments.set(id, seg);
        size = (await seg.fh.stat()).size;
        end = await scanSegment(seg.fh, size, (f) => {
          this.apply(f.type, f.h1, f.h2, headHash(f.buf, f.keyStart, f.keyEnd), id, f.off, f.len);
        });
      } catch (err) {
        throw ioError(err, `cannot read the journal in ${this.dir}`);
      }
      if (end < size) {
        // A sealed segment was complete and synced before the next one began: damage there is real.
        if (n < ids.length - 1)
          throw new StoreError("CORRUPT", `the journal segment ${segmentName(id)} is damaged at byte ${end}`);
        // The torn tail of a write that was never acknowledged.
        if (!this.readOnly)
          try {
            await seg.fh.truncate(end);
            await seg.fh.datasync();
          } catch (err) {
            throw ioError(err, `cannot repair the journal in ${this.dir}`);
          }
      }
      seg.size = end;
      this.totalBytes += end;
    }
    if (ids.length > 0) this.active = this.segments.get(ids[ids.length - 1]);
    else if (!this.readOnly) {
      try {
        this.active = await this.newSegment(1);
      } catch (err) {
        throw ioError(err, `cannot create the journal in ${this.dir}`);
      }
      this.segments.set(1, this.active);
    }
  }

  private async startsWithBase(id: number): Promise<boolean> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(join(this.dir, segmentName(id)), "r");
      const head = Buffer.alloc(HEAD + 3);
      const got = await readExactly(fh, head, 0);
      return got === head.length && head.readUInt32LE(0) === 3 && head[HEAD] === TYPE_BASE;
    } catch (err) {
      throw ioError(err, `cannot read the journal in ${this.dir}`);
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }
}
