import { EvaqError } from '../errors.js'
import type { RecordError } from '../log/log.js'

/**
 * The retry state of a DLQ or parked record and its encodings. It lives beside the payload, in the
 * `<log>-retry` sublevel keyed by ID, and is written in the same batch as the record itself. The
 * DLQ's schedule index (`dlq-due`) holds one key per record, (nextAttemptAt, ID), both fixed-width
 * big-endian, so that key order is due order and the due records are one bounded range read.
 */

/** Where a record came from: a log and the record's ID there. */
export interface RecordSource {
  readonly log: string
  readonly id: number
}

/** The error of a failed attempt, as stored: its `code` (if it had a string one) and message. */
export interface AttemptError {
  readonly code?: string
  readonly message: string
}

/** What evaq knows about the attempts to deliver a DLQ record. Times in ms since the epoch. */
export interface RetryState {
  /** Attempts made so far, in all: those reported when the record was pushed, plus the daemon's. */
  readonly attempts: number
  /** When the record first failed (when it came to the DLQ, unless an earlier time was carried over). */
  readonly firstFailedAt: number
  /** When the latest attempt failed (when the record came to the DLQ, before any attempt of the daemon). */
  readonly lastFailedAt: number
  /**
   * When the latest attempt of the daemon started. Later than `lastFailedAt` while an attempt is
   * in flight, or when the process stopped during one (that attempt is counted in `attempts`).
   */
  readonly lastAttemptAt?: number
  /** The error of the latest failed attempt. */
  readonly lastError?: AttemptError
  /** When the record is due for its next attempt. */
  readonly nextAttemptAt: number
  /** Where the record came from (for example `{ log: 'wal', id }`, or `{ log: 'parked', id }` after a requeue). */
  readonly source?: RecordSource
}

/** Why a record was parked. */
export type ParkReason = 'max-attempts' | 'permanent'

/** The history a parked record keeps: its retry state when it was parked, and why. */
export interface ParkedState {
  readonly attempts: number
  readonly firstFailedAt: number
  readonly lastFailedAt: number
  readonly lastAttemptAt?: number
  readonly lastError?: AttemptError
  /** Where the DLQ record had come from. */
  readonly source?: RecordSource
  /** When it was parked. */
  readonly parkedAt: number
  readonly reason: ParkReason
  /** The record's ID in the DLQ (undefined for a record pushed to `parked` directly). */
  readonly dlqId?: number
}

/** What a push to a retry log carries for its record besides the payload. */
export interface RecordInit {
  /** The error stored as the record's `error`, as before (none: the record has no `error`). */
  readonly error?: RecordError
  /** The record's state; times left out are the push time. */
  readonly state: Partial<RetryState> | Partial<ParkedState>
  /** A move under way: its intent gets the new ID in the same batch (see Moves). */
  readonly move?: { readonly seq: number, readonly intent: MoveIntent }
}

/** One record being moved between the DLQ and `parked`; see Moves. */
export interface MoveIntent {
  readonly from: string
  readonly id: number
  readonly to: string
  /** The ID in `to`, once the push there committed (written in that push's batch). */
  readonly toId?: number
}

const INIT_MARK = 'evaqInit'

/** The extra a retry log's push carries; its commit replaces it with `init.error`. */
export function encodeInit (init: RecordInit): Buffer {
  return Buffer.from(JSON.stringify({ [INIT_MARK]: 1, ...init }))
}

/** The init of an extra written by encodeInit, or undefined for any other extra. */
export function decodeInit (extra: Buffer): RecordInit | undefined {
  // Cheap test first: most extras are plain errors.
  if (extra.indexOf(INIT_MARK) < 0) return undefined
  try {
    const value = JSON.parse(extra.toString('utf8')) as Record<string, unknown>
    if (value[INIT_MARK] !== 1) return undefined
    return value as unknown as RecordInit
  } catch {
    return undefined
  }
}

/** A plain stored error (`{ code?, message, source? }`), or undefined when it is not one. */
export function parseRecordError (extra: Buffer | undefined): RecordError | undefined {
  if (extra === undefined) return undefined
  try {
    const value = JSON.parse(extra.toString('utf8')) as RecordError
    return value !== null && typeof value === 'object' && typeof value.message === 'string' ? value : undefined
  } catch {
    return undefined
  }
}

export function attemptError (error: RecordError | undefined): AttemptError | undefined {
  if (error === undefined) return undefined
  return typeof error.code === 'string' ? { code: error.code, message: error.message } : { message: error.message }
}

export function encodeState (state: RetryState | ParkedState): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, ...state }))
}

export function decodeState<T extends RetryState | ParkedState> (log: string, id: number, value: Buffer): T {
  let parsed: { v?: unknown } & T
  try {
    parsed = JSON.parse(value.toString('utf8')) as { v?: unknown } & T
  } catch (cause) {
    throw new EvaqError('EVAQ_CORRUPTION', `The retry state of record ${id} of ${log} cannot be decoded`, { cause, ids: [id] })
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.v !== 1 || typeof parsed.attempts !== 'number') {
    throw new EvaqError('EVAQ_CORRUPTION', `The retry state of record ${id} of ${log} has an unknown format`, { ids: [id] })
  }
  const { v: _v, ...state } = parsed
  return state as unknown as T
}

/** Key of the schedule index: (nextAttemptAt, ID), 16 bytes big-endian, after `prefix`. */
export function encodeDueKey (prefix: Buffer, at: number, id: number): Buffer {
  const key = Buffer.allocUnsafe(prefix.byteLength + 16)
  prefix.copy(key, 0)
  writeU64(key, prefix.byteLength, at)
  writeU64(key, prefix.byteLength + 8, id)
  return key
}

export function decodeDueKey (key: Uint8Array): { at: number, id: number } {
  if (key.byteLength !== 16) throw new EvaqError('EVAQ_CORRUPTION', `A key of ${key.byteLength} bytes is not a schedule key`)
  const view = Buffer.from(key.buffer, key.byteOffset, 16)
  return { at: view.readUInt32BE(0) * 0x1_0000_0000 + view.readUInt32BE(4), id: view.readUInt32BE(8) * 0x1_0000_0000 + view.readUInt32BE(12) }
}

/** A time as the schedule stores it: a whole, non-negative number of ms. */
export function scheduleTime (ms: number): number {
  return Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, Math.floor(ms)))
}

function writeU64 (buf: Buffer, at: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at)
  buf.writeUInt32BE(value >>> 0, at + 4)
}

/**
 * The failure history both retry states carry (attempts, first and last failure, last error,
 * source): from what a record was pushed with, else from its stored error and push time.
 */
export function failureHistory (
  s: Partial<RetryState> | Partial<ParkedState>,
  pushedAt: number,
  error: RecordError | undefined
): Omit<RetryState, 'nextAttemptAt'> {
  const lastError = s.lastError ?? attemptError(error)
  const source = s.source ?? error?.source
  return {
    attempts: s.attempts ?? 0,
    firstFailedAt: s.firstFailedAt ?? pushedAt,
    lastFailedAt: s.lastFailedAt ?? pushedAt,
    ...(s.lastAttemptAt === undefined ? {} : { lastAttemptAt: s.lastAttemptAt }),
    ...(lastError === undefined ? {} : { lastError }),
    ...(source === undefined ? {} : { source: { log: source.log, id: source.id } }),
  }
}
