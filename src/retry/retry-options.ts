import { invalid } from '../errors.js'
import type { Clock } from '../options.js'
import { integer, isPlainObject as isObject, optionsObject, rejectUnknown } from '../validate.js'
import type { BackoffOptions } from './backoff.js'

/** How the daemon treats a handler's error. */
export type ErrorClass = 'transient' | 'permanent'

export interface RateLimit {
  /** Handler calls that may start per interval. */
  readonly max: number
  /** The interval, in ms. */
  readonly intervalMs: number
}

/** Options of `evaq.retry(handler, options)`. Durations in milliseconds. */
export interface RetryOptions {
  /** Handlers running at once (p-queue concurrency). @defaultValue 4 */
  concurrency?: number
  /** At most `max` handler calls start per `intervalMs` (p-queue intervalCap/interval). @defaultValue none */
  rateLimit?: RateLimit
  /**
   * Attempts in all, counting those a record was pushed with (`pushRetryItem`'s `attempts`),
   * after which a failing record is parked. @defaultValue 10
   */
  maxAttempts?: number
  /**
   * Backoff between attempts: attempt `n` is due a random time in
   * [0, min(maxMs, initialMs · multiplier^(n-1))] ms after attempt n-1 failed (full jitter).
   * @defaultValue `{ initialMs: 1000, maxMs: 300000, multiplier: 2 }`
   */
  backoff?: Partial<BackoffOptions>
  /**
   * Whether a handler's error is worth another attempt. `'permanent'` parks the record at once.
   * @defaultValue {@link defaultClassify}: permanent when `err.retriable === false` and for
   * programmer errors (TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError)
   * without a `cause`; transient otherwise.
   */
  classify?: (err: unknown) => ErrorClass
  /** How long `stop()` lets handlers in flight finish before it aborts them, in ms. @defaultValue 30000 */
  stopTimeoutMs?: number
  /**
   * Longest time between two looks at the schedule, in ms. The daemon also looks whenever a record
   * is pushed to the DLQ, a handler finishes, or the earliest scheduled attempt comes due.
   * @defaultValue 1000
   */
  pollIntervalMs?: number
  /**
   * Start looking for due records at once. With `false` the daemon handles records only when
   * `tick()` is called (tests with an injected clock) or after `start()`. @defaultValue true
   */
  autoStart?: boolean
  /** The time source for the schedule. @defaultValue the queue's `clock` */
  clock?: Clock
  /** Uniform random numbers in [0, 1) for the jitter. @defaultValue `Math.random` */
  random?: () => number
}

export interface ResolvedRetryOptions {
  readonly concurrency: number
  readonly rateLimit: RateLimit | undefined
  readonly maxAttempts: number
  readonly backoff: BackoffOptions
  readonly classify: (err: unknown) => ErrorClass
  readonly stopTimeoutMs: number
  readonly pollIntervalMs: number
  readonly autoStart: boolean
  readonly clock: Clock
  readonly random: () => number
}

export const RETRY_DEFAULTS = Object.freeze({
  concurrency: 4,
  maxAttempts: 10,
  backoff: Object.freeze({ initialMs: 1000, maxMs: 300_000, multiplier: 2 }), // 1 s, 5 min
  stopTimeoutMs: 30_000, // 30 s
  pollIntervalMs: 1000, // 1 s
  autoStart: true,
})

const KNOWN = ['concurrency', 'rateLimit', 'maxAttempts', 'backoff', 'classify', 'stopTimeoutMs', 'pollIntervalMs', 'autoStart', 'clock', 'random']
const PROGRAMMER_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError]

/**
 * The default classification: `err.retriable === false` (an EvaqError such as
 * EVAQ_INVALID_ARGUMENT, a kafkajs non-retriable error, or your own) and programmer errors are
 * permanent. A TypeError with a `cause` is not a programmer error: Node's `fetch` reports a refused
 * connection as `TypeError: fetch failed` with the system error as its cause.
 */
export function defaultClassify (err: unknown): ErrorClass {
  if (err !== null && typeof err === 'object' && (err as { retriable?: unknown }).retriable === false) return 'permanent'
  if (PROGRAMMER_ERRORS.some(E => err instanceof E) && (err as Error).cause === undefined) return 'permanent'
  return 'transient'
}

export function resolveRetryOptions (options: RetryOptions | undefined, clock: Clock): ResolvedRetryOptions {
  const o = optionsObject(options)
  rejectUnknown(o, KNOWN, ' of retry()')
  const pick = <T>(key: string, fallback: T): unknown => o[key] === undefined ? fallback : o[key]

  const concurrency = integer('concurrency', pick('concurrency', RETRY_DEFAULTS.concurrency), 1, 10_000)
  let rateLimit: RateLimit | undefined
  if (o.rateLimit !== undefined) {
    if (!isObject(o.rateLimit)) throw invalid('rateLimit', 'an object like { max, intervalMs }', o.rateLimit)
    rejectUnknown(o.rateLimit, ['max', 'intervalMs'], ' in `rateLimit`')
    rateLimit = Object.freeze({
      max: integer('rateLimit.max', o.rateLimit.max, 1),
      intervalMs: integer('rateLimit.intervalMs', o.rateLimit.intervalMs, 1, 86_400_000),
    })
  }
  const maxAttempts = integer('maxAttempts', pick('maxAttempts', RETRY_DEFAULTS.maxAttempts), 1)
  const b = pick('backoff', {})
  if (!isObject(b)) throw invalid('backoff', 'an object like { initialMs, maxMs, multiplier }', b)
  rejectUnknown(b, ['initialMs', 'maxMs', 'multiplier'], ' in `backoff`')
  const initialMs = integer('backoff.initialMs', b.initialMs ?? RETRY_DEFAULTS.backoff.initialMs, 0)
  const maxMs = integer('backoff.maxMs', b.maxMs ?? Math.max(RETRY_DEFAULTS.backoff.maxMs, initialMs), 0)
  if (maxMs < initialMs) throw invalid('backoff.maxMs', `an integer >= backoff.initialMs (${initialMs})`, maxMs)
  const multiplier = b.multiplier ?? RETRY_DEFAULTS.backoff.multiplier
  if (typeof multiplier !== 'number' || !Number.isFinite(multiplier) || multiplier < 1) throw invalid('backoff.multiplier', 'a finite number >= 1', multiplier)
  const classify = pick('classify', defaultClassify)
  if (typeof classify !== 'function') throw invalid('classify', 'a function', classify)
  const stopTimeoutMs = integer('stopTimeoutMs', pick('stopTimeoutMs', RETRY_DEFAULTS.stopTimeoutMs), 0, 2 ** 31 - 1)
  const pollIntervalMs = integer('pollIntervalMs', pick('pollIntervalMs', RETRY_DEFAULTS.pollIntervalMs), 1, 3_600_000)
  const autoStart = pick('autoStart', RETRY_DEFAULTS.autoStart)
  if (typeof autoStart !== 'boolean') throw invalid('autoStart', 'a boolean', autoStart)
  const c = pick('clock', clock)
  if (!isObject(c) || typeof c.now !== 'function') throw invalid('clock', 'an object with a now() method', c)
  const random = pick('random', Math.random)
  if (typeof random !== 'function') throw invalid('random', 'a function', random)
  return Object.freeze({
    concurrency,
    rateLimit,
    maxAttempts,
    backoff: Object.freeze({ initialMs, maxMs, multiplier }),
    classify: classify as (err: unknown) => ErrorClass,
    stopTimeoutMs,
    pollIntervalMs,
    autoStart,
    clock: c as unknown as Clock,
    random: random as () => number,
  })
}
