/**
 * Loaded inside every server the benchmarks measure (a bare baseline, or Node-RED through
 * the settings.js the bench writes: nothing of it ships in nodes/ or lib/). It answers the
 * bench over the IPC channel of child_process.fork:
 * - `{ stats, gc }`: CPU used so far (process.cpuUsage, read before any collection) and
 *   memory, after two full collections when `gc` is set (the process runs with
 *   --expose-gc);
 * - `{ profile: "start" | "stop", file }`: a CPU profile of this process through
 *   node:inspector (https://nodejs.org/api/inspector.html#cpu-profiler), written to `file`.
 * The channel is unref'd so it never keeps a process alive on its own.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";

export interface StatsAnswer {
  stats: number;
  /** user + system CPU of the process since it started, microseconds */
  cpuUs: number;
  rss: number;
  heapUsed: number;
}

export function installStatsHook(): void {
  if (!process.send) return;
  let session: Session | undefined;
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      session?.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  process.on("message", (m: { stats?: number; gc?: boolean; profile?: string; file?: string }) => {
    if (typeof m?.stats === "number") {
      const c = process.cpuUsage();
      const gc = (globalThis as { gc?: () => void }).gc;
      if (m.gc && gc) {
        gc();
        gc();
      }
      const mem = process.memoryUsage();
      const answer: StatsAnswer = {
        stats: m.stats,
        cpuUs: c.user + c.system,
        rss: mem.rss,
        heapUsed: mem.heapUsed,
      };
      process.send?.(answer);
    } else if (m?.profile === "start") {
      session = new Session();
      session.connect();
      post("Profiler.enable")
        .then(() => post("Profiler.start"))
        .then(() => process.send?.({ profile: "started" }));
    } else if (m?.profile === "stop" && session) {
      post("Profiler.stop").then((res) => {
        writeFileSync(m.file as string, JSON.stringify((res as { profile: unknown }).profile));
        session?.disconnect();
        session = undefined;
        process.send?.({ profile: "stopped" });
      });
    }
  });
  process.channel?.unref();
}
