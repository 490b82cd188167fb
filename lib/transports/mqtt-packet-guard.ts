/**
 * A bound on what an MQTT broker may make a client read: mqtt.js (its mqtt-packet parser)
 * buffers any packet up to the protocol's 256 MB before handing it over, and has no limit
 * of its own for MQTT 3.1.1, so a hostile or broken broker could hold a gateway's memory.
 */
import type { Readable } from "node:stream";
import { finalError, type ProvisioningError } from "../model/errors";

/**
 * Watches the bytes a broker sends for MQTT fixed headers (OASIS MQTT 3.1.1, 2.2: one byte
 * of type and flags, then the remaining length in 1 to 4 bytes of 7 bits) and calls
 * `tooLarge` as soon as one announces more than `max` bytes: mqtt.js reads any packet up
 * to the protocol's 256 MB into memory and offers no limit of its own for MQTT 3.1.1, so
 * the connection is dropped at the header, with at most a socket chunk buffered.
 */
export function packetSizeGuard(
  max: number,
  tooLarge: (size: number | undefined) => void,
): (chunk: Buffer) => void {
  let state: "type" | "length" | "body" = "type";
  let length = 0;
  let factor = 1;
  let lengthBytes = 0;
  let left = 0;
  let tripped = false;
  return (chunk: Buffer) => {
    let i = 0;
    while (i < chunk.length && !tripped) {
      if (state === "type") {
        i++;
        state = "length";
        length = 0;
        factor = 1;
        lengthBytes = 0;
      } else if (state === "length") {
        const b = chunk[i++];
        length += (b & 0x7f) * factor;
        factor *= 128;
        lengthBytes++;
        if (b & 0x80) {
          if (lengthBytes === 4) {
            tripped = true;
            tooLarge(undefined);
          }
        } else if (length > max) {
          tripped = true;
          tooLarge(length);
        } else if (length === 0) state = "type";
        else {
          left = length;
          state = "body";
        }
      } else {
        const take = Math.min(left, chunk.length - i);
        i += take;
        left -= take;
        if (left === 0) state = "type";
      }
    }
  };
}

/**
 * Watches what a client reads from `where` (mqtt.js's `client.stream`) and calls `fail` with
 * a final TOO_LARGE error, naming neither bytes nor secrets, once a packet announces more
 * than `max` bytes or a length that does not parse.
 */
export function guardIncomingPackets(
  stream: Readable | undefined,
  max: number,
  where: string,
  fail: (err: ProvisioningError) => void,
): void {
  stream?.on(
    "data",
    packetSizeGuard(max, (size) =>
      fail(
        finalError(
          "TOO_LARGE",
          size === undefined
            ? `${where} sent an MQTT packet whose length does not parse`
            : `${where} sent an MQTT packet of ${size} bytes, more than ${max}`,
        ),
      ),
    ),
  );
}
