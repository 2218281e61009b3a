import test, { type ExecutionContext } from 'ava'
import fc from 'fast-check'
import { setImmediate as turn } from 'node:timers/promises'
import {
  Evaq, EvaqError, type DeadLetterRecord, type EvaqOptions, type ParkedEvent, type RescheduledEvent, type RetryDaemon,
  type RetryHandler, type RetryOptions,
} from '../../src/index.js'
import { backoffCeiling, backoffDelay } from '../../src/retry/backoff.js'
import { ManualClock } from '../helpers/clock.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const T0 = 1_700_000_000_000

interface Env {
  q: Evaq
  clock: ManualClock
  dir: string
}

async function open (t: ExecutionContext, options: EvaqOptions = {}): Promise<Env> {
  const dir = await tmpDir(t)
  const clock = new ManualClock(T0)
  const q = await Evaq.open(dir, { clock, minFreeDiskBytes: 0, ...options })
  t.teardown(() => q.close())
  return { q, clock, dir }
}

/** A daemon that only works when the test calls tick(). */
function daemon (q: Evaq, handler: RetryHandler, options: RetryOptions = {}): RetryDaemon {
  return q.retry(handler, { autoStart: false, ...options })
}

function failure (code: string, props: object = {}): Error {
  return Object.assign(new Error(`downstream says ${code}`), { code }, props)
}

function deferred (): { promise: Promise<void>, resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

/** Counts events; `reached(n)` resolves once `n` happened (no polling, no timing). */
function counter (): { hit: () => void, reached: (n: number) => Promise<void>, readonly count: number } {
  let count = 0
  const waiters: Array<[number, () => void]> = []
  return {
    hit () {
      count++
      for (const [n, resolve] of waiters) if (count >= n) resolve()
    },
    reached (n) {
      return count >= n ? Promise.resolve() : new Promise(resolve => waiters.push([n, resolve]))
    },
    get count () { return count },
  }
}

const allDlq = (q: Evaq): Promise<DeadLetterRecord[]> => q.dlq.read({ maxBytes: Infinity, maxCount: Infinity })
const text = (records: ReadonlyArray<{ payload: Buffer }>): string[] => records.map(r => r.payload.toString())

// ---- the retry state ----------------------------------------------------------------------------

test('pushRetryItem fills the retry state, and DLQ reads return it', async t => {
  const { q, clock } = await open(t)
  const a = await q.pushRetryItem('a', { error: failure('ECONNREFUSED'), attempts: 3, source: { log: 'wal', id: 17 } })
  clock.t += 5
  const b = await q.pushRetryItem('b')
  const [ra, rb] = await q.firstNBytesFromDeadLetterQueue(0, 1024)
  t.is(ra!.id, a)
  t.deepEqual(ra!.error, { code: 'ECONNREFUSED', message: 'downstream says ECONNREFUSED' })
  t.deepEqual(ra!.retry, {
    attempts: 3,
    firstFailedAt: T0,
    lastFailedAt: T0,
    lastError: { code: 'ECONNREFUSED', message: 'downstream says ECONNREFUSED' },
    nextAttemptAt: T0,
    source: { log: 'wal', id: 17 },
  })
  t.is(rb!.id, b)
  t.is(rb!.error, undefined)
  t.deepEqual(rb!.retry, { attempts: 0, firstFailedAt: T0 + 5, lastFailedAt: T0 + 5, nextAttemptAt: T0 + 5 })
  // Records pushed through the plain log API get a state too, and so are found by the daemon.
  await q.dlq.pushMany(['c', 'd'])
  const all = await allDlq(q)
  t.deepEqual(all.map(r => r.retry.attempts), [3, 0, 0, 0])
  t.deepEqual((await internals(q).dlq.dueEntries(clock.t, 10)).map(e => e.id), all.map(r => r.id))
})

test('pushRetryItem rejects bad attempts and source before writing anything', async t => {
  const { q } = await open(t)
  const bad: Array<Record<string, unknown>> = [
    { attempts: -1 }, { attempts: 1.5 }, { attempts: '2' }, { source: 'wal' }, { source: { log: '', id: 1 } },
    { source: { log: 'wal', id: 0 } }, { source: { log: 'wal' } }, { error: 42 },
  ]
  for (const options of bad) await t.throwsAsync(q.pushRetryItem('x', options as never), { code: 'EVAQ_INVALID_ARGUMENT' }, JSON.stringify(options))
  t.is((await q.dlq.stats()).count, 0)
})

test('a WAL record dead-lettered by its subscriber gets a retry state with its source', async t => {
  const { q } = await open(t)
  const id = await q.pushWal('w')
  const sub = await q.wal.subscribe('s', { maxDeliveries: 1, leaseMs: 1000 })
  const batch = await sub.next()
  await batch!.nack()
  t.is(await sub.next(), undefined)
  const [r] = await allDlq(q)
  t.is(r!.error?.code, 'EVAQ_MAX_DELIVERIES')
  t.like(r!.retry, { attempts: 0, source: { log: 'wal', id }, lastError: { code: 'EVAQ_MAX_DELIVERIES' } })
})

// ---- backoff ------------------------------------------------------------------------------------

test('backoffDelay is an integer in [0, min(maxMs, initialMs * multiplier^(n-1))]', t => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 1_000_000 }),
    fc.double({ min: 1, max: 10, noNaN: true }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    (attempt, initialMs, extra, multiplier, r) => {
      const backoff = { initialMs, maxMs: initialMs + extra, multiplier }
      const ceiling = initialMs === 0 ? 0 : Math.floor(Math.min(backoff.maxMs, initialMs * Math.pow(multiplier, attempt - 1)))
      const delay = backoffDelay(attempt, backoff, () => r)
      return backoffCeiling(attempt, backoff) === ceiling && Number.isSafeInteger(delay) && delay >= 0 && delay <= ceiling
    }))
  const backoff = { initialMs: 100, maxMs: 1000, multiplier: 3 }
  t.deepEqual([1, 2, 3, 4, 5].map(n => backoffCeiling(n, backoff)), [100, 300, 900, 1000, 1000])
  t.is(backoffDelay(3, backoff, () => 0), 0)
  t.is(backoffDelay(3, backoff, () => 0.9999999), 900, 'the ceiling itself can be drawn')
  t.is(backoffCeiling(310, { initialMs: 0, maxMs: 0, multiplier: 9.9 }), 0, 'no NaN when multiplier^n overflows')
  t.is(backoffCeiling(5000, { initialMs: 1, maxMs: 7, multiplier: 2 }), 7)
})

