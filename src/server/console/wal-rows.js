// @ts-check
/**
 * The rows of the WAL table: each record with where every subscriber stands on it, and marker
 * rows where a subscriber's acknowledged and delivered ranges end.
 *
 * A subscriber's info gives two positions: its ack floor (every ID below it is acknowledged) and
 * its cursor (every ID below it was delivered). A record between the two was delivered and is in
 * flight, or was acknowledged out of order: the info does not say which, and the page does not
 * pretend to know.
 */
import { h } from './dom.js'
import { formatBytes, formatCount, isoTime } from './format.js'
import { payloadCell, rowButton } from './record-rows.js'

/** @typedef {import('./types.js').RecordPreview} RecordPreview */
/** @typedef {import('./types.js').SubscriberInfo} SubscriberInfo */
/** @typedef {import('./types.js').Format} Format */
/** @typedef {'acked' | 'delivered' | 'pending'} Delivery */

/** Columns of the WAL table, for a marker row that spans them. */
const COLUMNS = 6

/**
 * Where `sub` stands on record `id`.
 * @param {number} id
 * @param {SubscriberInfo} sub
 * @returns {Delivery}
 */
export function delivery (id, sub) {
  return id < sub.ackFloor ? 'acked' : id < sub.cursor ? 'delivered' : 'pending'
}

const DELIVERY_TITLES = /** @type {const} */ ({
  acked: 'acknowledged: below the subscriber\'s ack floor',
  delivered: 'delivered: in flight, or acknowledged out of order',
  pending: 'not delivered yet',
})

/**
 * @param {RecordPreview} r
 * @param {readonly SubscriberInfo[]} subs
 * @param {Format} format
 * @param {(action: string, id: number) => void} act
 */
function walRow (r, subs, format, act) {
  return h('tr', { 'data-id': r.id },
    h('th', { scope: 'row', class: 'num', 'data-label': 'ID', 'data-field': 'id' }, String(r.id)),
    h('td', { 'data-label': 'Pushed', 'data-at': r.pushedAt, 'data-kind': 'ago', title: isoTime(r.pushedAt) }),
    h('td', { class: 'num', 'data-label': 'Size', 'data-field': 'size' }, formatBytes(r.size)),
    payloadCell(r, format),
    h('td', { 'data-label': 'Subscribers', 'data-field': 'delivery' }, subs.length === 0
      ? '–'
      : subs.map(s => {
        const state = delivery(r.id, s)
        return h('span', { class: 'chip', 'data-sub': s.name, 'data-state': state, title: `${s.name}: ${DELIVERY_TITLES[state]}` }, `${s.name}: ${state}`)
      })),
    h('td', { class: 'actions-cell' }, rowButton('view', 'View', `WAL record ${r.id}`, r.id, act)))
}

/**
 * The positions of `sub` as marks in the list: its ack floor and its cursor (one mark when they
 * are the same ID).
 * @param {SubscriberInfo} sub
 * @returns {Array<{ id: number, kind: string, text: string }>}
 */
function marks (sub) {
  const inFlight = sub.inFlight > 0 ? ` · ${formatCount(sub.inFlight)} in flight` : ''
  if (sub.cursor <= sub.ackFloor) {
    return [{ id: sub.ackFloor, kind: 'acked', text: `${sub.name}: acked below ID ${sub.ackFloor}, nothing in flight` }]
  }
  return [
    { id: sub.ackFloor, kind: 'acked', text: `${sub.name}: acked below ID ${sub.ackFloor}${inFlight}` },
    { id: sub.cursor, kind: 'delivered', text: `${sub.name}: delivered below ID ${sub.cursor}` },
  ]
}

/**
 * The rows of a page of the WAL, with a marker row before the first record at or above each
 * subscriber's ack floor and cursor. A mark below the ID the page was read from is before the
 * page; one above its last record is after it, unless the page ends the log (then it is at
 * the bottom). `firstId` is the log's first live ID.
 * @param {readonly RecordPreview[]} records
 * @param {readonly SubscriberInfo[]} subs
 * @param {{ from: number, firstId: number, hasMore: boolean, format: Format, act: (action: string, id: number) => void }} page
 * @returns {HTMLTableRowElement[]}
 */
export function walRows (records, subs, { from, firstId, hasMore, format, act }) {
  /** @type {Map<number, HTMLTableRowElement[]>} markers before the record at each index (records.length: after the last) */
  const before = new Map()
  if (records.length > 0) {
    for (const sub of subs) {
      for (const mark of marks(sub)) {
        let at = records.findIndex(r => r.id >= mark.id)
        if (at === -1) {
          if (hasMore) continue
          at = records.length
        }
        // At the top of the page, a mark is there when no record between it and the page's first
        // lies before the page (none lies from `from` on), and records lie below it (else it marks nothing).
        if (at === 0 && (mark.id < from || mark.id <= firstId)) continue
        const row = h('tr', { class: 'marker', 'data-marker': `${sub.name}:${mark.kind}`, 'data-before': records[at]?.id ?? 'end' },
          h('td', { colspan: COLUMNS }, h('span', { 'aria-hidden': 'true' }, '▸ '), mark.text))
        before.set(at, [...(before.get(at) ?? []), row])
      }
    }
  }
  /** @type {HTMLTableRowElement[]} */
  const rows = []
  records.forEach((r, i) => rows.push(...(before.get(i) ?? []), walRow(r, subs, format, act)))
  rows.push(...(before.get(records.length) ?? []))
  return rows
}

/**
 * One line per subscriber of the WAL: its positions, and a button that shows its first
 * unacknowledged record.
 * @param {readonly SubscriberInfo[]} subs
 * @param {(id: number) => void} jump
 */
export function positionItems (subs, jump) {
  return subs.map(s => h('li', { 'data-position': s.name },
    h('strong', {}, s.name), ': ',
    `acked below ID ${s.ackFloor} · delivered below ID ${s.cursor} · ${formatCount(s.inFlight)} in flight · lag ${formatCount(s.lagRecords)} `,
    h('button', {
      type: 'button',
      class: 'link',
      'data-jump': s.name,
      'aria-label': `Show ${s.name}'s first unacknowledged record`,
      onclick: () => jump(s.ackFloor),
    }, 'Show')))
}
