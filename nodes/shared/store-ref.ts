import type { StoreBackend } from "../../lib/stores/backend";
import type { Translator } from "./errors";

/** The shape every store config node instance has at run time (credential-store-config). */
export interface StoreConfigNode {
  /** Undefined when the config node could not build its backend; `failure` says why. */
  backend?: StoreBackend;
  /** Why the store is unusable; not named `error`, which would hide Node's error(). */
  failure?: string;
  /** The StoreError code of that failure, for msg.error.code. */
  failureCode?: string;
}

interface NodeLookup extends Translator {
  nodes: { getNode(id: string): unknown };
}

/**
 * Resolves a store config node id to its backend. Returns undefined when no store is
 * configured; throws an Error with a clear, secret-free reason when one is configured
 * but unusable, in the words of the asking node's catalogue (`<type>.errors.store-missing`,
 * `<type>.errors.store-unavailable`).
 */
export function storeFromConfig(
  RED: NodeLookup,
  type: string,
  id: string | undefined,
): StoreBackend | undefined {
  if (!id) return undefined;
  const node = RED.nodes.getNode(id) as StoreConfigNode | null;
  if (!node) throw new Error(RED._(`${type}.errors.store-missing`));
  if (!node.backend)
    throw new Error(
      node.failure === undefined
        ? RED._(`${type}.errors.store-unavailable`)
        : RED._(`${type}.errors.store-unusable`, { reason: node.failure }),
    );
  return node.backend;
}