test('backoff schedule with an injected clock: attempt n is due within [0, min(maxMs, initialMs * multiplier^(n-1))] after attempt n-1 failed', async t => {
  const backoff = { initialMs: 100, maxMs: 1000, multiplier: 3 }
  for (const random of [Math.random, () => 0, () => 0.9999999]) {
    const { q, clock } = await open(t)
    const id = await q.pushRetryItem('p', { error: 'first failure' })
    const calls: number[] = []
    const d = daemon(q, (record, { attempt }) => {
      calls.push(attempt)
      t.is(record.retry.attempts, attempt, 'the attempt is counted before the call')
      clock.t += 7 // the call takes time: the backoff runs from its failure
      throw failure('EUNAVAILABLE')
    }, { backoff, maxAttempts: 6, random })
    const rescheduled: RescheduledEvent[] = []
    d.on('rescheduled', e => rescheduled.push(e))
    // Attempt 1 is due at once (within [0, initialMs] of the push).
    t.deepEqual(await d.tick(), { handled: 1 })
    for (let n = 2; n <= 6; n++) {
      const [record] = await allDlq(q)
      const { lastFailedAt, nextAttemptAt, attempts } = record!.retry
      t.is(attempts, n - 1)
      const wait = nextAttemptAt - lastFailedAt
      const ceiling = Math.min(backoff.maxMs, backoff.initialMs * backoff.multiplier ** (n - 1))
      t.true(wait >= 0 && wait <= ceiling, `attempt ${n}: waited ${wait} ms, bound ${ceiling}`)
      if (random !== Math.random) t.is(wait, random() === 0 ? 0 : ceiling)
      if (wait > 0) {
        clock.t = nextAttemptAt - 1
        t.deepEqual(await d.tick(), { handled: 0 }, `attempt ${n} is not due 1 ms early`)
      }
      clock.t = nextAttemptAt
      t.deepEqual(await d.tick(), { handled: 1 }, `attempt ${n} is due on time`)
    }
    t.deepEqual(calls, [1, 2, 3, 4, 5, 6])
    t.deepEqual(rescheduled.map(e => e.attempt), [1, 2, 3, 4, 5])
    t.is((await q.dlq.stats()).count, 0)
    const [parked] = await q.parked.read()
    t.like(parked!.retry, { attempts: 6, reason: 'max-attempts', dlqId: id })
  }
})

