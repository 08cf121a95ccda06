// Copies the generated JSON Schemas of the published documents into the package (dist/schemas), so the
// readers validate against the operator's own contract. The repository's copy is the single source.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const source = path.resolve(__dirname, "..", "..", "..", "docs", "schemas");
const target = path.resolve(__dirname, "..", "dist", "schemas");
fs.mkdirSync(target, { recursive: true });
for (const name of ["profile.schema.json", "route.schema.json"]) {
  fs.copyFileSync(path.join(source, name), path.join(target, name));
}
