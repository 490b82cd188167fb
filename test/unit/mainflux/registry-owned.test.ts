import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigRegistry } from "../../../lib/dialects/mainflux/registry";
import { ProvisioningError } from "../../../lib/model/errors";
import { FileBackend } from "../../../lib/stores/file";

describe("unit/mainflux/registry-owned", () => {
  const OWNER = "dialog:svc-1";
  const dialog = (externalId: string, thingId = "thing-1") => ({
    external_id: externalId,
    external_key: "ext-key",
    thing_id: thingId,
    thing_key: "thing-key",
    channels: "ch-1",
  });

  function fileRegistry(dir: string) {
    return new ConfigRegistry(new FileBackend({ directory: dir }));
  }

  it("a restart with another external id replaces the dialog's configuration, thing id and all", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-owned-"));
    const first = fileRegistry(dir);
    await first.putOwned(dialog("device-a"), OWNER);
    assert.equal((await first.get("device-a"))?.thing_id, "thing-1");

    // A new process on the same store, the dialog now names device-b.
    const second = fileRegistry(dir);
    const { saved, removed } = await second.putOwned(dialog("device-b"), OWNER);
    assert.equal(saved.external_id, "device-b");
    assert.deepEqual(
      removed.map((c) => c.external_id),
      ["device-a"],
    );
    assert.equal(await second.get("device-a"), undefined, "the old id is no longer served");
    assert.equal((await second.getByThing("thing-1"))?.external_id, "device-b");
    assert.equal(second.size, 1);

    // And once more from disk: nothing of device-a came back.
    const third = fileRegistry(dir);
    assert.equal(await third.get("device-a"), undefined);
    assert.deepEqual(
      (await third.list()).map((s) => s.external_id),
      ["device-b"],
    );
  });

  it("a thing id held by a configuration management added is a CONFLICT that says what to do", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-owned-"));
    const r = fileRegistry(dir);
    await r.add({ ...dialog("added-by-api"), thing_id: "shared-thing" });
    await assert.rejects(
      r.putOwned(dialog("device-a", "shared-thing"), OWNER),
      (err: unknown) =>
        err instanceof ProvisioningError &&
        err.code === "CONFLICT" &&
        /added-by-api/.test(err.message) &&
        /remove that configuration, or give the dialog another thing id/.test(err.message),
    );
    assert.equal(await r.get("device-a"), undefined);
    assert.equal(
      (await r.get("added-by-api"))?.thing_id,
      "shared-thing",
      "management's configuration is kept",
    );
  });

  it("another node's dialog configuration is left alone; removeOwned takes only the owner's", async () => {
    const r = fileRegistry(mkdtempSync(join(tmpdir(), "mf-owned-")));
    await r.putOwned(dialog("device-a", "thing-a"), OWNER);
    await r.putOwned(dialog("device-x", "thing-x"), "dialog:svc-2");
    await r.add({ ...dialog("api-1"), thing_id: "thing-api" });
    const gone = await r.removeOwned(OWNER);
    assert.deepEqual(
      gone.map((c) => c.external_id),
      ["device-a"],
    );
    assert.deepEqual((await r.list()).map((s) => s.external_id).sort(), ["api-1", "device-x"]);
  });

  it("an owner given in uploaded JSON is ignored: management cannot claim a dialog's configuration", async () => {
    const r = fileRegistry(mkdtempSync(join(tmpdir(), "mf-owned-")));
    await r.add({ ...dialog("api-1"), thing_id: "thing-api", owner: OWNER });
    assert.deepEqual(await r.removeOwned(OWNER), []);
    assert.equal((await r.get("api-1"))?.owner, undefined);
  });
});