// ---- outcomes -----------------------------------------------------------------------------------

test('maxAttempts: the record is parked with its history', async t => {
  const { q, clock } = await open(t)
  const id = await q.pushRetryItem('poison', { error: failure('E500'), attempts: 1, source: { log: 'wal', id: 9 } })
  const events: string[] = []
  const parkedEvents: ParkedEvent[] = []
  const d = daemon(q, (_, { attempt }) => { throw failure(`E50${attempt}`) }, { maxAttempts: 3, backoff: { initialMs: 10, maxMs: 10 } })
  for (const name of ['retried', 'succeeded', 'rescheduled', 'parked'] as const) d.on(name, () => events.push(name))
  d.on('parked', e => parkedEvents.push(e))
  for (let i = 0; i < 2; i++) {
    t.deepEqual(await d.tick(), { handled: 1 })
    clock.t += 10
  }
  t.deepEqual(events, ['retried', 'rescheduled', 'retried', 'parked'])
  t.deepEqual(await allDlq(q), [])
  const [p] = await q.parked.read()
  t.is(p!.payload.toString(), 'poison')
  t.deepEqual(p!.error, { code: 'E503', message: 'downstream says E503', source: { log: 'dlq', id } })
  t.deepEqual(p!.retry, {
    attempts: 3,
    firstFailedAt: T0,
    lastFailedAt: T0 + 10,
    lastAttemptAt: T0 + 10,
    lastError: { code: 'E503', message: 'downstream says E503' },
    source: { log: 'wal', id: 9 },
    parkedAt: T0 + 10,
    reason: 'max-attempts',
    dlqId: id,
  })
  t.deepEqual(parkedEvents, [{ id, parkedId: p!.id, attempts: 3, reason: 'max-attempts', error: { code: 'E503', message: 'downstream says E503' } }])
  t.deepEqual(await internals(q).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10), [], 'nothing is left in the schedule')
  t.like(d.stats(), { attempts: 2, rescheduled: 1, parked: 1, succeeded: 0 })
})

test('a permanent error parks the record after one call', async t => {
  const cases: Array<[string, () => unknown, RetryOptions?]> = [
    ['retriable === false', () => { throw failure('E400', { retriable: false }) }],
    ['an EvaqError that is not retriable', () => { throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'bad record') }],
    ['a TypeError (programmer error)', () => { (undefined as unknown as { x: number }).x.toFixed() }],
    ['a RangeError', () => { throw new RangeError('out of range') }],
    ['classify() says so', () => { throw failure('E422') }, { classify: err => (err as { code?: string }).code === 'E422' ? 'permanent' : 'transient' }],
  ]
  for (const [name, handler, options] of cases) {
    const { q } = await open(t)
    await q.pushRetryItem(name)
    let calls = 0
    const d = daemon(q, () => { calls++; return handler() }, { maxAttempts: 10, ...options })
    await d.tick()
    t.is(calls, 1, name)
    t.is((await q.dlq.stats()).count, 0, name)
    const [p] = await q.parked.read()
    t.like(p?.retry, { attempts: 1, reason: 'permanent' }, name)
  }
})

