// @ts-check
/**
 * The operator console: polls `/v1/overview` and the shown page of records, and renders them.
 *
 * Polling, not server-sent events: EventSource cannot send an Authorization header, so SSE would
 * need the token in the URL (and so in proxy and access logs); one small request every few
 * seconds costs the service nothing worth saving. Rates come from two polls: the records pushed
 * are the growth of `nextId` (IDs are never reused), the records that left are those pushed less
 * the growth of `count`, both over the service's own clock (`now`).
 */
import { Api, ApiError, storedToken, storeToken } from './api.js'
import { drawRates, rateChart } from './chart.js'
import { byId, byIdAs, h, setText } from './dom.js'
import { ago, decodeBase64, formatBytes, formatCount, formatDuration, formatRate, isoTime, preview, until } from './format.js'

/** @typedef {'wal' | 'dlq' | 'parked'} LogName */
/** @typedef {'text' | 'hex' | 'json'} Format */
/**
 * @typedef {object} LogOverview
 * @property {LogName} name
 * @property {number} count
 * @property {number} bytes
 * @property {number} [firstId]
 * @property {number} [lastId]
 * @property {number} nextId
 * @property {number} [oldestPushedAt]
 * @property {number} oldestAgeMs
 * @property {{ records: number, bytes: number }} dropped
 * @property {number} quarantined
 * @property {Array<{ name: string, lagRecords: number, lagBytes: number, inFlight: number, oldestUnackedAgeMs: number, lastActiveAt: number }>} subscribers
 */
/**
 * @typedef {object} Overview
 * @property {string} status
 * @property {number} now
 * @property {{ usedBytes: number, maxDiskBytes?: number, full: boolean }} disk
 * @property {LogOverview[]} logs
 */
/**
 * @typedef {object} RetryInfo
 * @property {number} [attempts]
 * @property {number} [firstFailedAt]
 * @property {number} [lastFailedAt]
 * @property {{ code?: string, message: string }} [lastError]
 * @property {number} [nextAttemptAt]
 * @property {number} [parkedAt]
 * @property {string} [reason]
 * @property {number} [dlqId]
 * @property {{ log: string, id: number }} [source]
 */
/**
 * @typedef {object} RateSample records pushed and leaving between two polls, and per second
 * @property {number} push
 * @property {number} drain
 * @property {number} pushed
 * @property {number} left records that left (negative when a push in flight at the poll before committed since)
 * @property {number} seconds
 * @property {number} at the service's clock at the later poll
 */
/**
 * @typedef {object} RecordPreview
 * @property {number} id
 * @property {number} pushedAt
 * @property {number} size
 * @property {string} preview base64
 * @property {{ code?: string, message: string }} [error]
 * @property {RetryInfo} [retry]
 */

const PAGE_SIZE = 20
/** Bytes of each payload a page brings: enough for a one-line preview. */
const ROW_PREVIEW_BYTES = 256
/** Bytes of a payload the record dialog shows. */
const FULL_PREVIEW_BYTES = 64 * 1024
/** Rate samples a chart keeps. */
const SAMPLES = 60
/** The span of the rates shown as numbers, in ms of the service's clock. */
const RATE_WINDOW_MS = 10_000
const LABELS = /** @type {const} */ ({ wal: 'WAL', dlq: 'DLQ', parked: 'Parked' })
const params = new URLSearchParams(location.search)
/** `?refresh=MS` sets the polling interval (at least 200 ms). */
const INTERVAL_MS = Math.max(200, Number(params.get('refresh')) || 2000)

const api = new Api(storedToken())
const state = {
  live: true,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
  /** @type {Promise<void> | undefined} */
  loading: undefined,
  /** @type {Promise<void> | undefined} */
  queued: undefined,
  /** Waiting for a token: no polling until one is accepted. */
  locked: false,
  /** The service's clock less ours, from the last overview. */
  clockOffset: 0,
  /** @type {Overview | undefined} */
  overview: undefined,
  /** Per log: the last counters, the rate samples, and the records seen pushed and leaving since the page loaded. */
  /** @type {Map<string, { last?: { now: number, nextId: number, count: number }, rates: RateSample[], pushed: number, drained: number }>} */
  history: new Map(),
  /** @type {Map<string, { card: HTMLElement, fields: Record<string, HTMLElement>, chart: SVGSVGElement }>} */
  cards: new Map(),
  subsSignature: '',
  /** @type {Format} */
  format: 'text',
  view: {
    /** @type {'dlq' | 'parked'} */
    log: 'dlq',
    /** First IDs of the pages walked through; the last is the page shown. */
    stack: [0],
    /** @type {RecordPreview[]} */
    records: [],
    hasMore: false,
    signature: '',
  },
}

