/**
 * Debian's protoc (protobuf-compiler) as the independent KuraPayload codec: text format
 * in, binary out (`--encode`) and back (`--decode`), with the schema kept in the
 * repository (lib/dialects/kura/kurapayload.proto). Plus a writer of protobuf's text
 * format for the messages the tests build, so that one object is the input of both codecs.
 */
import { join } from "node:path";
import type { KuraMetric, KuraPayload, KuraPosition } from "../../lib/dialects/kura/payload";
import { PROJECT_ROOT } from "./node-red";
import { run } from "./process";

const PROTO_DIR = join(PROJECT_ROOT, "lib", "dialects", "kura");
const MESSAGE = "kuradatatypes.KuraPayload";

async function protoc(mode: "--encode" | "--decode", input: Buffer | string): Promise<Buffer> {
  const r = await run("protoc", [`${mode}=${MESSAGE}`, "-I", PROTO_DIR, "kurapayload.proto"], { input });
  if (r.code !== 0) throw new Error(`protoc ${mode} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** protoc --encode: text format to KuraPayload bytes. */
export function protocEncode(text: string): Promise<Buffer> {
  return protoc("--encode", text);
}

/** protoc --decode: KuraPayload bytes to text format (fails on a missing required field). */
export async function protocDecode(bytes: Buffer): Promise<string> {
  return (await protoc("--decode", bytes)).toString("utf8");
}

/**
 * How protoc reads bytes as a KuraPayload: "refused" (it cannot parse them), "partial"
 * (parsed, with its warning that required fields are missing: --decode parses partially
 * and still exits 0) or "complete".
 */
export async function protocReads(bytes: Buffer): Promise<"refused" | "partial" | "complete"> {
  return (await protocRead(bytes)).verdict;
}

/** protocReads, with the text protoc made of what it read. */
export async function protocRead(
  bytes: Buffer,
): Promise<{ verdict: "refused" | "partial" | "complete"; text: string }> {
  const r = await run("protoc", [`--decode=${MESSAGE}`, "-I", PROTO_DIR, "kurapayload.proto"], {
    input: bytes,
  });
  const text = r.stdout.toString("utf8");
  if (r.code !== 0) return { verdict: "refused", text };
  return { verdict: /missing required fields/.test(r.stderr) ? "partial" : "complete", text };
}

/** Text format's quoted string: printable ASCII as is, every other byte as an octal escape. */
export function quote(b: Uint8Array | string): string {
  const bytes = typeof b === "string" ? Buffer.from(b, "utf8") : b;
  let s = '"';
  for (const c of bytes) {
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) s += String.fromCharCode(c);
    else s += "\\" + c.toString(8).padStart(3, "0");
  }
  return s + '"';
}

function num(v: number): string {
  if (Number.isNaN(v)) return "nan";
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  if (Object.is(v, -0)) return "-0";
  return String(v);
}

function metricText(m: KuraMetric): string {
  const head = `name: ${quote(m.name)} type: ${m.type}`;
  switch (m.type) {
    case "DOUBLE":
      return `${head} double_value: ${num(m.value)}`;
    case "FLOAT":
      return `${head} float_value: ${num(m.value)}`;
    case "INT64":
      return `${head} long_value: ${String(m.value)}`;
    case "INT32":
      return `${head} int_value: ${m.value}`;
    case "BOOL":
      return `${head} bool_value: ${m.value}`;
    case "STRING":
      return `${head} string_value: ${quote(m.value)}`;
    default:
      return `${head} bytes_value: ${quote(m.value)}`;
  }
}

function positionText(p: KuraPosition): string {
  const parts = [`latitude: ${num(p.latitude)}`, `longitude: ${num(p.longitude)}`];
  for (const k of ["altitude", "precision", "heading", "speed"] as const)
    if (p[k] !== undefined) parts.push(`${k}: ${num(p[k])}`);
  if (p.timestamp !== undefined) parts.push(`timestamp: ${String(p.timestamp)}`);
  if (p.satellites !== undefined) parts.push(`satellites: ${p.satellites}`);
  if (p.status !== undefined) parts.push(`status: ${p.status}`);
  return parts.join(" ");
}

/** A KuraPayload in protobuf's text format, as protoc --encode reads it. */
export function kuraText(p: KuraPayload): string {
  const lines: string[] = [];
  if (p.timestamp !== undefined) lines.push(`timestamp: ${String(p.timestamp)}`);
  if (p.position) lines.push(`position { ${positionText(p.position)} }`);
  for (const m of p.metrics) lines.push(`metric { ${metricText(m)} }`);
  if (p.body !== undefined) lines.push(`body: ${quote(p.body)}`);
  return lines.join("\n") + "\n";
}
