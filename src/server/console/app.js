// @ts-check
/**
 * The operator console: polls `/v1/overview` and the shown page of records, and renders them.
 *
 * Polling, not server-sent events: EventSource cannot send an Authorization header, so SSE would
 * need the token in the URL (and so in proxy and access logs); one small request every few
 * seconds costs the service nothing worth saving. A hidden tab does not poll at all: it polls
 * again at once when it is shown. Rates: see rates.js.
 */
import { Api, ApiError, storedToken, storeToken } from './api.js'
import { drawRates } from './chart.js'
import { confirmAction, showModal } from './dialogs.js'
import { byId, byIdAs, h, setText } from './dom.js'
import { decodeBase64, formatBytes, formatCount, formatDuration, formatRate, isoTime, LOG_LABELS as LABELS, preview } from './format.js'
import { previousStart } from './paging.js'
import { logCard, subscriberRow } from './log-cards.js'
import { addSample, newHistory, recentRate, SAMPLES } from './rates.js'
import { filterRows, recordFields, retryRow, tickTimes } from './record-rows.js'
import { renderTier } from './tier.js'
import { openTokenDialog, tryToken } from './token.js'
import { positionItems, walRows } from './wal-rows.js'

/** @typedef {import('./types.js').LogName} LogName */
/** @typedef {import('./types.js').Format} Format */
/** @typedef {import('./types.js').Overview} Overview */
/** @typedef {import('./types.js').LogOverview} LogOverview */
/** @typedef {import('./types.js').RecordPreview} RecordPreview */
/** @typedef {import('./rates.js').History} History */

const PAGE_SIZE = 20
/** Bytes of each payload a page brings: enough for a one-line preview. */
const ROW_PREVIEW_BYTES = 256
/** Bytes of a payload the record dialog shows. */
const FULL_PREVIEW_BYTES = 64 * 1024
const params = new URLSearchParams(location.search)
/** `?refresh=MS` sets the polling interval (at least 200 ms). */
const INTERVAL_MS = Math.max(200, Number(params.get('refresh')) || 2000)
/** The time a chart spans: its samples at the polling interval. */
const CHART_WINDOW_MS = SAMPLES * INTERVAL_MS

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
  /** @type {Map<string, History>} */
  history: new Map(),
  /** @type {Map<string, ReturnType<typeof logCard>>} */
  cards: new Map(),
  subsSignature: '',
  /** @type {Format} */
  format: 'text',
  /** Text to find in the payloads of the shown page (lower case); '' shows every row. */
  find: '',
  view: newView('dlq'),
}

/** @param {LogName} log */
function newView (log) {
  return {
    log,
    /** First IDs of the pages walked through; the last is the page shown (the first is 0, or the ID jumped to). */
    stack: [0],
    /** @type {RecordPreview[]} */
    records: [],
    hasMore: false,
    signature: '',
  }
}

const now = () => Date.now() + state.clockOffset
/** @param {LogName} name */
const logOf = name => state.overview?.logs.find(l => l.name === name)
const hidden = () => document.visibilityState === 'hidden'

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
  // A hidden tab does not poll; visibilitychange polls at once when it is shown again.
  if (!state.live || state.locked || hidden()) return
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

async function submitToken () {
  const token = await tryToken(api)
  if (token === undefined) return
  api.token = token
  storeToken(token)
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
  renderTier(byId('tier'), overview.tier)
  if (api.token !== undefined) byId('signout').hidden = false

  for (const log of overview.logs) {
    const card = cardOf(log.name)
    const history = state.history.get(log.name) ?? newHistory()
    state.history.set(log.name, history)
    addSample(history, log, overview.now)
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
    drawRates(card.chart, history.rates, { windowMs: CHART_WINDOW_MS, now: overview.now })
    card.card.dataset.pushed = String(history.pushed)
    card.card.dataset.drained = String(history.drained)
    card.chart.setAttribute('aria-label', `${LABELS[log.name]} push and drain rate, records per second, over the last ` +
      `${formatDuration(CHART_WINDOW_MS)}: now ${formatRate(rate?.push)} pushed, ${formatRate(rate?.drain)} drained`)
    setText(byId(`count-${log.name}`), formatCount(log.count))
  }
  renderSubscribers(overview)
  updateBulkButtons()
}

