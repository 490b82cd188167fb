import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileBackend } from "../../../lib/stores/file";
import { fileNameFor } from "../../../lib/stores/file-names";
import { within } from "../../support/events";

describe("unit/stores/crash", () => {
  const root = mkdtempSync(join(tmpdir(), "store-crash-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const writer = join(__dirname, "fixtures", "crash-writer.js");
  const SIZE = 3 * 1024 * 1024;

  /**
   * Starts a writer and SIGKILLs it when `trigger` happens: a line of its output ("wrote
   * N": between writes), or "temp N": the N-th temp file of this run appearing in the
   * directory (inotify), which is the middle of a write. Resolves with the indexes it
   * started and finished.
   */
  async function killAt(dir: string, passphrase: string, first: number, trigger: string) {
    const child = spawn(process.execPath, [writer, dir, String(SIZE), passphrase, String(first)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = once(child, "exit");
    const [what, nth] = [trigger.split(" ")[0], Number(trigger.split(" ")[1])];
    const tempsWanted = what === "temp" ? nth : 0;
    // "wrote 2" means the second write of this run.
    const line = `${what} ${first + nth - 1}`;
    const temps = new Set<string>();
    const watcher = watch(dir);
    await within<void>(60000, `"${trigger}" from the writer`, (resolve) => {
      const kill = () => {
        child.kill("SIGKILL");
        resolve();
      };
      watcher.on("change", (_type, name) => {
        const f = String(name);
        if (tempsWanted && f.startsWith(`.tmp-${fileNameFor("crash")}`) && !temps.has(f)) {
          temps.add(f);
          if (temps.size === tempsWanted) kill();
        }
      });
      child.stdout.on("data", (c: Buffer) => {
        out += c.toString();
        if (!tempsWanted && out.split("\n").includes(line)) kill();
      });
      child.once("exit", () => resolve());
    });
    watcher.close();
    const [, signal] = (await exited) as [number | null, string | null];
    assert.equal(signal, "SIGKILL", `writer was not killed: ${err}`);
    const started = [...out.matchAll(/^writing (\d+)$/gm)].map((m) => Number(m[1]));
    const finished = [...out.matchAll(/^wrote (\d+)$/gm)].map((m) => Number(m[1]));
    return { started, finished };
  }

  for (const encrypted of [false, true]) {
    it(`kill -9 at any moment leaves the old or the new value, never a broken one (${encrypted ? "encrypted" : "plain"})`, async () => {
      const dir = join(root, encrypted ? "enc" : "plain");
      const pass = encrypted ? "crash-pass" : "";
      // Kill points: during the very first write, right after a write, and during later ones.
      const points = ["temp 1", "wrote 2", "temp 2", "writing 1", "temp 3", "wrote 1", "temp 1"];
      let first = 1;
      mkdirSync(dir, { recursive: true });
      let lastDone = 0;
      let midWrite = 0;
      for (const point of points) {
        const { started, finished } = await killAt(dir, pass, first, point);
        if (finished.length) lastDone = Math.max(...finished);
        const inFlight = started.filter((i) => !finished.includes(i));

        if (readdirSync(dir).some((f) => f.startsWith(".tmp-"))) midWrite++;
        const store = new FileBackend({ directory: dir, passphrase: pass || undefined });
        const entry = await store.get("crash");
        // Reopening removed the dead writer's temp files.
        assert.deepEqual(
          readdirSync(dir).filter((f) => f.startsWith(".tmp-")),
          [],
        );
        if (lastDone === 0 && entry === undefined) {
          assert.ok(inFlight.length > 0);
        } else {
          assert.ok(entry, `nothing readable after killing at "${point}"`);
          const v = entry.value as { i: number; body: string };
          assert.ok(
            v.i === lastDone || inFlight.includes(v.i),
            `read ${v.i}, last done ${lastDone}, in flight ${inFlight}`,
          );
          assert.equal(v.body.length, SIZE);
          assert.equal(v.body, String(v.i % 10).repeat(SIZE));
          assert.equal(entry.meta.kind, "crash-test");
          lastDone = v.i;
          JSON.parse(readFileSync(join(dir, fileNameFor("crash")), "utf8"));
        }
        await store.close();
        first = Math.max(first, ...started) + 1;
      }
      console.log(`${midWrite} of ${points.length} kills left a half-written temp file behind`);
    });
  }
});
