import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";

export interface Started {
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * Starts a program and resolves once `ready` matches its combined output (no sleeps:
 * we wait for the line the program prints when it listens).
 */
export function startProcess(
  command: string,
  args: string[],
  ready: RegExp,
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<Started> {
  return new Promise((resolve, reject) => {
    // Its own process group, so that a kill reaches what it started too (npm start runs
    // node-red as a child): nothing outlives the test, even after a SIGKILL.
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, ...options });
    const kill = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    };
    let out = "";
    let settled = false;
    const timeoutMs = options.timeoutMs ?? 20000;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      kill("SIGKILL");
      reject(new Error(`${command} did not become ready in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const stop = async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      kill("SIGTERM");
      const killer = setTimeout(() => kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(killer);
    };
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (!settled && ready.test(out)) {
        settled = true;
        clearTimeout(timer);
        resolve({ child, output: () => out, stop });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code ?? signal}) before ready:\n${out}`));
    });
  });
}

/** Runs a program to completion; resolves with its exit code and output. */
export function run(
  command: string,
  args: string[],
  options: SpawnOptions & { input?: string | Buffer } = {},
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], ...options });
    const chunks: Buffer[] = [];
    let stderr = "";
    child.stdout?.on("data", (c: Buffer) => chunks.push(c));
    child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(chunks), stderr }));
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}
