import { Opt } from "./codes";
import { findStrings, findUint, stringOption, uintOption, type CoapOption } from "./options";
import type { CoapRequest } from "./types";

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Uri-Path, Uri-Query, Content-Format and Accept for a request (RFC 7252 §6.4). */
export function requestOptions(req: CoapRequest): CoapOption[] {
  if (typeof req.path !== "string") throw new TypeError("request path must be a string");
  const options: CoapOption[] = [];
  const [pathOnly] = req.path.split("?");
  const segments = pathOnly.split("/");
  if (segments[0] === "") segments.shift();
  if (segments.length === 1 && segments[0] === "") segments.shift();
  for (const s of segments) options.push(stringOption(Opt.URI_PATH, decodeSegment(s)));
  for (const q of req.query ?? []) options.push(stringOption(Opt.URI_QUERY, q));
  if (req.contentFormat !== undefined) options.push(uintOption(Opt.CONTENT_FORMAT, req.contentFormat));
  if (req.accept !== undefined) options.push(uintOption(Opt.ACCEPT, req.accept));
  return options;
}

export function pathOf(options: readonly CoapOption[]): string {
  return "/" + findStrings(options, Opt.URI_PATH).join("/");
}

export function queryOf(options: readonly CoapOption[]): string[] {
  return findStrings(options, Opt.URI_QUERY);
}

export function contentFormatOf(options: readonly CoapOption[]): number | undefined {
  return findUint(options, Opt.CONTENT_FORMAT);
}

export function acceptOf(options: readonly CoapOption[]): number | undefined {
  return findUint(options, Opt.ACCEPT);
}
