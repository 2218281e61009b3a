import { isUtf8 } from 'node:buffer'
import { EvaqError } from '../errors.js'

/**
 * Request bodies of `POST /v1/logs/:log/records`, each a list of payloads:
 * - a raw body (`application/octet-stream`, `text/plain`) is one record, byte for byte;
 * - `application/x-ndjson`: each line is one record (the line's bytes, without its `\n` or
 *   `\r\n`); every line must be a JSON value, blank lines are skipped;
 * - `application/json`: an array of base64 strings, one record each.
 */

export const RAW_TYPES = ['application/octet-stream', 'text/plain'] as const
export const NDJSON_TYPE = 'application/x-ndjson'
/** Every type the push route takes, as a 415 answer lists them. */
export const PUSH_TYPES = [...RAW_TYPES, NDJSON_TYPE, 'application/json'] as const

/** Payloads of an NDJSON body; EVAQ_INVALID_ARGUMENT names the first line that is not JSON. */
export function ndjsonPayloads (body: Buffer): Buffer[] {
  if (!isUtf8(body)) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected an NDJSON body in UTF-8')
  const out: Buffer[] = []
  let line = 0
  for (let start = 0; start < body.length; line++) {
    let end = body.indexOf(0x0a, start)
    if (end === -1) end = body.length
    const next = end + 1
    if (end > start && body[end - 1] === 0x0d) end--
    const text = body.toString('utf8', start, end)
    if (text.trim() !== '') {
      try {
        JSON.parse(text)
      } catch {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected line ${line + 1} of the NDJSON body to be JSON, got \`${text.slice(0, 40)}\``)
      }
      out.push(body.subarray(start, end))
    }
    start = next
  }
  return out
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** Payloads of a JSON body: it must be an array of base64 strings (padded, standard alphabet). */
export function base64Payloads (body: unknown): Buffer[] {
  if (!Array.isArray(body)) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected a JSON body to be an array of base64 strings (send one raw record as application/octet-stream)')
  }
  return body.map((item, i) => {
    if (typeof item !== 'string' || !BASE64.test(item)) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected item ${i} of the JSON array to be a base64 string`)
    }
    return Buffer.from(item, 'base64')
  })
}
