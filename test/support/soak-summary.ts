/**
 * The one summary table of the soak, fuzz, fault and abuse suites. Each part adds its row
 * to a JSON file (SOAK_RESULTS, default a file in the OS temp directory) so that
 * scripts/soak.js can print every part's row together after separate mocha runs.
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SummaryRow {
  part: string;
  inputs: number;
  faults: number;
  lost: number;
  duplicates: number;
  leaks: number;
  stalls: number;
  /** Anything else worth a line: peak memory, longest stall, failures named by defect. */
  notes?: string;
}

export const RESULTS_FILE = process.env.SOAK_RESULTS ?? join(tmpdir(), "provisioning-soak-results.jsonl");

export function emptyRow(part: string): SummaryRow {
  return { part, inputs: 0, faults: 0, lost: 0, duplicates: 0, leaks: 0, stalls: 0 };
}

export function recordRow(row: SummaryRow): void {
  appendFileSync(RESULTS_FILE, JSON.stringify(row) + "\n");
}

export function readRows(file = RESULTS_FILE): SummaryRow[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SummaryRow);
}

export function formatTable(rows: SummaryRow[]): string {
  const head = ["part", "inputs tried", "faults injected", "requests lost", "duplicates", "leaks", "stalls"];
  const body = rows.map((r) =>
    [r.part, r.inputs, r.faults, r.lost, r.duplicates, r.leaks, r.stalls].map(String),
  );
  const total = [
    "total",
    ...[1, 2, 3, 4, 5, 6].map((i) => String(body.reduce((s, r) => s + Number(r[i]), 0))),
  ];
  const all = [head, ...body, total];
  const width = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]) =>
    "| " + r.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join(" | ") + " |";
  const sep =
    "|" + width.map((w, i) => (i === 0 ? ":" + "-".repeat(w + 1) : "-".repeat(w + 1) + ":")).join("|") + "|";
  const notes = rows.filter((r) => r.notes).map((r) => `- ${r.part}: ${r.notes}`);
  return [line(head), sep, ...body.map(line), line(total), ...(notes.length ? ["", ...notes] : [])].join(
    "\n",
  );
}
