/**
 * Follow one ConfigMap through the Kubernetes API: list it, then watch from the list's resourceVersion,
 * over HTTPS with a bearer token, as an informer does, but for one object and without a client library.
 *
 * Connection settings come from the Pod (the in-cluster ServiceAccount token, CA and namespace under
 * /var/run/secrets/kubernetes.io/serviceaccount and KUBERNETES_SERVICE_HOST/PORT) or are given: a base
 * URL, a token (or a token file, re-read at each connection because projected tokens rotate) and a CA.
 */

import { readFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { request as httpRequest, IncomingMessage } from "node:http";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const WATCH_SECONDS = 30;
const MIN_RETRY_MS = 250;
const MAX_RETRY_MS = 8000;

export interface KubeConnection {
  /** The apiserver's base URL, e.g. https://10.96.0.1:443. */
  baseUrl: string;
  /** A bearer token, or a file to read it from at each connection. */
  token?: string;
  tokenFile?: string;
  /** PEM of the CA that signed the apiserver's certificate (default: the system's trust store). */
  ca?: string | Buffer;
}

/** The Pod's own connection: the ServiceAccount token and CA mounted into every Pod that asks for them. */
export function inClusterConnection(directory: string = SERVICE_ACCOUNT_DIR): KubeConnection {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("not in a cluster: KUBERNETES_SERVICE_HOST is not set");
  const address = host.includes(":") ? `[${host}]` : host;
  return {
    baseUrl: `https://${address}:${port}`,
    tokenFile: `${directory}/token`,
    ca: readFileSync(`${directory}/ca.crt`),
  };
}

/** The Pod's namespace, as the ServiceAccount mount tells it. */
export function inClusterNamespace(directory: string = SERVICE_ACCOUNT_DIR): string {
  return readFileSync(`${directory}/namespace`, "utf8").trim();
}

/** What a ConfigMap watch reports: its data, or null when the ConfigMap does not exist (or was deleted). */
export type ConfigMapData = Record<string, string> | null;

export interface ConfigMapWatchOptions {
  connection: KubeConnection;
  namespace: string;
  name: string;
  onData: (data: ConfigMapData) => void;
  /** Errors of the apiserver or the connection; the watch goes on after a pause. */
  onError?: (error: Error) => void;
  signal?: AbortSignal;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    body: string,
  ) {
    super(`apiserver answered ${status}: ${body.slice(0, 300)}`);
  }
}

function token(connection: KubeConnection): string | undefined {
  if (connection.tokenFile) return readFileSync(connection.tokenFile, "utf8").trim();
  return connection.token;
}

/**
 * Call `onData` with the ConfigMap's data at start and at each change, until `signal` aborts.
 * Resolves when stopped. A watch that times out resumes from the last version it saw (bookmarks keep it
 * fresh); apiserver restarts, expired versions (410) and broken connections list again after a growing
 * pause, so nothing is missed.
 */
export async function watchConfigMap(options: ConfigMapWatchOptions): Promise<void> {
  const { connection, namespace, name, onData, onError, signal } = options;
  const base = connection.baseUrl.replace(/\/+$/, "");
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`;
  const selector = `fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`;
  const agent = base.startsWith("https:") ? new Agent({ ca: connection.ca, keepAlive: true }) : undefined;
  let pause = MIN_RETRY_MS;
  try {
    let version: string | undefined; // where the next watch resumes; undefined: list first
    while (!signal?.aborted) {
      try {
        if (version === undefined) {
          const listed = JSON.parse(await get(`${base}${path}?${selector}`, connection, agent, signal)) as {
            metadata?: { resourceVersion?: string };
            items?: { data?: Record<string, string> }[];
          };
          const items = listed.items ?? [];
          onData(items.length > 0 ? { ...(items[0].data ?? {}) } : null);
          version = listed.metadata?.resourceVersion ?? "";
        }
        const url =
          `${base}${path}?${selector}&watch=1&allowWatchBookmarks=true&timeoutSeconds=${WATCH_SECONDS}` +
          `&resourceVersion=${encodeURIComponent(version)}`;
        await stream(url, connection, agent, signal, (event) => {
          pause = MIN_RETRY_MS; // the watch works: the next failure starts the backoff afresh
          if (event.type === "ERROR") {
            version = undefined; // e.g. 410 Gone: the version expired; list again
            return false;
          }
          version = event.object?.metadata?.resourceVersion ?? version;
          if (event.type === "ADDED" || event.type === "MODIFIED") onData({ ...(event.object?.data ?? {}) });
          else if (event.type === "DELETED") onData(null);
          return true; // BOOKMARK: only the version moves
        });
      } catch (error) {
        if (signal?.aborted) break;
        version = undefined; // after a failure, list again: nothing is missed
        onError?.(error as Error);
        await sleep(pause, signal);
        pause = Math.min(pause * 2, MAX_RETRY_MS);
      }
    }
  } finally {
    agent?.destroy();
  }
}

interface WatchEvent {
  type: string;
  object?: { data?: Record<string, string>; metadata?: { resourceVersion?: string } };
}

function open(
  url: string,
  connection: KubeConnection,
  agent: Agent | undefined,
  signal: AbortSignal | undefined,
): Promise<IncomingMessage> {
  const bearer = token(connection);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const request = url.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, agent, signal }, (response) => {
      if (response.statusCode !== 200) {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (body += chunk));
        response.on("end", () => reject(new HttpError(response.statusCode ?? 0, body)));
        response.on("error", reject);
        return;
      }
      resolve(response);
    });
    req.on("error", reject);
    // A silent connection (a half-open TCP link after an apiserver crash) must not stall the watch.
    req.setTimeout((WATCH_SECONDS + 15) * 1000, () => req.destroy(new Error("apiserver connection timed out")));
    req.end();
  });
}

async function get(
  url: string,
  connection: KubeConnection,
  agent: Agent | undefined,
  signal: AbortSignal | undefined,
): Promise<string> {
  const response = await open(url, connection, agent, signal);
  response.setEncoding("utf8");
  let body = "";
  for await (const chunk of response) body += chunk as string;
  return body;
}

async function stream(
  url: string,
  connection: KubeConnection,
  agent: Agent | undefined,
  signal: AbortSignal | undefined,
  onEvent: (event: WatchEvent) => boolean,
): Promise<void> {
  const response = await open(url, connection, agent, signal);
  response.setEncoding("utf8");
  let buffered = "";
  for await (const chunk of response) {
    buffered += chunk as string;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line && !onEvent(JSON.parse(line) as WatchEvent)) {
        response.destroy();
        return;
      }
    }
  }
}

/** Wait `ms`, or less if `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
