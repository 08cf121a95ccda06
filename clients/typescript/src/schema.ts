/**
 * Validation against the JSON Schemas the operator generates from its document models (docs/schemas/,
 * copied into the package at build time), so the TypeScript readers accept exactly what the contract
 * says without a second hand-written copy of it. Only the keywords those schemas use are implemented;
 * a schema using any other keyword is refused at load time rather than silently half-checked.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";

export type Schema = { [keyword: string]: unknown };

const ANNOTATIONS = new Set(["$schema", "$defs", "title", "description", "default"]);
const ASSERTIONS = new Set([
  "$ref",
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "const",
  "minimum",
  "maximum",
  "anyOf",
  "format",
]);

// RFC 3339 date-time, with its time zone (as the Python reader: a naive time is refused by both).
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):?(\d{2}))$/;

/** Whether `text` is a date-time of the calendar: no February 30th, no 24:00, offsets below a day. */
function isDateTime(text: string): boolean {
  const m = DATE_TIME.exec(text);
  if (m === null) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0-99 as 1900-1999
  const calendar = year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
  const offset = m[9] === undefined || (Number(m[9]) < 24 && Number(m[10]) < 60);
  return calendar && hour < 24 && minute < 60 && second < 60 && offset;
}

/** Where the copied schemas live next to the compiled code (dist/src -> dist/schemas). */
export const SCHEMA_DIR = join(__dirname, "..", "schemas");

const loaded = new Map<string, Schema>();

/** The schema `name` (e.g. "route.schema.json"), read once and checked for unsupported keywords. */
export function loadSchema(name: string, directory: string = SCHEMA_DIR): Schema {
  const path = join(directory, name);
  let schema = loaded.get(path);
  if (schema === undefined) {
    schema = JSON.parse(readFileSync(path, "utf8")) as Schema;
    checkKeywords(schema, name);
    loaded.set(path, schema);
  }
  return schema;
}

function checkKeywords(node: unknown, where: string): void {
  if (Array.isArray(node)) {
    node.forEach((item) => checkKeywords(item, where));
    return;
  }
  if (!isObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if (!ANNOTATIONS.has(key) && !ASSERTIONS.has(key)) {
      throw new Error(`${where}: JSON Schema keyword ${JSON.stringify(key)} is not supported by this reader`);
    }
    if (key === "properties" || key === "$defs") {
      Object.values(value as object).forEach((child) => checkKeywords(child, where));
    } else if (key !== "enum" && key !== "const" && key !== "default" && key !== "required") {
      checkKeywords(value, where);
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function matchesType(value: unknown, type: string): boolean {
  const actual = typeOf(value);
  return actual === type || (type === "number" && actual === "integer");
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The problems of `value` against `schema`, each as "<json path>: <what is wrong>"; empty when it is valid.
 * `root` resolves `$ref`s of the form `#/$defs/<name>`.
 */
export function problems(value: unknown, schema: Schema, root: Schema = schema, path = "$"): string[] {
  const found: string[] = [];
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.replace(/^#\/\$defs\//, "");
    const target = (root.$defs as Record<string, Schema> | undefined)?.[name];
    if (target === undefined) return [`${path}: unresolvable $ref ${schema.$ref}`];
    found.push(...problems(value, target, root, path));
  }
  if (Array.isArray(schema.anyOf)) {
    const branches = (schema.anyOf as Schema[]).map((branch) => problems(value, branch, root, path));
    if (!branches.some((b) => b.length === 0)) found.push(...branches.flat());
  }
  if (typeof schema.type === "string" && !matchesType(value, schema.type)) {
    return [...found, `${path}: expected ${schema.type}, got ${typeOf(value)}`];
  }
  if ("const" in schema && !deepEqual(value, schema.const)) {
    found.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((option) => deepEqual(option, value))) {
    found.push(`${path}: must be one of ${schema.enum.map((o) => JSON.stringify(o)).join(", ")}`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) {
      found.push(`${path}: must be >= ${schema.minimum}`);
    }
    if (typeof schema.maximum === "number" && value > schema.maximum) {
      found.push(`${path}: must be <= ${schema.maximum}`);
    }
  }
  if (schema.format === "date-time" && typeof value === "string") {
    if (!isDateTime(value)) {
      found.push(`${path}: not an RFC 3339 date-time: ${JSON.stringify(value)}`);
    }
  }
  if (Array.isArray(value) && isObject(schema.items)) {
    value.forEach((item, i) => found.push(...problems(item, schema.items as Schema, root, `${path}[${i}]`)));
  }
  if (isObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) {
      if (!(name in value)) found.push(`${path}.${name}: required field is missing`);
    }
    for (const [name, child] of Object.entries(value)) {
      const where = `${path}.${name}`;
      if (Object.hasOwn(properties, name)) {
        found.push(...problems(child, properties[name], root, where));
      } else if (schema.additionalProperties === false) {
        found.push(`${where}: unknown field`);
      } else if (isObject(schema.additionalProperties)) {
        found.push(...problems(child, schema.additionalProperties as Schema, root, where));
      }
    }
  }
  return found;
}

/**
 * `value` (valid against `schema`) with every absent property that has a `default` filled in, as the
 * operator's models fill them: a reader hands out complete documents (`score: null`, not absent).
 */
export function withDefaults(value: unknown, schema: Schema, root: Schema = schema): unknown {
  if (typeof schema.$ref === "string") {
    const target = (root.$defs as Record<string, Schema> | undefined)?.[schema.$ref.replace(/^#\/\$defs\//, "")];
    return target === undefined ? value : withDefaults(value, target, root);
  }
  if (Array.isArray(schema.anyOf)) {
    const branch = (schema.anyOf as Schema[]).find((b) => problems(value, b, root).length === 0);
    return branch === undefined ? value : withDefaults(value, branch, root);
  }
  if (Array.isArray(value)) {
    return isObject(schema.items) ? value.map((item) => withDefaults(item, schema.items as Schema, root)) : value;
  }
  if (!isObject(value)) return value;
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const filled: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(properties)) {
    if (Object.hasOwn(value, name)) filled[name] = withDefaults(value[name], child, root);
    else if ("default" in child) filled[name] = structuredClone(child.default);
  }
  for (const [name, child] of Object.entries(value)) {
    if (!Object.hasOwn(filled, name)) {
      filled[name] = isObject(schema.additionalProperties) ? withDefaults(child, schema.additionalProperties as Schema, root) : child;
    }
  }
  return filled;
}
