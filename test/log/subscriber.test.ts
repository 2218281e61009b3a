import test, { type ExecutionContext } from 'ava'
import { Evaq, EvaqError, type Delivery, type EvaqErrorCode, type EvaqOptions, type QueueRecord, type Subscriber } from '../../src/index.js'
import { ManualClock } from '../helpers/clock.js'
import { tmpDir } from '../helpers/tmp.js'
import { isPending, tick, until } from '../helpers/wait.js'
import { internals } from '../helpers/internals.js'

/** A clock the test moves by hand: leases, nack delays and pushedAt follow it, never the wall. */
async function open (t: ExecutionContext, options?: EvaqOptions, dir?: string): Promise<{ q: Evaq, dir: string }> {
  dir ??= await tmpDir(t)
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0, ...options })
  t.teardown(() => q.close())
  return { q, dir }
}

const ids = (records: readonly { id: number }[]): number[] => records.map(r => r.id)
const text = (records: readonly { payload: Buffer }[]): string[] => records.map(r => r.payload.toString())
const counts = (records: readonly Delivery[]): number[] => records.map(r => r.deliveryCount)
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Every record the log still holds. */
async function readAll (q: Evaq): Promise<QueueRecord[]> {
  return q.wal.read({ maxBytes: Infinity, maxCount: Infinity })
}

async function count (q: Evaq): Promise<number> {
  return (await q.wal.stats()).count
}

/** Push `payloads` one at a time (with maxBatchCount 1: one segment each). */
async function pushEach (q: Evaq, payloads: readonly string[]): Promise<number[]> {
  const out: number[] = []
  for (const p of payloads) out.push(await q.pushWal(p))
  return out
}

const all = { maxBytes: Infinity, maxCount: Infinity } as const

async function expectCode (t: ExecutionContext, p: Promise<unknown> | (() => unknown), code: EvaqErrorCode, what?: string): Promise<EvaqError> {
  const err = await t.throwsAsync(async () => { await (typeof p === 'function' ? p() : p) }, { instanceOf: EvaqError }, what)
  t.is(err?.code, code, what)
  return err as EvaqError
}

test('two subscribers at different paces both receive every record, in ID order, exactly as pushed', async t => {
  const { q } = await open(t, { maxBatchCount: 4 })
  const fast = await q.wal.subscribe('fast')
  const slow = await q.wal.subscribe('slow')
  const pushed: string[] = []
  const got: Record<string, Delivery[]> = { fast: [], slow: [] }
  const drain = async (sub: Subscriber, maxCount: number, into: Delivery[]): Promise<void> => {
    for (let b = await sub.next({ maxCount }); b !== undefined; b = await sub.next({ maxCount })) {
      t.true(b.records.length <= maxCount)
      into.push(...b.records)
      await b.ack()
    }
  }
  for (let round = 0; round < 6; round++) {
    const payloads = Array.from({ length: 7 + round }, (_, i) => `r${round}-${i}-${'x'.repeat(round * 13 + i)}`)
    pushed.push(...payloads)
    // A mix of single pushes and one atomic pushMany spanning several segments.
    await Promise.all([q.wal.pushMany(payloads.slice(0, 5)), ...payloads.slice(5).map(p => q.pushWal(p))])
    // The fast one drains after every round, three records at a time; the slow one every other round.
    await drain(fast, 3, got.fast!)
    if (round % 2 === 1) await drain(slow, 5, got.slow!)
  }
  await drain(slow, 5, got.slow!)
  for (const name of ['fast', 'slow']) {
    const records = got[name]!
    t.deepEqual(ids(records), range(1, pushed.length), `${name}: every ID once, in order`)
    t.deepEqual(text(records), pushed, `${name}: exactly the payloads pushed`)
    t.true(records.every(r => r.deliveryCount === 1), `${name}: no redelivery`)
  }
})