const now = () => Date.now() + state.clockOffset

// ---- loading ------------------------------------------------------------------------------------

/**
 * Load the overview and the shown page, one load at a time: a call during a load gets one more
 * load after it (what an action changed is in that one), shared by every call meanwhile.
 * @returns {Promise<void>}
 */
function refresh () {
  if (state.loading !== undefined) {
    state.queued ??= state.loading.then(() => {
      state.queued = undefined
      return refresh()
    })
    return state.queued
  }
  const main = document.querySelector('main')
  main?.setAttribute('aria-busy', 'true')
  state.loading = load().finally(() => {
    state.loading = undefined
    main?.removeAttribute('aria-busy')
  })
  return state.loading
}

async function load () {
  try {
    const overview = /** @type {Overview} */ (await api.get('/v1/overview'))
    renderOverview(overview)
    await loadRecords()
    byId('banner').hidden = true
    setText(byId('updated'), `updated ${new Date().toLocaleTimeString()}`)
    // Loads completed, for anyone who waits for the page to catch up (the browser tests do).
    document.body.dataset.loads = String(Number(document.body.dataset.loads ?? 0) + 1)
  } catch (err) {
    failed(err)
  }
}

async function loadRecords () {
  const view = state.view
  const log = view.log
  const from = view.stack[view.stack.length - 1] ?? 0
  const answer = await api.get(`/v1/logs/${log}/previews?from=${from}&maxCount=${PAGE_SIZE + 1}&previewBytes=${ROW_PREVIEW_BYTES}`)
  // The user switched logs or pages meanwhile: that load shows its own answer.
  if (view.log !== log || view.stack[view.stack.length - 1] !== from) return
  /** @type {RecordPreview[]} */
  const records = answer.records
  if (records.length === 0 && view.stack.length > 1) {
    // The page emptied (its records were requeued or purged): show the one before.
    view.stack.pop()
    return loadRecords()
  }
  view.hasMore = records.length > PAGE_SIZE
  view.records = records.slice(0, PAGE_SIZE)
  renderRecords()
}

/** @param {unknown} err */
function failed (err) {
  if (err instanceof ApiError && err.code === 'EVAQ_UNAUTHORIZED') {
    lock()
    return
  }
  const banner = byId('banner')
  banner.hidden = false
  setText(banner, err instanceof ApiError
    ? `The service answered ${err.status} ${err.code}: ${err.message}`
    : `Cannot reach the service (${err instanceof Error ? err.message : String(err)}); retrying.`)
}

function schedule () {
  clearTimeout(state.timer)
  state.timer = undefined
  if (!state.live || state.locked) return
  state.timer = setTimeout(() => { refresh().then(schedule, schedule) }, INTERVAL_MS)
}

function refreshNow () {
  return refresh().then(schedule)
}

// ---- the token ----------------------------------------------------------------------------------

function lock () {
  state.locked = true
  clearTimeout(state.timer)
  setText(byId('status'), 'token needed')
  byId('status').dataset.state = 'locked'
  byId('signin').hidden = false
  byId('signout').hidden = true
  openTokenDialog(api.token !== undefined)
}

/** @param {boolean} refused whether the token the page had was refused */
function openTokenDialog (refused) {
  const dialog = byIdAs('token-dialog', HTMLDialogElement)
  const error = byId('token-error')
  error.hidden = !refused
  if (refused) setText(error, 'The stored token was refused (EVAQ_UNAUTHORIZED). Enter the current one.')
  if (!dialog.open) showModal(dialog)
  byIdAs('token-input', HTMLInputElement).focus()
}

