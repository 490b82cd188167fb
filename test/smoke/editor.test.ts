import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runEditorScripts } from "../support/editor-scripts";
import { PROJECT_ROOT } from "../support/node-red";

describe("smoke/editor", () => {
  /**
   * The editor half of every node, run as the editor runs it: each `text/javascript` block
   * of the .html file registers its type with a definition whose defaults, credentials,
   * labels and palette name work. A syntax error or a label that throws here would leave a
   * node missing or blank in the palette.
   */
  interface Def {
    category?: string;
    defaults?: Record<string, { value?: unknown; type?: string; validate?: unknown }>;
    credentials?: Record<string, { type?: string }>;
    label?: unknown;
    paletteLabel?: unknown;
    oneditprepare?: unknown;
    inputs?: number;
    outputs?: number;
    icon?: string;
  }

  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as {
    "node-red": { nodes: Record<string, string> };
  };

  function register(file: string): Map<string, Def> {
    const registered = new Map<string, Def>();
    const ok = () => true;
    const RED = {
      nodes: {
        registerType: (type: string, def: Def) => registered.set(type, def),
        eachConfig: () => undefined,
      },
      validators: { number: () => ok, regex: () => ok, typedInput: () => ok },
      _: (k: string) => k,
    };
    runEditorScripts(file, {
      RED,
      $: () => ({ on: () => undefined, val: () => "", toggle: () => undefined }),
    });
    return registered;
  }

  for (const [type, js] of Object.entries(pkg["node-red"].nodes)) {
    it(`${type}: the editor definition registers and labels itself`, () => {
      const file = js.replace(/^dist\/nodes\//, "").replace(/\.js$/, ".html");
      const def = register(file).get(type);
      assert.ok(def, `${file} does not register ${type}`);
      assert.ok(def.category, "a palette category");
      assert.ok(def.defaults && typeof def.defaults === "object");
      const i18n = (k: string) => `[${k}]`;
      const node = {
        _: i18n,
        _def: def,
        name: "",
        ...Object.fromEntries(Object.entries(def.defaults).map(([k, d]) => [k, d.value])),
      };
      const label = typeof def.label === "function" ? (def.label as () => unknown).call(node) : def.label;
      assert.equal(typeof label, "string");
      assert.ok((label as string).length > 0, "a node without a name still has a label");
      if (def.paletteLabel !== undefined) {
        const palette =
          typeof def.paletteLabel === "function"
            ? (def.paletteLabel as () => unknown).call({ _: i18n })
            : def.paletteLabel;
        assert.equal(palette, `[${type}.paletteLabel]`, "the palette name comes from the catalogue");
      }
      for (const [name, cred] of Object.entries(def.credentials ?? {}))
        assert.ok(cred.type === "password" || cred.type === "text", `credential ${name} has a type`);
      for (const [name, d] of Object.entries(def.defaults))
        assert.ok(
          !/(secret|password|passphrase|^token|accessToken|managementToken|externalKey|encryptionKey|gcmKey|thingKey|privateKey)$/i.test(
            name,
          ) || d.type,
          `${name} holds a secret outside credentials`,
        );
    });
  }
});
