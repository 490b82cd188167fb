import { randomBytes } from "node:crypto";
import { link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { StoreError } from "./backend";

/** Marks our temporary files so that a later open can tell them apart and remove them. */
export const TEMP_MARK = ".tmp-";

/**
 * Maps a file-system failure to a StoreError. Permission and read-only failures are told
 * apart from the rest because the remedy differs (fix rights or mount, not the data).
 */
export function ioError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EROFS" || code === "EACCES" || code === "EPERM")
    return new StoreError("READ_ONLY", `${what}: permission denied or read-only file system (${code})`);
  if (code === "ENOTDIR" || code === "EEXIST" || code === "EISDIR")
    return new StoreError("IO", `${what}: a path component is not a directory (${code})`);
  return new StoreError("IO", `${what}: ${code ?? (err as Error | undefined)?.message ?? "failed"}`);
}

/** Temp files this process is writing right now: a cleanup must leave them alone. */
const writing = new Set<string>();

function tempPath(finalPath: string): string {
  const name = `${TEMP_MARK}${basename(finalPath)}-${process.pid}-${randomBytes(6).toString("hex")}`;
  return join(dirname(finalPath), name);
}

/** True while a process with this pid exists (EPERM: it does, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes temp files left by a writer that died mid-write (kill -9, power loss). A temp
 * file of a live process is kept, unless that process is this one and is not writing
 * it: after a restart in a container the new process often has the old pid.
 */
export async function removeStaleTemps(dir: string, names: string[], prefix = TEMP_MARK): Promise<void> {
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const path = join(dir, name);
    const pid = Number(/-(\d+)-[0-9a-f]{12}$/.exec(name)?.[1]);
    if (writing.has(path)) continue;
    if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
    await unlink(path).catch(() => undefined);
  }
}

async function syncDirNow(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch (err) {
    // Windows cannot open or fsync a directory; the rename itself is still atomic there.
    if (process.platform !== "win32") throw err;
  } finally {
    await fh?.close();
  }
}

/** Per directory: the flush under way, and the one that will follow it. */
const dirSyncs = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

/**
 * Flushes a directory entry change (rename, unlink) to disk; some platforms refuse it.
 * Concurrent writers in one directory share flushes (group commit): a flush covers every
 * change made before it started, so a caller whose change came after the flush under way
 * began waits for the next one, which starts when that one ends. Under load a directory is
 * flushed once per round instead of once per write; each caller still returns only once
 * its own change is on disk.
 */
export function fsyncDir(dir: string): Promise<void> {
  const state = dirSyncs.get(dir);
  if (!state) {
    const running = syncDirNow(dir).finally(() => advance(dir, running));
    dirSyncs.set(dir, { running });
    return running;
  }
  state.next ??= state.running
    .then(
      () => undefined,
      () => undefined,
    )
    .then(() => {
      const cur = dirSyncs.get(dir);
      const running = syncDirNow(dir).finally(() => advance(dir, running));
      if (cur) dirSyncs.set(dir, { running });
      return running;
    });
  return state.next;
}

/** After a flush: the queued one has taken over, or the directory is idle. */
function advance(dir: string, finished: Promise<void>): void {
  const state = dirSyncs.get(dir);
  if (state && state.running === finished && !state.next) dirSyncs.delete(dir);
}

async function writeTemp(finalPath: string, data: string | Buffer): Promise<string> {
  const tmp = tempPath(finalPath);
  writing.add(tmp);
  // "wx": a unique new file, never someone else's; 0600 because values are secrets.
  let fh;
  try {
    fh = await open(tmp, "wx", 0o600);
  } catch (err) {
    writing.delete(tmp);
    throw err;
  }
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    writing.delete(tmp);
    throw err;
  }
  await fh.close();
  return tmp;
}

/**
 * Replaces `finalPath` with `data` so that a reader, or the file after a crash at any
 * instant, holds either the old or the new content in full: temp file, fsync, rename,
 * fsync of the directory.
 */
export async function atomicWrite(finalPath: string, data: string | Buffer): Promise<void> {
  const tmp = await writeTemp(finalPath, data);
  try {
    await rename(tmp, finalPath);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    writing.delete(tmp);
  }
  await fsyncDir(dirname(finalPath));
}

/**
 * Creates `finalPath` with `data` only if it does not exist yet (link() fails on an
 * existing name), atomically. Resolves false when another writer was first.
 */
export async function atomicCreate(finalPath: string, data: string | Buffer): Promise<boolean> {
  const tmp = await writeTemp(finalPath, data);
  try {
    await link(tmp, finalPath);
    await fsyncDir(dirname(finalPath));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
    writing.delete(tmp);
  }
}