async function submitToken () {
  const input = byIdAs('token-input', HTMLInputElement)
  const error = byId('token-error')
  const token = input.value.trim()
  if (token === '') return
  const submit = byIdAs('token-submit', HTMLButtonElement)
  submit.disabled = true
  try {
    await api.get('/v1/overview', token)
  } catch (err) {
    error.hidden = false
    setText(error, err instanceof ApiError && err.code === 'EVAQ_UNAUTHORIZED'
      ? 'That token was refused (EVAQ_UNAUTHORIZED).'
      : `Cannot check the token: ${err instanceof Error ? err.message : String(err)}`)
    input.select()
    return
  } finally {
    submit.disabled = false
  }
  api.token = token
  storeToken(token)
  input.value = ''
  error.hidden = true
  state.locked = false
  byId('signin').hidden = true
  byId('signout').hidden = false
  byIdAs('token-dialog', HTMLDialogElement).close()
  await refreshNow()
}

function forgetToken () {
  api.token = undefined
  storeToken(undefined)
  byId('signout').hidden = true
  notice('The token is forgotten in this tab.')
  void refreshNow()
}

// ---- the overview -------------------------------------------------------------------------------

/** @param {Overview} overview */
function renderOverview (overview) {
  state.overview = overview
  state.clockOffset = overview.now - Date.now()
  const status = byId('status')
  setText(status, overview.status)
  status.dataset.state = overview.status
  const disk = overview.disk
  const budget = disk.maxDiskBytes === undefined ? '' : ` of ${formatBytes(disk.maxDiskBytes)}`
  setText(byId('disk'), `disk ${formatBytes(disk.usedBytes)}${budget}${disk.full ? ' · full' : ''}`)
  if (api.token !== undefined) byId('signout').hidden = false

  for (const log of overview.logs) {
    const card = cardOf(log.name)
    const history = state.history.get(log.name) ?? { rates: [], pushed: 0, drained: 0 }
    state.history.set(log.name, history)
    const last = history.last
    if (last !== undefined && overview.now > last.now) {
      const seconds = (overview.now - last.now) / 1000
      const pushed = Math.max(0, log.nextId - last.nextId)
      // Signed: a push in flight at a poll has its IDs but is not counted yet, so it reads as
      // records leaving, and the next poll takes them back. The totals stay exact; what is drawn
      // and shown is clamped at 0.
      const left = pushed - (log.count - last.count)
      history.rates.push({ push: pushed / seconds, drain: Math.max(0, left) / seconds, pushed, left, seconds, at: overview.now })
      history.pushed += pushed
      history.drained += left
      if (history.rates.length > SAMPLES) history.rates.shift()
    }
    history.last = { now: overview.now, nextId: log.nextId, count: log.count }
    const rate = recentRate(history.rates, overview.now)
    const f = card.fields
    setText(f.count, formatCount(log.count))
    setText(f.bytes, formatBytes(log.bytes))
    setText(f.oldest, log.count === 0 ? '–' : formatDuration(log.oldestAgeMs))
    if (log.oldestPushedAt !== undefined) f.oldest.title = isoTime(log.oldestPushedAt)
    setText(f.push, formatRate(rate?.push))
    setText(f.drain, formatRate(rate?.drain))
    setText(f.ids, log.firstId === undefined ? `next ID ${log.nextId}` : `IDs ${log.firstId}–${log.lastId}`)
    setText(f.extra, [
      log.dropped.records > 0 ? `${formatCount(log.dropped.records)} dropped` : '',
      log.quarantined > 0 ? `${formatCount(log.quarantined)} quarantined` : '',
    ].filter(Boolean).join(' · '))
    drawRates(card.chart, history.rates, SAMPLES)
    card.card.dataset.pushed = String(history.pushed)
    card.card.dataset.drained = String(history.drained)
    card.chart.setAttribute('aria-label', `${LABELS[log.name]} push and drain rate over the last ${history.rates.length} samples: ` +
      `now ${formatRate(rate?.push)} pushed, ${formatRate(rate?.drain)} drained`)
    if (log.name !== 'wal') setText(byId(`count-${log.name}`), formatCount(log.count))
  }
  renderSubscribers(overview)
  updateBulkButtons()
}