/** @param {LogName} name */
function cardOf (name) {
  let entry = state.cards.get(name)
  if (entry === undefined) {
    entry = logCard(name)
    byId('logs').appendChild(entry.card)
    state.cards.set(name, entry)
  }
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
  body.replaceChildren(...rows.map(r => subscriberRow(r, t)))
}

// ---- records ------------------------------------------------------------------------------------

function renderRecords () {
  const view = state.view
  const wal = view.log === 'wal'
  const subs = wal ? logOf('wal')?.subscribers ?? [] : []
  const positions = subs.map(s => [s.name, s.ackFloor, s.cursor, s.inFlight, s.lagRecords])
  const signature = JSON.stringify([view.log, state.format, view.hasMore, view.stack, view.records, positions])
  if (signature !== view.signature) {
    view.signature = signature
    drawRecordRows()
    const list = byId('positions')
    list.hidden = subs.length === 0
    list.replaceChildren(...positionItems(subs, jumpTo))
  }
  applyFind()
  tickTimes(now())
  const log = logOf(view.log)
  const count = log?.count ?? 0
  const from = view.stack[view.stack.length - 1] ?? 0
  const first = view.records[0]
  const last = view.records[view.records.length - 1]
  const where = { wal: 'in the WAL', dlq: 'in the DLQ', parked: 'parked' }[view.log]
  // Page numbers count from the log's start; after a jump to an ID there are none.
  const page = view.stack[0] === 0 ? `Page ${view.stack.length} · ` : ''
  setText(byId('page'), first === undefined || last === undefined ? '' : `${page}IDs ${first.id}–${last.id} · ${formatCount(count)} ${where}`)
  const before = first?.id ?? from
  byIdAs('prev', HTMLButtonElement).disabled = view.stack.length <= 1 && !(log?.firstId !== undefined && before > log.firstId)
  byIdAs('next', HTMLButtonElement).disabled = !view.hasMore
  const empty = byId('records-empty')
  empty.hidden = view.records.length > 0
  setText(empty, from > 0 && count > 0
    ? `No ${LABELS[view.log]} records from ID ${from}.`
    : { wal: 'The WAL is empty.', dlq: 'The DLQ is empty.', parked: 'Nothing is parked.' }[view.log])
}

