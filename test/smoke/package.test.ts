import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/node-red";
import { run } from "../support/process";

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
});
