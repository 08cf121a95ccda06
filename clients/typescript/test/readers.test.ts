import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { DocumentError, DocumentMissing, RouteDocument } from "../src/documents";
import { ProfileReader } from "../src/readers";
import { RouteReader } from "../src/route";
import { eventually, fixture, fixtureText } from "./helpers";

const key = fixture("key");

test("a signed document is kept; a refused one leaves the last good document current", () => {
  const reader = new RouteReader({ key });
  assert.equal(new RouteReader().current, undefined);
  const first = reader.accept(fixture("route-primary.json"), fixtureText("route-primary.json.sig"));
  assert.equal(reader.current, first);
  assert.throws(() => reader.accept(fixture("route-failedover.json")), /has no signature but a key is configured/);
  assert.throws(
    () => reader.accept(fixture("route-failedover.json"), fixtureText("route-primary.json.sig")),
    /does not match its signature/,
  );
  const invalid = JSON.stringify({ ...JSON.parse(fixtureText("route-failedover.json")), revision: 0 });
  assert.throws(() => new RouteReader().accept(invalid), DocumentError);
  assert.equal(reader.current?.revision, 1);
});

test("without a key a signature is neither needed nor checked", () => {
  const reader = new ProfileReader();
  assert.equal(reader.accept(fixture("profile.json"), "sha256=nonsense").profile, "lean");
});

test("ConfigMap data from the API: the document and its .sig key; unchanged bytes are no change", () => {
  const reader = new ProfileReader({ key });
  const data = { "profile.json": fixtureText("profile.json"), "profile.json.sig": fixtureText("profile.json.sig") };
  assert.equal(reader.acceptData(data)?.revision, 7);
  assert.equal(reader.acceptData({ ...data }), undefined);
  assert.throws(() => reader.acceptData(null), (e: Error) => e instanceof DocumentMissing && /does not exist/.test(e.message));
  assert.throws(() => reader.acceptData({ "scorecard.json": "{}" }), (e: Error) => e instanceof DocumentMissing && /has no profile.json/.test(e.message));
  assert.equal(reader.current?.revision, 7);
});

/** A directory laid out as the kubelet mounts a ConfigMap: files are links into `..data`, a link swapped
 * atomically (rename) to a new timestamped directory at each update. */
class MountedConfigMap {
  readonly dir = mkdtempSync(join(tmpdir(), "configmap-"));
  private generation = 0;

  write(files: Record<string, string | Buffer>): void {
    this.generation += 1;
    const snapshot = `..2026_12_01_00_00_00.${this.generation}`;
    mkdirSync(join(this.dir, snapshot));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(this.dir, snapshot, name), content);
    symlinkSync(snapshot, join(this.dir, "..data_tmp"));
    renameSync(join(this.dir, "..data_tmp"), join(this.dir, "..data"));
    for (const name of Object.keys(files)) {
      try {
        symlinkSync(join("..data", name), join(this.dir, name));
      } catch {
        // the link exists from an earlier generation: it follows ..data
      }
    }
    if (this.generation > 1) rmSync(join(this.dir, `..2026_12_01_00_00_00.${this.generation - 1}`), { recursive: true });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

test("load() reads the mounted snapshot; a missing signature is named", async (t) => {
  const mount = new MountedConfigMap();
  t.after(() => mount.remove());
  mount.write({ "route.json": fixture("route-primary.json"), "route.json.sig": fixture("route-primary.json.sig") });
  assert.equal((await new RouteReader({ directory: mount.dir, key }).load()).revision, 1);
  mount.write({ "route.json": fixture("route-failedover.json") });
  await assert.rejects(new RouteReader({ directory: mount.dir, key }).load(), /route.json.sig missing/);
  await assert.rejects(new ProfileReader({ directory: mount.dir }).load(), DocumentMissing);
  const plain = new RouteReader({ directory: mount.dir });
  assert.equal((await plain.load()).revision, 2);
  assert.equal(await plain.reloadIfChanged(), undefined);
});

test("watchDirectory follows the kubelet's ..data swap at once, and keeps the last good document", async (t) => {
  const mount = new MountedConfigMap();
  const stop = new AbortController();
  t.after(() => {
    stop.abort();
    mount.remove();
  });
  mount.write({ "route.json": fixture("route-primary.json"), "route.json.sig": fixture("route-primary.json.sig") });
  const reader = new RouteReader({ directory: mount.dir, key });
  const seen: RouteDocument[] = [];
  const errors: Error[] = [];
  // A poll far longer than the test: only the file-system event can deliver the change in time.
  const watching = reader.watchDirectory({
    onChange: (d) => seen.push(d),
    onError: (e) => errors.push(e),
    signal: stop.signal,
    pollMs: 60_000,
  });
  await eventually(() => seen.length === 1, 5000, "the first document");
  const swapped = Date.now();
  mount.write({ "route.json": fixture("route-failedover.json"), "route.json.sig": fixture("route-failedover.json.sig") });
  await eventually(() => seen.length === 2, 2000, "the swapped document");
  assert.ok(Date.now() - swapped < 2000);
  assert.equal(seen[1].active, "nw-backup1");
  // A hand edit without a valid signature is refused; the failed-over document stays current.
  mount.write({ "route.json": fixture("route-primary.json"), "route.json.sig": fixture("route-failedover.json.sig") });
  await eventually(() => errors.some((e) => /does not match its signature/.test(e.message)), 2000, "the refusal");
  assert.equal(reader.current?.active, "nw-backup1");
  assert.equal(seen.length, 2);
  stop.abort();
  await watching;
});
