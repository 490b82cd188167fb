import { after, describe, it } from "mocha";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TokenFileBackend, tokenFilePath } from "../../../lib/stores/token-file";
import type { JsonValue } from "../../../lib/stores/backend";
import type { ProvisioningResult } from "../../../lib/model/result";

describe("unit/stores/token-file", () => {
  const root = mkdtempSync(join(tmpdir(), "store-token-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const freshDir = () => {
    const d = join(root, `d${++n}`);
    mkdirSync(d);
    return d;
  };

  function code(c: string) {
    return (err: unknown) => {
      assert.equal((err as { code?: string }).code, c, String(err));
      return true;
    };
  }

  /** The Edge Gateway self-provisioning script's own lines, run by Debian's Python: write a token, or read it back. */
  const SCRIPT = `
import os, sys, json
def gateway_read():
    access_token_path_env_var = os.environ.get("THINGSBOARD_ACCESS_TOKEN") or "./tb_access_token"
    if os.path.exists(access_token_path_env_var):
        with open(access_token_path_env_var, "r") as f:
            access_token = f.read()
        if access_token is not None and len(access_token) > 3:
            return False, access_token
    return True, None
if sys.argv[1] == "write":
    access_token_path_env_var = os.environ.get("THINGSBOARD_ACCESS_TOKEN") or "./tb_access_token"
    with open(access_token_path_env_var, "w") as f:
        f.write(sys.argv[2])
else:
    print(json.dumps(gateway_read()))
`;

  function gateway(cwd: string, env: Record<string, string>, ...args: string[]): string {
    const r = spawnSync("/usr/bin/python3", ["-c", SCRIPT, ...args], {
      cwd,
      env: { PATH: "/usr/bin:/bin", ...env },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  }

  it("the path: option, else $THINGSBOARD_ACCESS_TOKEN, else ./tb_access_token in the working directory", () => {
    assert.equal(tokenFilePath({ path: "/x/t", env: { THINGSBOARD_ACCESS_TOKEN: "/y" }, cwd: "/c" }), "/x/t");
    assert.equal(tokenFilePath({ env: { THINGSBOARD_ACCESS_TOKEN: "rel/t" }, cwd: "/c" }), "/c/rel/t");
    assert.equal(tokenFilePath({ env: { THINGSBOARD_ACCESS_TOKEN: "" }, cwd: "/c" }), "/c/tb_access_token");
    assert.equal(tokenFilePath({ env: {}, cwd: "/c" }), "/c/tb_access_token");
  });

  it("a token written by the Edge Gateway's script is found; the key is ignored; list shows one entry", async () => {
    const cwd = freshDir();
    gateway(cwd, {}, "write", "A1b2C3d4E5f6G7h8I9j0");
    const s = new TokenFileBackend({ env: {}, cwd });
    const e = await s.get("any/key");
    assert.deepEqual(e?.value, { token: "A1b2C3d4E5f6G7h8I9j0" });
    assert.deepEqual((await s.get("other"))?.value, { token: "A1b2C3d4E5f6G7h8I9j0" });
    assert.equal(e?.meta.kind, "ACCESS_TOKEN");
    assert.equal(e?.meta.obtainedAt, statSync(join(cwd, "tb_access_token")).mtime.toISOString());
    const list = await s.list();
    assert.equal(list.length, 1);
    assert.equal(list[0].key, "token");
    assert.equal("value" in list[0], false);
    await s.close();
  });

  it("a token we write is what the Edge Gateway's script reads back, exactly, mode 0600, via $THINGSBOARD_ACCESS_TOKEN", async () => {
    const cwd = freshDir();
    const env = { THINGSBOARD_ACCESS_TOKEN: "sub/token.txt" };
    mkdirSync(join(cwd, "sub"));
    const s = new TokenFileBackend({ env, cwd });
    const entry = await s.set("tb/gw", "Tok-0123456789", {
      protocol: "thingsboard",
      endpoint: "mqtts://tb:8883",
    });
    assert.deepEqual(entry.value, { token: "Tok-0123456789" });
    const file = join(cwd, "sub", "token.txt");
    assert.equal(readFileSync(file, "utf8"), "Tok-0123456789");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(gateway(cwd, env, "read")), [false, "Tok-0123456789"]);
    // Metadata given to set() is remembered while the file holds that token.
    assert.equal((await s.get("x"))?.meta.protocol, "thingsboard");
    gateway(cwd, env, "write", "Changed-by-the-gateway");
    const after = await s.get("x");
    assert.deepEqual(after?.value, { token: "Changed-by-the-gateway" });
    assert.equal(after?.meta.protocol, undefined);
    assert.deepEqual(readdirSync(join(cwd, "sub")), ["token.txt"]);
    await s.close();
  });

  it("3 characters or fewer mean no token, counted as the script counts (text mode newlines)", async () => {
    const cwd = freshDir();
    const s = new TokenFileBackend({ env: {}, cwd });
    const file = join(cwd, "tb_access_token");
    assert.equal(await s.get("k"), undefined);
    assert.deepEqual(await s.list(), []);
    for (const content of ["", "abc", "ab\n", "a\r\n", "\u00e9\u00e9\u00e9", "abcd", "abc\r\n", "abc\n"]) {
      writeFileSync(file, content);
      const [created, token] = JSON.parse(gateway(cwd, {}, "read")) as [boolean, string | null];
      const ours = await s.get("k");
      assert.equal(ours === undefined, created, JSON.stringify(content));
      if (token !== null) assert.deepEqual(ours?.value, { token }, JSON.stringify(content));
    }
    await s.close();
  });

  it("set takes a string, { token } or a result; anything else, or a short token, is refused untouched", async () => {
    const cwd = freshDir();
    const s = new TokenFileBackend({ env: {}, cwd });
    const file = join(cwd, "tb_access_token");
    await s.set("k", { token: "from-object" });
    assert.equal(readFileSync(file, "utf8"), "from-object");
    const result: ProvisioningResult = {
      dialect: "thingsboard",
      endpoint: "mqtts://tb:8883",
      device: { name: "gw" },
      proof: "provision-key",
      credentials: { type: "ACCESS_TOKEN", token: "from-result" },
      configuration: {},
      obtainedAt: "2026-01-01T00:00:00.000Z",
      reused: false,
    };
    await s.set("k", result as unknown as JsonValue);
    assert.equal(readFileSync(file, "utf8"), "from-result");
    for (const bad of [
      { password: "x" },
      12345,
      ["tokens"],
      "abc",
      { token: "ab" },
      { credentials: { type: "X509_CERTIFICATE" } },
    ])
      await assert.rejects(s.set("k", bad as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("k", (() => "x") as unknown as JsonValue), code("INVALID_VALUE"));
    await assert.rejects(s.set("", "valid-token"), code("INVALID_KEY"));
    assert.equal(readFileSync(file, "utf8"), "from-result");
    await s.close();
  });

  it("delete, update, and simultaneous writes leave one whole token", async () => {
    const cwd = freshDir();
    const s = new TokenFileBackend({ env: {}, cwd });
    assert.equal(await s.delete("k"), false);
    const made = await s.update("k", (cur) => (cur ? undefined : { value: "first-token" }));
    assert.deepEqual(made?.value, { token: "first-token" });
    assert.deepEqual((await s.get("k"))?.value, { token: "first-token" });
    assert.equal(await s.update("k", (cur) => (cur ? undefined : { value: "second" })), undefined);
    const tokens = Array.from({ length: 30 }, (_, i) => `token-${i}-`.padEnd(5000, "x"));
    await Promise.all(tokens.map((t) => s.set("k", t)));
    assert.ok(tokens.includes(readFileSync(join(cwd, "tb_access_token"), "utf8")));
    assert.deepEqual(readdirSync(cwd), ["tb_access_token"]);
    assert.equal(await s.delete("k"), true);
    assert.equal(await s.get("k"), undefined);
    await s.close();
  });

  it("an unwritable place gives READ_ONLY or IO, and the old token stays", async function () {
    const cwd = freshDir();
    writeFileSync(join(cwd, "a-file"), "x");
    const under = new TokenFileBackend({ path: join(cwd, "a-file", "token") });
    await assert.rejects(under.set("k", "valid-token"), code("IO"));
    const s = new TokenFileBackend({ env: {}, cwd });
    await s.set("k", "kept-token");
    if (spawnSync("chattr", ["+i", cwd]).status !== 0) {
      // Skipped: chattr +i is not available here
      this.skip();
    }
    try {
      await assert.rejects(s.set("k", "other-token"), code("READ_ONLY"));
      assert.deepEqual((await s.get("k"))?.value, { token: "kept-token" });
    } finally {
      spawnSync("chattr", ["-i", cwd]);
    }
  });
});
