import assert from "node:assert/strict";
import { test } from "node:test";

import { DocumentError, parseProfile, parseRoute } from "../src/documents";
import { fixture, fixtureText } from "./helpers";

test("documents published by the operator parse", () => {
  const route = parseRoute(fixture("route-failedover.json"));
  assert.equal(route.active, "nw-backup1");
  assert.deepEqual(route.traffic, { "nw-backup1": 90, "nw-primary": 10 });
  const profile = parseProfile(fixture("profile.json"));
  assert.equal(profile.profile, "lean");
  assert.equal(profile.external[0].verificationKeyRef?.name, "intel-key");
});

function mutated(name: string, change: (doc: Record<string, unknown>) => void): string {
  const doc = JSON.parse(fixtureText(name)) as Record<string, unknown>;
  change(doc);
  return JSON.stringify(doc);
}

test("what the contract refuses is a DocumentError naming the field", () => {
  const cases: [string, (d: Record<string, any>) => void, RegExp][] = [
    ["route-primary.json", (d) => delete d.active, /\$\.active: required field is missing/],
    ["route-primary.json", (d) => (d.extra = 1), /\$\.extra: unknown field/],
    ["route-primary.json", (d) => (d.traffic = { a: 0 }), /\$\.traffic\.a: must be >= 1/],
    ["route-primary.json", (d) => (d.traffic = { a: 50.5 }), /\$\.traffic\.a: expected integer/],
    ["route-primary.json", (d) => (d.state = "Sideways"), /\$\.state: must be one of/],
    ["route-primary.json", (d) => (d.kind = "DetectionProfile"), /\$\.kind: must be "ModelRouteDecision"/],
    ["route-primary.json", (d) => (d.revision = 0), /\$\.revision: must be >= 1/],
    ["route-primary.json", (d) => (d.decidedAt = "yesterday"), /\$\.decidedAt: not an RFC 3339 date-time/],
    ["route-primary.json", (d) => (d.decidedAt = "2026-02-30T10:16:30Z"), /\$\.decidedAt: not an RFC 3339/],
    ["route-primary.json", (d) => (d.decidedAt = "2026-12-01T24:00:00Z"), /\$\.decidedAt: not an RFC 3339/],
    ["route-primary.json", (d) => (d.decidedAt = "2026-12-01T10:16:30+01"), /\$\.decidedAt: not an RFC 3339/],
    ["route-primary.json", (d) => (d.decidedAt = "1796120000"), /\$\.decidedAt: not an RFC 3339/],
    ["route-primary.json", (d) => (d.decidedAt = 1796120000), /\$\.decidedAt: expected string/],
    ["route-primary.json", (d) => (d.decided_at = d.decidedAt), /\$\.decided_at: unknown field/],
    ["route-primary.json", (d) => (d.candidates[0].score = 101), /\$\.candidates\[0\]\.score/],
    ["route-primary.json", (d) => (d.fallbacks = "nw-backup1"), /\$\.fallbacks: expected array/],
    ["profile.json", (d) => (d.expense = { x: "huge" }), /\$\.expense\.x: must be one of/],
    ["profile.json", (d) => (d.external[0].circuit = "ajar"), /\$\.external\[0\]\.circuit/],
    ["profile.json", (d) => (d.external[0].timeoutMs = 0), /\$\.external\[0\]\.timeoutMs: must be >= 1/],
  ];
  for (const [name, change, message] of cases) {
    const parse = name.startsWith("route") ? parseRoute : parseProfile;
    assert.throws(() => parse(mutated(name, change)), (e: Error) => e instanceof DocumentError && message.test(e.message));
  }
  assert.throws(() => parseRoute("{"), /route.json is not JSON/);
  assert.throws(() => parseRoute(Buffer.from([0x7b, 0xff, 0x7d])), /route.json is not JSON/);
  assert.throws(() => parseRoute("[]"), /expected object/);
  assert.throws(() => parseRoute(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), fixture("route-primary.json")])), /not JSON/);
  assert.throws(() => parseRoute(fixtureText("route-primary.json").replace('"reason": "', '"reason": "\\ud800')), /lone surrogate/);
});

test("optional fields may be null or absent", () => {
  const route = parseRoute(mutated("route-primary.json", (d: any) => {
    delete d.apiVersion;
    d.candidates[1].score = null;
  }));
  assert.equal(route.candidates[1].score, null);
  parseProfile(mutated("profile.json", (d: any) => (d.latencyTargetMs = null)));
});
