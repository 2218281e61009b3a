// @ts-check
/** Formatting of sizes, times, rates and payload previews. Pure functions, no DOM. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** @param {number} n */
export function formatCount (n) {
  return n.toLocaleString('en-US')
}

/** @param {number} bytes */
export function formatBytes (bytes) {
  let v = bytes
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`
}

/**
 * A duration in ms, short: `0s`, `42s`, `3m 5s`, `2h 10m`, `4d 3h`.
 * @param {number} ms
 */
export function formatDuration (ms) {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${s % 60}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${m % 60}m`
  return `${Math.floor(h / 24)}d ${h % 24}h`
}

/**
 * How long ago `at` was, at `now`.
 * @param {number} at
 * @param {number} now
 */
export function ago (at, now) {
  return `${formatDuration(now - at)} ago`
}

/**
 * When `at` comes, from `now`: `in 3m 5s`, or `due` once it passed.
 * @param {number} at
 * @param {number} now
 */
export function until (at, now) {
  return at <= now ? 'due' : `in ${formatDuration(at - now)}`
}

/** @param {number} at */
export function isoTime (at) {
  return new Date(at).toISOString()
}

/**
 * Records per second, 1 decimal under 10.
 * @param {number | undefined} perSecond
 */
export function formatRate (perSecond) {
  if (perSecond === undefined) return '–'
  return `${perSecond < 10 ? perSecond.toFixed(1) : formatCount(Math.round(perSecond))}/s`
}

/** @param {string} base64 */
export function decodeBase64 (base64) {
  const bin = atob(base64)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

const decoder = new TextDecoder('utf-8', { fatal: false })

/**
 * Bytes as text: UTF-8 (invalid sequences as U+FFFD), control characters but tab and newline as
 * `·`, so that a binary payload cannot rearrange the page or the terminal it is copied into.
 * @param {Uint8Array} bytes
 * @param {boolean} oneLine newlines as `⏎`
 */
export function asText (bytes, oneLine) {
  // eslint-disable-next-line no-control-regex
  const text = decoder.decode(bytes).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '·')
  return oneLine ? text.replace(/\r?\n/g, '⏎').replace(/\t/g, ' ') : text
}

/**
 * Bytes as hex: one line of pairs, or (`dump`) lines of 16 with the offset and the printable ASCII.
 * @param {Uint8Array} bytes
 * @param {boolean} dump
 */
export function asHex (bytes, dump) {
  /** @param {number} b */
  const hex = b => b.toString(16).padStart(2, '0')
  if (!dump) return Array.from(bytes, hex).join(' ')
  const lines = []
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.subarray(i, i + 16)
    const ascii = Array.from(row, b => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('')
    lines.push(`${i.toString(16).padStart(8, '0')}  ${Array.from(row, hex).join(' ').padEnd(47)}  ${ascii}`)
  }
  return lines.join('\n')
}

/**
 * Bytes as JSON, compact or indented; `undefined` when they are not (or, cut short, not yet) JSON.
 * @param {Uint8Array} bytes
 * @param {boolean} pretty
 * @returns {string | undefined}
 */
export function asJson (bytes, pretty) {
  try {
    return JSON.stringify(JSON.parse(decoder.decode(bytes)), null, pretty ? 2 : undefined)
  } catch {
    return undefined
  }
}

/**
 * A payload preview in a format, for a table cell (one line, `cut` characters at most) or in full.
 * @param {Uint8Array} bytes the preview bytes
 * @param {'text' | 'hex' | 'json'} format
 * @param {boolean} truncated whether the payload is longer than `bytes`
 * @param {number} [cut] characters of a one-line preview
 * @returns {{ text: string, note?: string }}
 */
export function preview (bytes, format, truncated, cut) {
  const oneLine = cut !== undefined
  /** @param {string} s */
  const clip = s => (oneLine && s.length > cut ? `${s.slice(0, cut - 1)}…` : s)
  if (format === 'hex') return { text: clip(asHex(bytes, !oneLine)) }
  if (format === 'json') {
    const json = asJson(bytes, !oneLine)
    if (json !== undefined) return { text: clip(json) }
    return { text: clip(asText(bytes, oneLine)), note: truncated ? 'cut short: not all of it is here to parse' : 'not JSON' }
  }
  return { text: clip(asText(bytes, oneLine)) }
}

/** How the page names each log. */
export const LOG_LABELS = Object.freeze(/** @type {const} */ ({ wal: 'WAL', dlq: 'DLQ', parked: 'Parked' }))

/**
 * @param {string} s
 * @param {number} n
 */
export function clip (s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s
}
