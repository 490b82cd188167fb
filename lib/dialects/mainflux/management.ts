/**
 * The management endpoints of upstream's bootstrap service over HTTP (mainflux/mainflux,
 * bootstrap/api/transport.go): add, view, update, remove a configuration and change its
 * state, behind a bearer token. Their answers hold keys (upstream's view), so they are
 * served only when a token is set.
 */
import { ProvisioningError } from "../../model/errors";
import { parseJsonBounded } from "../../util/json-limits";
import { secretsEqual } from "../../util/secrets";
import { empty, json, JSON_TYPE, type Answer, type ServiceRequest } from "./answers";
import type { ConfigRegistry, StoredConfig } from "./registry";
import type { ManageRoute } from "./routes";
import { errorJson, MAX_MANAGE_BODY_BYTES, MESSAGES as M } from "./wire";

/** The 401 answer when the management token is missing or wrong, else undefined. */
export function checkToken(token: string, authorization: string | undefined): Answer | undefined {
  const auth = authorization ?? "";
  if (!auth.startsWith("Bearer ") || auth.length === "Bearer ".length)
    return json(401, errorJson(M.validation, M.bearerToken));
  if (!secretsEqual(auth.slice("Bearer ".length), token)) return json(401, errorJson(M.authentication));
  return undefined;
}

function parseBody(req: ServiceRequest): { value: Record<string, unknown> } | Answer {
  if (!(req.contentType ?? "").includes(JSON_TYPE)) return json(415, errorJson(M.validation, M.contentType));
  // Bounded in size and depth (lib/util/json-limits): a deep body is malformed, not a 500.
  const parsed = parseJsonBounded(req.body ?? Buffer.alloc(0), { maxBytes: MAX_MANAGE_BODY_BYTES });
  if (!parsed.ok) return json(400, errorJson(M.validation, M.malformed));
  const v = parsed.value;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return json(400, errorJson(M.validation, M.malformed));
  return { value: v as Record<string, unknown> };
}

/** A registry failure in upstream's words: 409, 404, 400; the store failing is 503. */
function registryAnswer(err: unknown): Answer {
  if (err instanceof ProvisioningError) {
    if (err.code === "CONFLICT") return json(409, errorJson(M.conflict));
    if (err.code === "NOT_FOUND") return json(404, errorJson(M.notFound));
    if (err.code === "INVALID") return json(400, errorJson(M.malformed, err.message));
  }
  return json(503, errorJson(M.readConfig, "the configuration store is unavailable"));
}

const notAllowed = () => json(405, errorJson("method not allowed"));

/** PUT /things/state/{thing_id}. */
async function changeState(
  reg: ConfigRegistry,
  id: string | undefined,
  req: ServiceRequest,
): Promise<Answer> {
  if (req.method !== "PUT") return notAllowed();
  if (!id) return json(400, errorJson(M.validation, M.missingId));
  const body = parseBody(req);
  if ("status" in body) return body;
  const s = body.value.state;
  if (s !== 0 && s !== 1) return json(400, errorJson(M.validation, M.state));
  await reg.setState(id, s);
  return empty(200);
}

/** POST /things/configs. */
async function addConfig(reg: ConfigRegistry, req: ServiceRequest): Promise<Answer> {
  if (req.method !== "POST") return notAllowed();
  const body = parseBody(req);
  if ("status" in body) return body;
  const v = body.value;
  if (!v.external_id) return json(400, errorJson(M.validation, M.missingId));
  if (!v.external_key) return json(401, errorJson(M.validation, M.bearerKey));
  const cfg = await reg.add(v);
  return empty(201, { location: `/things/configs/${encodeURIComponent(cfg.thing_id)}` });
}

/** GET, PUT, DELETE /things/configs/{thing_id}. */
async function oneConfig(reg: ConfigRegistry, id: string, req: ServiceRequest): Promise<Answer> {
  if (id === "") return json(400, errorJson(M.validation, M.missingId));
  if (req.method === "GET") {
    const cfg = await reg.getByThing(id);
    if (!cfg) return json(404, errorJson(M.readConfig, M.notFound));
    return json(200, JSON.stringify(viewOf(cfg)));
  }
  if (req.method === "PUT") {
    const body = parseBody(req);
    if ("status" in body) return body;
    // Upstream's update changes name and content; the rest has its own endpoints there.
    const patch: Record<string, unknown> = {};
    if ("name" in body.value) patch.name = body.value.name;
    if ("content" in body.value) patch.content = body.value.content;
    await reg.update(id, patch);
    return empty(200);
  }
  if (req.method === "DELETE") {
    await reg.remove(id);
    return empty(204);
  }
  return notAllowed();
}

/** Answers one management request (the token is checked first). */
export async function answerManagement(
  reg: ConfigRegistry,
  token: string,
  r: ManageRoute,
  req: ServiceRequest,
): Promise<Answer> {
  const denied = checkToken(token, req.authorization);
  if (denied) return denied;
  try {
    if (r.kind === "state") return await changeState(reg, r.id, req);
    if (r.id === undefined) return await addConfig(reg, req);
    return await oneConfig(reg, r.id, req);
  } catch (err) {
    return registryAnswer(err);
  }
}

/** Upstream's view of one configuration (management only: it holds the keys). */
export function viewOf(c: StoredConfig): Record<string, unknown> {
  const v: Record<string, unknown> = {
    thing_id: c.thing_id,
    thing_key: c.thing_key,
    channels: c.channels,
    external_id: c.external_id,
    external_key: c.external_key,
    state: c.state,
  };
  if (c.name) v.name = c.name;
  if (c.content) v.content = c.content;
  if (c.client_cert) v.client_cert = c.client_cert;
  if (c.client_key) v.client_key = c.client_key;
  if (c.ca_cert) v.ca_cert = c.ca_cert;
  return v;
}