test('a segment is deleted only after both subscribers acknowledged it', async t => {
  const { q } = await open(t, { maxBatchCount: 1 })
  const a = await q.wal.subscribe('a')
  const b = await q.wal.subscribe('b')
  await pushEach(q, ['one', 'two', 'three'])
  const batchA = await a.next(all)
  t.deepEqual(ids(batchA!.records), [1, 2, 3])
  await batchA!.ack()
  t.is(a.floor, 4)

  // Only `a` acknowledged: nothing may go.
  await until(async () => (await count(q)) !== 3, 2000)
  t.is(await count(q), 3)
  t.deepEqual(text(await readAll(q)), ['one', 'two', 'three'])

  const batchB = await b.next(all)
  t.deepEqual(text(batchB!.records), ['one', 'two', 'three'])
  await b.ack(1)
  t.true(await until(async () => (await count(q)) === 2), 'the segment both acknowledged goes')
  t.deepEqual(ids(await readAll(q)), [2, 3], 'the others stay: b has not acknowledged them')
  t.like(await q.wal.stats(), { count: 2, firstId: 2, lastId: 3 })

  await b.ack([3, 2])
  t.true(await until(async () => (await count(q)) === 0))
  t.deepEqual(await readAll(q), [])
  t.like(await q.wal.stats(), { count: 0, bytes: 0, firstId: undefined, lastId: undefined, nextId: 4 })
})

test('out-of-order acks keep the floor and cleanup exact and redeliver nothing acknowledged', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { maxBatchCount: 1, clock })
  const sub = await q.wal.subscribe('s', { leaseMs: 1000 })
  await pushEach(q, ['a', 'b', 'c', 'd'])
  t.deepEqual(ids((await sub.next(all))!.records), [1, 2, 3, 4])

  await sub.ack(3)
  t.is(sub.floor, 1, '3 is acknowledged, but 1 is not')
  t.like(q.wal.subscribers()[0], { ackFloor: 1, inFlight: 3 })
  await until(async () => (await count(q)) !== 4, 2000)
  t.is(await count(q), 4)

  // Leases run out: everything but 3 comes back, once.
  clock.advance(1000)
  const again = await sub.next(all)
  t.deepEqual(ids(again!.records), [1, 2, 4])
  t.deepEqual(counts(again!.records), [2, 2, 2])

  await sub.ack(1)
  t.is(sub.floor, 2)
  t.true(await until(async () => (await count(q)) === 3))
  t.deepEqual(ids(await readAll(q)), [2, 3, 4])

  await sub.ack(2)
  t.is(sub.floor, 4, '2 closes the gap up to the acknowledged 3')
  t.true(await until(async () => (await count(q)) === 1))
  t.deepEqual(ids(await readAll(q)), [4])

  await sub.ack(4)
  t.is(sub.floor, 5)
  t.true(await until(async () => (await count(q)) === 0))
  clock.advance(10_000)
  t.is(await sub.next(all), undefined, 'nothing acknowledged is delivered again')
})

test('an expired lease redelivers with deliveryCount 2, not before', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock })
  const sub = await q.wal.subscribe('s', { leaseMs: 5000 })
  await q.pushWalMany(['p', 'q'])
  const first = await sub.next()
  t.deepEqual(text(first!.records), ['p', 'q'])
  t.deepEqual(counts(first!.records), [1, 1])

  clock.advance(4999)
  t.is(await sub.next(), undefined, 'the lease still holds')
  clock.advance(1)
  const second = await sub.next()
  t.deepEqual(ids(second!.records), [1, 2])
  t.deepEqual(text(second!.records), ['p', 'q'])
  t.deepEqual(counts(second!.records), [2, 2])
  t.is(await sub.next(), undefined, 'a new lease was taken')
})

test('nack with a delay redelivers after the delay; nack without one at once', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock })
  const sub = await q.wal.subscribe('s', { leaseMs: 60_000 })
  await q.pushWalMany(['x', 'y', 'z'])
  const batch = await sub.next({ maxCount: 2 })
  t.deepEqual(ids(batch!.records), [1, 2])
  await batch!.nack({ delayMs: 3000 })

  const other = await sub.next()
  t.deepEqual(ids(other!.records), [3], 'only the record never delivered is ready')
  t.is(await sub.next(), undefined)
  clock.advance(2999)
  t.is(await sub.next(), undefined, 'the delay has not passed')
  clock.advance(1)
  const back = await sub.next()
  t.deepEqual(ids(back!.records), [1, 2])
  t.deepEqual(counts(back!.records), [2, 2])
  t.deepEqual(text(back!.records), ['x', 'y'])

  await sub.nack(2)
  const now = await sub.next()
  t.deepEqual(ids(now!.records), [2], 'no delay: ready at once, without moving the clock')
  t.deepEqual(counts(now!.records), [3])
  await sub.ack([1, 2, 3])
  clock.advance(120_000)
  t.is(await sub.next(), undefined)
})

