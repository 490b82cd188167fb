import { after, before, describe, it } from "mocha";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { PROJECT_ROOT, runtimes, startNodeRed, type RunningNodeRed } from "../support/node-red";
import { installTarball, packFreshCheckout } from "../support/package-tarball";
import { freeTcpPort } from "../support/ports";

/**
 * The editor in a real browser: Debian's chromium driven by playwright-core (which never
 * downloads a browser), against the real `node-red` with the package installed from the
 * tarball `npm pack` makes from a clean checkout. Screenshots, one per step, go to
 * test-artifacts/browser/ (git-ignored; CI keeps them), with readme-flow.png and
 * readme-dialog.png for the README.
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
  const cutPlaceholders = (type: string, on: Page = page) =>
    on.evaluate((type) => {
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

  /** Menu > Import > Examples > this package > `name`, then a click drops what follows the mouse. */
  const importExample = async (name: string) => {
    await page.click("#red-ui-header-button-sidemenu");
    await page.click("#menu-item-import");
    await page.locator("#red-ui-clipboard-dialog-import-tabs a", { hasText: "Examples" }).click();
    const tab = page.locator("#red-ui-clipboard-dialog-import-tab-examples");
    const pkgEntry = tab.locator(".red-ui-treeList-label", { hasText: pkg.name });
    // The package's folder stays open once opened: a second click would close it. Whether it
    // is open is the treeList's own "expanded" mark, not whether an entry shows yet (the
    // listing may still be loading: a click then closed the open folder, in CI).
    const entry = tab.locator(".red-ui-treeList-label", { hasText: name });
    await pkgEntry.waitFor({ state: "visible" });
    // (treeList marks the label's container: red.js, treeList expand().)
    if (!(await pkgEntry.evaluate((e) => !!e.parentElement?.classList.contains("expanded"))))
      await pkgEntry.click();
    await entry.waitFor({ state: "visible" });
    // The folder may still be unfolding under the first click: the example is chosen once
    // the editor has loaded it and enabled Import.
    const enabled = "#red-ui-clipboard-dialog-ok:not(.ui-button-disabled)";
    for (let attempt = 0; ; attempt++) {
      await entry.click();
      try {
        await page.waitForSelector(enabled, { timeout: 5000 });
        break;
      } catch (err) {
        if (attempt >= 2) throw err;
      }
    }
    await shot(`import-${name}`);
    await page.click(enabled);
    await page.waitForSelector("#red-ui-clipboard-dialog-ok", { state: "hidden" });
    // An import follows the mouse until a click drops it on the workspace.
    await page.mouse.move(700, 500);
    await page.mouse.click(700, 500);
    // Done when the editor holds every node and tab of the example (they keep their ids).
    const ids = (
      JSON.parse(readFileSync(join(PROJECT_ROOT, "examples", `${name}.json`), "utf8")) as Array<{
        id: string;
      }>
    ).map((n) => n.id);
    await page.waitForFunction((ids) => {
      const red = (
        globalThis as unknown as {
          RED: { nodes: { node: (id: string) => unknown; workspace: (id: string) => unknown } };
        }
      ).RED;
      return ids.every((id) => red.nodes.node(id) || red.nodes.workspace(id));
    }, ids);
  };

  /** Deploy, confirming the editor's "not configured" question; the notification it ends with. */
  const deployFromEditor = async (name: string) => {
    // Notifications stay a while: the ones already there are marked, so this waits for its own.
    await page.evaluate(() =>
      document.querySelectorAll(".red-ui-notification").forEach((n) => n.setAttribute("data-seen", "1")),
    );
    await page.click("#red-ui-header-button-deploy");
    const done = ".red-ui-notification-success:not([data-seen]), .red-ui-notification-error:not([data-seen])";
    const confirm = "#red-ui-deploy-dialog-confirm-deploy-deploy";
    await page.waitForSelector(`${done}, ${confirm}`, { state: "visible" });
    if (await page.locator(confirm).isVisible()) {
      // The "every node" tab holds nodes left on their defaults, which the editor flags
      // as not yet configured: confirm, as a user would.
      await shot(`deploy-confirm-${name}`);
      await page.click(confirm);
    }
    const note = page.locator(done).first();
    await note.waitFor({ state: "visible" });
    const cls = (await note.getAttribute("class")) ?? "";
    return { ok: cls.includes("red-ui-notification-success"), text: await note.innerText() };
  };

  it("an example imported from Menu > Import > Examples deploys without an error notification", async () => {
    await importExample("credential-store-operations");
    await page.waitForSelector(".red-ui-flow-node-group, .red-ui-flow-node");
    await shot("example-imported");
    assert.deepEqual(await invalidAmong("cs-"), [], "as imported, nothing is marked");
    const result = await deployFromEditor("credential-store-operations");
    await shot("example-deployed");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    assert.equal(await page.locator(".red-ui-notification-error").count(), 0);
    assert.deepEqual(consoleErrors, []);
  });

  type Red = {
    RED: {
      nodes: {
        node: (id: string) => { status?: { text?: string; fill?: string }; valid?: boolean } | null;
        workspace: (id: string) => { env?: Array<{ name: string; value: string }> } | null;
        dirty: (d: boolean) => void;
      };
      workspaces: { show: (id: string) => void };
      editor: { edit: (n: unknown) => void };
      view: { redraw: (full?: boolean) => void };
    };
  };

  /** Waits until the editor shows `id`'s status matching `text` (as RED.nodes and the node's SVG hold it). */
  const statusShown = async (id: string, text: RegExp, fill = "green") => {
    await page.waitForFunction(
      ({ id, source, fill }) => {
        const s = (globalThis as unknown as Red).RED.nodes.node(id)?.status;
        return !!s && s.fill === fill && new RegExp(source).test(String(s.text));
      },
      { id, source: text.source, fill },
      { timeout: 60000 },
    );
    const label = await page.evaluate(
      (id) => document.getElementById(id)?.querySelector(".red-ui-flow-node-status-label")?.textContent ?? "",
      id,
    );
    assert.match(label, text, `${id}'s status in the workspace`);
  };

  const show = (tab: string) =>
    page.evaluate((tab) => {
      const red = (globalThis as unknown as Red).RED;
      red.workspaces.show(tab);
      red.view.redraw(true);
    }, tab);

  /**
   * What a user on a machine where 1883 and 15684 are taken does: change the port's one
   * place, the tab's environment (a test never binds those ports).
   */
  const movePort = (tab: string, name: string, port: number) =>
    page.evaluate(
      ({ tab, name, port }) => {
        const red = (globalThis as unknown as Red).RED;
        const entry = red.nodes.workspace(tab)?.env?.find((e) => e.name === name);
        if (!entry) throw new Error(`tab ${tab} has no environment entry ${name}`);
        entry.value = String(port);
        red.nodes.dirty(true);
      },
      { tab, name, port },
    );

  /** Nodes and config nodes of an example (by its id prefix) that the editor marks invalid. */
  const invalidAmong = (prefix: string) =>
    page.evaluate((prefix) => {
      const red = (
        globalThis as unknown as {
          RED: {
            nodes: { eachNode: (f: (n: Node) => void) => void; eachConfig: (f: (n: Node) => void) => void };
          };
        }
      ).RED;
      type Node = { id: string; valid?: boolean };
      const bad: string[] = [];
      const check = (n: Node) => {
        if (n.id.startsWith(prefix) && n.valid === false) bad.push(n.id);
      };
      red.nodes.eachNode(check);
      red.nodes.eachConfig(check);
      return bad.sort();
    }, prefix);

  /** The README's pictures: wide enough for a whole flow, without the notifications. */
  const readmeShot = async (path: string, what: "page" | "workspace") => {
    await page.setViewportSize({ width: 1800, height: 900 });
    const style = ".red-ui-notification { display: none !important; }";
    if (what === "workspace") await page.locator("#red-ui-workspace").screenshot({ path, style });
    else await page.screenshot({ path, style });
    await page.setViewportSize({ width: 1400, height: 900 });
  };

  const inject = async (id: string) => {
    const res = await page.request.post(`${nr.url}/inject/${id}`);
    assert.equal(res.status(), 200, `inject ${id}`);
  };

  it("every example imported from the menu deploys and reaches its success status in the editor", async () => {
    const examples = readdirSync(join(PROJECT_ROOT, "examples"))
      .filter((f) => f.endsWith(".json"))
      .map((f) => f.replace(/\.json$/, ""));
    const covered: string[] = ["credential-store-operations"];
    await show("browser-tab");
    // credential-store-operations was imported and deployed above: it now works on request.
    await inject("cs-inject-set");
    await statusShown("cs-store-set", /^stored demo\/device-1$/);
    await inject("cs-inject-get");
    await statusShown("cs-store-get", /^found demo\/device-1$/);
    await shot("ok-credential-store-operations");

    await importExample("thingsboard-local-round-trip");
    assert.deepEqual(await invalidAmong("tb-"), [], "as imported, nothing is marked");
    await movePort("tb-tab", "PROVISION_MQTT_PORT", await freeTcpPort());
    let result = await deployFromEditor("thingsboard-local-round-trip");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    await show("tb-tab");
    await statusShown("tb-gateway", /^provisioned$/);
    await inject("tb-children");
    await statusShown("tb-child", /^provisioned$/);
    await statusShown("tb-server", /4 provisioned/);
    await shot("ok-thingsboard-local-round-trip");
    // The README's pictures: this flow after deploy, and the gateway's dialog.
    await readmeShot(join(ARTIFACTS, "readme-flow.png"), "workspace");
    await page.evaluate(() => {
      const red = (globalThis as unknown as Red).RED;
      red.editor.edit(red.nodes.node("tb-gateway"));
    });
    await page.waitForSelector(".red-ui-tray .red-ui-tray-body form", { state: "visible" });
    await page.waitForSelector("#node-dialog-cancel", { state: "visible" });
    await readmeShot(join(ARTIFACTS, "readme-dialog.png"), "page");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    covered.push("thingsboard-local-round-trip");

    await importExample("mainflux-bootstrap-secure");
    assert.deepEqual(await invalidAmong("mf-ex-"), [], "as imported, nothing is marked");
    result = await deployFromEditor("mainflux-bootstrap-secure");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    await show("mf-ex-tab");
    await statusShown("mf-ex-device", /^bootstrapped$/);
    // It used what it got: the stand-in adapter answered 202 (the debug sidebar shows it).
    await page.waitForFunction(
      () =>
        Array.from(document.querySelectorAll(".red-ui-debug-msg")).some(
          (m) => m.textContent?.includes("adapter answer") && /\b202\b/.test(m.textContent ?? ""),
        ),
      undefined,
      { timeout: 60000 },
    );
    await shot("ok-mainflux-bootstrap-secure");
    covered.push("mainflux-bootstrap-secure");

    await importExample("plgd-dps-local");
    assert.deepEqual(await invalidAmong("dps-ex-"), [], "as imported, nothing is marked");
    await movePort("dps-ex-tab", "DPS_PORT", await freeTcpPort());
    result = await deployFromEditor("plgd-dps-local");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    await show("dps-ex-tab");
    await statusShown("dps-ex-client", /^provisioned · demo PKI$/);
    await statusShown("dps-ex-service", /demo PKI · 1 provisioned/);
    await shot("ok-plgd-dps-local");
    covered.push("plgd-dps-local");

    await importExample("everyware-kura-local");
    assert.deepEqual(await invalidAmong("kura-"), [], "as imported, nothing is marked");
    await movePort("kura-tab", "PROVISION_MQTT_PORT", await freeTcpPort());
    await movePort("kura-tab", "EVERYWARE_ACCOUNT_PORT", await freeTcpPort());
    result = await deployFromEditor("everyware-kura-local");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    await show("kura-tab");
    await statusShown("kura-device", /^provisioned/);
    await statusShown("kura-server", /1 provisioned/);
    // Node-RED's core mqtt in node, connected to the account broker with what was received.
    await statusShown("kura-account-in", /^connected$/);
    await page.waitForFunction(
      () =>
        Array.from(document.querySelectorAll(".red-ui-debug-msg")).some((m) =>
          m.textContent?.includes("hello from the provisioned device"),
        ),
      undefined,
      { timeout: 60000 },
    );
    await shot("ok-everyware-kura-local");
    // The provision requests' list editor shows both requests, secrets as password fields.
    await page.evaluate(() => {
      const red = (globalThis as unknown as Red).RED;
      red.editor.edit(red.nodes.node("kura-server"));
    });
    await page.waitForSelector("#node-dialog-cancel", { state: "visible" });
    await page.waitForFunction(
      () => document.querySelectorAll("#node-input-kura-requests > li").length === 2,
      undefined,
      { timeout: 10000 },
    );
    const requestFields = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#node-input-kura-requests [data-kura="password"]')).map(
        (e) => (e as HTMLInputElement).type,
      ),
    );
    assert.deepEqual(requestFields, ["password", "password"]);
    await shot("dialog-everyware-kura-requests");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    covered.push("everyware-kura-local");

    await importExample("azure-dps-local");
    assert.deepEqual(await invalidAmong("azure-"), [], "as imported, nothing is marked");
    await movePort("azure-tab", "AZURE_DPS_MQTT_PORT", await freeTcpPort());
    result = await deployFromEditor("azure-dps-local");
    assert.ok(result.ok, `deploy said: ${result.text}`);
    await show("azure-tab");
    await statusShown("azure-device", /^assigned$/);
    await statusShown("azure-server", /1 provisioned/);
    await shot("ok-azure-dps-local");
    // The enrollments' list editor shows the group, its keys as password fields.
    await page.evaluate(() => {
      const red = (globalThis as unknown as Red).RED;
      red.editor.edit(red.nodes.node("azure-server"));
    });
    await page.waitForSelector("#node-dialog-cancel", { state: "visible" });
    await page.waitForFunction(
      () => document.querySelectorAll("#node-input-azure-enrollments > li").length === 1,
      undefined,
      { timeout: 10000 },
    );
    const keyFields = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#node-input-azure-enrollments [data-az$="Key"]')).map(
        (e) => (e as HTMLInputElement).type,
      ),
    );
    assert.deepEqual(keyFields, ["password", "password"]);
    assert.ok(await page.isHidden("#node-input-mqtt"), "Azure DPS has no MQTT mode choice");
    assert.ok(await page.isVisible("#node-input-azureIdScope"));
    await shot("dialog-azure-dps-enrollments");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    covered.push("azure-dps-local");

    // It needs a real server: it shows its missing host red before deploy, and is not deployed.
    await show("browser-tab");
    await importExample("thingsboard-real-server-device");
    await page.waitForFunction(
      () => (globalThis as unknown as Red).RED.nodes.node("tbdev.provision")?.valid === false,
    );
    assert.deepEqual(await invalidAmong("tbdev."), ["tbdev.provision"], "only the host to fill in is marked");
    const triangle = await page.evaluate(() => {
      const err = document.getElementById("tbdev.provision")?.querySelector(".red-ui-flow-node-error");
      return !!err && !err.classList.contains("hide") && getComputedStyle(err).display !== "none";
    });
    assert.ok(triangle, "provision device shows the red triangle");
    await page.evaluate(() => {
      const red = (globalThis as unknown as Red).RED;
      red.editor.edit(red.nodes.node("tbdev.provision"));
    });
    await page.waitForSelector("#node-input-host.input-error");
    await shot("invalid-thingsboard-real-server-device");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    covered.push("thingsboard-real-server-device");

    assert.deepEqual([...covered].sort(), [...examples].sort(), "every example is covered");
    assert.deepEqual(consoleErrors, []);
  });

  it("in German: every dialog opens in German, with no placeholder cut off", async () => {
    // A second editor whose browser speaks German: Node-RED picks the editor's language from it.
    const context = await browser.newContext({ locale: "de-DE", viewport: { width: 1400, height: 900 } });
    const de = await context.newPage();
    const errors: string[] = [];
    de.on("pageerror", (e) => errors.push(String(e)));
    try {
      await de.goto(nr.url);
      await de.waitForSelector(
        `#red-ui-palette .red-ui-palette-node[data-palette-type="${paletteTypes[0]}"]`,
      );
      await de.waitForFunction(() => (globalThis as unknown as Red).RED.nodes.node("n-provision-request"));
      const cut: string[] = [];
      const headings: string[] = [];
      for (const type of paletteTypes) {
        await de.evaluate((id) => {
          const red = (globalThis as unknown as Red).RED;
          red.editor.edit(red.nodes.node(id));
        }, `n-${type}`);
        await de.waitForSelector(".red-ui-tray .red-ui-tray-body form", { state: "visible" });
        await de.waitForSelector("#node-dialog-cancel", { state: "visible" });
        if (type === "provision-request") {
          headings.push(...(await de.locator(".provisioning-section").allInnerTexts()));
          await de.screenshot({ path: join(ARTIFACTS, "de-dialog-provision-request.png") });
        }
        cut.push(...(await cutPlaceholders(type, de)));
        await de.click("#node-dialog-cancel");
        await de.waitForSelector("#node-dialog-cancel", { state: "detached" });
      }
      assert.ok(headings.includes("Wohin verbinden"), `the sections speak German: ${headings.join(", ")}`);
      assert.deepEqual(cut, [], "German placeholders cut off");
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("provision-request: the protocol Everyware / Kura shows ESF's settings and hides ThingsBoard's", async () => {
    await page.evaluate(() => {
      const red = (
        globalThis as unknown as {
          RED: { nodes: { node: (id: string) => unknown }; editor: { edit: (n: unknown) => void } };
        }
      ).RED;
      red.editor.edit(red.nodes.node("n-provision-request"));
    });
    await page.waitForSelector("#node-dialog-cancel", { state: "visible" });
    assert.equal(await page.inputValue("#node-input-protocol"), "thingsboard", "a new node is ThingsBoard");
    assert.ok(await page.isHidden("#node-input-kuraBrokerUrl"));
    await page.selectOption("#node-input-protocol", "kura");
    const kura = [
      "kuraBrokerUrl",
      "tls",
      "kuraCaAuthentication",
      "kuraAccountName",
      "kuraClientId",
      "kuraUsername",
      "kuraPassword",
      "kuraActivationKey",
      "kuraSerialNumber",
      "timeout",
      "kuraRetryInterval",
      "retryMax",
      "store",
      "kuraEnabled",
      "kuraTopicReply",
    ];
    for (const f of kura) assert.ok(await page.isVisible(`#node-input-${f}`), `${f} is shown`);
    assert.ok(await page.isDisabled("#pr-kura-provisioned"), "provisioned is read-only");
    for (const f of [
      "scheme",
      "host",
      "provisionKey",
      "deviceName",
      "credentialsType",
      "retryJitter",
      "onDeploy",
    ])
      assert.ok(await page.isHidden(`#node-input-${f}`), `${f} is hidden`);
    await page.fill("#node-input-kuraBrokerUrl", "mqtt://127.0.0.1:1883");
    await page.dispatchEvent("#node-input-kuraBrokerUrl", "change");
    assert.ok(await page.isVisible(".pr-kura-plain-warning"), "plain mqtt is warned about");
    await shot("provision-request-kura");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    assert.deepEqual(consoleErrors, []);
  });

  it("provision-request: the protocol Azure IoT Hub DPS shows its settings, the key row follows the attestation", async () => {
    await page.evaluate(() => {
      const red = (
        globalThis as unknown as {
          RED: { nodes: { node: (id: string) => unknown }; editor: { edit: (n: unknown) => void } };
        }
      ).RED;
      red.editor.edit(red.nodes.node("n-provision-request"));
    });
    await page.waitForSelector("#node-dialog-cancel", { state: "visible" });
    await page.selectOption("#node-input-protocol", "azure-dps");
    for (const f of [
      "azureHost",
      "azureTransport",
      "tls",
      "azureIdScope",
      "azureRegistrationId",
      "azureAttestation",
      "azureKey",
      "azurePayload",
      "timeout",
      "retryIntervals",
      "retryJitter",
      "retryMax",
      "store",
      "onDeploy",
    ])
      assert.ok(await page.isVisible(`#node-input-${f}`), `${f} is shown`);
    for (const f of ["scheme", "host", "provisionKey", "deviceName", "kuraBrokerUrl", "retryRefusals"])
      assert.ok(await page.isHidden(`#node-input-${f}`), `${f} is hidden`);
    assert.equal(await page.textContent("#pr-az-key-label"), "Device key");
    await page.selectOption("#node-input-azureAttestation", "group-key");
    assert.equal(await page.textContent("#pr-az-key-label"), "Group key");
    await page.selectOption("#node-input-azureAttestation", "x509");
    assert.ok(await page.isHidden("#node-input-azureKey"), "X.509 needs no key");
    assert.ok(await page.isVisible(".pr-az-x509"), "X.509 says where the certificate comes from");
    await shot("provision-request-azure");
    await page.click("#node-dialog-cancel");
    await page.waitForSelector("#node-dialog-cancel", { state: "detached" });
    assert.deepEqual(consoleErrors, []);
  });
});
