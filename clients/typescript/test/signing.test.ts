import assert from "node:assert/strict";
import { test } from "node:test";

import { digest, sign, verify } from "../src/signing";
import { fixture, fixtureText } from "./helpers";

const key = fixture("key");

test("signatures made by the operator's Python signing verify, byte for byte", () => {
  for (const name of ["profile.json", "route-primary.json", "route-failedover.json"]) {
    const payload = fixture(name);
    const signature = fixtureText(`${name}.sig`);
    assert.equal(sign(key, payload), signature.trim());
    assert.ok(verify(key, payload, signature));
    assert.ok(verify(key, payload, `  ${signature}\n`), "surrounding whitespace is ignored, as in Python");
  }
});

test("a changed byte, another key or a malformed signature does not verify", () => {
  const payload = fixture("profile.json");
  const signature = fixtureText("profile.json.sig");
  const tampered = Buffer.from(payload);
  tampered[tampered.length - 3] ^= 1;
  assert.equal(verify(key, tampered, signature), false);
  assert.equal(verify("another key", payload, signature), false);
  assert.equal(verify(key, payload, signature.replace("sha256=", "")), false);
  assert.equal(verify(key, payload, signature.toUpperCase()), false);
  assert.equal(verify(key, payload, ""), false);
});

test("a key given as text is its UTF-8 bytes; digest is the SHA-256 hex of the payload", () => {
  assert.equal(sign("ключ", "x"), sign(Buffer.from("ключ", "utf8"), Buffer.from("x")));
  assert.equal(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});