/**
 * The rates shown as numbers: records over the samples of the last {@link RATE_WINDOW_MS} (at
 * least the latest), so that one quiet poll between two bursts does not read as a stop.
 * @param {readonly RateSample[]} samples
 * @param {number} at
 * @returns {{ push: number, drain: number } | undefined}
 */
function recentRate (samples, at) {
  let pushed = 0
  let left = 0
  let seconds = 0
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = /** @type {RateSample} */ (samples[i])
    if (seconds > 0 && at - s.at >= RATE_WINDOW_MS) break
    pushed += s.pushed
    left += s.left
    seconds += s.seconds
  }
  return seconds === 0 ? undefined : { push: pushed / seconds, drain: Math.max(0, left) / seconds }
}

/** @param {LogName} name */
function cardOf (name) {
  const existing = state.cards.get(name)
  if (existing !== undefined) return existing
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
  const chart = rateChart(`${LABELS[name]} push and drain rate`)
  const card = h('article', { class: 'card', 'data-testid': `log-${name}`, 'aria-labelledby': `log-${name}-h` },
    h('h3', { id: `log-${name}-h` }, LABELS[name], ' ', h('span', { class: 'muted small' }, fields.ids), ' ', fields.extra),
    h('dl', { class: 'stats' },
      h('div', {}, h('dt', {}, 'Depth'), fields.count),
      h('div', {}, h('dt', {}, 'Bytes'), fields.bytes),
      h('div', {}, h('dt', {}, 'Oldest'), fields.oldest),
      h('div', {}, h('dt', {}, h('span', { class: 'key push' }), 'Push'), fields.push),
      h('div', {}, h('dt', {}, h('span', { class: 'key drain' }), 'Drain'), fields.drain)),
    chart)
  byId('logs').appendChild(card)
  const entry = { card, fields, chart }
  state.cards.set(name, entry)
  return entry
}

/** @param {Overview} overview */
function renderSubscribers (overview) {
  const rows = overview.logs.flatMap(l => l.subscribers.map(s => ({ log: l.name, ...s })))
  const table = byIdAs('subs', HTMLTableElement)
  table.hidden = rows.length === 0
  byId('subs-empty').hidden = rows.length > 0
  const t = now()
  const signature = JSON.stringify(rows.map(r => [
    r.log,
    r.name,
    r.lagRecords,
    r.lagBytes,
    r.inFlight,
    Math.floor(r.oldestUnackedAgeMs / 1000),
    Math.floor((t - r.lastActiveAt) / 1000),
  ]))
  if (signature === state.subsSignature) return
  state.subsSignature = signature
  const body = table.tBodies[0]
  if (body === undefined) return
  body.replaceChildren(...rows.map(r => h('tr', { 'data-subscriber': `${r.log}/${r.name}` },
    h('td', { 'data-label': 'Log' }, LABELS[r.log]),
    h('th', { scope: 'row', 'data-label': 'Name' }, r.name),
    h('td', { class: 'num', 'data-label': 'Lag', 'data-field': 'lag' }, formatCount(r.lagRecords)),
    h('td', { class: 'num', 'data-label': 'Lag bytes' }, formatBytes(r.lagBytes)),
    h('td', { class: 'num', 'data-label': 'In flight' }, formatCount(r.inFlight)),
    h('td', { 'data-label': 'Oldest unacked' }, r.oldestUnackedAgeMs === 0 ? '–' : formatDuration(r.oldestUnackedAgeMs)),
    h('td', { 'data-label': 'Last active', title: isoTime(r.lastActiveAt) }, ago(r.lastActiveAt, t)))))
}

// ---- records ------------------------------------------------------------------------------------