test('after maxDeliveries deliveries without an ack the record goes to the DLQ and the stream goes on', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock, maxBatchCount: 1 })
  const sub = await q.wal.subscribe('exporter', { leaseMs: 1000, maxDeliveries: 3 })
  await pushEach(q, ['poison', 'fine-1', 'fine-2'])
  for (let n = 1; n <= 3; n++) {
    const b = await sub.next({ maxCount: 1 })
    t.deepEqual(ids(b!.records), [1])
    t.is(b!.records[0]!.deliveryCount, n)
    clock.advance(1000)
  }
  t.deepEqual(await q.dlq.read(), [], 'not dead-lettered before the next attempt')

  const next = await sub.next({ maxCount: 1 })
  t.deepEqual(ids(next!.records), [2], 'the stream goes on with the following record')
  t.is(next!.records[0]!.deliveryCount, 1)
  const dlq = await q.dlq.read()
  t.is(dlq.length, 1)
  t.is(dlq[0]!.payload.toString(), 'poison')
  t.like(dlq[0]!.error, {
    code: 'EVAQ_MAX_DELIVERIES',
    source: { log: 'wal', id: 1 },
    subscriber: 'exporter',
    deliveries: 3,
  })
  t.is(typeof dlq[0]!.error?.message, 'string')

  await next!.ack()
  const last = await sub.next()
  t.deepEqual(ids(last!.records), [3])
  await last!.ack()
  clock.advance(10_000)
  t.is(await sub.next(), undefined, 'the dead-lettered record is not delivered again')
  t.is(sub.floor, 4)
  t.true(await until(async () => (await count(q)) === 0), 'the dead-lettered record counts as done for cleanup')
  t.is((await q.dlq.stats()).count, 1)
})

test('a record moved to the DLQ stays done after close and reopen', async t => {
  const clock = new ManualClock()
  const { q, dir } = await open(t, { clock, maxBatchCount: 1 })
  const sub = await q.wal.subscribe('s', { leaseMs: 1000, maxDeliveries: 1 })
  await pushEach(q, ['poison', 'next'])
  t.deepEqual(ids((await sub.next({ maxCount: 1 }))!.records), [1])
  clock.advance(1000)
  const second = await sub.next({ maxCount: 1 })
  t.deepEqual(ids(second!.records), [2], '1 went to the DLQ, 2 is delivered (and left unacknowledged)')
  t.is(sub.floor, 2)
  t.is((await q.dlq.stats()).count, 1)
  await q.close()

  const { q: q2 } = await open(t, { clock, maxBatchCount: 1 }, dir)
  const again = await q2.wal.subscribe('s', { leaseMs: 1000, maxDeliveries: 1 })
  const redelivered = await again.next(all)
  t.deepEqual(ids(redelivered!.records), [2], 'only the unacknowledged record comes back, not the dead-lettered one')
  clock.advance(1000)
  await again.next(all) // 2 goes to the DLQ too
  const dlq = await q2.dlq.read()
  t.deepEqual(dlq.map(r => r.error?.source?.id), [1, 2], 'each record dead-lettered once')
})

test('a DLQ subscriber keeps redelivering past maxDeliveries and loses nothing', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock, maxBatchCount: 1 })
  const sub = await q.dlq.subscribe('retry', { leaseMs: 1000, maxDeliveries: 2 })
  await q.pushRetryItem('failed', { error: 'downstream down' })
  for (let n = 1; n <= 4; n++) {
    const b = await sub.next()
    t.deepEqual(ids(b?.records ?? []), [1], `delivery ${n}`)
    t.is(b?.records[0]?.deliveryCount, n)
    clock.advance(1000)
  }
  t.is(sub.floor, 1, 'never acknowledged')
  t.deepEqual(text(await q.dlq.read()), ['failed'], 'still in the DLQ')
})

