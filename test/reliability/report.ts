/**
 * How the reliability battery reports what it checked, for `npm run test:soak` to turn into the
 * table of docs/reliability.md. Each part calls `report()` once at its end; nothing is written
 * unless EVAQ_SOAK_DIR is set (the soak runner sets it).
 *
 * Cycle counts come from the environment so the same test runs short in `npm test` and long in
 * the soak: `cycles('EVAQ_CRASH_CYCLES', 50)`.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface PartResult {
  /** Stable id of the part, e.g. 'crash-loop', 'power-cut'. */
  readonly part: string
  /** Failure simulated, in a few words. */
  readonly failure: string
  /** What evaq guarantees under it. */
  readonly guarantee: string
  /** The test file. */
  readonly test: string
  readonly cycles: number
  /** Acknowledged records (or operations) checked after the failures. */
  readonly acknowledged: number
  /** Acknowledged records missing or changed: must be 0. */
  readonly lost: number
  /** Anything worth a note (e.g. the negative control's loss). */
  readonly note?: string
}

export function cycles (name: string, short: number): number {
  const value = process.env[name]
  if (value === undefined) return short
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${value}`)
  return n
}

export async function report (result: PartResult): Promise<void> {
  const dir = process.env.EVAQ_SOAK_DIR
  if (dir === undefined) return
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, `${result.part}.json`), JSON.stringify({ ...result, at: new Date().toISOString() }, null, 2))
}
