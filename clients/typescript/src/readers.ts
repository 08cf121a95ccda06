/**
 * Readers of the documents the operator publishes: verify (when a key is set), validate, keep the last
 * good document, and follow changes through a mounted ConfigMap directory or the Kubernetes API.
 *
 * A document that fails is reported and never applied: the service keeps serving the last good one.
 */

import { watch as watchFs, FSWatcher } from "node:fs";
import { readFile, realpath } from "node:fs/promises";
import { join } from "node:path";

import {
  DocumentError,
  DocumentKind,
  DocumentMissing,
  PROFILE,
  ProfileDocument,
  parseDocument,
} from "./documents";
import { ConfigMapData, KubeConnection, sleep, watchConfigMap } from "./kube";
import { digest, verify } from "./signing";

/** The suffix of a document's signature key in the ConfigMap: `profile.json.sig`. */
export const SIGNATURE_SUFFIX = ".sig";
/** The directory Kubernetes swaps atomically when a mounted ConfigMap changes. */
export const DATA_LINK = "..data";
const DEFAULT_POLL_MS = 2000;

export interface ReaderOptions {
  /** The mounted ConfigMap directory (for load() and watchDirectory()). */
  directory?: string;
  /** The HMAC key: when set, a document without a matching `<file>.sig` is refused. */
  key?: Uint8Array | string;
}

export interface WatchOptions<D> {
  /** Called with each new valid document (not again for the same bytes). */
  onChange: (document: D) => void;
  /** Called with each refused document or failed read; the last good document stays current. */
  onError?: (error: Error) => void;
  /** Stops the watch. */
  signal?: AbortSignal;
}

export interface DirectoryWatchOptions<D> extends WatchOptions<D> {
  /** Re-read at least this often, in case a file-system event is missed (default 2000 ms). */
  pollMs?: number;
}

export interface ApiWatchOptions<D> extends WatchOptions<D> {
  connection: KubeConnection;
  namespace: string;
  /** The ConfigMap's name. */
  configMap: string;
}

/** Loads one JSON document (optionally HMAC-signed); keeps the last good one. */
export class DocumentReader<D> {
  readonly directory?: string;
  readonly key?: Uint8Array | string;
  private lastDigest?: string;
  private document?: D;

  constructor(
    readonly kind: DocumentKind<D>,
    options: ReaderOptions = {},
  ) {
    this.directory = options.directory;
    this.key = options.key;
  }

  /** The last document that verified and validated (undefined before the first). */
  get current(): D | undefined {
    return this.document;
  }

  /**
   * Verify (when a key is set) and validate `payload`, the bytes as published, and keep it as the current
   * document. Throws DocumentError when it is not acceptable; the current document then stays.
   */
  accept(payload: Uint8Array | string, signature?: string | null): D {
    const name = this.kind.fileName;
    if (this.key !== undefined) {
      if (signature === undefined || signature === null) {
        throw new DocumentError(`${name} has no signature but a key is configured`);
      }
      if (!verify(this.key, payload, signature)) {
        throw new DocumentError(`${name} does not match its signature: refusing it`);
      }
    }
    const document = parseDocument(this.kind, payload);
    this.lastDigest = digest(payload);
    this.document = document;
    this.accepted(document);
    return document;
  }

  /** Hook for subclasses, called when a new document is accepted. */
  protected accepted(_document: D): void {}

  /** Whether `payload` differs from the last accepted document's bytes. */
  changed(payload: Uint8Array | string): boolean {
    return digest(payload) !== this.lastDigest;
  }

  /**
   * Accept a ConfigMap's data (from the API) if its document changed: the new document, or undefined when
   * nothing changed. Throws DocumentMissing when there is no document, DocumentError when it is refused.
   */
  acceptData(data: ConfigMapData): D | undefined {
    const name = this.kind.fileName;
    const payload = data?.[name];
    if (payload === undefined) {
      throw new DocumentMissing(data === null ? `the ConfigMap does not exist` : `the ConfigMap has no ${name}`);
    }
    if (!this.changed(payload)) return undefined;
    return this.accept(payload, data?.[name + SIGNATURE_SUFFIX]);
  }

