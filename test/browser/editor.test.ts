import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { PROJECT_ROOT, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import { installTarball, packFreshCheckout } from "../support/package-tarball";

/**
 * The editor in a real browser: Debian's chromium driven by playwright-core (which never
 * downloads a browser), against the real `node-red` with the package installed from the
 * tarball `npm pack` makes from a clean checkout. Screenshots, one per step, go to
 * test-artifacts/browser/ (git-ignored; CI keeps them).
 */
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(PROJECT_ROOT, "test-artifacts", "browser");

const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as {
  name: string;
  "node-red": { nodes: Record<string, string> };
  dependencies: Record<string, string>;
};
const types = Object.keys(pkg["node-red"].nodes);
/** The config nodes (category "config"): they live in the config sidebar, not the palette. */
const configTypes = types.filter((t) =>
  /category:\s*"config"/.test(readFileSync(join(PROJECT_ROOT, "nodes", `${t}.html`), "utf8")),
);
const paletteTypes = types.filter((t) => !configTypes.includes(t));

describe("browser/editor: the package in the Node-RED editor, in chromium", () => {
  let nr: RunningNodeRed;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];
  let step = 0;
  const shot = async (name: string) => {
    step += 1;
    await page.screenshot({ path: join(ARTIFACTS, `${String(step).padStart(2, "0")}-${name}.png`) });
  };

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: bash scripts/ensure-peers.sh installs Debian's chromium`,
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    const { file } = await packFreshCheckout();
    const userDir = await installTarball(file, pkg.name, Object.keys(pkg.dependencies));
    // One node of every type on one tab, as a user would drop them: only id, type and
    // place, so that every dialog opens on its own defaults.
    const flows: unknown[] = [{ id: "browser-tab", type: "tab", label: "every node" }];
    types.forEach((type, i) =>
      flows.push(
        configTypes.includes(type)
          ? { id: `cfg-${type}`, type }
          : {
              id: `n-${type}`,
              type,
              z: "browser-tab",
              x: 160 + 260 * (i % 3),
              y: 80 + 80 * Math.floor(i / 3),
            },
      ),
    );
    writeFileSync(join(userDir, "flows.json"), JSON.stringify(flows));
    nr = await startNodeRed(runtimes()[0], { userDir });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      // The editor asks the internet for some things (there is none here): a resource
      // outside this Node-RED that fails to load is not the package's error.
      const from = m.location().url;
      if (/^Failed to load resource/.test(m.text()) && from && !from.startsWith(nr.url)) return;
      consoleErrors.push(`${m.text()} (${from})`);
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(nr.url);
    await page.waitForSelector(
      `#red-ui-palette .red-ui-palette-node[data-palette-type="${paletteTypes[0]}"]`,
    );
    await page.waitForFunction(() => {
      const red = (globalThis as unknown as { RED?: { nodes?: { node: (id: string) => unknown } } }).RED;
      return (
        red?.nodes?.node("browser-tab") !== undefined || document.querySelector(".red-ui-flow-node") !== null
      );
    });
  });

  after(async () => {
    await browser?.close();
    await nr?.stop();
  });

  it("the palette shows every node of the package with its icon", async () => {
    await shot("palette");
    for (const type of paletteTypes) {
      const entry = page.locator(`#red-ui-palette .red-ui-palette-node[data-palette-type="${type}"]`);
      assert.equal(await entry.count(), 1, `${type} is not in the palette`);
      const icon = await entry
        .locator(".red-ui-palette-icon")
        .first()
        .evaluate((el) => getComputedStyle(el).backgroundImage);
      const url = /url\("?([^")]+)"?\)/.exec(icon)?.[1];
      assert.ok(url, `${type}: no icon in the palette`);
      assert.ok(url.includes(pkg.name), `${type}: the icon ${url} is not the package's`);
      const res = await page.request.get(url);
      assert.equal(res.status(), 200, `${type}: its icon ${url} is not served`);
    }
    assert.deepEqual(consoleErrors, []);
  });

  /**
   * The placeholders of the open dialog that do not fit their field, every row shown (rows
   * the chosen protocol hides included): the text measured in the field's own font.
   */
  const cutPlaceholders = (type: string) =>
    page.evaluate((type) => {
      const form = document.querySelector(".red-ui-tray:last-of-type .red-ui-tray-body form");
      const cut: string[] = [];
      if (!form) return [`${type}: no form`];
      const hidden: HTMLElement[] = [];
      for (const row of Array.from(form.querySelectorAll<HTMLElement>(".form-row")))
        if (getComputedStyle(row).display === "none") {
          row.style.display = "block";
          hidden.push(row);
        }
      const ctx = document.createElement("canvas").getContext("2d")!;
      for (const el of Array.from(
        form.querySelectorAll<HTMLInputElement>("input[placeholder], textarea[placeholder]"),
      )) {
        const style = getComputedStyle(el);
        if (!el.placeholder || el.offsetParent === null) continue;
        ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        const width = ctx.measureText(el.placeholder).width;
        // A text area wraps its placeholder over its rows (words do not break: some room is lost).
        const lines = el instanceof HTMLTextAreaElement ? Math.max(1, el.rows) : 1;
        if (Math.ceil(width / (lines > 1 ? room * 0.85 : room)) > lines)
          cut.push(`${type} #${el.id}: "${el.placeholder}" (${Math.ceil(width)} px in ${room} px)`);
      }
      for (const row of hidden) row.style.display = "";
      return cut;
    }, type);

  it("every node's dialog opens and saves (Done) without a console error, no placeholder cut off", async () => {
    const cut: string[] = [];
    for (const type of paletteTypes) {
      await page.evaluate((id) => {
        const red = (
          globalThis as unknown as {
            RED: { nodes: { node: (id: string) => unknown }; editor: { edit: (n: unknown) => void } };
          }
        ).RED;
        red.editor.edit(red.nodes.node(id));
      }, `n-${type}`);
      await page.waitForSelector("#node-dialog-ok", { state: "visible" });
      await page.waitForSelector(".red-ui-tray .red-ui-tray-body form", { state: "visible" });
      await shot(`dialog-${type}`);
      cut.push(...(await cutPlaceholders(type)));
      await page.click("#node-dialog-ok");
      await page.waitForSelector("#node-dialog-ok", { state: "detached" });
    }
    for (const type of configTypes) {
      await page.evaluate(
        ({ type, id }) => {
          const red = (globalThis as unknown as { RED: { editor: { editConfig: (...a: string[]) => void } } })
            .RED;
          red.editor.editConfig("", type, id);
        },
        { type, id: `cfg-${type}` },
      );
      await page.waitForSelector("#node-config-dialog-ok", { state: "visible" });
      await shot(`dialog-${type}`);
      cut.push(...(await cutPlaceholders(type)));
      await page.click("#node-config-dialog-ok");
      await page.waitForSelector("#node-config-dialog-ok", { state: "detached" });
    }
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(cut, [], "placeholders cut off");
  });

  it("provision-request marks a port of 99999999 invalid", async () => {
    await page.evaluate(() => {
      const red = (
        globalThis as unknown as {
          RED: { nodes: { node: (id: string) => unknown }; editor: { edit: (n: unknown) => void } };
        }
      ).RED;
      red.editor.edit(red.nodes.node("n-provision-request"));
    });
    const port = page.locator("#node-input-port");
    await port.waitFor({ state: "attached" });
    await page.evaluate(() => {
      // The port sits in a group the chosen protocol may hide: show it, as choosing MQTT does.
      const el = document.getElementById("node-input-port");
      for (let p = el?.parentElement; p && !p.classList.contains("red-ui-tray-body"); p = p.parentElement)
        if (getComputedStyle(p).display === "none") p.style.display = "";
    });
    await port.fill("99999999");
    await port.dispatchEvent("change");
    await page.waitForSelector("#node-input-port.input-error");
    await shot("provision-request-bad-port");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
  });

  it("an example imported from Menu > Import > Examples deploys without an error notification", async () => {
    await page.click("#red-ui-header-button-sidemenu");
    await page.click("#menu-item-import");
    await page.locator("#red-ui-clipboard-dialog-import-tabs a", { hasText: "Examples" }).click();
    const tab = page.locator("#red-ui-clipboard-dialog-import-tab-examples");
    await tab.locator(".red-ui-treeList-label", { hasText: pkg.name }).click();
    await tab.locator(".red-ui-treeList-label", { hasText: "credential-store-operations" }).click();
    await shot("import-example");
    await page.click("#red-ui-clipboard-dialog-ok");
    await page.waitForSelector("#red-ui-clipboard-dialog-ok", { state: "hidden" });
    // An import follows the mouse until a click drops it on the workspace.
    await page.mouse.move(700, 500);
    await page.mouse.click(700, 500);
    await page.waitForSelector(".red-ui-flow-node-group, .red-ui-flow-node");
    await shot("example-imported");
    await page.click("#red-ui-header-button-deploy");
    const done = ".red-ui-notification-success, .red-ui-notification-error";
    const confirm = "#red-ui-deploy-dialog-confirm-deploy-deploy";
    await page.waitForSelector(`${done}, ${confirm}`, { state: "visible" });
    if (await page.locator(confirm).isVisible()) {
      // The "every node" tab holds nodes left on their defaults, which the editor flags
      // as not yet configured: confirm, as a user would.
      await shot("deploy-confirm");
      await page.click(confirm);
    }
    const note = page.locator(done).first();
    await note.waitFor({ state: "visible" });
    await shot("example-deployed");
    const cls = (await note.getAttribute("class")) ?? "";
    assert.ok(cls.includes("red-ui-notification-success"), `deploy said: ${await note.innerText()}`);
    assert.equal(await page.locator(".red-ui-notification-error").count(), 0);
    assert.deepEqual(consoleErrors, []);
  });
});
