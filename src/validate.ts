import { EvaqError, invalid } from './errors.js'

/**
 * The checks every options object of the public API goes through: an options object is a plain
 * object, an unknown key is refused with one message shape (naming the call, and the closest
 * known key when one is close), and values are checked by type and range. Each component keeps
 * its defaults in an `X_DEFAULTS` object beside a `resolveX()` that uses these (EVAQ_DEFAULTS and
 * resolveOptions in options.ts, RETRY_DEFAULTS and resolveRetryOptions, ...).
 */

/** Whether `value` is an object that is not null and not an array. */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** `value` as an options object: undefined becomes `{}`, anything but a plain object is refused. */
export function optionsObject (value: unknown, name = 'options'): Record<string, unknown> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) throw invalid(name, 'an object', value)
  return value
}

export function integer (name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(name, `an integer from ${min} to ${max}`, value)
  }
  return value
}

/**
 * EVAQ_INVALID_ARGUMENT for the first key of `options` that is not in `known`, with a hint when
 * one is close, otherwise the list of known keys. `where` names the call or the nesting
 * (`' of pushWal()'`, `' in `backoff`'`). Every options object of the public API goes through
 * here, so a misspelt option is never silently ignored.
 */
export function rejectUnknown (options: object, known: readonly string[], where = ''): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue
    const hint = closest(key, known)
    const list = known.length === 1 ? known[0]! : `${known.slice(0, -1).join(', ')} or ${known[known.length - 1]!}`
    const expected = known.length === 0 ? '; expected no options' : `; expected ${list}`
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Unknown option \`${key}\`${where}${hint === undefined ? expected : `; did you mean \`${hint}\`?`}`)
  }
}

export function closest (word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 4
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase())
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  return best
}

function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]!
}

/** An integer at least `min`, or Infinity (a bound that may be left open: maxBytes, maxCount). */
export function bound (name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < min || (!Number.isInteger(value) && value !== Infinity)) {
    throw invalid(name, `an integer >= ${min} or Infinity`, value)
  }
  return value
}
