/**
 * A provisioning storm against the demo: many distinct devices at once over HTTP and MQTT,
 * each from one of a few loopback source addresses (so a per-address rate limit meant for
 * one gateway is not what the storm measures). Every answer is kept with the device that
 * received it.
 */
import { tbHttp, tbMqtt, type TbAnswer } from "../support/soak-devices";
import type { SoakDemo } from "../support/soak-demo";
import { readStore } from "../support/soak-demo";

export interface StormAnswer {
  name: string;
  via: "http" | "mqtt";
  answer?: TbAnswer;
  error?: string;
}

export function sourceAddress(i: number): string {
  return `127.0.${10 + (Math.floor(i / 250) % 200)}.${1 + (i % 250)}`;
}

/** Runs `count` requests, `concurrency` at a time, until done or `stop()` returns true. */
export async function storm(
  demo: SoakDemo,
  opts: {
    count: number;
    concurrency: number;
    prefix: string;
    names?: (i: number) => string;
    stop?: () => boolean;
    sink?: StormAnswer[];
  },
): Promise<StormAnswer[]> {
  const answers: StormAnswer[] = opts.sink ?? [];
  let next = 0;
  const worker = async () => {
    while (next < opts.count && !opts.stop?.()) {
      const i = next++;
      const name = opts.names ? opts.names(i) : `${opts.prefix}-${i}`;
      const via = i % 2 === 0 ? "http" : "mqtt";
      const localAddress = sourceAddress(i);
      try {
        const answer =
          via === "http"
            ? await tbHttp(demo.ports.http, name, { localAddress }).then(
                (a) => a.answer ?? { status: `HTTP_${a.http}` },
              )
            : await tbMqtt(demo.ports.mqtt, name, { localAddress, timeoutMs: 20000 });
        answers.push({ name, via, answer });
      } catch (err) {
        answers.push({ name, via, error: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return answers;
}

/** The registry's ThingsBoard entries ("thingsboard/<profile>/<name>"): device name -> tokens it holds. */
export function registryTokens(userDir: string): {
  byName: Map<string, string>;
  unreadable: string[];
} {
  const byName = new Map<string, string>();
  const unreadable: string[] = [];
  for (const e of readStore(userDir)) {
    if (e.error) {
      unreadable.push(`${e.file}: ${e.error}`);
      continue;
    }
    const rec = e.record as { key?: string; value?: { name?: string; credentials?: { token?: string } } };
    if (!rec.key?.startsWith("thingsboard/") || rec.key.startsWith("thingsboard/#") || !rec.value?.name)
      continue;
    byName.set(rec.value.name, String(rec.value.credentials?.token ?? ""));
  }
  return { byName, unreadable };
}
