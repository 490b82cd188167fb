import WebSocket from "ws";

export interface CommsMessage {
  topic: string;
  data: unknown;
}

/**
 * Node-RED's editor channel (/comms): the same node status and debug messages a person
 * sees in the editor, read here without touching the flow under test.
 */
export class Comms {
  private readonly seen: CommsMessage[] = [];
  private readonly waiters: Array<{
    match: (m: CommsMessage) => boolean;
    resolve: (m: CommsMessage) => void;
  }> = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (raw) => {
      let batch: unknown;
      try {
        batch = JSON.parse(raw.toString());
      } catch {
        return;
      }
      for (const m of (Array.isArray(batch) ? batch : [batch]) as CommsMessage[]) {
        this.seen.push(m);
        for (const w of [...this.waiters]) {
          if (w.match(m)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(m);
          }
        }
      }
    });
  }

  static connect(baseUrl: string, topics = ["status/#", "debug"]): Promise<Comms> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(baseUrl.replace(/^http/, "ws") + "/comms");
      ws.once("error", reject);
      ws.once("open", () => {
        for (const t of topics) ws.send(JSON.stringify({ subscribe: t }));
        resolve(new Comms(ws));
      });
    });
  }

  /** Resolves with the first message (already seen or still to come) that matches. */
  waitFor(what: string, match: (m: CommsMessage) => boolean, timeoutMs = 30000): Promise<CommsMessage> {
    const found = this.seen.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Status text of a node, as the editor shows it under the node. */
  waitForStatus(nodeId: string, text: RegExp, timeoutMs?: number): Promise<CommsMessage> {
    return this.waitFor(
      `status of ${nodeId} matching ${text}`,
      (m) => m.topic === `status/${nodeId}` && text.test(String((m.data as { text?: unknown })?.text ?? "")),
      timeoutMs,
    );
  }

  all(): CommsMessage[] {
    return [...this.seen];
  }

  close(): void {
    this.ws.close();
  }
}
