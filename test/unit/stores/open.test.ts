import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEFAULT_DIRECTORY_NAME,
  OWN_FOLDERS_NAME,
  createStore,
  fileDirectory,
  ownFolderName,
} from "../../../lib/stores/open";

describe("lib/stores/open: where a file store with no directory keeps its entries", () => {
  const userDir = mkdtempSync(join(tmpdir(), "store-open-"));
  after(() => rmSync(userDir, { recursive: true, force: true }));

  it("two stores with their own folders never see each other's entries", async () => {
    const a = createStore({ backend: "file", directory: "", ownFolder: "cfg-a" }, { userDir });
    const b = createStore({ backend: "file", directory: " ", ownFolder: "cfg-b" }, { userDir });
    await a.open();
    await b.open();
    await a.set("device-1", { token: "A-TOKEN" }, { protocol: "thingsboard" });
    assert.deepEqual(
      (await a.list()).map((e) => e.key),
      ["device-1"],
    );
    assert.deepEqual(await b.list(), []);
    assert.equal(await b.get("device-1"), undefined);
    assert.ok(existsSync(join(userDir, OWN_FOLDERS_NAME, "cfg-a")));
    assert.ok(existsSync(join(userDir, OWN_FOLDERS_NAME, "cfg-b")));
    assert.equal(existsSync(join(userDir, DEFAULT_DIRECTORY_NAME)), false);
    await a.close();
    await b.close();
  });

  it("a store deployed before (no own folder) keeps reading the shared folder and its entries", async () => {
    const before = createStore({ backend: "file", directory: "" }, { userDir });
    await before.open();
    await before.set("kept", { token: "OLD" }, {});
    await before.close();
    assert.equal(fileDirectory({ directory: "" }, userDir), join(userDir, DEFAULT_DIRECTORY_NAME));
    const again = createStore({ backend: "file" }, { userDir });
    await again.open();
    assert.deepEqual((await again.get("kept"))?.value, { token: "OLD" });
    await again.close();
  });

  it("a journal store keeps its entries in its own folder too, encrypted when asked, across a reopen", async () => {
    const cfg = {
      backend: "journal",
      ownFolder: "cfg-j",
      encrypt: true,
      encryptionKey: "pass",
      scryptN: 1 << 12,
    };
    const j = createStore(cfg, { userDir });
    assert.equal(j.kind, "journal");
    await j.open();
    await j.set("thingsboard/fleet/dev-1", { token: "J-TOKEN" }, { protocol: "thingsboard" });
    await j.close();
    assert.ok(existsSync(join(userDir, OWN_FOLDERS_NAME, "cfg-j")));
    const again = createStore(cfg, { userDir });
    await again.open();
    assert.deepEqual((await again.get("thingsboard/fleet/dev-1"))?.value, { token: "J-TOKEN" });
    await again.close();
    const wrong = createStore({ ...cfg, encryptionKey: "other" }, { userDir });
    await assert.rejects(wrong.open(), (e: { code?: string }) => e.code === "WRONG_KEY");
  });

  it("a directory that is set wins over the own folder", () => {
    assert.equal(fileDirectory({ directory: " /data/store ", ownFolder: "x" }, userDir), "/data/store");
  });

  it("node ids become folder names that stay inside the user directory and stay distinct", () => {
    assert.equal(ownFolderName("4f2a_9c-1"), "4f2a_9c-1");
    const names = ["..", "a/b", "a.b", "a~2e~b", "tbdev.store", "é"].map(ownFolderName);
    for (const n of names) assert.match(n, /^[A-Za-z0-9_~-]+$/);
    assert.equal(new Set(names).size, names.length);
    assert.throws(() => ownFolderName(""), { code: "UNSUPPORTED" });
  });
});
