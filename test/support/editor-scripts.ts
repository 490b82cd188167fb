/**
 * A node's editor half run as the editor runs it, in a VM: the package's shared editor
 * script first (resources/provisioning-editor.js, which every node's .html loads with a
 * <script src>), then the file's own `text/javascript` blocks.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createContext, Script } from "node:vm";
import { PROJECT_ROOT } from "./node-red";

export const EDITOR_SCRIPT_URL = "resources/node-red-contrib-provisioning/provisioning-editor.js";
const EDITOR_SCRIPT = readFileSync(join(PROJECT_ROOT, "resources", "provisioning-editor.js"), "utf8");

/** The `text/javascript` blocks of one of nodes/*.html. */
export function scriptsOf(file: string): string[] {
  const html = readFileSync(join(PROJECT_ROOT, "nodes", file), "utf8");
  return [...html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)].map((m) => m[1]);
}

/** Runs a node's editor scripts with `globals` (RED, $ ...) as the page's globals. */
export function runEditorScripts(file: string, globals: Record<string, unknown>): void {
  const context = createContext({ ...globals });
  context.window = context;
  new Script(EDITOR_SCRIPT, { filename: "provisioning-editor.js" }).runInContext(context);
  for (const s of scriptsOf(file)) new Script(s, { filename: file }).runInContext(context);
}
