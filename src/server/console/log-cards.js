// @ts-check
/** The overview's parts: a log's card (its numbers and rate chart) and a subscriber's row. */
import { rateChart } from './chart.js'
import { h } from './dom.js'
import { ago, formatBytes, formatCount, formatDuration, isoTime, LOG_LABELS } from './format.js'

/** @typedef {import('./types.js').LogName} LogName */
/** @typedef {import('./types.js').SubscriberInfo} SubscriberInfo */

/**
 * A log's card, empty: its fields and chart are filled on every poll.
 * @param {LogName} name
 */
export function logCard (name) {
  /** @param {string} key */
  const value = key => h('dd', { 'data-field': key })
  const fields = {
    count: value('count'),
    bytes: value('bytes'),
    oldest: value('oldest'),
    push: value('push'),
    drain: value('drain'),
    ids: h('span', { 'data-field': 'ids' }),
    extra: h('span', { 'data-field': 'extra', class: 'warn-text' }),
  }
  const chart = rateChart(`${LOG_LABELS[name]} push and drain rate`)
  const card = h('article', { class: 'card', 'data-testid': `log-${name}`, 'aria-labelledby': `log-${name}-h` },
    h('h3', { id: `log-${name}-h` }, LOG_LABELS[name], ' ', h('span', { class: 'muted small' }, fields.ids), ' ', fields.extra),
    h('dl', { class: 'stats' },
      h('div', {}, h('dt', {}, 'Depth'), fields.count),
      h('div', {}, h('dt', {}, 'Bytes'), fields.bytes),
      h('div', {}, h('dt', {}, 'Oldest'), fields.oldest),
      h('div', {}, h('dt', {}, h('span', { class: 'key push' }), 'Push'), fields.push),
      h('div', {}, h('dt', {}, h('span', { class: 'key drain' }), 'Drain'), fields.drain)),
    chart)
  return { card, fields, chart }
}

/**
 * A row of the subscribers table.
 * @param {SubscriberInfo & { log: LogName }} r
 * @param {number} t the service's clock now
 */
export function subscriberRow (r, t) {
  return h('tr', { 'data-subscriber': `${r.log}/${r.name}` },
    h('td', { 'data-label': 'Log' }, LOG_LABELS[r.log]),
    h('th', { scope: 'row', 'data-label': 'Name' }, r.name),
    h('td', { class: 'num', 'data-label': 'Lag', 'data-field': 'lag' }, formatCount(r.lagRecords)),
    h('td', { class: 'num', 'data-label': 'Lag bytes' }, formatBytes(r.lagBytes)),
    h('td', { class: 'num', 'data-label': 'In flight' }, formatCount(r.inFlight)),
    h('td', { 'data-label': 'Oldest unacked' }, r.oldestUnackedAgeMs === 0 ? '–' : formatDuration(r.oldestUnackedAgeMs)),
    h('td', { 'data-label': 'Last active', title: isoTime(r.lastActiveAt) }, ago(r.lastActiveAt, t)))
}
