import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { inClusterConnection, inClusterNamespace } from "../src/kube";

test("the in-cluster connection comes from the ServiceAccount mount and the service environment", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "serviceaccount-"));
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const [name, value] of [["KUBERNETES_SERVICE_HOST", saved.host], ["KUBERNETES_SERVICE_PORT", saved.port]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  writeFileSync(join(dir, "token"), "eyJ.token\n");
  writeFileSync(join(dir, "ca.crt"), "-----BEGIN CERTIFICATE-----\n");
  writeFileSync(join(dir, "namespace"), "shop\n");
  delete process.env.KUBERNETES_SERVICE_HOST;
  assert.throws(() => inClusterConnection(dir), /not in a cluster/);
  process.env.KUBERNETES_SERVICE_HOST = "fd00::1";
  process.env.KUBERNETES_SERVICE_PORT = "6443";
  const connection = inClusterConnection(dir);
  assert.equal(connection.baseUrl, "https://[fd00::1]:6443");
  assert.equal(connection.tokenFile, join(dir, "token")); // re-read at each connection: tokens rotate
  assert.match(String(connection.ca), /BEGIN CERTIFICATE/);
  assert.equal(inClusterNamespace(dir), "shop");
});
