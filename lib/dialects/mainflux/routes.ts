/**
 * The route table of the Mainflux bootstrap service: which endpoint of upstream's
 * bootstrap API (mainflux/mainflux, bootstrap/api/transport.go) a path names.
 */
import { BOOTSTRAP_PATH, SECURE_PATH } from "./wire";

export type Route =
  | { kind: "bootstrap"; secure: boolean; id: string | undefined }
  | { kind: "configs"; id?: string }
  | { kind: "state"; id: string | undefined }
  | { kind: "none" };

/** A management route: everything but bootstrap and none. */
export type ManageRoute = Exclude<Route, { kind: "bootstrap" | "none" }>;

function decodeSegment(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** Which endpoint a path names; ids are percent-decoded ("" when the segment is empty). */
export function route(path: string): Route {
  const p = path.split("?")[0];
  const seg = (rest: string) => (rest.includes("/") ? undefined : decodeSegment(rest));
  if (p.startsWith(SECURE_PATH))
    return { kind: "bootstrap", secure: true, id: seg(p.slice(SECURE_PATH.length)) };
  if (p === SECURE_PATH.slice(0, -1)) return { kind: "bootstrap", secure: true, id: "" };
  if (p.startsWith(BOOTSTRAP_PATH))
    return { kind: "bootstrap", secure: false, id: seg(p.slice(BOOTSTRAP_PATH.length)) };
  if (p === "/things/configs") return { kind: "configs" };
  if (p.startsWith("/things/configs/")) {
    const id = seg(p.slice("/things/configs/".length));
    return id === undefined ? { kind: "none" } : { kind: "configs", id };
  }
  if (p.startsWith("/things/state/")) return { kind: "state", id: seg(p.slice("/things/state/".length)) };
  return { kind: "none" };
}
