/**
 * Every failure evaq reports is an {@link EvaqError}. The `code` is the contract: callers branch on
 * it, never on the message, which may change between releases.
 */

/** Stable error codes, with the HTTP status the service answers them with. */
export const ERROR_CODES = Object.freeze({
  EVAQ_INVALID_ARGUMENT: { status: 400, retriable: false, summary: 'An argument or option is malformed; nothing was changed.' },
  EVAQ_NOT_FOUND: { status: 404, retriable: false, summary: 'A record ID does not exist (never committed, or already removed); nothing was changed.' },
  EVAQ_TOO_LARGE: { status: 413, retriable: false, summary: 'A payload is larger than `maxPayloadBytes`.' },
  EVAQ_LOCKED: { status: 409, retriable: true, summary: 'Another process holds the data directory (LevelDB allows one process per directory).' },
  EVAQ_CLOSED: { status: 503, retriable: false, summary: 'The queue is closing or closed.' },
  EVAQ_ABORTED: { status: 408, retriable: true, summary: 'The caller\'s `AbortSignal` aborted a wait.' },
  EVAQ_AT_CAPACITY: {
    status: 503,
    retriable: true,
    summary: 'A disk or buffer budget is exhausted and the policy is to reject (or, over HTTP, a push waited `--push-timeout` for room). ' +
      'The service answers with `Retry-After`.',
  },
  EVAQ_CORRUPTION: {
    status: 500,
    retriable: false,
    summary: 'Stored data failed its checksum or could not be decoded; the damaged record is never returned as data.',
  },
  EVAQ_UNSUPPORTED_FORMAT: { status: 500, retriable: false, summary: 'The data directory was written by an on-disk format this version does not know.' },
  EVAQ_IO: {
    status: 503,
    retriable: true,
    summary: 'The storage engine failed to read or write (disk full, I/O error). A failed push may still have been stored.',
  },
  EVAQ_UNAUTHORIZED: { status: 401, retriable: false, summary: 'The service needs `Authorization: Bearer <token>` and the request had none or a wrong one.' },
  EVAQ_FORBIDDEN: {
    status: 403,
    retriable: false,
    summary: 'The service refused a request sent by a web page of another origin (its `Origin` or `Sec-Fetch-Site`); ' +
      'nothing was read, stored or changed.',
  },
  EVAQ_MISDIRECTED: {
    status: 421,
    retriable: false,
    summary: 'The request\'s `Host` names a host the service does not serve (a DNS-rebinding guard); nothing was read, stored or changed.',
  },
  EVAQ_UNSUPPORTED_MEDIA_TYPE: { status: 415, retriable: false, summary: 'The service does not take a request body of this `Content-Type`.' },
  EVAQ_INTERNAL: { status: 500, retriable: false, summary: 'An unexpected failure inside evaq (a bug): please report it.' },
} as const)

export type EvaqErrorCode = keyof typeof ERROR_CODES

export interface EvaqErrorOptions {
  cause?: unknown
  /** Record IDs the error is about (for example the unknown or corrupt ones). */
  ids?: readonly number[]
}

export class EvaqError extends Error {
  override readonly name = 'EvaqError'
  readonly code: EvaqErrorCode
  /** Whether the same call may succeed later without a change by the caller. */
  readonly retriable: boolean
  readonly ids: readonly number[] | undefined

  constructor (code: EvaqErrorCode, message: string, options: EvaqErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.retriable = ERROR_CODES[code].retriable
    this.ids = options.ids
  }

  /** HTTP status the service answers this error with. */
  get status (): number {
    return ERROR_CODES[this.code].status
  }
}

export function isEvaqError (err: unknown, code?: EvaqErrorCode): err is EvaqError {
  return err instanceof EvaqError && (code === undefined || err.code === code)
}

/** Describe a value for a validation message: `0` (number), `"x"` (string). */
export function describe (value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value).slice(0, 80)}\` (string)`
  if (typeof value === 'bigint') return `\`${value}n\` (bigint)`
  if (value === null) return '`null`'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'null prototype'})`
  return `\`${String(value)}\` (${typeof value})`
}

export function invalid (name: string, expected: string, value: unknown): EvaqError {
  return new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be ${expected}, got ${describe(value)}`)
}

/**
 * Translate an error thrown by classic-level into an EvaqError, keeping it as `cause`.
 * LevelDB reports a held lock as LEVEL_DATABASE_NOT_OPEN with a LEVEL_LOCKED cause.
 */
export function fromLevel (err: unknown, what: string): EvaqError {
  if (err instanceof EvaqError) return err
  const codes = levelCodes(err)
  if (codes.includes('LEVEL_LOCKED')) {
    return new EvaqError('EVAQ_LOCKED', `${what}: the data directory is locked by another process`, { cause: err })
  }
  if (codes.includes('LEVEL_CORRUPTION')) {
    return new EvaqError('EVAQ_CORRUPTION', `${what}: the storage engine reports corruption`, { cause: err })
  }
  if (codes.includes('LEVEL_DATABASE_NOT_OPEN') && !codes.some(c => c !== 'LEVEL_DATABASE_NOT_OPEN')) {
    return new EvaqError('EVAQ_CLOSED', `${what}: the database is not open`, { cause: err })
  }
  return new EvaqError('EVAQ_IO', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

/** Whether `err` or one of its causes carries `code` (e.g. `LEVEL_CORRUPTION`). */
export function hasCode (err: unknown, code: string): boolean {
  return levelCodes(err).includes(code)
}

function levelCodes (err: unknown): string[] {
  const out: string[] = []
  for (let e = err as { code?: unknown, cause?: unknown } | undefined, depth = 0; e != null && depth < 8; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') out.push(e.code)
  }
  return out
}