test('transient errors are rescheduled, including a TypeError with a cause (fetch failed)', async t => {
  const { q } = await open(t)
  await q.pushRetryItem('a')
  await q.pushRetryItem('b')
  const d = daemon(q, record => {
    if (record.payload.toString() === 'a') throw new TypeError('fetch failed', { cause: failure('ECONNREFUSED') })
    // eslint-disable-next-line no-throw-literal -- a handler that throws a non-Error is part of what is tested
    throw 'a string'
  })
  await d.tick()
  const records = await allDlq(q)
  t.deepEqual(records.map(r => r.retry.attempts), [1, 1])
  t.deepEqual(records.map(r => r.retry.lastError), [{ message: 'fetch failed' }, { message: 'a string' }])
  t.is((await q.parked.stats()).count, 0)
})

test('success removes the record, its state and its schedule entry', async t => {
  const { q } = await open(t)
  const ids = [await q.pushRetryItem('a', { error: 'x' }), await q.pushRetryItem('b', { error: 'y' })]
  const seen: Array<[number, number, string]> = []
  const d = daemon(q, (record, { attempt }) => { seen.push([record.id, attempt, record.payload.toString()]) })
  const succeeded: number[] = []
  d.on('succeeded', e => succeeded.push(e.id))
  t.deepEqual(await d.tick(), { handled: 2 })
  t.deepEqual(seen.sort(), [[ids[0], 1, 'a'], [ids[1], 1, 'b']])
  t.deepEqual(succeeded.sort(), ids)
  t.like(await q.dlq.stats(), { count: 0, bytes: 0 })
  t.deepEqual(await internals(q).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10), [])
  t.deepEqual(await internals(q).dlq.getStates(ids), [undefined, undefined])
  t.deepEqual(await d.tick(), { handled: 0 })
})

test('a record removed by doneRetryItems while its handler runs is neither parked nor brought back', async t => {
  const { q } = await open(t)
  const [a, b] = [await q.pushRetryItem('a'), await q.pushRetryItem('b')]
  const gate = deferred()
  const started = counter()
  const d = daemon(q, async record => {
    started.hit()
    await gate.promise
    throw record.payload.toString() === 'a' ? failure('E400', { retriable: false }) : failure('E503')
  })
  const ticking = d.tick()
  await started.reached(2)
  t.is(await q.doneRetryItems([a!, b!]), b)
  gate.resolve()
  await ticking
  t.deepEqual(await allDlq(q), [])
  t.deepEqual(await q.parked.read(), [], 'the parked copy of a was removed again')
  t.like(await q.stats(), { dlq: { count: 0 }, parked: { count: 0 } })
})

// ---- parked records -----------------------------------------------------------------------------

/** Park one record per payload (in one tick: parked IDs follow the order they finished in). */
async function parkSome (q: Evaq, payloads: string[]): Promise<number[]> {
  for (const p of payloads) await q.pushRetryItem(p, { error: failure('E1') })
  const d = daemon(q, () => { throw failure('E400', { retriable: false }) })
  await d.tick()
  await d.stop()
  const parked = await q.parked.read()
  return payloads.map(p => parked.find(r => r.payload.toString() === p)!.id)
}

test('requeueParked puts records back in the DLQ, due now, attempts reset, history kept', async t => {
  const { q, clock } = await open(t)
  const parked = await parkSome(q, ['a', 'b', 'c'])
  t.is(parked.length, 3)
  clock.t += 60_000
  await t.throwsAsync(q.requeueParked([parked[0]!, 999]), { code: 'EVAQ_NOT_FOUND' })
  t.is((await q.parked.stats()).count, 3, 'nothing was requeued')
  const ids = await q.requeueParked([parked[1]!])
  t.is(ids.length, 1)
  const [r] = await allDlq(q)
  t.is(r!.id, ids[0]!)
  t.is(r!.payload.toString(), 'b')
  t.deepEqual(r!.retry, {
    attempts: 0,
    firstFailedAt: T0,
    lastFailedAt: T0,
    lastError: { code: 'E400', message: 'downstream says E400' },
    nextAttemptAt: T0 + 60_000,
    source: { log: 'parked', id: parked[1] },
  })
  t.deepEqual(text(await q.parked.read()).sort(), ['a', 'c'])
  const rest = await q.requeueParked('all')
  t.is(rest.length, 2)
  t.deepEqual(text(await allDlq(q)).sort(), ['a', 'b', 'c'])
  t.is((await q.parked.stats()).count, 0)
  // Due at once: a daemon delivers them now.
  const got: string[] = []
  const d = daemon(q, record => { got.push(record.payload.toString()) })
  t.deepEqual(await d.tick(), { handled: 3 })
  t.deepEqual(got.sort(), ['a', 'b', 'c'])
})