function renderRecords () {
  const view = state.view
  const signature = JSON.stringify([view.log, state.format, view.hasMore, view.stack.length, view.records])
  if (signature !== view.signature) {
    view.signature = signature
    drawRecordRows()
  }
  tickTimes()
  const count = state.overview?.logs.find(l => l.name === view.log)?.count ?? 0
  const first = view.records[0]
  const last = view.records[view.records.length - 1]
  setText(byId('page'), first === undefined || last === undefined
    ? ''
    : `Page ${view.stack.length} · IDs ${first.id}–${last.id} · ${formatCount(count)} ${view.log === 'dlq' ? 'in the DLQ' : 'parked'}`)
  byIdAs('prev', HTMLButtonElement).disabled = view.stack.length <= 1
  byIdAs('next', HTMLButtonElement).disabled = !view.hasMore
  byId('records-empty').hidden = view.records.length > 0
  setText(byId('records-empty'), view.log === 'dlq' ? 'The DLQ is empty.' : 'Nothing is parked.')
}

function drawRecordRows () {
  const view = state.view
  const table = byIdAs('records-table', HTMLTableElement)
  const body = table.tBodies[0]
  if (body === undefined) return
  // Keep the keyboard where it was across a redraw: the same button, or the same action one row on.
  const active = document.activeElement instanceof HTMLElement && body.contains(document.activeElement) ? document.activeElement : undefined
  const activeKey = active?.dataset.key
  const activeAction = active?.dataset.action
  const activeRow = active === undefined ? -1 : [...body.rows].findIndex(r => r.contains(active))

  setText(byId('records-caption'), `${LABELS[view.log]} records`)
  setText(byId('col-time'), view.log === 'dlq' ? 'Failed' : 'Parked')
  setText(byId('col-next'), view.log === 'dlq' ? 'Next attempt' : 'Reason')
  body.replaceChildren(...view.records.map(recordRow))

  if (activeKey !== undefined) {
    /** @type {HTMLElement | null} */
    let target = body.querySelector(`[data-key="${CSS.escape(activeKey)}"]`)
    if (target === null && activeAction !== undefined) {
      const rows = [...body.rows]
      const row = rows[Math.min(activeRow, rows.length - 1)]
      target = row?.querySelector(`[data-action="${CSS.escape(activeAction)}"]`) ?? null
    }
    ;(target ?? byId('records-h')).focus()
  }
}

/** @param {RecordPreview} r */
function recordRow (r) {
  const log = state.view.log
  const retry = r.retry ?? {}
  const lastError = retry.lastError ?? r.error
  const bytes = decodeBase64(r.preview)
  const shown = preview(bytes, state.format, r.size > bytes.length, 96)
  const time = log === 'dlq' ? (retry.lastFailedAt ?? r.pushedAt) : (retry.parkedAt ?? r.pushedAt)
  /**
   * @param {string} action
   * @param {string} label
   * @param {string} what
   * @param {string} [cls]
   */
  const button = (action, label, what, cls) => h('button', {
    type: 'button',
    class: cls,
    'data-action': action,
    'data-key': `${action}:${r.id}`,
    'aria-label': `${label} ${what}`,
    onclick: () => act(action, r.id),
  }, label)
  const what = `${LABELS[log]} record ${r.id}`
  return h('tr', { 'data-id': r.id },
    h('th', { scope: 'row', class: 'num', 'data-label': 'ID', 'data-field': 'id' }, String(r.id)),
    h('td', { 'data-label': log === 'dlq' ? 'Failed' : 'Parked', 'data-at': time, 'data-kind': 'ago', title: isoTime(time) }),
    h('td', { class: 'num', 'data-label': 'Size', 'data-field': 'size' }, formatBytes(r.size)),
    h('td', { class: 'payload-cell', 'data-label': 'Payload', 'data-field': 'payload' },
      h('code', {}, shown.text), shown.note === undefined ? null : h('span', { class: 'note' }, ` (${shown.note})`)),
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
      button('view', 'View', what),
      button('requeue', 'Requeue', what, 'warn'),
      button('purge', 'Purge', what, 'danger')))
}

/** Relative times change on every poll; they are updated in place, so rows are not redrawn for them. */
function tickTimes () {
  const t = now()
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-at]'))) {
    const at = Number(el.dataset.at)
    setText(el, el.dataset.kind === 'until' ? until(at, t) : ago(at, t))
  }
}

/**
 * @param {string} s
 * @param {number} n
 */
function clip (s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s
}

