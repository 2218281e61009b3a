import { EvaqError } from '../errors.js'

/**
 * Parsing of the values that reach the service as text (query strings, CLI flags). JSON Schema
 * checks their shape; these check their range, because a decimal string such as
 * `9007199254740993` parses to a different, safe-looking number.
 */

/** A log name in a URL: letters, digits, `-` and `_`. */
export const LOG_NAME_PATTERN = '^[A-Za-z0-9_-]{1,64}$'
/** A subscriber name, as the log core accepts it. */
export const SUBSCRIBER_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,128}$'
/** A non-negative decimal integer of at most 16 digits, no sign, no leading zeros. */
export const UINT_PATTERN = '^(0|[1-9][0-9]{0,15})$'

/** Upper bounds of one read over HTTP, so that one request cannot build an unbounded response. */
export const READ_LIMITS = Object.freeze({
  maxBytes: 64 * 1024 * 1024, // 64 MiB
  maxCount: 10_000,
  /** Longest long poll (`waitMs`) of a read or `next`. */
  waitMs: 60_000, // 1 min
})

/** Defaults of one read over HTTP. */
export const READ_DEFAULTS = Object.freeze({
  maxBytes: 1024 * 1024, // 1 MiB
  maxCount: 1000,
  waitMs: 0,
})

const UINT = new RegExp(UINT_PATTERN)

/**
 * Parse a decimal integer from `min` to `max` given as text, or return `fallback` when it is
 * absent. Anything else is EVAQ_INVALID_ARGUMENT naming `name`.
 */
export function parseUint (value: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = UINT.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${value.slice(0, 40)}\``)
  }
  return n
}

/** Whether `value` is a safe integer ID (>= 1). */
export function isId (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1
}

/** JSON Schema of a subscriber's info, as the routes answer it (`log` is there when listed across logs). */
export const SUBSCRIBER_SCHEMA = Object.freeze({
  type: 'object',
  properties: {
    log: { type: 'string' },
    name: { type: 'string' },
    ackFloor: { type: 'integer' },
    cursor: { type: 'integer' },
    inFlight: { type: 'integer' },
    lagRecords: { type: 'integer' },
    lagBytes: { type: 'integer' },
    oldestUnackedAgeMs: { type: 'number' },
    leaseMs: { type: 'integer' },
    maxDeliveries: { type: 'integer' },
    lastActiveAt: { type: 'integer' },
  },
} as const)

/** Route parameters of a subscriber: `/v1/logs/:log/subscribers/:name…`. */
export const SUB_PARAMS = {
  type: 'object',
  properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN }, name: { type: 'string', pattern: SUBSCRIBER_NAME_PATTERN } },
  required: ['log', 'name'],
  additionalProperties: false,
} as const