test('a waiting next() wakes up when a push commits; signal aborts it; waitMs 0 returns undefined', async t => {
  const { q } = await open(t)
  const sub = await q.wal.subscribe('s')
  t.is(await sub.next({ waitMs: 0 }), undefined)
  t.is(await sub.next(), undefined)

  const waiting = sub.next({ waitMs: 60_000 })
  t.true(await isPending(waiting), 'nothing to deliver yet')
  const id = await q.pushWal('hello')
  const batch = await waiting
  t.deepEqual(ids(batch!.records), [id])
  t.deepEqual(text(batch!.records), ['hello'])
  t.is(batch!.records[0]!.deliveryCount, 1)
  await batch!.ack()

  const controller = new AbortController()
  const aborted = sub.next({ waitMs: 60_000, signal: controller.signal })
  t.true(await isPending(aborted))
  controller.abort()
  await expectCode(t, aborted, 'EVAQ_ABORTED')
  await expectCode(t, sub.next({ waitMs: 60_000, signal: controller.signal }), 'EVAQ_ABORTED', 'an aborted signal fails at once')

  // The aborted waits took nothing: the next record is delivered normally.
  await q.pushWal('after')
  const after = await sub.next()
  t.deepEqual(text(after!.records), ['after'])
})

test('a subscriber resumes after close and reopen: acknowledged records are not redelivered, the others are', async t => {
  const { q, dir } = await open(t, { maxBatchCount: 2, ackDurability: 'sync' })
  const sub = await q.wal.subscribe('s')
  const payloads = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']
  await pushEach(q, payloads)
  const batch = await sub.next(all)
  t.deepEqual(ids(batch!.records), range(1, 7))
  await sub.ack([1, 2])
  await sub.ack([5, 7]) // above the floor, out of order
  t.is(sub.floor, 3)
  await q.close()

  const { q: q2 } = await open(t, { maxBatchCount: 2 }, dir)
  t.deepEqual(q2.wal.subscribers().map(s => s.name), ['s'])
  const again = await q2.wal.subscribe('s')
  t.is(again.floor, 3)
  const redelivered = await again.next(all)
  t.deepEqual(ids(redelivered!.records), [3, 4, 6])
  t.deepEqual(text(redelivered!.records), ['r3', 'r4', 'r6'])
  t.deepEqual(counts(redelivered!.records), [1, 1, 1], 'delivery counts start again after a restart')
  t.is(await again.next(all), undefined)
  await redelivered!.ack()
  t.is(again.floor, 8)
  t.true(await until(async () => (await count(q2)) === 0))
})

test("subscribe: 'latest' sees only later records, an ID starts there, the same name resumes", async t => {
  const { q } = await open(t)
  // An 'earliest' subscriber holds every record, so that cleanup cannot take them under the others.
  const holder = await q.wal.subscribe('holder')
  await q.pushWalMany(['a', 'b', 'c'])
  const latest = await q.wal.subscribe('latest', { start: 'latest' })
  t.is(await latest.next(), undefined, 'records pushed before subscribing are not seen')
  await q.pushWal('d')
  const d = await latest.next()
  t.deepEqual(ids(d!.records), [4])
  t.deepEqual(text(d!.records), ['d'])

  const mid = await q.wal.subscribe('mid', { start: 2 })
  const fromTwo = await mid.next({ maxCount: 2 })
  t.deepEqual(ids(fromTwo!.records), [2, 3])
  t.deepEqual(text(fromTwo!.records), ['b', 'c'])
  await fromTwo!.ack()

  t.is(await q.wal.subscribe('mid', { start: 1 }), mid, 'same name and options: the same subscriber')
  const resumed = await q.wal.subscribe('mid', { start: 1, leaseMs: 5000 })
  t.is(resumed.leaseMs, 5000, 'options are updated')
  t.is(resumed.floor, 4, 'start is ignored: it resumes after its acknowledgements')
  const rest = await resumed.next()
  t.deepEqual(ids(rest!.records), [4])

  t.deepEqual(ids((await holder.next())!.records), [1, 2, 3, 4])
  const later = await q.wal.subscribe('later')
  t.deepEqual(ids((await later.next())!.records), [1, 2, 3, 4], "'earliest' starts at the oldest live record")
})

