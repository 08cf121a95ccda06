#!/usr/bin/env node
/**
 * Follow one published document through this client and print what a service would be handed: one JSON
 * line per accepted document (`{"at", "revision", "document"}`) or refusal (`{"at", "error"}`), `at` on
 * the monotonic clock. For checking a deployment's signing and RBAC, and for the tests.
 */

import { parseArgs } from "node:util";

import { DocumentMissing, PROFILE, ProfileDocument, ROUTE, RouteDocument } from "../src/documents";
import { DocumentReader, ProfileReader } from "../src/readers";
import { RouteReader } from "../src/route";
import { monotonicSeconds } from "./clock";
import { readerOptions, SOURCE_OPTIONS, watchSource } from "./source";

const { values } = parseArgs({
  options: {
    ...SOURCE_OPTIONS,
    document: { type: "string", default: "profile.json" },
  },
  strict: true,
});

if (values.document !== PROFILE.fileName && values.document !== ROUTE.fileName) {
  process.stderr.write(`follow: --document must be ${PROFILE.fileName} or ${ROUTE.fileName}\n`);
  process.exit(2);
}
const options = readerOptions(values);
const reader: DocumentReader<ProfileDocument | RouteDocument> =
  values.document === ROUTE.fileName ? new RouteReader(options) : new ProfileReader(options);
const stop = new AbortController();
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop.abort());

const print = (line: object): void => void process.stdout.write(JSON.stringify({ at: monotonicSeconds(), ...line }) + "\n");
const onChange = (document: { revision: number }): void => print({ revision: document.revision, document });
const onError = (error: Error): void => {
  if (!(error instanceof DocumentMissing)) print({ error: error.message });
};

new Promise<void>((resolve) => resolve(watchSource(reader, values, { onChange, onError, signal: stop.signal }))).catch(
  (error: Error) => {
    process.stderr.write(`follow: ${error.message}\n`);
    process.exit(1);
  },
);
