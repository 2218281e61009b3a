import { ERROR_CODES, EvaqError, type EvaqErrorCode } from '../errors.js'

/** The body of every error the service answers: a stable code and a message for people. */
export interface ErrorBody {
  readonly code: EvaqErrorCode
  readonly message: string
  /** The record IDs the error is about, when it is about some (EVAQ_NOT_FOUND, EVAQ_CORRUPTION). */
  readonly ids?: readonly number[]
  /**
   * What the client can do about it, when the service knows: the accepted content types of a 415
   * (`accepted`), the limit of a 413 (`limitBytes`, and `flag`/`option` that raise it).
   */
  readonly details?: Readonly<Record<string, unknown>>
}

/** What the route that met an error takes, for {@link explainError}. */
export interface RouteLimits {
  /** The request body types the route takes (415). */
  readonly accepted: readonly string[]
  /** The route's body limit in bytes (413 from the body limit). */
  readonly bodyLimit: number
  /** The queue's largest payload (413 from the queue itself). */
  readonly maxPayloadBytes: number
  /** The `Content-Type` the request sent, if any. */
  readonly contentType?: string | undefined
}

/** Status codes of the framework's own errors, turned into evaq's codes. */
const BY_STATUS: Readonly<Record<number, EvaqErrorCode>> = {
  400: 'EVAQ_INVALID_ARGUMENT',
  401: 'EVAQ_UNAUTHORIZED',
  404: 'EVAQ_NOT_FOUND',
  408: 'EVAQ_ABORTED',
  413: 'EVAQ_TOO_LARGE',
  415: 'EVAQ_UNSUPPORTED_MEDIA_TYPE',
  503: 'EVAQ_CLOSED',
}

/**
 * The status and body for any error a request met: an EvaqError keeps its code (the status comes
 * from the error-code table); a framework error is mapped by its status (other 4xx become
 * EVAQ_INVALID_ARGUMENT); anything else is EVAQ_INTERNAL, a bug.
 */
export function errorReply (err: unknown): { status: number, body: ErrorBody, internal: boolean } {
  if (err instanceof EvaqError) {
    const body = { code: err.code, message: err.message, ...(err.ids === undefined ? {} : { ids: err.ids.slice(0, 100) }) }
    return { status: err.status, body, internal: false }
  }
  const e = err as { statusCode?: unknown, status?: unknown, message?: unknown }
  const status = typeof e?.statusCode === 'number' ? e.statusCode : typeof e?.status === 'number' ? e.status : 500
  const message = (typeof e?.message === 'string' ? e.message : String(err)).slice(0, 500)
  let code = BY_STATUS[status]
  if (code === undefined && status >= 400 && status < 500) code = 'EVAQ_INVALID_ARGUMENT'
  if (code === undefined) return { status: 500, body: { code: 'EVAQ_INTERNAL', message }, internal: true }
  return { status: ERROR_CODES[code].status, body: { code, message }, internal: false }
}

/**
 * An error body that says what to do: a 415 lists the types the route takes, a 413 states the
 * limit and what raises it (`--body-limit` / `bodyLimit` for the body limit; the queue's
 * `maxPayloadBytes` when a single record is over it, which no flag of the service raises).
 * Other errors are returned as they are.
 */
export function explainError (err: unknown, body: ErrorBody, route: RouteLimits): ErrorBody {
  if (body.code === 'EVAQ_UNSUPPORTED_MEDIA_TYPE') {
    const type = route.contentType
    const sent = type === undefined || type === '' ? 'a body without a Content-Type' : `Content-Type \`${type.slice(0, 80)}\``
    return {
      code: body.code,
      message: `This route does not take ${sent}; send ${route.accepted.join(', ')}`,
      details: { accepted: [...route.accepted] },
    }
  }
  if (body.code === 'EVAQ_TOO_LARGE') {
    if (err instanceof EvaqError) {
      return { ...body, details: { limitBytes: route.maxPayloadBytes, option: 'maxPayloadBytes' } }
    }
    return {
      code: body.code,
      message: `The request body is over the service's limit of ${route.bodyLimit} bytes (raise it with --body-limit BYTES)`,
      details: { limitBytes: route.bodyLimit, flag: '--body-limit', option: 'bodyLimit' },
    }
  }
  return body
}
