import { UsageError } from './usage.js'

/**
 * The command line's own parser. node:util's parseArgs refuses `--max-count -1` as "ambiguous"
 * (so the command never gets to say its range), and its unknown-option message is long and names
 * no alternative: here a value that looks like a number is taken as a value, and an unknown flag
 * or command is answered in one line with the closest known one.
 */

export interface FlagSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  readonly multiple?: boolean
}

export type Flags = Readonly<Record<string, FlagSpec>>
export type Values = Record<string, string | boolean | string[] | undefined>

/** A token that is a value even though it starts with a dash: a negative number. */
const NEGATIVE_NUMBER = /^-[0-9.]/

/** Parse `args` against `flags`: values by flag name, and the positional arguments in order. */
export function parseFlags (args: readonly string[], flags: Flags, command: string): { values: Values, positionals: string[] } {
  const values: Values = {}
  const positionals: string[] = []
  const set = (name: string, spec: FlagSpec, value: string | boolean): void => {
    if (spec.multiple === true) values[name] = [...(values[name] as string[] | undefined) ?? [], value as string]
    else values[name] = value
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--') {
      positionals.push(...args.slice(i + 1))
      break
    }
    if (!arg.startsWith('-') || arg === '-' || NEGATIVE_NUMBER.test(arg)) {
      positionals.push(arg)
      continue
    }
    let name: string
    let inline: string | undefined
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq)
      inline = eq < 0 ? undefined : arg.slice(eq + 1)
    } else {
      const short = arg.slice(1)
      const found = Object.entries(flags).find(([, spec]) => spec.short === short)
      if (found === undefined) throw unknownFlag(arg, flags, command)
      name = found[0]
    }
    const spec = Object.hasOwn(flags, name) ? flags[name] : undefined
    if (spec === undefined) throw unknownFlag(`--${name}`, flags, command)
    if (spec.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`, command)
      set(name, spec, true)
      continue
    }
    if (inline !== undefined) {
      set(name, spec, inline)
      continue
    }
    const next = args[i + 1]
    if (next === undefined || (next.startsWith('-') && next !== '-' && !NEGATIVE_NUMBER.test(next))) {
      throw new UsageError(`--${name} needs a value`, command)
    }
    set(name, spec, next)
    i++
  }
  return { values, positionals }
}

function unknownFlag (flag: string, flags: Flags, command: string): UsageError {
  const known = Object.keys(flags).map(name => `--${name}`)
  const near = closest(flag.split('=')[0]!, known)
  return new UsageError(`unknown option \`${flag.slice(0, 40)}\`${near === undefined ? '' : `; did you mean ${near}?`}`, command)
}

/** The candidate nearest to `word` by edit distance, if it is near enough to be a typo. */
export function closest (word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const d = distance(word, c)
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  // A third of the word may be wrong (at least one letter, at most three).
  return bestDistance <= Math.min(3, Math.max(1, Math.floor(word.replace(/^-+/, '').length / 3))) ? best : undefined
}

/** Levenshtein distance, with a swap of two neighbours counting as one edit. */
function distance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
