/** Where the command-line programs read a document from: the options they share and the watch they start. */

import { readFileSync } from "node:fs";

import { inClusterConnection } from "../src/kube";
import { DocumentReader, ReaderOptions, WatchOptions } from "../src/readers";

/** parseArgs options: `--namespace --config-map [--api-server --token-file --ca-file]`, or `--directory`. */
export const SOURCE_OPTIONS = {
  namespace: { type: "string" },
  "config-map": { type: "string" },
  "api-server": { type: "string" },
  "token-file": { type: "string" },
  "ca-file": { type: "string" },
  directory: { type: "string" },
  "key-file": { type: "string" },
} as const;

export interface SourceValues {
  namespace?: string;
  "config-map"?: string;
  "api-server"?: string;
  "token-file"?: string;
  "ca-file"?: string;
  directory?: string;
  "key-file"?: string;
}

/** The reader options (directory, key) the values give. */
export function readerOptions(values: SourceValues): ReaderOptions {
  return { directory: values.directory, key: values["key-file"] ? readFileSync(values["key-file"]) : undefined };
}

/**
 * Start `reader`'s watch of the source the values name: the directory, or the ConfigMap through the API
 * (with `--api-server`, its token file and CA; else the Pod's in-cluster connection).
 */
export function watchSource<D>(reader: DocumentReader<D>, values: SourceValues, watch: WatchOptions<D>): Promise<void> {
  if (values.directory) return reader.watchDirectory(watch);
  if (!values.namespace || !values["config-map"]) {
    throw new Error("give --namespace and --config-map, or --directory");
  }
  const connection = values["api-server"]
    ? {
        baseUrl: values["api-server"],
        tokenFile: values["token-file"],
        ca: values["ca-file"] ? readFileSync(values["ca-file"]) : undefined,
      }
    : inClusterConnection();
  return reader.watchApi({ ...watch, connection, namespace: values.namespace, configMap: values["config-map"] });
}