test("records from before a 'latest' subscriber are nobody's to acknowledge: they stay until removed", async t => {
  const { q } = await open(t, { maxBatchCount: 1 })
  const dropped: unknown[] = []
  q.on('dropped', e => dropped.push(e))
  await q.pushWalMany(['a', 'b', 'c'])
  const latest = await q.wal.subscribe('tail', { start: 'latest' })
  await q.pushWal('d')
  const d = await latest.next()
  t.deepEqual(ids(d!.records), [4])
  await d!.ack()
  for (let i = 0; i < 20; i++) await tick()
  // Cleanup goes from the head in ID order, and the head holds records no subscriber covers.
  t.deepEqual(ids(await q.wal.read()), [1, 2, 3, 4])
  t.like(await q.wal.stats(), { count: 4, dropped: { records: 0, bytes: 0 } })
  t.deepEqual(dropped, [])
  // Once they are removed explicitly, what the subscriber acknowledged goes too.
  await q.removeWal([1, 2, 3])
  await q.pushWal('e') // an ack-driven cleanup runs after the next acknowledgement
  const e = await latest.next()
  await e!.ack()
  t.true(await until(async () => (await q.wal.stats()).count === 0))
  t.deepEqual(await q.wal.read(), [])
})

test('unsubscribe: the remaining subscriber alone decides cleanup; the old handle is dead', async t => {
  const { q } = await open(t, { maxBatchCount: 1 })
  const a = await q.wal.subscribe('a')
  const b = await q.wal.subscribe('b')
  await pushEach(q, ['1', '2', '3'])
  const bb = await b.next({ maxCount: 1 })
  t.deepEqual(ids(bb!.records), [1])
  const ab = await a.next(all)
  await a.ack([1, 2])
  t.deepEqual(ids((await b.next(all))!.records), [2, 3])
  await until(async () => (await count(q)) !== 3, 2000)
  t.is(await count(q), 3, 'b still holds everything back')

  const waiting = b.next({ waitMs: 60_000 })
  t.true(await isPending(waiting))
  t.true(await q.wal.unsubscribe('b'))
  await expectCode(t, waiting, 'EVAQ_NOT_FOUND', 'a waiting next() of the unsubscribed one fails')
  t.false(await q.wal.unsubscribe('b'), 'already gone')
  t.deepEqual(q.wal.subscribers().map(s => s.name), ['a'])
  t.true(await until(async () => (await count(q)) === 1), 'what only b held back goes')
  t.deepEqual(ids(await readAll(q)), [3], 'a has not acknowledged 3')

  await expectCode(t, b.next(), 'EVAQ_NOT_FOUND')
  await expectCode(t, b.ack(1), 'EVAQ_NOT_FOUND')
  await expectCode(t, b.nack(1), 'EVAQ_NOT_FOUND')
  await expectCode(t, bb!.ack(), 'EVAQ_NOT_FOUND')

  await ab!.ack()
  t.true(await until(async () => (await count(q)) === 0))
})

