import { EvaqError } from '../errors.js'

/**
 * Bad usage: the command prints the message and where to find the command's help on stderr (two
 * lines, never the whole help), and exits 2. `command`: whose help to point to.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError'
  constructor (message: string, readonly command?: string) {
    super(message)
  }
}

/** A decimal flag value from `min` to `max`; EVAQ_INVALID_ARGUMENT (exit 2) otherwise. */
export function intFlag (value: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = /^(0|[1-9][0-9]{0,15})$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${value.slice(0, 40)}\``)
  }
  return n
}

/** A duration flag: milliseconds (`1500`, `1500ms`) or seconds (`5s`, `0.5s`), at most 24 days. */
export function durationFlag (value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const m = /^(0|[1-9][0-9]{0,9})(ms)?$/.exec(value) ?? undefined
  const s = m === undefined ? /^([0-9]{1,7}(?:\.[0-9]{1,3})?)s$/.exec(value) ?? undefined : undefined
  const ms = m !== undefined ? Number(m[1]) : s !== undefined ? Math.round(Number(s[1]) * 1000) : NaN
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be milliseconds (1500) or seconds (5s), up to 24 days, got \`${value.slice(0, 40)}\``)
  }
  return ms
}

/** IDs given as positional arguments. */
export function idArgs (values: readonly string[]): number[] {
  return values.map((v, i) => intFlag(v, `ID ${i + 1}`, 0, 1))
}

/** `--durability`: `sync`, `none`, or a number of milliseconds for `{ intervalMs }`. */
export function durabilityFlag (value: string | undefined): 'sync' | 'none' | { intervalMs: number } | undefined {
  if (value === undefined) return undefined
  if (value === 'sync' || value === 'none') return value
  return { intervalMs: intFlag(value, '--durability', 0, 1) }
}
