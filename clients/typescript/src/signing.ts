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

/** The header of signed webhooks and signed external verdicts. */
export const WEBHOOK_HEADER = "X-Signature-SHA256";
/** How old (or how far ahead) a signed request may be, in seconds. */
export const DEFAULT_TOLERANCE = 300;

/** A signed request that must not be trusted: malformed header, outside the tolerance, or bad signature. */
export class SignatureError extends Error {
  override name = "SignatureError";
}

/**
 * The `X-Signature-SHA256` value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`. Signing the
 * timestamp with the body lets a receiver refuse an old request replayed later.
 */
export function signWebhook(key: Uint8Array | string, body: Uint8Array | string, timestamp: number): string {
  const mac = createHmac("sha256", bytes(key)).update(`${timestamp}.`).update(bytes(body)).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

/** Check a signed request's header and age (`now` in unix seconds); return its timestamp or throw SignatureError. */
export function verifyWebhook(
  key: Uint8Array | string,
  body: Uint8Array | string,
  header: string,
  now: number,
  tolerance: number = DEFAULT_TOLERANCE,
): number {
  const parts = new Map<string, string>();
  for (const item of header.split(",")) {
    const at = item.indexOf("=");
    if (at < 0) throw new SignatureError(`malformed ${WEBHOOK_HEADER} header`);
    parts.set(item.slice(0, at), item.slice(at + 1));
  }
  const t = parts.get("t");
  const mac = parts.get("v1");
  if (t === undefined || mac === undefined || !/^\s*[+-]?\d+\s*$/.test(t)) {
    throw new SignatureError(`malformed ${WEBHOOK_HEADER} header`);
  }
  const timestamp = Number.parseInt(t, 10);
  if (Math.abs(now - timestamp) > tolerance) {
    throw new SignatureError(`timestamp ${timestamp} is outside the ${tolerance}s tolerance`);
  }
  const expected = Buffer.from(signWebhook(key, body, timestamp), "utf8");
  const given = Buffer.from(`t=${timestamp},v1=${mac}`, "utf8");
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new SignatureError("signature does not match the body");
  }
  return timestamp;
}
