/**
 * Raw HTTP requests for the smoke tests of our endpoints on Node-RED's own server, sent
 * with node:http from the test process (Node-RED runs in its own): bodies sent in full,
 * in part (the answer must come before the rest is sent), or not at all.
 */
import { request, Agent } from "node:http";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export interface RawRequest {
  method?: string;
  headers?: Record<string, string | number>;
  /** Sent in full, then the request ends. */
  body?: Buffer | string;
  /** Sent, and then nothing more: the request stays open (its declared length unmet). */
  partial?: Buffer | string;
  agent?: Agent;
  timeoutMs?: number;
}

/** One request; resolves with the answer, whatever happens to the socket after it. */
export function send(url: string, r: RawRequest = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: r.method ?? "POST", headers: r.headers, agent: r.agent ?? false });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer from ${url} within ${r.timeoutMs ?? 15000} ms`));
    }, r.timeoutMs ?? 15000);
    let answered = false;
    req.on("response", (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      const done = () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString(),
        });
        if (r.partial !== undefined) req.destroy();
      };
      res.on("end", done);
      res.on("error", done);
    });
    req.on("error", (err) => {
      // A server that answers and then cuts a sender still writing is expected here.
      if (answered) return;
      clearTimeout(timer);
      reject(new Error(`${r.method ?? "POST"} ${url}: ${err.message}`));
    });
    if (r.partial !== undefined) req.write(r.partial);
    else req.end(r.body);
  });
}

/** Resident memory of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Runs curl with `args`; resolves with what it printed (-i: the head and body). */
export function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn("curl", ["-s", "-i", "--max-time", "15", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (c: Buffer) => (out += c.toString()));
    p.on("error", reject);
    p.on("close", () => resolve(out));
  });
}
