import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { PROJECT_ROOT } from "./node-red";
import { run } from "./process";

/** What a fresh clone does not hold: the .gitignore'd folders and the git data itself. */
const NOT_IN_A_CLONE = new Set([
  "node_modules",
  "dist",
  ".cache",
  ".node-red",
  "coverage",
  ".git",
  "test-artifacts",
]);

export interface PackedTarball {
  /** The .tgz `npm pack` wrote. */
  file: string;
  /** The paths inside it, without the leading "package/". */
  files: string[];
  /** The copy it was packed from (no dist/ before the pack). */
  checkout: string;
}

let packed: Promise<PackedTarball> | undefined;

/** A directory under the system's temporary folder, removed when the test process ends. */
function temporaryDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Copies the repository as a fresh clone has it (no dist/, no build output), links its
 * node_modules (the devDependencies a clone installs first), and runs `npm pack` there,
 * with its lifecycle scripts: what `npm publish` from a clean checkout and `npm install
 * <git url>` (npm's pacote runs `prepare` in the clone) both do. Once per test process:
 * the browser test installs the same tarball.
 */
export function packFreshCheckout(): Promise<PackedTarball> {
  packed ??= (async () => {
    const work = temporaryDir("nr-pack-");
    const checkout = join(work, "checkout");
    cpSync(PROJECT_ROOT, checkout, {
      recursive: true,
      filter: (src) => {
        const rel = relative(PROJECT_ROOT, src);
        const top = rel.split(/[\\/]/)[0];
        return rel === "" || (!NOT_IN_A_CLONE.has(top) && !rel.endsWith(".tgz"));
      },
    });
    symlinkSync(join(PROJECT_ROOT, "node_modules"), join(checkout, "node_modules"), "dir");
    const out = join(work, "out");
    mkdirSync(out);
    const { code, stdout, stderr } = await run(
      "npm",
      ["pack", "--pack-destination", out, "--offline", "--no-audit", "--no-fund"],
      { cwd: checkout },
    );
    if (code !== 0) throw new Error(`npm pack failed (${code}):\n${stdout.toString()}\n${stderr}`);
    const [tgz] = readdirSync(out).filter((f) => f.endsWith(".tgz"));
    if (!tgz) throw new Error(`npm pack wrote no tarball:\n${stdout.toString()}\n${stderr}`);
    const file = join(out, tgz);
    const list = await run("tar", ["-tzf", file]);
    if (list.code !== 0) throw new Error(`tar -tzf ${file}: ${list.stderr}`);
    const files = list.stdout
      .toString()
      .split("\n")
      .filter((l) => l && !l.endsWith("/"))
      .map((l) => l.replace(/^package\//, ""));
    return { file, files, checkout };
  })();
  return packed;
}

/**
 * A fresh Node-RED user directory with the tarball installed the way `npm install <tgz>`
 * lays it out: unpacked into node_modules/<name>, its dependencies beside it. No network:
 * `npm install --offline` cannot resolve aedes/cbor/coap/mqtt from npm's cache here, and
 * with those linked in from the repository npm runs the link targets' own `prepare`
 * scripts inside the repository's node_modules (mqtt's build), so the dependencies are
 * links to the repository's node_modules (where `npm ci` put them) and the tarball is
 * unpacked with tar, as npm does (its "package/" folder becomes the package's folder).
 */
export async function installTarball(tgz: string, name: string, deps: string[]): Promise<string> {
  const userDir = temporaryDir("nr-user-pkg-");
  writeFileSync(join(userDir, "package.json"), JSON.stringify({ name: "nr-user", private: true }));
  const modules = join(userDir, "node_modules");
  for (const dep of deps) {
    const target = join(PROJECT_ROOT, "node_modules", dep);
    if (!existsSync(target)) throw new Error(`${dep} is not in ${PROJECT_ROOT}/node_modules: run npm ci`);
    mkdirSync(dirname(join(modules, dep)), { recursive: true });
    symlinkSync(target, join(modules, dep), "dir");
  }
  const into = join(modules, name);
  mkdirSync(into, { recursive: true });
  const { code, stderr } = await run("tar", ["-xzf", tgz, "-C", into, "--strip-components=1"]);
  if (code !== 0) throw new Error(`unpacking ${tgz} failed (${code}): ${stderr}`);
  return userDir;
}
