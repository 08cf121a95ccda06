#!/usr/bin/env node
/**
 * A router that sends requests where route.json says, through this client: it follows route.json (the
 * ConfigMap through the Kubernetes API, or a mounted directory), sends `--rate` requests per second to the
 * model choose() picks, retries along the fallbacks when a model errors or does not answer, and reports
 * what it did: one JSON line per request in `--log`, and counts at GET /counts on its control port.
 *
 * It only sends to this machine (plain HTTP to loopback or private addresses) and stops after
 * `--max-requests` or `--max-seconds`, so a forgotten router cannot load anything for long.
 */

import { createWriteStream, renameSync, writeFileSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { isIP } from "node:net";
import { parseArgs } from "node:util";

import { DocumentError } from "../src/documents";
import { RouteReader } from "../src/route";
import { monotonicSeconds } from "./clock";
import { readerOptions, SOURCE_OPTIONS, watchSource } from "./source";

const USAGE = `usage: router --endpoint MODEL=URL... (--namespace NS --config-map NAME [--api-server URL
  --token-file FILE [--ca-file FILE]] | --directory DIR) [--key-file FILE] [--rate N] [--workers N]
  [--max-requests N] [--max-seconds S] [--request-timeout-ms MS] [--log FILE] [--port-file FILE]`;

/** Whether `url` is plain HTTP to loopback or a private address (a Pod network of this machine's node). */
export function onThisMachine(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  if (parsed.protocol !== "http:") return false;
  if (isIP(host) === 4) {
    const [a, b] = host.split(".").map(Number);
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  if (isIP(host) === 6) return host === "::1" || /^f[cd]/i.test(host) || /^fe[89ab]/i.test(host);
  return false;
}

function fail(message: string): never {
  process.stderr.write(`router: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    ...SOURCE_OPTIONS,
    endpoint: { type: "string", multiple: true, default: [] },
    rate: { type: "string", default: "20" },
    workers: { type: "string", default: "8" },
    "max-requests": { type: "string", default: "200000" },
    "max-seconds": { type: "string", default: "1800" },
    "request-timeout-ms": { type: "string", default: "10000" },
    log: { type: "string" },
    "port-file": { type: "string" },
  },
  strict: true,
});

function positive(name: string): number {
  const value = Number(values[name as keyof typeof values]);
  if (!Number.isFinite(value) || value <= 0) fail(`--${name} must be a positive number`);
  return value;
}

const endpoints = new Map<string, string>();
for (const item of values.endpoint ?? []) {
  const at = item.indexOf("=");
  const [model, url] = [item.slice(0, at), item.slice(at + 1)];
  if (at < 1 || !onThisMachine(url)) fail(`--endpoint ${item}: MODEL=http://<loopback or private address>:PORT`);
  endpoints.set(model, url.replace(/\/+$/, ""));
}
let rate = positive("rate");
const workers = positive("workers");
const maxRequests = positive("max-requests");
const maxSeconds = positive("max-seconds");
const timeoutMs = positive("request-timeout-ms");
const reader = new RouteReader(readerOptions(values));
const stop = new AbortController();
const agent = new Agent({ keepAlive: true, maxSockets: workers * 2 });
const log = values.log ? createWriteStream(values.log, { flags: "a" }) : undefined;

const counts = { sent: 0, unserved: 0, rejected: 0, served: {} as Record<string, number>, tried: {} as Record<string, number> };

function onError(error: Error): void {
  if (error instanceof DocumentError) counts.rejected += 1;
  process.stderr.write(`router: ${error.message}\n`);
}

function follow(): Promise<void> {
  const onChange = (): void => {
    const document = reader.current;
    process.stdout.write(`route.json revision ${document?.revision}: ${JSON.stringify(document?.traffic)}\n`);
  };
  try {
    return watchSource(reader, values, { onChange, onError, signal: stop.signal });
  } catch (error) {
    fail((error as Error).message);
  }
}

/** POST /infer to one model; whether it answered 200 in time. */
function infer(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${url}/infer`, { method: "POST", agent, timeout: timeoutMs, headers: { "Content-Type": "application/json" } }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode === 200));
      response.on("error", () => resolve(false));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", () => resolve(false));
    req.end("{}");
  });
}

async function send(at: number, attempts: string[], revision: number | undefined): Promise<void> {
  const tried: string[] = [];
  let servedBy: string | null = null;
  for (const model of attempts) {
    tried.push(model);
    counts.tried[model] = (counts.tried[model] ?? 0) + 1;
    const url = endpoints.get(model);
    if (url === undefined) continue; // no upstream for it: on along the fallbacks
    if (await infer(url)) {
      servedBy = model;
      break;
    }
  }
  if (servedBy === null) counts.unserved += 1;
  else counts.served[servedBy] = (counts.served[servedBy] ?? 0) + 1;
  log?.write(JSON.stringify({ at, tried, servedBy, revision: revision ?? null }) + "\n");
}

/** Send at the rate (re-read at each tick: POST /rate changes it), `workers` requests in flight at most. */
async function run(): Promise<void> {
  const started = monotonicSeconds();
  const queue: (() => Promise<void>)[] = [];
  let inFlight = 0;
  const drain = (): void => {
    while (inFlight < workers && queue.length > 0) {
      inFlight += 1;
      (queue.shift() as () => Promise<void>)().finally(() => {
        inFlight -= 1;
        drain();
      });
    }
  };
  let nextAt = started;
  while (!stop.signal.aborted && counts.sent < maxRequests) {
    const now = monotonicSeconds();
    if (now - started > maxSeconds) break;
    if (now < nextAt) {
      await new Promise((r) => setTimeout(r, Math.max(1, (nextAt - now) * 1000)));
      continue;
    }
    nextAt += 1 / rate;
    if (now - nextAt > 1) nextAt = now; // fell behind (a loaded machine): do not burst to catch up
    const attempts = reader.attempts();
    if (attempts.length === 0) continue; // no route.json yet: nothing to send to
    const revision = reader.current?.revision;
    queue.push(() => send(now, attempts, revision));
    counts.sent += 1;
    drain();
  }
  while (inFlight > 0 || queue.length > 0) await new Promise((r) => setTimeout(r, 10));
}

const control = createServer((req, res) => {
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
  };
  if (req.method === "GET" && req.url === "/counts") {
    return reply(200, { ...counts, revision: reader.current?.revision ?? null, active: reader.current?.active ?? null, rate });
  }
  if (req.method === "POST" && req.url === "/rate") {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const value = Number((JSON.parse(body || "{}") as { rate?: unknown }).rate);
      if (!Number.isFinite(value) || value <= 0) return reply(400, { error: "rate must be a positive number" });
      rate = value;
      return reply(200, { rate });
    });
    return;
  }
  if (req.method === "GET" && req.url === "/healthz") return reply(200, { ok: true });
  reply(404, { error: "GET /counts, POST /rate, GET /healthz" });
});

for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop.abort());

control.listen(0, "127.0.0.1", () => {
  const address = control.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`control on http://127.0.0.1:${port}\n`);
  if (values["port-file"]) {
    // Written whole, then renamed: a reader never sees half a port number.
    writeFileSync(`${values["port-file"]}.tmp`, String(port));
    renameSync(`${values["port-file"]}.tmp`, values["port-file"]);
  }
});

const following = follow();
run()
  .then(async () => {
    // Done sending (stopped, or a bound reached): keep answering /counts until told to stop.
    if (!stop.signal.aborted) await new Promise((r) => stop.signal.addEventListener("abort", r, { once: true }));
    await following;
    control.close();
    agent.destroy();
    process.stdout.write(`stopped: ${JSON.stringify(counts)}\n`);
    log?.end();
  })
  .catch((error: Error) => {
    process.stderr.write(`router: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