test('ack: never delivered is EVAQ_NOT_FOUND and acknowledges nothing; twice is fine; bad arguments are EVAQ_INVALID_ARGUMENT', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock })
  const sub = await q.wal.subscribe('s', { leaseMs: 1000 })
  await q.pushWalMany(['a', 'b', 'c'])
  const batch = await sub.next({ maxCount: 2 })
  t.deepEqual(ids(batch!.records), [1, 2])

  const err = await expectCode(t, sub.ack([1, 3]), 'EVAQ_NOT_FOUND')
  t.deepEqual(err.ids, [3])
  await expectCode(t, sub.ack(99), 'EVAQ_NOT_FOUND')
  t.is(sub.floor, 1, '1 was not acknowledged')
  t.like(q.wal.subscribers()[0], { ackFloor: 1, inFlight: 2 })
  clock.advance(1000)
  const again = await sub.next({ maxCount: 2 })
  t.deepEqual(ids(again!.records), [1, 2], '1 is still leased and comes back')
  t.deepEqual(counts(again!.records), [2, 2])

  await again!.ack()
  await again!.ack()
  await sub.ack([1, 2, 1])
  await batch!.ack()
  t.is(sub.floor, 3)

  // Nack of something not leased (acknowledged or never delivered) is NOT_FOUND too.
  await expectCode(t, sub.nack(1), 'EVAQ_NOT_FOUND')

  const invalid = 'EVAQ_INVALID_ARGUMENT'
  for (const bad of [0, -1, 1.5, Number.NaN, '1', null, [1, 0], [1, '2'], { id: 1 }]) {
    await expectCode(t, sub.ack(bad as never), invalid, `ack(${JSON.stringify(bad)})`)
  }
  const c = await sub.next()
  t.deepEqual(ids(c!.records), [3])
  await expectCode(t, sub.nack(3, { delayMs: -1 }), invalid)
  await expectCode(t, sub.nack(3, { delayMs: 1.5 }), invalid)
  await expectCode(t, sub.nack([3, 0]), invalid)
  for (const opts of [{ maxCount: 0 }, { maxBytes: -1 }, { maxBytes: Number.NaN }, { waitMs: -1 }, { waitMs: 1.5 }, { signal: {} }, { bogus: 1 }, null]) {
    await expectCode(t, sub.next(opts as never), invalid, `next(${JSON.stringify(opts)})`)
  }
  for (const name of ['', 'a b', 'x'.repeat(129), 'ü', 'a/b', 42, undefined]) {
    await expectCode(t, q.wal.subscribe(name as never), invalid, `subscribe(${JSON.stringify(name)})`)
    await expectCode(t, q.wal.unsubscribe(name as never), invalid, `unsubscribe(${JSON.stringify(name)})`)
  }
  t.truthy(await q.wal.subscribe('x'.repeat(128)), '128 characters are fine')
  for (const opts of [{ start: -1 }, { start: 1.5 }, { start: 'middle' }, { leaseMs: 0 }, { leaseMs: 1.5 }, { maxDeliveries: 0 }, { bogus: 1 }, null]) {
    await expectCode(t, q.wal.subscribe('other', opts as never), invalid, `subscribe options ${JSON.stringify(opts)}`)
  }
  t.deepEqual(q.wal.subscribers().map(s => s.name).sort(), ['s', 'x'.repeat(128)], 'no subscriber was created by a bad call')
  // The rejected calls changed nothing: 3 is still leased and acknowledging it works.
  t.like(q.wal.subscribers().find(s => s.name === 's'), { ackFloor: 3, inFlight: 1 })
  await c!.ack()
  t.is(sub.floor, 4)
})

test('batches() yields batches and ends when the signal aborts', async t => {
  const { q } = await open(t)
  const sub = await q.wal.subscribe('s')
  await q.pushWalMany(['a', 'b', 'c'])
  const controller = new AbortController()
  const seen: number[] = []
  let batches = 0
  const consumer = (async () => {
    for await (const batch of sub.batches({ signal: controller.signal, waitMs: 10, maxCount: 2 })) {
      batches++
      t.true(batch.records.length <= 2)
      seen.push(...ids(batch.records))
      await batch.ack()
      if (seen.length === 3) void q.pushWalMany(['d', 'e'])
      if (seen.length === 5) controller.abort()
    }
  })()
  await consumer
  t.deepEqual(seen, [1, 2, 3, 4, 5])
  t.true(batches >= 3)

  // An abort while the generator waits for records ends it too.
  const idle = new AbortController()
  let yielded = 0
  const waiting = (async () => {
    for await (const batch of sub.batches({ signal: idle.signal, waitMs: 10 })) { yielded += batch.records.length; await batch.ack() }
  })()
  t.true(await isPending(waiting))
  idle.abort()
  await waiting
  t.is(yielded, 0)
})

