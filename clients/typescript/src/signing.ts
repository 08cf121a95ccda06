/**
 * HMAC-SHA256 signatures of published documents, exactly as the operator makes them: the signature of a
 * payload is `sha256=<lowercase hex of HMAC-SHA256(key, payload bytes)>`, over the bytes as published
 * (never a re-serialization), compared in constant time after trimming surrounding whitespace.
 */

import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export const PREFIX = "sha256=";

/** Bytes of a key or payload given as a Buffer or as UTF-8 text. */
export function bytes(value: Uint8Array | string): Buffer {
  return typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
}

/** Signature of `payload` as `sha256=<hex>`. */
export function sign(key: Uint8Array | string, payload: Uint8Array | string): string {
  return PREFIX + createHmac("sha256", bytes(key)).update(bytes(payload)).digest("hex");
}

/** Whether `signature` is `payload`'s under `key`, compared in constant time. */
export function verify(key: Uint8Array | string, payload: Uint8Array | string, signature: string): boolean {
  const expected = Buffer.from(sign(key, payload), "utf8");
  const given = Buffer.from(signature.trim(), "utf8");
  // timingSafeEqual needs equal lengths; a length mismatch reveals only the length of a public format.
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Content digest (not a signature): lowercase hex SHA-256, used to notice that a document changed. */
export function digest(payload: Uint8Array | string): string {
  return createHash("sha256").update(bytes(payload)).digest("hex");
}
