/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * the wait before attempt `n` is uniform in [0, min(maxMs, initialMs · multiplier^(n-1))] ms.
 * Full jitter spreads the records that failed together (a downstream outage fails them all at
 * once) over the whole window instead of sending them back in one wave.
 */

export interface BackoffOptions {
  /** Upper bound of the wait before the first attempt after a failure, in ms. @defaultValue 1000 */
  readonly initialMs: number
  /** Upper bound of any wait, in ms. @defaultValue 300000 (5 minutes) */
  readonly maxMs: number
  /** Growth of the bound from one attempt to the next (at least 1). @defaultValue 2 */
  readonly multiplier: number
}

/** The largest wait before attempt `attempt` (1-based), in ms. */
export function backoffCeiling (attempt: number, backoff: BackoffOptions): number {
  // 0 · Infinity would be NaN: no initial wait means no wait at all.
  if (backoff.initialMs === 0) return 0
  const exponent = Math.max(0, attempt - 1)
  const bound = backoff.initialMs * Math.pow(backoff.multiplier, exponent)
  // Math.pow overflows to Infinity long before attempts run out; the cap keeps it finite.
  return Math.floor(Math.min(backoff.maxMs, bound))
}

/**
 * The wait before attempt `attempt`: an integer in [0, backoffCeiling(attempt)], drawn with
 * `random` (uniform in [0, 1), like Math.random).
 */
export function backoffDelay (attempt: number, backoff: BackoffOptions, random: () => number): number {
  const ceiling = backoffCeiling(attempt, backoff)
  const r = random()
  const u = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1 - Number.EPSILON) : 0
  return Math.floor(u * (ceiling + 1))
}