test('purgeParked deletes parked records, by ID atomically or all', async t => {
  const { q } = await open(t)
  const parked = await parkSome(q, ['a', 'b', 'c', 'd'])
  await t.throwsAsync(q.purgeParked([parked[0]!, 999]), { code: 'EVAQ_NOT_FOUND' })
  t.is((await q.parked.stats()).count, 4)
  t.is(await q.purgeParked([parked[0]!, parked[2]!]), 2)
  t.deepEqual(text(await q.parked.read()).sort(), ['b', 'd'])
  t.is(await q.purgeParked('all'), 2)
  t.like(await q.stats(), { dlq: { count: 0 }, parked: { count: 0, bytes: 0 } })
  t.is(await q.purgeParked('all'), 0)
  await t.throwsAsync(q.purgeParked(5 as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(q.requeueParked('some' as never), { code: 'EVAQ_INVALID_ARGUMENT' })
})

// ---- stop ---------------------------------------------------------------------------------------

test('stop() lets handlers in flight finish within the deadline, and leaves queued records uncounted', async t => {
  const { q } = await open(t)
  for (const p of ['a', 'b', 'c', 'd']) await q.pushRetryItem(p)
  const gate = deferred()
  const started: string[] = []
  const calls = counter()
  const d = daemon(q, async record => { started.push(record.payload.toString()); calls.hit(); await gate.promise }, { concurrency: 2 })
  const ticking = d.tick()
  await calls.reached(2)
  t.like(d.stats(), { inFlight: 2, queued: 2 })
  let stopped = false
  const stopping = d.stop({ timeoutMs: 600_000 }).then(() => { stopped = true })
  await turn()
  t.false(stopped, 'stop() waits for the handlers in flight')
  gate.resolve()
  await stopping
  await ticking
  t.deepEqual(started.sort(), ['a', 'b'])
  const left = await allDlq(q)
  t.deepEqual(text(left), ['c', 'd'], 'the two that ran succeeded and were removed')
  t.deepEqual(left.map(r => r.retry.attempts), [0, 0], 'records that never started were not counted')
  t.like(d.stats(), { attempts: 2, succeeded: 2, inFlight: 0, queued: 0 })
  t.false(d.isRunning)
  await t.throwsAsync(async () => d.start(), { code: 'EVAQ_CLOSED' })
})

test('stop() aborts handlers that outlive the deadline through their signal; the attempt counts once', async t => {
  const { q } = await open(t)
  const id = await q.pushRetryItem('slow')
  const signals: AbortSignal[] = []
  const calls = counter()
  // This handler ignores its signal: stop() does not wait for it after the deadline.
  const d = daemon(q, (_, { signal }) => { signals.push(signal); calls.hit(); return new Promise(() => {}) }, { stopTimeoutMs: 0 })
  const rescheduled: RescheduledEvent[] = []
  d.on('rescheduled', e => rescheduled.push(e))
  const ticking = d.tick()
  await calls.reached(1)
  t.false(signals[0]!.aborted)
  await d.stop()
  await ticking
  t.true(signals[0]!.aborted)
  t.is(rescheduled.length, 1)
  t.like(rescheduled[0], { id, attempt: 1, aborted: true, error: { code: 'EVAQ_ABORTED' } })
  const [r] = await allDlq(q)
  t.like(r!.retry, { attempts: 1, lastError: { code: 'EVAQ_ABORTED' } })
})

test('close() stops a running daemon first and its outcome is written', async t => {
  const dir = await tmpDir(t)
  const clock = new ManualClock(T0)
  const q = await Evaq.open(dir, { clock, minFreeDiskBytes: 0 })
  await q.pushRetryItem('x')
  const started = deferred()
  let signal: AbortSignal | undefined
  q.retry((_, ctx) => { signal = ctx.signal; started.resolve(); return new Promise(() => {}) }, { stopTimeoutMs: 0 })
  await started.promise
  await q.close()
  t.true(signal!.aborted)
  const again = await Evaq.open(dir, { clock, minFreeDiskBytes: 0 })
  t.teardown(() => again.close())
  const [r] = await allDlq(again)
  t.like(r!.retry, { attempts: 1, lastError: { code: 'EVAQ_ABORTED' } })
})

// ---- the schedule index -------------------------------------------------------------------------

test('with 100,000 DLQ records of which 10 are due, a tick reads only the due ones', async t => {
  t.timeout(60_000)
  const { q, clock } = await open(t)
  // 99,990 records come due in an hour (pushed "in an hour" by the injected clock).
  clock.t = T0 + 3_600_000
  for (let i = 0; i < 10; i++) await q.dlq.pushMany(Array.from({ length: 9999 }, (_, j) => `later ${i}.${j}`))
  clock.t = T0
  const due: number[] = []
  for (let i = 0; i < 10; i++) due.push(await q.pushRetryItem(`due ${i}`, { error: 'x' }))
  t.is((await q.dlq.stats()).count, 100_000)
  let read = 0
  const plain = q.dlq.read.bind(q.dlq)
  q.dlq.read = async options => {
    const records = await plain(options)
    read += records.length
    return records
  }
  const handled: number[] = []
  const d = daemon(q, record => { handled.push(record.id) }, { concurrency: 4 })
  t.deepEqual(await d.tick(), { handled: 10 })
  t.deepEqual(handled.sort((a, b) => a - b), due)
  t.is(read, 10, 'DLQ records read')
  t.is(d.stats().recordsRead, 10)
  t.is(d.stats().staleEntries, 0)
  t.deepEqual(await d.tick(), { handled: 0 })
  t.is(read, 10)
  t.is((await q.dlq.stats()).count, 99_990)
})

test('records dropped by DLQ retention leave stale schedule entries that a tick deletes without reading records', async t => {
  const { q, clock } = await open(t, { retention: { dlq: { maxAgeMs: 1000 } } })
  for (let i = 0; i < 5; i++) await q.pushRetryItem(`old ${i}`)
  clock.t += 2000
  const fresh = await q.pushRetryItem('fresh')
  await q.maintain()
  t.like(await q.dlq.stats(), { count: 1, dropped: { records: 5 } })
  const d = daemon(q, () => {})
  t.deepEqual(await d.tick(), { handled: 1 })
  t.like(d.stats(), { recordsRead: 1, staleEntries: 5, succeeded: 1 })
  t.deepEqual(await internals(q).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10), [])
  t.deepEqual(await internals(q).dlq.getStates([1, 2, 3, 4, 5, fresh]), [undefined, undefined, undefined, undefined, undefined, undefined])
})

// ---- concurrency, rate limit and the background loop -----------------------------------------------

test('concurrency bounds the handlers running at once', async t => {
  const { q } = await open(t)
  for (let i = 0; i < 12; i++) await q.pushRetryItem(`r${i}`)
  let running = 0
  let most = 0
  const gate = deferred()
  const calls = counter()
  const d = daemon(q, async () => {
    running++
    most = Math.max(most, running)
    calls.hit()
    await gate.promise
    running--
  }, { concurrency: 3 })
  const ticking = d.tick()
  await calls.reached(3)
  for (let i = 0; i < 20; i++) await turn()
  t.is(running, 3)
  gate.resolve()
  t.deepEqual(await ticking, { handled: 12 })
  t.is(most, 3)
})

test('rateLimit: at most `max` handler calls start per interval', async t => {
  const { q } = await open(t)
  for (let i = 0; i < 5; i++) await q.pushRetryItem(`r${i}`)
  let calls = 0
  const d = daemon(q, () => { calls++ }, { concurrency: 4, rateLimit: { max: 2, intervalMs: 3_600_000 } })
  const succeeded = counter()
  d.on('succeeded', () => succeeded.hit())
  const ticking = d.tick()
  await succeeded.reached(2)
  for (let i = 0; i < 20; i++) await turn()
  t.is(calls, 2, 'the third call waits for the next interval')
  await d.stop({ timeoutMs: 0 })
  await ticking
  t.deepEqual((await allDlq(q)).map(r => r.retry.attempts), [0, 0, 0])
})

test('a started daemon handles pushed records by itself', async t => {
  const { q } = await open(t)
  const got: string[] = []
  const d = q.retry(record => { got.push(record.payload.toString()) }, { pollIntervalMs: 3_600_000 })
  t.true(d.isRunning)
  const done = new Promise<void>(resolve => d.on('succeeded', () => { if (got.length === 3) resolve() }))
  await q.pushRetryItem('a')
  await q.pushRetryItem('b')
  await q.dlq.pushMany(['c'])
  await done
  // Each once; not necessarily in ID order: a record whose flush is not readable yet when the
  // daemon looks comes due again at its next look, after the ones behind it.
  t.deepEqual([...got].sort(), ['a', 'b', 'c'])
  await d.stop()
  t.is((await q.dlq.stats()).count, 0)
})

// ---- the manual path beside the daemon -------------------------------------------------------------

test('firstNBytesFromDeadLetterQueue and doneRetryItems keep working beside a daemon', async t => {
  const { q, clock } = await open(t)
  const ids = [await q.pushRetryItem('a'), await q.pushRetryItem('b'), await q.pushRetryItem('c')]
  const handled: string[] = []
  const d = daemon(q, record => { handled.push(record.payload.toString()); throw failure('E503') }, { backoff: { initialMs: 1000, maxMs: 1000 } })
  await d.tick()
  const failed = await q.firstNBytesFromDeadLetterQueue(0, 1024)
  t.deepEqual(failed.map(r => r.retry.attempts), [1, 1, 1])
  // Retried by hand: a and c went through.
  t.is(await q.doneRetryItems([ids[0]!, ids[2]!]), ids[2])
  t.deepEqual(text(await q.firstNBytesFromDeadLetterQueue(0, 1024)), ['b'])
  clock.t += 1000
  handled.length = 0
  await d.tick()
  t.deepEqual(handled, ['b'], 'the daemon does not see what was done by hand')
  t.deepEqual((await internals(q).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10)).map(e => e.id), [ids[1]])
})

