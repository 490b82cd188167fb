/**
 * The README is what a newcomer reads first: its pictures are there (taken by the browser
 * test and kept in docs/images/), and every node of the package has its own section.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "mocha";
import { PROJECT_ROOT } from "../support/node-red";

const README = readFileSync(join(PROJECT_ROOT, "README.md"), "utf8");
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe("README: pictures and one section per node", () => {
  it("shows a flow and a dialog, from pictures in the repository", async () => {
    const images = [...README.matchAll(/!\[[^\]]+\]\(([^)]+)\)/g)].map((m) => m[1]);
    assert.ok(images.length >= 2, "a flow and a dialog");
    for (const image of images) {
      assert.ok(!/^https?:/.test(image), `${image}: pictures live in the repository`);
      const file = join(PROJECT_ROOT, image);
      assert.ok(existsSync(file), `${image} is missing`);
      assert.deepEqual(readFileSync(file).subarray(0, 8), PNG, `${image} is a PNG`);
    }
  });

  it("has a section for every node the package registers", async () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as {
      "node-red": { nodes: Record<string, string> };
    };
    const sections = [...README.matchAll(/^### (\S+)/gm)].map((m) => m[1]);
    const config = ["credential-store-config", "provisioning-profile", "dps-enrollment-group"];
    for (const type of Object.keys(pkg["node-red"].nodes)) {
      if (config.includes(type)) assert.match(README, new RegExp("`" + type + "`"), `${type} is named`);
      else assert.ok(sections.includes(type), `README has no section "### ${type}"`);
    }
  });
});
