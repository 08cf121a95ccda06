// Copies the JSON Schemas of the published documents into the package (dist/schemas), so the readers
// validate against the operator's own contract: the shared vectors' copies, which `make crds` generates
// from the operator's models and `make check-crds` keeps from drifting.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const source = path.resolve(__dirname, "..", "..", "vectors", "schemas");
const target = path.resolve(__dirname, "..", "dist", "schemas");
fs.mkdirSync(target, { recursive: true });
for (const name of ["profile.schema.json", "route.schema.json"]) {
  fs.copyFileSync(path.join(source, name), path.join(target, name));
}
