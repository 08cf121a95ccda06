import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** The package's source tree (tests run from dist/test). */
export const PACKAGE = resolve(__dirname, "..", "..");
export const FIXTURES = join(PACKAGE, "test", "fixtures");
/** The shared vectors both clients' tests read. */
export const VECTORS = resolve(PACKAGE, "..", "vectors");

export function fixture(name: string): Buffer {
  return readFileSync(join(FIXTURES, name));
}

export function fixtureText(name: string): string {
  return readFileSync(join(FIXTURES, name), "utf8");
}

/** Poll `check` until it returns something other than undefined/false, or fail after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | false, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