function updateBulkButtons () {
  const log = state.view.log
  const count = state.overview?.logs.find(l => l.name === log)?.count ?? 0
  const requeue = byIdAs('requeue-all', HTMLButtonElement)
  const purge = byIdAs('purge-all', HTMLButtonElement)
  setText(requeue, log === 'dlq' ? 'Requeue all' : 'Requeue all parked')
  setText(purge, 'Purge all')
  requeue.disabled = count === 0
  purge.disabled = count === 0
}

/** @param {'dlq' | 'parked'} log */
function showLog (log) {
  if (state.view.log === log) return
  state.view = { log, stack: [0], records: [], hasMore: false, signature: '' }
  for (const b of document.querySelectorAll('[data-log]')) b.setAttribute('aria-pressed', String(b.getAttribute('data-log') === log))
  updateBulkButtons()
  renderRecords()
  void refreshNow()
}

/** @param {1 | -1} direction */
function turnPage (direction) {
  const view = state.view
  if (direction === 1) {
    const last = view.records[view.records.length - 1]
    if (!view.hasMore || last === undefined) return
    view.stack.push(last.id + 1)
  } else {
    if (view.stack.length <= 1) return
    view.stack.pop()
  }
  void refreshNow()
}

// ---- actions ------------------------------------------------------------------------------------

/**
 * @param {string} action
 * @param {number} id
 */
async function act (action, id) {
  const log = state.view.log
  const what = `${LABELS[log]} record ${id}`
  if (action === 'view') return viewRecord(log, id)
  const ok = action === 'requeue'
    ? await confirmAction(`Requeue ${what}?`,
      log === 'dlq' ? 'It is pushed to the WAL as a new record and leaves the DLQ.' : 'It goes back to the DLQ, due now, with its attempts reset.',
      'Requeue')
    : await confirmAction(`Purge ${what}?`, 'It is deleted for good.', 'Purge')
  if (!ok) return
  await run(async () => {
    if (action === 'requeue') {
      const { ids } = await api.post(`/v1/${log}/requeue`, { ids: [id] })
      notice(`Requeued ${what}: now ${log === 'dlq' ? 'WAL' : 'DLQ'} record ${ids[0]}.`)
    } else {
      await api.post(`/v1/${log}/purge`, { ids: [id] })
      notice(`Purged ${what}.`)
    }
  })
}

/** @param {'requeue' | 'purge'} action */
async function actOnAll (action) {
  const log = state.view.log
  const count = state.overview?.logs.find(l => l.name === log)?.count ?? 0
  const records = `${formatCount(count)} ${LABELS[log]} record${count === 1 ? '' : 's'}`
  const ok = action === 'requeue'
    ? await confirmAction(log === 'dlq' ? `Requeue all ${records} to the WAL?` : `Requeue all ${records} to the DLQ?`,
      log === 'dlq' ? 'Each is pushed to the WAL as a new record and leaves the DLQ.' : 'They go back to the DLQ, due now, with their attempts reset.',
      'Requeue all')
    : await confirmAction(`Purge all ${records}?`, 'They are deleted for good. Records that arrive meanwhile stay.', 'Purge all')
  if (!ok) return
  await run(async () => {
    if (action === 'requeue') {
      const { ids } = await api.post(`/v1/${log}/requeue`, { all: true })
      notice(`Requeued ${formatCount(ids.length)} ${LABELS[log]} record${ids.length === 1 ? '' : 's'}.`)
    } else {
      const { purged } = await api.post(`/v1/${log}/purge`, { all: true })
      notice(`Purged ${formatCount(purged)} ${LABELS[log]} record${purged === 1 ? '' : 's'}.`)
    }
  })
}

/** Run an action, report its failure, and show the result. @param {() => Promise<void>} task */
async function run (task) {
  try {
    await task()
  } catch (err) {
    if (err instanceof ApiError && err.code === 'EVAQ_UNAUTHORIZED') { lock(); return }
    notice(err instanceof ApiError ? `Not done: ${err.code}: ${err.message}` : `Not done: ${err instanceof Error ? err.message : String(err)}`, true)
  }
  await refreshNow()
}

/**
 * The outcome of the last action, until the next one.
 * @param {string} text
 * @param {boolean} [error]
 */