// ---- retention of the DLQ by bytes ----------------------------------------------------------------

test('retention.dlq.maxBytes with drop-oldest drops (and counts) the oldest DLQ records and their state', async t => {
  const { q } = await open(t, { retention: { dlq: { maxBytes: 100, onFull: 'drop-oldest' } } })
  const dropped: unknown[] = []
  q.on('dropped', e => dropped.push(e))
  const ids: number[] = []
  for (let i = 0; i < 6; i++) ids.push(await q.pushRetryItem('x'.repeat(30)))
  const stats = await q.dlq.stats()
  t.true(stats.bytes <= 100, `${stats.bytes} bytes`)
  t.is(stats.dropped.records, 3)
  t.is(dropped.length, 3)
  t.deepEqual((await allDlq(q)).map(r => r.id), ids.slice(3))
  t.deepEqual(await internals(q).dlq.getStates(ids.slice(0, 3)), [undefined, undefined, undefined])
  await t.throwsAsync(q.pushRetryItem('y'.repeat(101)), { code: 'EVAQ_AT_CAPACITY' })
})

test('retention.dlq.maxBytes with reject and backpressure', async t => {
  const { q } = await open(t, { retention: { dlq: { maxBytes: 100, onFull: 'reject' } } })
  const a = await q.pushRetryItem('x'.repeat(60))
  await t.throwsAsync(q.pushRetryItem('y'.repeat(60)), { code: 'EVAQ_AT_CAPACITY' })
  await q.pushWal('z'.repeat(200)) // other logs are not capped
  t.is((await q.dlq.stats()).count, 1)
  await q.doneRetryItems([a])
  await q.pushRetryItem('y'.repeat(60))

  const { q: b } = await open(t, { retention: { dlq: { maxBytes: 100 } }, onFull: 'backpressure' })
  const first = await b.pushRetryItem('x'.repeat(60))
  let admitted = false
  const waiting = b.pushRetryItem('y'.repeat(60)).then(id => { admitted = true; return id })
  const aborted = new AbortController()
  const giveUp = b.pushRetryItem('w'.repeat(60), { signal: aborted.signal })
  aborted.abort()
  await t.throwsAsync(giveUp, { code: 'EVAQ_ABORTED' })
  for (let i = 0; i < 10; i++) await turn()
  t.false(admitted)
  await b.doneRetryItems([first])
  t.true(await waiting > first)
  t.is((await b.dlq.stats()).count, 1)
})