function drawRecordRows () {
  const view = state.view
  const wal = view.log === 'wal'
  byId('records-table').hidden = wal
  byId('wal-table').hidden = !wal
  const table = byIdAs(wal ? 'wal-table' : 'records-table', HTMLTableElement)
  const body = table.tBodies[0]
  if (body === undefined) return
  // Keep the keyboard where it was across a redraw: the same button, or the same action one row on.
  const active = document.activeElement instanceof HTMLElement && body.contains(document.activeElement) ? document.activeElement : undefined
  const activeKey = active?.dataset.key
  const activeAction = active?.dataset.action
  const activeRow = active === undefined ? -1 : [...body.rows].findIndex(r => r.contains(active))

  if (view.log === 'wal') {
    const log = logOf('wal')
    body.replaceChildren(...walRows(view.records, log?.subscribers ?? [], {
      from: view.stack[view.stack.length - 1] ?? 0,
      firstId: log?.firstId ?? 0,
      hasMore: view.hasMore,
      format: state.format,
      act: (action, id) => { void act(action, id) },
    }))
  } else {
    const log = view.log
    setText(byId('records-caption'), `${LABELS[log]} records`)
    setText(byId('col-time'), log === 'dlq' ? 'Failed' : 'Parked')
    setText(byId('col-next'), log === 'dlq' ? 'Next attempt' : 'Reason')
    body.replaceChildren(...view.records.map(r => retryRow(r, log, state.format, (action, id) => { void act(action, id) })))
  }

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

/** Show only the rows of the page whose payload contains the text to find. */
function applyFind () {
  const view = state.view
  const table = byIdAs(view.log === 'wal' ? 'wal-table' : 'records-table', HTMLTableElement)
  const shown = filterRows(table, view.records, state.find)
  setText(byId('find-count'), state.find === '' ? '' : `${shown} of ${view.records.length} on this page`)
}

function updateBulkButtons () {
  const log = state.view.log
  const count = logOf(log)?.count ?? 0
  const requeue = byIdAs('requeue-all', HTMLButtonElement)
  const purge = byIdAs('purge-all', HTMLButtonElement)
  // The WAL's records are its subscribers' to take: the console only shows them.
  byId('bulk').hidden = log === 'wal'
  setText(requeue, log === 'dlq' ? 'Requeue all' : 'Requeue all parked')
  setText(purge, 'Purge all')
  requeue.disabled = count === 0
  purge.disabled = count === 0
}

/** @param {LogName} log */
function showLog (log) {
  if (state.view.log === log) return
  state.view = newView(log)
  for (const b of document.querySelectorAll('[data-log]')) b.setAttribute('aria-pressed', String(b.getAttribute('data-log') === log))
  updateBulkButtons()
  renderRecords()
  void refreshNow()
}

/**
 * Show the page that starts at `id` (the first record at or above it).
 * @param {number} id
 */
function jumpTo (id) {
  const view = state.view
  view.stack = [id]
  view.records = []
  view.hasMore = false
  renderRecords()
  return refreshNow()
}

/** @param {1 | -1} direction */
async function turnPage (direction) {
  const view = state.view
  if (direction === 1) {
    const last = view.records[view.records.length - 1]
    if (!view.hasMore || last === undefined) return
    view.stack.push(last.id + 1)
  } else if (view.stack.length > 1) {
    view.stack.pop()
  } else {
    // After a jump: the page before is searched for.
    const firstId = logOf(view.log)?.firstId
    const before = view.records[0]?.id ?? view.stack[0] ?? 0
    if (firstId === undefined || before <= firstId) return
    const log = view.log
    /** @param {number} from */
    const idsFrom = async from => {
      const answer = await api.get(`/v1/logs/${log}/previews?from=${from}&maxCount=${PAGE_SIZE}&previewBytes=0`)
      return /** @type {RecordPreview[]} */ (answer.records).map(r => r.id)
    }
    let start
    try {
      start = await previousStart(idsFrom, before, firstId, PAGE_SIZE)
    } catch (err) {
      failed(err)
      return
    }
    if (state.view !== view || view.stack.length !== 1) return // the user went elsewhere meanwhile
    view.stack = [start]
  }
  await refreshNow()
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
  if (log === 'wal') return
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
  if (log === 'wal') return
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
 * @param {LogName} log
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
  const fields = recordFields(r, log, now())
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
  byId('show-wal').addEventListener('click', () => showLog('wal'))
  byId('show-dlq').addEventListener('click', () => showLog('dlq'))
  byId('show-parked').addEventListener('click', () => showLog('parked'))
  byId('prev').addEventListener('click', () => { void turnPage(-1) })
  byId('next').addEventListener('click', () => { void turnPage(1) })
  byId('jump').addEventListener('submit', e => {
    e.preventDefault()
    const input = byIdAs('jump-id', HTMLInputElement)
    const id = Number(input.value)
    if (input.value.trim() !== '' && Number.isSafeInteger(id) && id >= 0) void jumpTo(id)
  })
  byId('find').addEventListener('input', e => {
    state.find = /** @type {HTMLInputElement} */ (e.target).value.trim().toLowerCase()
    applyFind()
  })
  document.addEventListener('visibilitychange', () => {
    if (hidden()) {
      clearTimeout(state.timer)
      state.timer = undefined
    } else if (state.live && !state.locked) {
      void refreshNow()
    }
  })
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
  updateBulkButtons()
  void refreshNow()
}

start()
