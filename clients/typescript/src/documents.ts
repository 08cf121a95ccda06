/**
 * The documents the operator publishes in its ConfigMaps (profile.json, route.json), as TypeScript types,
 * and their parsing: JSON, then the generated JSON Schema of the operator's model.
 */

import { loadSchema, problems, withDefaults } from "./schema";

export interface ObjectIdentity {
  namespace: string;
  name: string;
}

export interface SecretKeyRef {
  name: string;
  key: string;
}

export type Circuit = "closed" | "open" | "half-open";

export interface ExternalContributorEntry {
  name: string;
  /** False while its profile forbids externals or its circuit is open. */
  enabled: boolean;
  endpoint: string;
  /** Effective trust weight (accuracy-scaled, clamped). */
  weight: number;
  timeoutMs: number;
  /** The only signals it may receive. */
  signals: string[];
  circuit: Circuit;
  verificationKeyRef: SecretKeyRef | null;
}

/** `profile.json`: what the detector should run now (optional fields filled with their defaults). */
export interface ProfileDocument {
  apiVersion: "detection.adaptive.io/v1alpha1";
  kind: "DetectionProfile";
  policy: ObjectIdentity;
  profile: string;
  /** Increases by one each time the content changes. */
  revision: number;
  decidedAt: string;
  reason: string;
  latencyTargetMs: number | null;
  /** In-process contributors to run, in policy order. */
  contributors: string[];
  external: ExternalContributorEntry[];
  expense: Record<string, "light" | "medium" | "heavy">;
  /** Every rule that held when this was decided, with its value. */
  reasons: string[];
}

export interface CandidateEntry {
  name: string;
  /** 0 is the primary; backups follow in order. */
  priority: number;
  level: "ok" | "warning" | "critical" | "unknown";
  state: "healthy" | "warning" | "critical" | "idle" | "failing" | "unknown";
  score: number | null;
  trend: "improving" | "stable" | "degrading" | "unknown";
}

/** `route.json`: which model the router should send the route's traffic to. */
export interface RouteDocument {
  apiVersion: "detection.adaptive.io/v1alpha1";
  kind: "ModelRouteDecision";
  route: ObjectIdentity;
  /** The model to serve now. */
  active: string;
  primary: string;
  state: "Primary" | "FailedOver" | "Overridden" | "Degraded";
  /** Model -> integer percent of requests, summing to 100. */
  traffic: Record<string, number>;
  /** Non-failing alternatives in priority order: where a router retries a failed request. */
  fallbacks: string[];
  reason: string;
  revision: number;
  decidedAt: string;
  candidates: CandidateEntry[];
}

// fatal: invalid UTF-8 is refused, not replaced; ignoreBOM: a byte order mark is kept, so it is not JSON
// (the operator never writes one, and the Python reader refuses it too).
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** JSON.parse reviver refusing keys and strings with a lone surrogate (`"\ud800"`): not Unicode text. */
function wellFormed(key: string, value: unknown): unknown {
  if (LONE_SURROGATE.test(key) || (typeof value === "string" && LONE_SURROGATE.test(value))) {
    throw new SyntaxError(`a lone surrogate in ${JSON.stringify(key || "the document")}`);
  }
  return value;
}

/** A document that must not be used: unparsable, invalid, unsigned or badly signed. */
export class DocumentError extends Error {
  override name = "DocumentError";
}

/** No document to read (the ConfigMap or its key does not exist yet): nothing was refused. */
export class DocumentMissing extends Error {
  override name = "DocumentMissing";
}

/** One kind of published document: its file name in the ConfigMap and its schema. */
export interface DocumentKind<D> {
  fileName: string;
  schemaName: string;
  /** Never called; carries the document type. */
  readonly _type?: D;
}

export const PROFILE: DocumentKind<ProfileDocument> = {
  fileName: "profile.json",
  schemaName: "profile.schema.json",
};
export const ROUTE: DocumentKind<RouteDocument> = { fileName: "route.json", schemaName: "route.schema.json" };

/** Parse and validate `payload` (the published bytes) as a `kind` document; throws DocumentError. */
export function parseDocument<D>(kind: DocumentKind<D>, payload: Uint8Array | string): D {
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === "string" ? payload : UTF8.decode(payload), wellFormed);
  } catch (error) {
    throw new DocumentError(`${kind.fileName} is not JSON: ${(error as Error).message}`);
  }
  const schema = loadSchema(kind.schemaName);
  const found = problems(value, schema);
  if (found.length > 0) {
    throw new DocumentError(`${kind.fileName} is not a valid document: ${found.join("; ")}`);
  }
  return withDefaults(value, schema) as D;
}

/** Parse and validate profile.json. */
export function parseProfile(payload: Uint8Array | string): ProfileDocument {
  return parseDocument(PROFILE, payload);
}

/** Parse and validate route.json. */
export function parseRoute(payload: Uint8Array | string): RouteDocument {
  return parseDocument(ROUTE, payload);
}
