import { ERROR_CODES, EvaqError, type EvaqErrorCode } from '../errors.js'

/** The body of every error the service answers: a stable code and a message for people. */
export interface ErrorBody {
  readonly code: EvaqErrorCode
  readonly message: string
  /** The record IDs the error is about, when it is about some (EVAQ_NOT_FOUND, EVAQ_CORRUPTION). */
  readonly ids?: readonly number[]
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
