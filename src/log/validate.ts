import { EvaqError, invalid } from '../errors.js'
import { bound, rejectUnknown } from '../validate.js'
import type { RecordError } from './types.js'

/** Validation of what callers hand a log (IDs, read and push options), and the stored error's encoding. */

/** The defaults of a log's read(). */
export const READ_DEFAULTS = Object.freeze({ from: 0, maxBytes: 1024 * 1024, maxCount: 10_000 })

export function encodeError (error: unknown): Buffer | undefined {
  if (error === undefined) return undefined
  let value: RecordError
  if (typeof error === 'string') value = { message: error }
  else if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    value = typeof code === 'string' ? { code, message: error.message } : { message: error.message }
  } else if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    const { code, message } = error as { code?: unknown, message: string }
    value = typeof code === 'string' ? { code, message } : { message }
  } else {
    throw invalid('error', 'an Error, a string or { code?, message }', error)
  }
  return Buffer.from(JSON.stringify(value))
}

export function decodeError (id: number, value: Buffer): RecordError {
  try {
    return JSON.parse(value.toString('utf8')) as RecordError
  } catch (cause) {
    throw new EvaqError('EVAQ_CORRUPTION', `The stored error of record ${id} cannot be decoded`, { cause, ids: [id] })
  }
}
export function checkId (value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(name, 'an integer ID from 1 to 2^53-1', value)
  }
  return value
}

/** Validate an ID or a list of IDs; returns them sorted and without duplicates. */
export function checkIds (value: unknown, name: string): number[] {
  if (typeof value === 'number') return [checkId(value, name)]
  if (!Array.isArray(value)) throw invalid(name, 'an ID or an array of IDs', value)
  const ids = value.map((v, i) => checkId(v, `${name}[${i}]`))
  ids.sort((a, b) => a - b)
  return ids.filter((id, i) => i === 0 || ids[i - 1] !== id)
}

export function resolveReadOptions (options: unknown): { from: number, maxBytes: number, maxCount: number } {
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  rejectUnknown(options, ['from', 'maxBytes', 'maxCount'], ' of read()')
  const { from = READ_DEFAULTS.from, maxBytes = READ_DEFAULTS.maxBytes, maxCount = READ_DEFAULTS.maxCount } = options as Record<string, unknown>
  if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 0) throw invalid('from', 'an integer ID from 0 to 2^53-1', from)
  return { from, maxBytes: bound('maxBytes', maxBytes, 0), maxCount: bound('maxCount', maxCount, 1) }
}

/** The signal of a push's options; a push whose signal is already aborted stores nothing. */
export function resolvePushOptions (options: unknown): AbortSignal | undefined {
  if (options === undefined) return undefined
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  rejectUnknown(options, ['signal'], ' of a push')
  const { signal } = options as { signal?: unknown }
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw invalid('signal', 'an AbortSignal', signal)
  if (signal.aborted) throw new EvaqError('EVAQ_ABORTED', 'The push was aborted before it was stored', { cause: signal.reason })
  return signal
}