test('stats(): subscribers with sensible lagRecords, inFlight and ackFloor', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock, maxBatchCount: 1 })
  const busy = await q.wal.subscribe('busy', { leaseMs: 7000, maxDeliveries: 4 })
  await q.wal.subscribe('idle')
  await pushEach(q, range(1, 10).map(i => `p${i}`.padEnd(10, '.'))) // 10 bytes each
  clock.advance(500)
  const batch = await busy.next({ maxCount: 4 })
  t.deepEqual(ids(batch!.records), [1, 2, 3, 4])
  await busy.ack([1, 2])
  await busy.ack(4)

  const stats = await q.wal.stats()
  t.like(stats, { count: 10, bytes: 100, firstId: 1, lastId: 10, nextId: 11 })
  const byName = Object.fromEntries(stats.subscribers.map(s => [s.name, s]))
  t.deepEqual(Object.keys(byName).sort(), ['busy', 'idle'])
  t.like(byName.busy, {
    ackFloor: 3,
    cursor: 5,
    inFlight: 1,
    lagRecords: 7, // 3 and 5..10
    lagBytes: 70,
    leaseMs: 7000,
    maxDeliveries: 4,
    lastActiveAt: clock.now(),
    oldestUnackedAgeMs: 500,
  })
  t.like(byName.idle, { ackFloor: 1, cursor: 1, inFlight: 0, lagRecords: 10, lagBytes: 100, leaseMs: 30_000, maxDeliveries: 10 })
  t.like(q.wal.subscribers().find(s => s.name === 'busy'), { ackFloor: 3, inFlight: 1, lagRecords: 7 })

  await busy.ack(3)
  const after = (await q.wal.stats()).subscribers.find(s => s.name === 'busy')!
  t.like(after, { ackFloor: 5, inFlight: 0, lagRecords: 6 })
})

test('records removed with removeWal before a subscriber saw them are skipped', async t => {
  const { q } = await open(t, { maxBatchCount: 2 })
  const sub = await q.wal.subscribe('s')
  await pushEach(q, ['a', 'b'])
  const first = await sub.next()
  await first!.ack()
  await pushEach(q, ['c', 'd', 'e', 'f', 'g'])
  await q.removeWal([3, 5, 6])
  const rest = await sub.next(all)
  t.deepEqual(ids(rest!.records), [4, 7])
  t.deepEqual(text(rest!.records), ['d', 'g'])
  t.is(await sub.next(all), undefined)
  await rest!.ack()
  t.is(sub.floor, 8)
  t.true(await until(async () => (await count(q)) === 0))
  t.deepEqual(await readAll(q), [])
})

test('closing the queue while next() waits rejects the wait with EVAQ_CLOSED', async t => {
  const { q } = await open(t)
  const sub = await q.wal.subscribe('s')
  const waiting = sub.next({ waitMs: 60_000 })
  t.true(await isPending(waiting))
  await q.close()
  await expectCode(t, waiting, 'EVAQ_CLOSED')
  await expectCode(t, sub.next(), 'EVAQ_CLOSED')
})

test('a next() that waits and times out leaves no waiter behind', async t => {
  const { q } = await open(t)
  const sub = await q.wal.subscribe('idle')
  for (let i = 0; i < 20; i++) {
    t.is(await sub.next({ waitMs: 1 }), undefined)
    t.is(sub.waiting, 0)
  }
  const controller = new AbortController()
  const pending = sub.next({ waitMs: 60_000, signal: controller.signal })
  await tick()
  t.is(sub.waiting, 1)
  controller.abort()
  await t.throwsAsync(pending, { code: 'EVAQ_ABORTED' })
  t.is(sub.waiting, 0)
})

