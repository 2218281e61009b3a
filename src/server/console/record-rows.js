// @ts-check
/** The rows of the DLQ and parked tables, and the fields of the record dialog. */
import { h, setText } from './dom.js'
import { ago, asText, clip, decodeBase64, formatBytes, formatCount, isoTime, LOG_LABELS, preview, until } from './format.js'

/** @typedef {import('./types.js').RecordPreview} RecordPreview */
/** @typedef {import('./types.js').LogName} LogName */
/** @typedef {import('./types.js').Format} Format */

/**
 * A button of a record's row, keyed so that the keyboard can find its way back after a redraw.
 * @param {string} action
 * @param {string} label
 * @param {string} what the record, for screen readers
 * @param {number} id
 * @param {(action: string, id: number) => void} act
 * @param {string} [cls]
 */
export function rowButton (action, label, what, id, act, cls) {
  return h('button', {
    type: 'button',
    class: cls,
    'data-action': action,
    'data-key': `${action}:${id}`,
    'aria-label': `${label} ${what}`,
    onclick: () => act(action, id),
  }, label)
}

/**
 * The payload cell of a row: a one-line preview in `format`.
 * @param {RecordPreview} r
 * @param {Format} format
 */
export function payloadCell (r, format) {
  const bytes = decodeBase64(r.preview)
  const shown = preview(bytes, format, r.size > bytes.length, 96)
  return h('td', { class: 'payload-cell', 'data-label': 'Payload', 'data-field': 'payload' },
    h('code', {}, shown.text), shown.note === undefined ? null : h('span', { class: 'note' }, ` (${shown.note})`))
}

/**
 * A row of the DLQ or parked table.
 * @param {RecordPreview} r
 * @param {'dlq' | 'parked'} log
 * @param {Format} format
 * @param {(action: string, id: number) => void} act
 */
export function retryRow (r, log, format, act) {
  const retry = r.retry ?? {}
  const lastError = retry.lastError ?? r.error
  const time = log === 'dlq' ? (retry.lastFailedAt ?? r.pushedAt) : (retry.parkedAt ?? r.pushedAt)
  const what = `${LOG_LABELS[log]} record ${r.id}`
  return h('tr', { 'data-id': r.id },
    h('th', { scope: 'row', class: 'num', 'data-label': 'ID', 'data-field': 'id' }, String(r.id)),
    h('td', { 'data-label': log === 'dlq' ? 'Failed' : 'Parked', 'data-at': time, 'data-kind': 'ago', title: isoTime(time) }),
    h('td', { class: 'num', 'data-label': 'Size', 'data-field': 'size' }, formatBytes(r.size)),
    payloadCell(r, format),
    h('td', { class: 'num', 'data-label': 'Attempts', 'data-field': 'attempts' }, retry.attempts === undefined ? '–' : String(retry.attempts)),
    h('td', { class: 'error-cell', 'data-label': 'Last error', 'data-field': 'error', title: lastError?.message ?? '' },
      lastError === undefined ? '–' : [lastError.code === undefined ? null : h('strong', {}, lastError.code, ' '), clip(lastError.message, 120)]),
    log === 'dlq'
      ? h('td', {
        'data-label': 'Next attempt',
        'data-field': 'next',
        ...(retry.nextAttemptAt === undefined ? {} : { 'data-at': retry.nextAttemptAt, 'data-kind': 'until', title: isoTime(retry.nextAttemptAt) }),
      }, retry.nextAttemptAt === undefined ? '–' : '')
      : h('td', { 'data-label': 'Reason', 'data-field': 'reason' }, retry.reason ?? '–'),
    h('td', { class: 'actions-cell' },
      rowButton('view', 'View', what, r.id, act),
      rowButton('requeue', 'Requeue', what, r.id, act, 'warn'),
      rowButton('purge', 'Purge', what, r.id, act, 'danger')))
}

/**
 * The fields of the record dialog: what the record is and its retry state.
 * @param {RecordPreview} r
 * @param {LogName} log
 * @param {number} t the service's clock now
 * @returns {Array<[string, string]>}
 */
export function recordFields (r, log, t) {
  const retry = r.retry ?? {}
  const lastError = retry.lastError ?? r.error
  /** @type {Array<[string, string]>} */
  const fields = [
    ['Log', LOG_LABELS[log]],
    ['ID', String(r.id)],
    ['Pushed', `${isoTime(r.pushedAt)} (${ago(r.pushedAt, t)})`],
    ['Size', `${formatBytes(r.size)} (${formatCount(r.size)} bytes)`],
  ]
  if (retry.attempts !== undefined) fields.push(['Attempts', String(retry.attempts)])
  if (retry.firstFailedAt !== undefined) fields.push(['First failed', isoTime(retry.firstFailedAt)])
  if (retry.lastFailedAt !== undefined) fields.push(['Last failed', isoTime(retry.lastFailedAt)])
  if (lastError !== undefined) fields.push(['Last error', `${lastError.code === undefined ? '' : `${lastError.code}: `}${lastError.message}`])
  if (retry.nextAttemptAt !== undefined) fields.push(['Next attempt', `${isoTime(retry.nextAttemptAt)} (${until(retry.nextAttemptAt, t)})`])
  if (retry.parkedAt !== undefined) fields.push(['Parked', `${isoTime(retry.parkedAt)} (${retry.reason ?? ''})`])
  if (retry.dlqId !== undefined) fields.push(['DLQ ID', String(retry.dlqId)])
  if (retry.source !== undefined) fields.push(['Came from', `${retry.source.log} record ${retry.source.id}`])
  return fields
}

/**
 * Show only the rows of `table` whose record's payload, as text (all the bytes the page has of
 * it), contains `find` (lower case; '' shows every row). The page only: the service is not searched.
 * @param {HTMLTableElement} table
 * @param {readonly RecordPreview[]} records
 * @param {string} find
 * @returns {number} the records shown
 */
export function filterRows (table, records, find) {
  const texts = new Map(records.map(r => [String(r.id), find === '' ? '' : asText(decodeBase64(r.preview), true).toLowerCase()]))
  let shown = 0
  for (const row of table.tBodies[0]?.rows ?? []) {
    const text = row.dataset.id === undefined ? undefined : texts.get(row.dataset.id)
    if (text === undefined) continue
    row.hidden = !text.includes(find)
    if (!row.hidden) shown++
  }
  return shown
}

/**
 * Relative times change on every poll; they are updated in place, so rows are not redrawn for them.
 * @param {number} t the service's clock now
 */
export function tickTimes (t) {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-at]'))) {
    const at = Number(el.dataset.at)
    setText(el, el.dataset.kind === 'until' ? until(at, t) : ago(at, t))
  }
}