test('retention options are validated', async t => {
  const bad: unknown[] = [
    { dlq: { maxBytes: 0 } }, { dlq: { maxBytes: 1.5 } }, { dlq: { onFull: 'never' } }, { dlq: { maxByte: 10 } },
    { queue: {} }, { parked: { maxAgeMs: -1 } },
  ]
  for (const retention of bad) {
    await t.throwsAsync(Evaq.open(await tmpDir(t), { retention } as never), { code: 'EVAQ_INVALID_ARGUMENT' }, JSON.stringify(retention))
  }
})

// ---- options --------------------------------------------------------------------------------------

test('retry options are validated with EVAQ_INVALID_ARGUMENT', async t => {
  const { q } = await open(t)
  const bad: Array<Record<string, unknown>> = [
    { concurrency: 0 }, { concurrency: 1.5 }, { maxAttempts: 0 }, { rateLimit: { max: 0, intervalMs: 10 } },
    { rateLimit: { max: 1 } }, { rateLimit: 5 }, { backoff: { initialMs: -1 } }, { backoff: { initialMs: 10, maxMs: 5 } },
    { backoff: { multiplier: 0.5 } }, { backoff: { multiplier: Infinity } }, { backoff: { initial: 5 } }, { classify: 'permanent' },
    { stopTimeoutMs: -1 }, { pollIntervalMs: 0 }, { autoStart: 'yes' }, { clock: {} }, { random: 0.5 }, { concurency: 2 },
  ]
  for (const options of bad) t.throws(() => q.retry(() => {}, options as RetryOptions), { code: 'EVAQ_INVALID_ARGUMENT' }, JSON.stringify(options))
  t.throws(() => q.retry('handler' as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  const d = daemon(q, () => {}, { backoff: { initialMs: 5 } })
  t.deepEqual(d.options.backoff, { initialMs: 5, maxMs: 300_000, multiplier: 2 })
  t.is(d.options.concurrency, 4)
  t.is(d.options.maxAttempts, 10)
  await t.throwsAsync(d.stop({ timeoutMs: -1 }), { code: 'EVAQ_INVALID_ARGUMENT' })
  t.true(d.isRunning === false && d.stats().attempts === 0)
})

test('retry, requeueParked and purgeParked on a closed queue fail with EVAQ_CLOSED', async t => {
  const { q } = await open(t)
  const d = daemon(q, () => {})
  await q.close()
  t.throws(() => q.retry(() => {}), { code: 'EVAQ_CLOSED' })
  await t.throwsAsync(d.tick(), { code: 'EVAQ_CLOSED' })
  await t.throwsAsync(q.requeueParked('all'), { code: 'EVAQ_CLOSED' })
  await t.throwsAsync(q.purgeParked([1]), { code: 'EVAQ_CLOSED' })
  await t.throwsAsync(q.parked.read(), { code: 'EVAQ_CLOSED' })
})
