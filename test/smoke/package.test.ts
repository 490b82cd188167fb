import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { PROJECT_ROOT, runtimes, startNodeRed } from "../support/node-red";
import { installTarball, packFreshCheckout } from "../support/package-tarball";
import { run } from "../support/process";

/** Every file under a folder of the repository, relative to that folder. */
function filesUnder(dir: string): string[] {
  const root = join(PROJECT_ROOT, dir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

describe("smoke/package", () => {
  interface Pkg {
    name: string;
    keywords: string[];
    license: string;
    repository: unknown;
    engines: { node: string };
    "node-red": { version: string; nodes: Record<string, string> };
    dependencies: Record<string, string>;
  }
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as Pkg;

  it("package.json says what Node-RED and the flow library need", () => {
    assert.equal(pkg.name, "node-red-contrib-provisioning");
    assert.ok(pkg.keywords.includes("node-red"));
    assert.ok(pkg.license && pkg.repository);
    assert.equal(pkg.engines.node, ">=18.5");
    assert.equal(pkg["node-red"].version, ">=4.0.0");
    for (const [name, file] of Object.entries(pkg["node-red"].nodes)) {
      assert.ok(existsSync(join(PROJECT_ROOT, file)), `${name}: ${file} is not built`);
      assert.ok(
        existsSync(join(PROJECT_ROOT, file.replace(/\.js$/, ".html"))),
        `${name}: no .html beside ${file}`,
      );
    }
    assert.ok(Object.keys(pkg.dependencies).length <= 6, "the flow library warns above 6 dependencies");
  });

  it("npm pack ships the built nodes, icons, locales and examples, and nothing else", async () => {
    const { code, stdout, stderr } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: PROJECT_ROOT,
    });
    assert.equal(code, 0, stderr);
    const [report] = JSON.parse(stdout.toString()) as Array<{ files: Array<{ path: string }> }>;
    const files = report.files.map((f) => f.path);
    for (const file of Object.values(pkg["node-red"].nodes)) {
      const rel = file.replace(/^\.\//, "");
      assert.ok(files.includes(rel), `${rel} is not shipped`);
      assert.ok(files.includes(rel.replace(/\.js$/, ".html")), `${rel}: its .html is not shipped`);
    }
    assert.ok(
      files.some((f) => /^dist\/nodes\/icons\/.+\.svg$/.test(f)) ||
        Object.keys(pkg["node-red"].nodes).length === 0,
    );
    const unwanted = files.filter(
      (f) => /^(test|lib|nodes|scripts|\.ci|dist\/test)\//.test(f) || /\.ts$/.test(f) || /\.map$/.test(f),
    );
    assert.deepEqual(unwanted, [], "sources, tests and source maps stay out of the package");
  });

  it("npm pack from a fresh checkout (no dist/) builds first and ships every node, locale, icon and example", async () => {
    const { files } = await packFreshCheckout();
    const missing: string[] = [];
    const want = (f: string) => files.includes(f) || missing.push(f);
    for (const js of Object.values(pkg["node-red"].nodes)) {
      want(js);
      want(js.replace(/\.js$/, ".html"));
    }
    for (const f of filesUnder("nodes/locales")) want(`dist/nodes/locales/${f}`);
    for (const f of filesUnder("icons")) want(`dist/nodes/icons/${f}`);
    for (const f of filesUnder("resources")) want(`resources/${f}`);
    for (const f of filesUnder("examples")) want(`examples/${f}`);
    want("package.json");
    want("README.md");
    assert.deepEqual(missing, [], "not in the tarball");
    assert.ok(filesUnder("nodes/locales").length > 0 && filesUnder("examples").length > 0);
    const unwanted = files.filter(
      (f) => /^(test|lib|nodes|scripts|\.ci|dist\/test)\//.test(f) || /\.(ts|map)$/.test(f),
    );
    assert.deepEqual(unwanted, [], "sources, tests and source maps stay out of the package");
  });

  it("the tarball installed into a fresh user directory: the real node-red registers every node type", async () => {
    const { file } = await packFreshCheckout();
    const userDir = await installTarball(file, pkg.name, Object.keys(pkg.dependencies));
    const installed = join(userDir, "node_modules", pkg.name);
    assert.ok(existsSync(join(installed, "package.json")), "the package is in node_modules");
    const nr = await startNodeRed(runtimes()[0], { userDir });
    try {
      const res = await fetch(`${nr.url}/nodes`, { headers: { accept: "application/json" } });
      assert.equal(res.status, 200);
      const sets = (
        (await res.json()) as Array<{
          name: string;
          module: string;
          types: string[];
          enabled: boolean;
          err?: unknown;
        }>
      ).filter((s) => s.module === pkg.name);
      assert.deepEqual(sets.map((s) => s.name).sort(), Object.keys(pkg["node-red"].nodes).sort());
      for (const s of sets) {
        assert.equal(s.err, undefined, `${s.name}: ${JSON.stringify(s.err)}`);
        assert.equal(s.enabled, true, `${s.name} is not enabled`);
        assert.ok(s.types.includes(s.name), `${s.name} does not register its type`);
      }
      const ex = await fetch(`${nr.url}/nodes/${pkg.name}`, { headers: { accept: "application/json" } });
      assert.equal(ex.status, 200);
      // The dialogs' shared script, which every node's .html loads from resources/<module>/.
      const script = await fetch(`${nr.url}/resources/${pkg.name}/provisioning-editor.js`);
      assert.equal(script.status, 200, "the editor script is served");
      assert.match(await script.text(), /provisioningChecks/);
      assert.deepEqual(nr.problems(), []);
    } finally {
      await nr.stop();
    }
  });
});
