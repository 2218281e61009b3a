import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { statfs } from 'node:fs/promises'
import { Evaq, EvaqError, type DropEvent, type EvaqErrorCode, type EvaqOptions, type FullEvent, type QueueRecord } from '../../src/index.js'
import { ManualClock } from '../helpers/clock.js'
import { tmpDir } from '../helpers/tmp.js'
import { isPending, tick, until } from '../helpers/wait.js'

const KiB = 1024
const MiB = 1024 * KiB

/**
 * Small segments, no free-space floor (the test disk may be small), and a maintenance timer that
 * never fires during a test: the tests call `maintain()` themselves.
 */
const BASE: EvaqOptions = { maxBatchCount: 1, minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

interface Events {
  full: FullEvent[]
  drain: number
  dropped: DropEvent[]
}

async function open (t: ExecutionContext, options: EvaqOptions, dir?: string): Promise<{ q: Evaq, dir: string, events: Events }> {
  dir ??= await tmpDir(t)
  const q = await Evaq.open(dir, { ...BASE, ...options })
  t.teardown(() => q.close())
  const events: Events = { full: [], drain: 0, dropped: [] }
  q.on('full', e => events.full.push(e))
  q.on('drain', () => { events.drain++ })
  q.on('dropped', e => events.dropped.push(e))
  return { q, dir, events }
}

const ids = (records: readonly { id: number }[]): number[] => records.map(r => r.id)
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

async function readAll (q: Evaq, log: 'wal' | 'dlq' = 'wal'): Promise<QueueRecord[]> {
  return q[log].read({ maxBytes: Infinity, maxCount: Infinity })
}

async function expectCode (t: ExecutionContext, p: Promise<unknown>, code: EvaqErrorCode, what?: string): Promise<EvaqError> {
  const err = await t.throwsAsync(p, { instanceOf: EvaqError }, what)
  t.is(err?.code, code, what)
  return err as EvaqError
}

/** Random (incompressible) payloads, so that what LevelDB stores is what the budget counts. */
const payload = (bytes: number): Buffer => randomBytes(bytes)

test("onFull 'reject': pushes fail with EVAQ_AT_CAPACITY at the budget, and what was accepted is intact", async t => {
  const { q, events } = await open(t, { maxDiskBytes: MiB, onFull: 'reject' })
  const accepted: Buffer[] = []
  let rejected: unknown
  for (let i = 0; i < 200 && rejected === undefined; i++) {
    const p = payload(32 * KiB)
    try {
      t.is(await q.pushWal(p), accepted.length + 1)
      accepted.push(p)
    } catch (err) {
      rejected = err
    }
  }
  t.true(rejected instanceof EvaqError && rejected.code === 'EVAQ_AT_CAPACITY', `rejected with ${String(rejected)}`)
  // 1 MiB holds at most 32 payloads of 32 KiB, and the budget must not refuse far below it.
  t.true(accepted.length >= 16 && accepted.length <= 32, `accepted ${accepted.length}`)
  t.is(events.full.length, 1)
  t.is(events.full[0]!.reason, 'maxDiskBytes')
  t.true(events.full[0]!.usedBytes + 32 * KiB > MiB)
  t.true((await q.stats()).disk.full)

  await expectCode(t, q.pushWal(payload(32 * KiB)), 'EVAQ_AT_CAPACITY', 'still full')
  await expectCode(t, q.wal.pushMany([payload(16 * KiB), payload(16 * KiB)]), 'EVAQ_AT_CAPACITY', 'pushMany too')
  const records = await readAll(q)
  t.deepEqual(ids(records), range(1, accepted.length), 'a rejected push took no ID')
  t.true(records.every((r, i) => r.payload.equals(accepted[i]!)), 'every accepted payload reads back intact')
  t.like(await q.wal.stats(), { count: accepted.length, bytes: accepted.length * 32 * KiB, nextId: accepted.length + 1 })
  t.is(events.drain, 0)
})

test("onFull 'backpressure': removing records with removeWal frees the space a waiting push needs", async t => {
  // The Evaq-compatible use: no subscribers, records leave by removeWal once the downstream has them.
  const { q, events } = await open(t, { maxDiskBytes: MiB, onFull: 'backpressure' })
  const accepted: number[] = []
  let waiting: Promise<number> | undefined
  for (let i = 0; i < 200 && waiting === undefined; i++) {
    const push = q.pushWal(payload(32 * KiB))
    if (events.full.length > 0) waiting = push
    else accepted.push(await push)
  }
  t.truthy(waiting, 'the budget was reached')
  t.true(await isPending(waiting!))
  await q.removeWal(accepted)
  t.is((await q.wal.stats()).count, 0)
  // Each round compacts what was removed and measures the directory; once the push fits it is
  // admitted (and 'drain' fires), and it then resolves after its own write.
  for (let i = 0; i < 50 && events.drain === 0; i++) {
    await q.maintain()
    await tick()
  }
  t.is(events.drain, 1, 'the budget had room again once everything was removed')
  t.is(await waiting!, accepted.length + 1, 'the waiting push went through')
})

test("onFull 'backpressure': a push (and a pushMany) that waits for room stores the bytes it was given, though the caller reuses its buffer", async t => {
  const { q, events } = await open(t, { maxDiskBytes: MiB, onFull: 'backpressure' })
  const accepted: number[] = []
  let waiting: Promise<number> | undefined
  for (let i = 0; i < 200 && waiting === undefined; i++) {
    const push = q.pushWal(payload(32 * KiB))
    if (events.full.length > 0) waiting = push
    else accepted.push(await push)
  }
  t.truthy(waiting, 'the budget was reached')
  // Views into one buffer the caller fills again as soon as the calls return.
  const scratch = Buffer.from('one two three four')
  const one = q.pushWal(new Uint8Array(scratch.buffer, scratch.byteOffset, 3))
  const many = q.wal.pushMany([scratch.subarray(4, 7), scratch.subarray(8, 13)])
  scratch.fill(0xff)
  t.true(await isPending(one))
  await q.removeWal(accepted)
  for (let i = 0; i < 50 && events.drain === 0; i++) {
    await q.maintain()
    await tick()
  }
  await waiting
  const stored = await Promise.all([one, many.then(ids => ids)]).then(async ([a, [b, c]]) => q.wal.read({ from: a, maxCount: 3 }).then(r => {
    t.deepEqual(ids(r), [a, b!, c!])
    return r.map(x => x.payload.toString())
  }))
  t.deepEqual(stored, ['one', 'two', 'three'])
})

test("onFull 'backpressure': pushes past the budget wait until a lagging subscriber acknowledges; a signal aborts the wait", async t => {
  const { q, events } = await open(t, { maxDiskBytes: MiB, onFull: 'backpressure' })
  const sub = await q.wal.subscribe('exporter')
  const pushed: Buffer[] = []
  let waiting: Promise<number> | undefined
  let waitingPayload: Buffer | undefined
  for (let i = 0; i < 200 && waiting === undefined; i++) {
    const p = payload(32 * KiB)
    const push = q.pushWal(p)
    // The budget decides synchronously: a push that is not admitted emits 'full' at once.
    if (events.full.length > 0) { waiting = push; waitingPayload = p; break }
    t.is(await push, pushed.length + 1)
    pushed.push(p)
    if (i === 2) {
      // The subscriber takes the first records and then falls behind without acknowledging any:
      // nothing can be freed until it does.
      const b = await sub.next()
      t.deepEqual(ids(b!.records), [1, 2, 3])
    }
  }
  t.truthy(waiting, 'the budget was reached')
  t.true(pushed.length >= 16 && pushed.length <= 40, `pushed ${pushed.length}`)
  t.is(events.full[0]!.reason, 'maxDiskBytes')
  t.true(await isPending(waiting!), 'the push waits')
  await q.maintain()
  t.true(await isPending(waiting!), 'and keeps waiting while nothing was freed')
  t.true((await q.stats()).disk.full)

  // A push with a signal waits too, and its abort ends the wait without taking an ID.
  const controller = new AbortController()
  const abortable = q.pushWal(payload(KiB), { signal: controller.signal })
  t.true(await isPending(abortable))
  controller.abort()
  await expectCode(t, abortable, 'EVAQ_ABORTED')
  const already = new AbortController()
  already.abort()
  await expectCode(t, q.pushWal('x', { signal: already.signal }), 'EVAQ_ABORTED', 'an aborted signal fails at once')

  // The subscriber catches up: acknowledged segments are deleted, compacted and measured.
  const rest = await sub.next({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(ids(rest!.records), range(4, pushed.length))
  await sub.ack(range(1, pushed.length))
  let settled = false
  void waiting!.then(() => { settled = true }, () => { settled = true })
  for (let i = 0; i < 50; i++) {
    if (settled) break
    await q.maintain()
    await tick()
  }
  t.is(await waiting!, pushed.length + 1, 'the waiting push went through, with the next ID')
  t.is(events.drain, 1)
  t.false((await q.stats()).disk.full)
  const delivered = await sub.next()
  t.deepEqual(ids(delivered!.records), [pushed.length + 1])
  t.true(delivered!.records[0]!.payload.equals(waitingPayload!))
  t.is(await q.pushWal('after'), pushed.length + 2, 'the aborted pushes took no ID')
})

test("onFull 'drop-oldest': the oldest whole segments go, counted and reported; the newest stay", async t => {
  const { q, events } = await open(t, { maxDiskBytes: MiB, onFull: 'drop-oldest' })
  const payloads: Buffer[] = []
  for (let i = 0; i < 80; i++) {
    const p = payload(32 * KiB)
    t.is(await q.pushWal(p), i + 1, 'drop-oldest never refuses a push')
    payloads.push(p)
  }
  const records = await readAll(q)
  const stats = await q.wal.stats()
  t.true(records.length > 0 && records.length < 32, `kept ${records.length}`)
  const first = records[0]!.id
  t.deepEqual(ids(records), range(first, 80), 'what is left is every record from some ID to the newest')
  t.true(records.every(r => r.payload.equals(payloads[r.id - 1]!)), 'the kept records are intact')
  t.like(stats, { count: records.length, bytes: records.length * 32 * KiB, firstId: first, lastId: 80, nextId: 81 })

  t.true(events.dropped.length > 0)
  t.true(events.dropped.every(e => e.log === 'wal' && e.reason === 'drop-oldest'))
  const droppedRecords = events.dropped.reduce((n, e) => n + e.records, 0)
  const droppedBytes = events.dropped.reduce((n, e) => n + e.bytes, 0)
  t.deepEqual(stats.dropped, { records: droppedRecords, bytes: droppedBytes }, 'the counters agree with the events')
  t.is(droppedRecords, first - 1, 'exactly the records below the first kept one were dropped')
  t.is(droppedBytes, (first - 1) * 32 * KiB)
  // The events cover 1..first-1 in order, without gaps or overlaps.
  let expected = 1
  for (const e of events.dropped) {
    t.is(e.firstId, expected)
    t.is(e.lastId, expected + e.records - 1)
    expected = e.lastId! + 1
  }
  t.is(expected, first)
  t.true((await q.stats()).disk.usedBytes <= MiB)
})

test('retention maxAgeMs: maintain() drops records older than that, and only those', async t => {
  const clock = new ManualClock()
  const { q, events } = await open(t, { clock, retention: { wal: { maxAgeMs: 10_000 }, dlq: { maxAgeMs: 30_000 } } })
  await q.pushWal('old-1')
  await q.pushWal('old-22')
  await q.pushWal('old-333')
  await q.pushRetryItem('dead', { error: 'x' })
  clock.advance(4000)
  await q.pushWal('young-1')
  await q.pushWal('young-22')

  clock.advance(6000) // the old ones are exactly 10 s old: not older than maxAgeMs
  await q.maintain()
  t.deepEqual(events.dropped, [])
  t.is((await q.wal.stats()).count, 5)

  clock.advance(1)
  await q.maintain()
  t.deepEqual(events.dropped, [{ log: 'wal', reason: 'retention', records: 3, bytes: 5 + 6 + 7, firstId: 1, lastId: 3 }])
  t.deepEqual((await readAll(q)).map(r => r.payload.toString()), ['young-1', 'young-22'])
  t.like(await q.wal.stats(), { count: 2, bytes: 15, firstId: 4, lastId: 5, dropped: { records: 3, bytes: 18 } })
  t.is((await q.dlq.stats()).count, 1, 'the DLQ has its own, longer retention')

  clock.advance(10_000)
  await q.maintain()
  t.like(await q.wal.stats(), { count: 0, dropped: { records: 5, bytes: 33 } })
  t.deepEqual(await readAll(q), [])
  t.like(events.dropped[1], { log: 'wal', reason: 'retention', records: 2, bytes: 15, firstId: 4, lastId: 5 })
  t.is((await q.dlq.stats()).count, 1)

  clock.advance(9999) // the DLQ record is exactly 30,000 ms old
  await q.maintain()
  t.is((await q.dlq.stats()).count, 1)
  t.is(events.dropped.length, 2)
  clock.advance(1)
  await q.maintain()
  t.like(events.dropped[2], { log: 'dlq', reason: 'retention', records: 1, bytes: 4 })
  t.like(await q.dlq.stats(), { count: 0, dropped: { records: 1, bytes: 4 } })
  t.is(events.dropped.length, 3)
  const walEvents = events.dropped.filter(e => e.log === 'wal')
  t.is(walEvents.reduce((n, e) => n + e.records, 0), (await q.wal.stats()).dropped.records)
})

test('subscriberTtlMs: an inactive subscriber is dropped on maintain(), an active one kept, and what it pinned is cleaned up', async t => {
  const clock = new ManualClock()
  const { q, dir, events } = await open(t, { clock, subscriberTtlMs: 10_000 })
  const dead = await q.wal.subscribe('dead')
  const alive = await q.wal.subscribe('alive')
  await q.pushWal('a')
  await q.pushWal('b')
  await q.pushWal('c')
  t.deepEqual(ids((await dead.next({ maxCount: 1 }))!.records), [1]) // and never acknowledged
  const b = await alive.next()
  t.deepEqual(ids(b!.records), [1, 2, 3])
  await b!.ack()

  clock.advance(6000)
  t.is(await alive.next(), undefined) // a fetch counts as activity
  await q.maintain()
  t.deepEqual(events.dropped, [], 'nobody is inactive for 10 s yet')
  t.is((await q.wal.stats()).count, 3, 'dead still pins the records')

  clock.advance(4000) // dead: 10 s without a fetch or an ack; alive: 4 s
  await q.maintain()
  t.deepEqual(events.dropped, [{ log: 'wal', reason: 'subscriber-ttl', records: 0, bytes: 0, subscriber: 'dead' }])
  const stats = await q.wal.stats()
  t.is(stats.expiredSubscribers, 1)
  t.deepEqual(stats.subscribers.map(s => s.name), ['alive'])
  t.deepEqual(stats.dropped, { records: 0, bytes: 0 }, 'no record was dropped')
  await expectCode(t, dead.next(), 'EVAQ_NOT_FOUND')

  t.true(await until(async () => (await q.wal.stats()).count === 0), 'what only dead held back is cleaned up')
  t.deepEqual(await readAll(q), [])

  await q.close()
  const { q: q2 } = await open(t, { clock, subscriberTtlMs: 10_000 }, dir)
  const after = await q2.wal.stats()
  t.is(after.expiredSubscribers, 1, 'the counter survives a reopen')
  t.deepEqual(after.subscribers.map(s => s.name), ['alive'])
})

test('minFreeDiskBytes above the free space: the first push is rejected with EVAQ_AT_CAPACITY', async t => {
  const dir = await tmpDir(t)
  const fs = await statfs(dir)
  const free = fs.bavail * fs.bsize
  const { q, events } = await open(t, { minFreeDiskBytes: free + 1024 * MiB, onFull: 'reject' }, dir)
  await expectCode(t, q.pushWal('x'), 'EVAQ_AT_CAPACITY')
  t.is(events.full.length, 1)
  t.is(events.full[0]!.reason, 'minFreeDiskBytes')
  t.true(events.full[0]!.freeBytes < free + 1024 * MiB)
  t.like(await q.wal.stats(), { count: 0, nextId: 1 })
  t.deepEqual(await readAll(q), [])
})