function notice (text, error = false) {
  const el = byId('notice')
  setText(el, text)
  if (error) el.dataset.kind = 'error'
  else delete el.dataset.kind
}

/**
 * Ask before a change; resolves true for the OK button, false for Cancel or Escape.
 * @param {string} title
 * @param {string} text
 * @param {string} okLabel
 * @returns {Promise<boolean>}
 */
function confirmAction (title, text, okLabel) {
  const dialog = byIdAs('confirm', HTMLDialogElement)
  setText(byId('confirm-title'), title)
  setText(byId('confirm-text'), text)
  setText(byId('confirm-ok'), okLabel)
  dialog.returnValue = ''
  return new Promise(resolve => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true })
    showModal(dialog)
  })
}

/**
 * @param {'dlq' | 'parked'} log
 * @param {number} id
 */
async function viewRecord (log, id) {
  /** @type {RecordPreview | undefined} */
  let r
  try {
    r = (await api.get(`/v1/logs/${log}/previews?from=${id}&maxCount=1&previewBytes=${FULL_PREVIEW_BYTES}`)).records[0]
  } catch (err) {
    failed(err)
    return
  }
  if (r === undefined || r.id !== id) {
    notice(`${LABELS[log]} record ${id} is gone.`)
    await refreshNow()
    return
  }
  const retry = r.retry ?? {}
  const t = now()
  const lastError = retry.lastError ?? r.error
  /** @type {Array<[string, string]>} */
  const fields = [
    ['Log', LABELS[log]],
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
  const bytes = decodeBase64(r.preview)
  const truncated = r.size > bytes.length
  const shown = preview(bytes, state.format, truncated)
  const first = truncated ? `, the first ${formatBytes(bytes.length)}` : ''
  fields.push(['Payload', `as ${state.format}${first}${shown.note === undefined ? '' : ` (${shown.note})`}`])
  setText(byId('record-title'), `${LABELS[log]} record ${id}`)
  byId('record-fields').replaceChildren(...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
  setText(byId('record-payload'), shown.text)
  showModal(byIdAs('record-dialog', HTMLDialogElement))
}

/**
 * Open a dialog as modal, and give the focus back to where it was when it closes.
 * @param {HTMLDialogElement} dialog
 */
function showModal (dialog) {
  const before = document.activeElement
  dialog.addEventListener('close', () => {
    if (before instanceof HTMLElement && before.isConnected && document.activeElement !== before) before.focus()
  }, { once: true })
  dialog.showModal()
}

// ---- start --------------------------------------------------------------------------------------

function start () {
  byId('refresh').addEventListener('click', () => { void refreshNow() })
  byId('live').addEventListener('click', () => {
    state.live = !state.live
    byId('live').setAttribute('aria-pressed', String(state.live))
    if (state.live) void refreshNow()
    else schedule()
  })
  byId('signin').addEventListener('click', () => openTokenDialog(false))
  byId('signout').addEventListener('click', forgetToken)
  byId('token-form').addEventListener('submit', e => { e.preventDefault(); void submitToken() })
  byId('token-cancel').addEventListener('click', () => byIdAs('token-dialog', HTMLDialogElement).close())
  byId('token-dialog').addEventListener('close', () => {
    if (!state.locked) return
    const banner = byId('banner')
    banner.hidden = false
    setText(banner, 'This service needs its token: use “Enter token”.')
  })
  byId('show-dlq').addEventListener('click', () => showLog('dlq'))
  byId('show-parked').addEventListener('click', () => showLog('parked'))
  byId('prev').addEventListener('click', () => turnPage(-1))
  byId('next').addEventListener('click', () => turnPage(1))
  byId('requeue-all').addEventListener('click', () => { void actOnAll('requeue') })
  byId('purge-all').addEventListener('click', () => { void actOnAll('purge') })
  byId('format').addEventListener('change', e => {
    const input = /** @type {HTMLInputElement} */ (e.target)
    if (input.name === 'format') {
      state.format = /** @type {Format} */ (input.value)
      renderRecords()
    }
  })
  for (const log of /** @type {const} */ (['wal', 'dlq', 'parked'])) cardOf(log)
  void refreshNow()
}

start()
