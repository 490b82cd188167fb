import { describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ERROR_CODES } from "../../lib/model/errors";
import { PROJECT_ROOT, runtimes, startNodeRed } from "../support/node-red";

describe("smoke/i18n", () => {
  /**
   * Every message key the editor (data-i18n, this._) and the runtime (RED._) ask for exists
   * in the English catalogue: a missing key shows its raw name to the person at the editor.
   */
  const NODES = join(PROJECT_ROOT, "nodes");
  const LOCALES = join(NODES, "locales", "en-US");

  /** A message, or (for a key ending in "." that code completes at run time) a group of them. */
  function has(catalogue: Record<string, unknown>, key: string): boolean {
    const group = key.endsWith(".");
    let at: unknown = catalogue;
    for (const part of (group ? key.slice(0, -1) : key).split(".")) {
      if (typeof at !== "object" || at === null || !(part in at)) return false;
      at = (at as Record<string, unknown>)[part];
    }
    return group ? typeof at === "object" && at !== null : typeof at === "string";
  }

  const catalogue: Record<string, unknown> = {};
  for (const f of readdirSync(LOCALES).filter((n) => n.endsWith(".json")))
    Object.assign(catalogue, JSON.parse(readFileSync(join(LOCALES, f), "utf8")) as Record<string, unknown>);

  it("every i18n key used by the node dialogs, help and labels is in the catalogue", () => {
    const missing: string[] = [];
    for (const f of readdirSync(NODES).filter((n) => n.endsWith(".html"))) {
      const html = readFileSync(join(NODES, f), "utf8");
      const keys = [
        ...[...html.matchAll(/data-i18n="([^"]+)"/g)].flatMap((m) =>
          m[1].split(";").map((k) => k.replace(/^\[[^\]]+\]/, "")),
        ),
        ...[...html.matchAll(/this\._\("([^"]+)"/g)].map((m) => m[1]),
      ];
      assert.ok(keys.length > 0 || !html.includes("data-template-name"), `${f} uses no i18n keys`);
      for (const k of keys) if (!k.includes(":") && !has(catalogue, k)) missing.push(`${f}: ${k}`);
    }
    assert.deepEqual(missing, []);
  });

  it("every key the runtime side of the nodes asks RED._ for is in the catalogue", () => {
    const missing: string[] = [];
    for (const f of readdirSync(NODES).filter((n) => n.endsWith(".ts"))) {
      const src = readFileSync(join(NODES, f), "utf8");
      const prefixes = new Map<string, string>();
      for (const m of src.matchAll(/^const (\w+) = "([\w.-]+\.)";/gm)) prefixes.set(m[1], m[2]);
      for (const m of src.matchAll(/RED\._\((?:(\w+) \+ )?"([^"]+)"/g)) {
        const key = (m[1] ? (prefixes.get(m[1]) ?? `<${m[1]}>`) : "") + m[2];
        if (!has(catalogue, key)) missing.push(`${f}: ${key}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  /**
   * The second language. Node-RED fills a key missing from a catalogue with the English
   * one (@node-red/util lib/i18n.js mergeCatalog), so a missing German key would show
   * English without anyone noticing: the catalogues must hold the same keys, and each
   * message the same placeholders (__name__, ${ENV}, {{x}}), since a translated or dropped
   * placeholder prints its raw name or loses the value.
   */
  const LANGS = ["en-US", "de"];
  const PKG = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as {
    name: string;
    "node-red": { nodes: Record<string, string> };
  };
  /** The base name of each node file: Node-RED reads locales/<lang>/<base>.json and .html. */
  const BASES = Object.values(PKG["node-red"].nodes).map((f) => f.replace(/^.*\//, "").replace(/\.js$/, ""));

  function flat(at: unknown, prefix = "", out = new Map<string, string>()): Map<string, string> {
    if (typeof at === "string") out.set(prefix, at);
    else if (typeof at === "object" && at !== null)
      for (const [k, v] of Object.entries(at)) flat(v, prefix ? `${prefix}.${k}` : k, out);
    return out;
  }
  const placeholders = (text: string) =>
    [...text.matchAll(/__\w+__|\$\{\w+\}|\{\{\s*\w+\s*\}\}/g)].map((m) => m[0]).sort();
  const catalogueOf = (lang: string, base: string) =>
    JSON.parse(readFileSync(join(NODES, "locales", lang, `${base}.json`), "utf8")) as Record<string, unknown>;

  it("every node has a catalogue in each language, and no language has a file the others lack", () => {
    for (const lang of LANGS) {
      const files = readdirSync(join(NODES, "locales", lang)).sort();
      assert.deepEqual(files, BASES.flatMap((b) => [`${b}.html`, `${b}.json`]).sort(), lang);
    }
  });

  it("the German catalogue has exactly the keys of the English one, with the same placeholders", () => {
    const problems: string[] = [];
    for (const base of BASES) {
      const en = flat(catalogueOf("en-US", base));
      const de = flat(catalogueOf("de", base));
      for (const k of en.keys()) if (!de.has(k)) problems.push(`${base}.json: de lacks ${k}`);
      for (const k of de.keys()) if (!en.has(k)) problems.push(`${base}.json: de has ${k}, en-US does not`);
      for (const [k, text] of en) {
        const other = de.get(k);
        if (other === undefined) continue;
        if (other.trim() === "") problems.push(`${base}.json: de ${k} is empty`);
        if (placeholders(text).join() !== placeholders(other).join())
          problems.push(
            `${base}.json: ${k}: [${placeholders(text).join()}] vs de [${placeholders(other).join()}]`,
          );
      }
    }
    assert.deepEqual(problems, []);
  });

  /** The nodes that report the neutral codes: device requests, serving nodes, dps-client. */
  const CODED = readdirSync(NODES)
    .filter((f) => f.endsWith(".ts"))
    .filter((f) =>
      /serveDevice\(|runServingNode\(|localizedError\(/.test(readFileSync(join(NODES, f), "utf8")),
    )
    .map((f) => f.replace(/\.ts$/, ""));

  it("every code of ERROR_CODES has its sentence in both languages for every node that reports codes", () => {
    assert.deepEqual(
      [...CODED].sort(),
      [
        "bootstrap-fetch",
        "bootstrap-service",
        "dps-client",
        "dps-service",
        "provision-request",
        "provision-response",
      ],
      "the nodes whose failures carry the neutral codes",
    );
    for (const lang of LANGS)
      for (const base of CODED) {
        const codes = flat((catalogueOf(lang, base)[base] as { errors?: { codes?: unknown } }).errors?.codes);
        assert.deepEqual([...codes.keys()].sort(), Object.keys(ERROR_CODES).sort(), `${lang}/${base}.json`);
        for (const [code, text] of codes) assert.ok(text.length > 0, `${lang}/${base}.json: ${code}`);
      }
  });

  it("credential-store has a sentence for every StoreError code it names, in both languages", () => {
    for (const lang of LANGS) {
      const c = catalogueOf(lang, "credential-store")["credential-store"] as {
        reason: Record<string, string>;
        errors: { codes: Record<string, string> };
      };
      assert.deepEqual(Object.keys(c.errors.codes).sort(), Object.keys(c.reason).sort(), lang);
    }
  });

  /**
   * The data-help-name blocks of a file, each as the shape of its markup: the block-level
   * elements in order (with their classes: message-properties, optional, property-type,
   * node-ports), then the inline ones (code, i, b, br) counted, since a translation may
   * reorder words within a sentence but not drop a property name or a section.
   */
  function helpBlocks(html: string): Map<string, string> {
    const blocks = new Map<string, string>();
    for (const m of html.matchAll(
      /<script type="text\/html" data-help-name="([^"]+)">([\s\S]*?)<\/script>/g,
    )) {
      const tags = [...m[2].matchAll(/<(\/?)([a-z0-9]+)([^>]*)>/g)].map(
        (t) =>
          `<${t[1]}${t[2]}${/class="([^"]*)"/.exec(t[3])?.[1] ? "." + /class="([^"]*)"/.exec(t[3])?.[1] : ""}>`,
      );
      const inline = (t: string) => /^<\/?(code|i|b|em|strong|br|a)[.>]/.test(t);
      blocks.set(m[1], tags.filter((t) => !inline(t)).join("") + " | " + tags.filter(inline).sort().join(""));
    }
    return blocks;
  }

  it("help lives in the locale folders: every node type's help in en-US and de, the same types and markup, none inline", () => {
    const inline: string[] = [];
    for (const f of readdirSync(NODES).filter((n) => n.endsWith(".html")))
      if (readFileSync(join(NODES, f), "utf8").includes("data-help-name")) inline.push(f);
    assert.deepEqual(inline, [], "a node's .html holds no data-help-name block");
    for (const base of BASES) {
      const types = [
        ...readFileSync(join(NODES, `${base}.html`), "utf8").matchAll(/registerType\(\s*"([^"]+)"/g),
      ].map((m) => m[1]);
      const en = helpBlocks(readFileSync(join(NODES, "locales", "en-US", `${base}.html`), "utf8"));
      const de = helpBlocks(readFileSync(join(NODES, "locales", "de", `${base}.html`), "utf8"));
      assert.deepEqual(
        [...en.keys()].sort(),
        [...types].sort(),
        `en-US/${base}.html: one help block per type`,
      );
      assert.deepEqual([...de.keys()].sort(), [...en.keys()].sort(), `de/${base}.html`);
      for (const [type, markup] of en) {
        assert.match(markup, /<h3>/, `${type}: the help has its sections`);
        assert.equal(de.get(type), markup, `de/${base}.html: ${type} has the English help's HTML structure`);
      }
    }
  });

  for (const rt of runtimes()) {
    it(`${rt.label}: a German editor gets the German catalogues and help; a German runtime speaks German`, async () => {
      if (!existsSync(rt.redJs)) throw new Error(`${rt.redJs} is missing (scripts/test.sh installs it)`);
      const flows = [
        { id: "i18n-tab", type: "tab", label: "i18n" },
        // A plain transport is warned about at deploy (provision-request.warn.plain).
        {
          id: "i18n-pr",
          type: "provision-request",
          z: "i18n-tab",
          x: 100,
          y: 100,
          scheme: "mqtt",
          host: "127.0.0.1",
          port: 1,
          onDeploy: false,
          wires: [[]],
        },
      ];
      const nr = await startNodeRed(rt, {
        flows,
        settings: 'lang: "de"',
        // Node-RED's own German (@node-red/runtime locales/de/runtime.json).
        ready: /(?=[\s\S]*Server wird jetzt auf)(?=[\s\S]*Flows sind gestartet)/,
      });
      try {
        for (const base of BASES) {
          const res = await fetch(`${nr.url}/locales/${PKG.name}/${base}?lng=de`);
          assert.equal(res.status, 200);
          assert.deepEqual(
            await res.json(),
            catalogueOf("de", base),
            `${base}: the editor's German catalogue`,
          );
        }
        const html = await (
          await fetch(`${nr.url}/nodes`, { headers: { accept: "text/html", "accept-language": "de" } })
        ).text();
        for (const base of BASES)
          assert.ok(
            html.includes(readFileSync(join(NODES, "locales", "de", `${base}.html`), "utf8").trim()),
            `${base}: the editor gets the German help`,
          );
        const plain = (
          catalogueOf("de", "provision-request")["provision-request"] as { warn: { plain: string } }
        ).warn.plain;
        assert.ok(nr.output().includes(plain.replace("__scheme__", "mqtt")), nr.output());
      } finally {
        await nr.stop();
      }
    }).timeout(120000);
  }
});
