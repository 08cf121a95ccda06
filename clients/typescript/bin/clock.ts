/** Seconds on CLOCK_MONOTONIC (Linux), the clock of Python's time.monotonic(): logs compare with tests'. */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}
