/**
 * What every device-side node does with a message: run one abortable request, send the
 * neutral result as msg.payload, or report the failure as a red status and done(err)
 * with a stable code (Catch nodes see it as msg.error.code). A request may start at
 * deploy, like inject's "once"; on close every request under way is aborted and waited for.
 */
import type { Node, NodeMessage, NodeMessageInFlow } from "node-red";
import type { StoreBackend } from "../../lib/stores/backend";
import { saveResult } from "../../lib/client/reuse";
import type { ProvisioningResult } from "../../lib/model/result";
import { AbortedError } from "../../lib/retry/run";

export type DeviceMsg = NodeMessageInFlow & Record<string, unknown>;

export interface DeviceRequestOptions {
  /** The request for one message; resolves with the result to send. */
  handle: (msg: DeviceMsg, signal: AbortSignal) => Promise<ProvisioningResult>;
  /** The status text shown when a request failed with this code. */
  failedText: (code: string) => string;
  /** Start one request at deploy. */
  onDeploy: boolean;
  /** Sets extra properties of the outgoing message (e.g. its topic). */
  decorate?: (msg: DeviceMsg) => void;
}

export function serveDeviceRequests(node: Node, opts: DeviceRequestOptions): void {
  const running = new Set<{ ac: AbortController; settled: Promise<void> }>();

  node.on("input", (msg: NodeMessageInFlow, send, done) => {
    const m = msg as DeviceMsg;
    const ac = new AbortController();
    const entry = { ac, settled: Promise.resolve() };
    entry.settled = opts
      .handle(m, ac.signal)
      .then(
        (result) => {
          m.payload = result;
          opts.decorate?.(m);
          send(m as NodeMessage);
          done();
        },
        (err: unknown) => {
          if (err instanceof AbortedError || ac.signal.aborted) return done();
          const e = (err instanceof Error ? err : new Error(String(err))) as Error & { code?: string };
          e.code ??= "ERROR";
          node.status({ fill: "red", shape: "ring", text: opts.failedText(e.code) });
          done(e);
        },
      )
      .finally(() => running.delete(entry));
    running.add(entry);
  });

  // Give the flow a moment to start its other nodes (a local service among them).
  const deployTimer = opts.onDeploy ? setTimeout(() => node.receive({}), 100) : undefined;

  node.on("close", (_removed: boolean, done: () => void) => {
    if (deployTimer) clearTimeout(deployTimer);
    const pending = [...running];
    for (const r of pending) r.ac.abort();
    void Promise.allSettled(pending.map((r) => r.settled)).then(() => {
      node.status({});
      done();
    });
  });
}

/**
 * Saves a result for reuse. A store that fails does not fail the request (the
 * credentials were obtained): the code goes to msg.storeError and to `warn`.
 */
export async function saveForReuse(
  store: StoreBackend,
  key: string,
  result: ProvisioningResult,
  msg: DeviceMsg,
  warn: (code: string) => void,
): Promise<void> {
  try {
    await saveResult(store, key, result);
  } catch (err) {
    const code = (err as { code?: string }).code ?? "IO";
    warn(code);
    msg.storeError = { code, message: (err as Error).message };
  }
}