test('concurrent next() calls on one subscriber share out the records, each delivered once', async t => {
  const { q } = await open(t)
  const sub = await q.wal.subscribe('s')
  await q.pushWalMany(Array.from({ length: 10 }, (_, i) => `r${i}`))
  const [a, b] = await Promise.all([sub.next({ maxCount: 5 }), sub.next({ maxCount: 5 })])
  t.deepEqual([...ids(a!.records), ...ids(b!.records)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  t.true([...a!.records, ...b!.records].every(r => r.deliveryCount === 1))
})

test('an empty read does not move the cursor past records committed while it ran (a gap of IDs, then new records)', async t => {
  // A host whose log holds records 100..102 only; the watermark is 50 when next() starts and moves
  // to 102 while the read runs, as when flushes complete during the read.
  const { Subscriber } = await import('../../src/log/subscriber.js')
  let watermark = 50
  const records = [100, 101, 102].map(id => ({ id, payload: Buffer.from(`r${id}`), pushedAt: 0 }))
  const host = {
    logName: 'wal',
    now: () => 0,
    assertOpen: () => {},
    head: () => 1,
    watermark: () => watermark,
    read: async (from: number, _maxBytes: number, maxCount: number) => {
      const seen = watermark
      await Promise.resolve()
      watermark = 102
      return records.filter(r => r.id >= from && r.id <= seen).slice(0, maxCount)
    },
    onCommitted: () => () => {},
    persist: async () => {},
    deadLetter: async () => false,
    meanRecordBytes: () => 0,
  }
  const sub = new Subscriber(host, 'a', { v: 1, start: 1, floor: 1, acked: [], leaseMs: 1000, maxDeliveries: 10, createdAt: 0, lastActiveAt: 0 })
  t.is(await sub.next({ waitMs: 0 }), undefined, 'nothing was visible when the read started')
  const batch = await sub.next({ waitMs: 0 })
  t.deepEqual(batch?.records.map(r => r.id), [100, 101, 102], 'the records committed during the first read are delivered')
})

test('progress writes take turns: a flush and an unsubscribe never write at once, and the unsubscribe stays done', async t => {
  // Two batches written at once may reach LevelDB in either order (classic-level writes on a
  // thread pool): an older progress applied last would bring back acknowledged records, or an
  // unsubscribed subscriber, after a restart. So progress writes never overlap.
  const { q, dir } = await open(t, { ackDurability: { intervalMs: 3_600_000 } })
  await q.wal.subscribe('keeper') // holds the record back from cleanup
  await q.pushWal('x')
  const db = (q as unknown as { store: { db: { batch: () => { write: (o?: unknown) => Promise<void> } } } }).store.db
  const batch = db.batch.bind(db)
  let writing = 0
  let most = 0
  db.batch = () => {
    const b = batch()
    const write = b.write.bind(b)
    b.write = async (o?: unknown) => {
      most = Math.max(most, ++writing)
      try { await write(o) } finally { writing-- }
    }
    return b
  }
  for (const name of range(1, 20).map(i => `s${i}`)) {
    const sub = await q.wal.subscribe(name)
    const delivered = await sub.next()
    await delivered!.ack() // dirty: waits for the interval flush
    await Promise.all([internals(q).wal.writeProgress(), q.wal.unsubscribe(name)])
  }
  t.is(most, 1)
  await q.close()
  const { q: again } = await open(t, undefined, dir)
  t.deepEqual((await again.wal.stats()).subscribers.map(s => s.name), ['keeper'])
})

test('lagRecords never exceeds the live records: removed records are not lag', async t => {
  const { q } = await open(t)
  await q.wal.subscribe('idle')
  const ids = await q.pushWalMany(['a', 'b', 'c', 'd'])
  t.is(q.wal.subscribers()[0]!.lagRecords, 4)
  await q.removeWal(ids.slice(1)) // removed records stay in the subscriber's range of IDs
  t.is(q.wal.subscribers()[0]!.lagRecords, 1)
  t.is((await q.wal.stats()).subscribers[0]!.lagRecords, 1)
})

test('stats(): firstPushedAt is when the oldest live record was pushed, on the queue\'s clock', async t => {
  const clock = new ManualClock()
  const { q } = await open(t, { clock })
  const t0 = clock.t
  t.is((await q.wal.stats()).firstPushedAt, undefined)
  const a = await q.pushWal('a')
  clock.advance(5_000)
  await q.pushWal('b')
  t.is((await q.wal.stats()).firstPushedAt, t0)
  await q.removeWal(a)
  t.is((await q.wal.stats()).firstPushedAt, t0 + 5_000)
})