  /**
   * Read the document (and its signature) from the directory; throws DocumentError when it is refused.
   * Both files are read from the same snapshot: the directory `..data` points to when Kubernetes mounts it.
   */
  async load(): Promise<D> {
    const { payload, signature } = await this.read();
    return this.accept(payload, signature);
  }

  /** The document if its file changed since the last accepted one, else undefined. */
  async reloadIfChanged(): Promise<D | undefined> {
    const { payload, signature } = await this.read();
    return this.changed(payload) ? this.accept(payload, signature) : undefined;
  }

  private async read(): Promise<{ payload: Buffer; signature?: string }> {
    if (this.directory === undefined) {
      throw new Error("this reader has no directory: hand it payloads with accept()");
    }
    const snapshot = await realpath(join(this.directory, DATA_LINK)).catch(() => this.directory as string);
    const name = this.kind.fileName;
    const payload = await readFile(join(snapshot, name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") throw new DocumentMissing(`${join(this.directory as string, name)} does not exist`);
      throw error;
    });
    if (this.key === undefined) return { payload };
    try {
      return { payload, signature: await readFile(join(snapshot, name + SIGNATURE_SUFFIX), "utf8") };
    } catch {
      throw new DocumentError(
        `${name} has no signature (${name}${SIGNATURE_SUFFIX} missing) but a key is configured`,
      );
    }
  }

  /**
   * Follow the mounted directory: a file-system watch on the directory (Kubernetes renames `..data` when the
   * ConfigMap changes) plus a poll every `pollMs` as a safety net. Resolves when `signal` aborts.
   */
  async watchDirectory(options: DirectoryWatchOptions<D>): Promise<void> {
    const { onChange, onError, signal } = options;
    if (this.directory === undefined) throw new Error("this reader has no directory to watch");
    let wake: (() => void) | undefined;
    let pending = true;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watchFs(this.directory, () => {
        pending = true;
        wake?.();
      });
      watcher.on("error", () => undefined); // the directory vanished: the poll reports it
    } catch (error) {
      onError?.(error as Error); // no inotify (or no directory yet): polling alone still works
    }
    try {
      while (!signal?.aborted) {
        if (!pending) {
          // Until the next poll, a file-system event or the stop, whichever comes first.
          const pause = new AbortController();
          const onStop = (): void => pause.abort();
          signal?.addEventListener("abort", onStop, { once: true });
          wake = onStop;
          await sleep(options.pollMs ?? DEFAULT_POLL_MS, pause.signal);
          signal?.removeEventListener("abort", onStop);
          wake = undefined;
          if (signal?.aborted) break;
        }
        pending = false;
        try {
          const document = await this.reloadIfChanged();
          if (document !== undefined) onChange(document);
        } catch (error) {
          onError?.(error as Error);
        }
      }
    } finally {
      watcher?.close();
    }
  }

  /**
   * Follow the ConfigMap through the Kubernetes API (list, then watch); the fast path, with no kubelet
   * sync delay. Resolves when `signal` aborts.
   */
  watchApi(options: ApiWatchOptions<D>): Promise<void> {
    const { onChange, onError } = options;
    return watchConfigMap({
      connection: options.connection,
      namespace: options.namespace,
      name: options.configMap,
      signal: options.signal,
      onError,
      onData: (data) => {
        try {
          const document = this.acceptData(data);
          if (document !== undefined) onChange(document);
        } catch (error) {
          onError?.(error as Error);
        }
      },
    });
  }
}

/** Reads `profile.json`. */
export class ProfileReader extends DocumentReader<ProfileDocument> {
  constructor(options: ReaderOptions = {}) {
    super(PROFILE, options);
  }
}
