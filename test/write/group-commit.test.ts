import test from 'ava'
import { HEADER_BYTES, INDEX_ENTRY_BYTES } from '../../src/store/codec.js'
import { CommitLater, GroupCommit, type PendingSegment } from '../../src/write/group-commit.js'

const options = { maxBatchBytes: 1000, maxBatchCount: 100, lingerMs: 0, flushWorkers: 2, maxBufferedBytes: 10_000 }

interface Pending { segments: readonly PendingSegment[], done (): void, fail (err: Error): void }

/** A GroupCommit whose flushes complete only when the test says so. */
function controlled (opts = options) {
  const flushes: Pending[] = []
  let waiters: Array<() => void> = []
  const gc = new GroupCommit(opts, 1, segments => new Promise<void>((resolve, reject) => {
    flushes.push({ segments, done: resolve, fail: reject })
    for (const w of waiters) w()
    waiters = []
  }), () => {})
  const nextFlush = async (): Promise<Pending> => {
    while (flushes.length === 0) await new Promise<void>(resolve => waiters.push(resolve))
    return flushes.shift()!
  }
  return { gc, nextFlush }
}

const payload = (s: string): Buffer => Buffer.from(s)

test('the watermark never passes an uncommitted ID when flushes finish out of order', async t => {
  const { gc, nextFlush } = controlled()
  const a = gc.push([payload('a')], 1, undefined, undefined)
  const first = await nextFlush()
  const b = gc.push([payload('b')], 1, undefined, undefined)
  const second = await nextFlush()
  t.is(gc.watermark, 0)
  second.done()
  t.is(await b, 2)
  t.is(gc.watermark, 0, 'ID 1 is still in flight')
  first.done()
  t.is(await a, 1)
  t.is(gc.watermark, 2)
})

test('a failed flush rejects its pushes and the watermark moves past them', async t => {
  const { gc, nextFlush } = controlled()
  const a = gc.push([payload('a')], 1, undefined, undefined)
  ;(await nextFlush()).fail(new Error('disk'))
  await t.throwsAsync(a, { message: 'disk' })
  t.is(gc.watermark, 1)
  const b = gc.push([payload('b')], 1, undefined, undefined)
  ;(await nextFlush()).done()
  t.is(await b, 2)
})

test('a flush that throws CommitLater is flushed again, in ID order, and its pushes neither resolve nor fail meanwhile', async t => {
  const { gc, nextFlush } = controlled()
  const settled: string[] = []
  const a = gc.push([payload('a')], 1, undefined, undefined)
  a.then(() => settled.push('a'), () => settled.push('a failed'))
  const first = await nextFlush()
  const b = gc.push([payload('b')], 1, undefined, undefined)
  b.then(() => settled.push('b'), () => settled.push('b failed'))
  const second = await nextFlush()
  // Both refused; the later one is handed back first.
  second.fail(new CommitLater(Promise.resolve(), 'not written'))
  first.fail(new CommitLater(Promise.resolve(), 'not written'))
  const again = await nextFlush()
  t.deepEqual(again.segments.map(s => s.builder.firstId), [1, 2], 'both segments, in ID order, in one flush')
  t.deepEqual(settled, [])
  t.is(gc.watermark, 0)
  t.is(gc.bufferedBytes, 2, 'their bytes stay held')
  again.done()
  t.deepEqual([await a, await b], [1, 2])
  t.is(gc.watermark, 2)
  t.is(gc.bufferedBytes, 0)
  await gc.drain()
})

test('pushes made while flushes are in flight form the next segment', async t => {
  const { gc, nextFlush } = controlled({ ...options, flushWorkers: 1 })
  const first = gc.push([payload('a')], 1, undefined, undefined)
  const flush1 = await nextFlush()
  const more = Array.from({ length: 10 }, (_, i) => gc.push([payload(String(i))], 1, undefined, undefined))
  flush1.done()
  await first
  const flush2 = await nextFlush()
  t.deepEqual(flush2.segments.map(s => s.builder.count), [10])
  flush2.done()
  t.deepEqual(await Promise.all(more), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
})

test('segments stop at maxBatchCount and maxBatchBytes but hold at least one record', async t => {
  const { gc, nextFlush } = controlled({ ...options, flushWorkers: 1, maxBatchCount: 3, maxBatchBytes: 10 })
  const all = [
    gc.push([payload('1')], 1, undefined, undefined),
    gc.push([payload('2')], 1, undefined, undefined),
    gc.push([payload('3')], 1, undefined, undefined),
    gc.push([payload('4')], 1, undefined, undefined),
    gc.push([payload('x'.repeat(20))], 20, undefined, undefined),
    gc.push([payload('y'.repeat(9))], 9, undefined, undefined),
  ]
  const counts: number[][] = []
  while (counts.flat().length < 4) {
    const f = await nextFlush()
    counts.push(f.segments.map(s => s.builder.count))
    f.done()
  }
  // [1,2,3] is full by count; [4] cannot take 20 more bytes; [x*20] is over the byte bound alone.
  t.deepEqual(counts.flat(), [3, 1, 1, 1])
  t.deepEqual(await Promise.all(all), [1, 2, 3, 4, 5, 6])
})

test('a pushMany that spans segments is flushed in one commit', async t => {
  const { gc, nextFlush } = controlled({ ...options, flushWorkers: 1, maxBatchCount: 4, maxBatchBytes: 4 })
  const before = gc.push([payload('a')], 1, undefined, undefined)
  const many = gc.push(Array.from({ length: 10 }, (_, i) => payload(String(i))), 10, undefined, undefined)
  const after = gc.push([payload('z')], 1, undefined, undefined)
  const seen: number[][] = []
  while (seen.flat().reduce((a, b) => a + b, 0) < 12) {
    const f = await nextFlush()
    seen.push(f.segments.map(s => s.builder.count))
    f.done()
  }
  // The ten records of the pushMany land in segments [a,0,1,2] [3,4,5,6] [7,8,9,z]: one group.
  t.deepEqual(seen, [[4, 4, 4]])
  t.is(await before, 1)
  t.is(await many, 2)
  t.is(await after, 12)
})

test('drain resolves once everything settled', async t => {
  const { gc, nextFlush } = controlled()
  const p = gc.push([payload('a')], 1, undefined, undefined)
  let drained = false
  const d = gc.drain().then(() => { drained = true })
  const f = await nextFlush()
  t.false(drained)
  f.done()
  await d
  t.true(drained)
  t.is(await p, 1)
})

test('isPending tells issued-but-unflushed IDs from committed ones', async t => {
  const { gc, nextFlush } = controlled()
  const a = gc.push([payload('a'), payload('b')], 2, undefined, undefined)
  const first = await nextFlush()
  const b = gc.push([payload('c')], 1, undefined, undefined)
  const second = await nextFlush()
  second.done()
  await b
  t.deepEqual([1, 2, 3, 4].map(id => gc.isPending(id)), [true, true, false, false])
  first.done()
  await a
  t.deepEqual([1, 2, 3].map(id => gc.isPending(id)), [false, false, false])
})

test('at most flushWorkers flushes are in flight; the next starts as one completes', async t => {
  const { gc, nextFlush } = controlled({ ...options, maxBatchCount: 1, maxBatchBytes: 1 })
  const pushes = ['a', 'b', 'c', 'd'].map(s => gc.push([payload(s)], 1, undefined, undefined))
  const first = await nextFlush()
  const second = await nextFlush()
  const started: Pending[] = []
  const third = nextFlush().then(f => { started.push(f); return f })
  for (let i = 0; i < 20; i++) await new Promise(setImmediate)
  t.is(started.length, 0, 'a third flush waits for a worker')
  second.done()
  t.is(await pushes[1], 2)
  t.deepEqual((await third).segments.map(s => s.builder.firstId), [3])
  first.done()
  ;(await third).done()
  ;(await nextFlush()).done()
  t.deepEqual(await Promise.all(pushes), [1, 2, 3, 4])
})

test('concurrent pushes get ascending IDs in call order, each its own, and a failed flush rejects exactly its pushes', async t => {
  const { gc, nextFlush } = controlled()
  const early = ['a', 'b', 'c'].map(s => gc.push([payload(s)], 1, undefined, undefined))
  const first = await nextFlush()
  const late = ['d', 'e'].map(s => gc.push([payload(s)], 1, undefined, undefined))
  const second = await nextFlush()
  t.deepEqual(first.segments.map(s => [s.builder.firstId, s.builder.count]), [[1, 3]])
  t.deepEqual(second.segments.map(s => [s.builder.firstId, s.builder.count]), [[4, 2]])
  second.fail(Object.assign(new Error('disk'), { code: 'EVAQ_IO' }))
  first.done()
  t.deepEqual(await Promise.all(early), [1, 2, 3])
  for (const p of late) await t.throwsAsync(p, { code: 'EVAQ_IO' })
})

test('under steady load a full segment is built in the buffer it started with, its index included', async t => {
  const max = 64 * 1024
  const { gc, nextFlush } = controlled({ ...options, maxBatchBytes: max, maxBatchCount: 10_000, maxBufferedBytes: 1 << 24, flushWorkers: 1 })
  // 256 records: an index of 2 KiB, more than the slack a buffer is given beyond its payloads.
  const record = Buffer.alloc(256, 7)
  for (let round = 0; round < 16; round++) {
    const pushes = Array.from({ length: 256 }, () => gc.push([record], record.byteLength, undefined, undefined))
    const flush = await nextFlush()
    const [segment] = flush.segments
    t.is(segment!.builder.payloadBytes, max, 'a full segment')
    const total = HEADER_BYTES + segment!.builder.payloadBytes + segment!.builder.count * INDEX_ENTRY_BYTES
    // The first segments cannot know; once the moving average has settled they are sized right.
    if (round >= 12) t.true(segment!.builder.capacity >= total, `round ${round}: capacity ${segment!.builder.capacity} < ${total}`)
    flush.done()
    await Promise.all(pushes)
  }
})

test('a burst of pushes made while no flush is in flight goes out as one flush per worker, at once', async t => {
  const { gc, nextFlush } = controlled({ ...options, maxBatchBytes: 1 << 20, maxBatchCount: 1000, maxBufferedBytes: 10 << 20 })
  const record = Buffer.alloc(2048)
  const burst = (n: number): Array<Promise<number>> => Array.from({ length: n }, () => gc.push([record], record.byteLength, undefined, undefined))
  const sizes = (f: Pending): number[] => f.segments.map(s => s.builder.count)
  // The first burst: nothing measured yet, so the first part has the smallest split size (64 KiB).
  let pushes = burst(100)
  let first = await nextFlush()
  let second = await nextFlush()
  t.deepEqual([sizes(first), sizes(second)], [[32], [68]], 'both in flight before either completes')
  first.done()
  second.done()
  t.deepEqual((await Promise.all(pushes)).slice(30, 34), [31, 32, 33, 34])
  // The next burst is split by the size of the last one: in halves.
  pushes = burst(100)
  first = await nextFlush()
  second = await nextFlush()
  t.deepEqual([sizes(first), sizes(second)], [[50], [50]])
  first.done()
  second.done()
  await Promise.all(pushes)
  // A burst below the split size (half the last one) is not split, nor one pushed while a flush is in flight.
  pushes = burst(40)
  first = await nextFlush()
  t.deepEqual(sizes(first), [40])
  const more = burst(100)
  second = await nextFlush()
  t.deepEqual(sizes(second), [100])
  first.done()
  second.done()
  await Promise.all([...pushes, ...more])
})

test('small bursts (the CPU per flush bounds them, not the disk) and one flush worker never split', async t => {
  const small = controlled({ ...options, maxBatchBytes: 1 << 20, maxBatchCount: 1000, maxBufferedBytes: 10 << 20 })
  let pushes = Array.from({ length: 500 }, () => small.gc.push([payload('x'.repeat(100))], 100, undefined, undefined))
  let only = await small.nextFlush()
  t.deepEqual(only.segments.map(s => s.builder.count), [500], '50 KB of 100-byte records: one flush')
  only.done()
  await Promise.all(pushes)
  const one = controlled({ ...options, flushWorkers: 1, maxBatchBytes: 1 << 20, maxBatchCount: 1000, maxBufferedBytes: 10 << 20 })
  const record = Buffer.alloc(2048)
  pushes = Array.from({ length: 100 }, () => one.gc.push([record], record.byteLength, undefined, undefined))
  only = await one.nextFlush()
  t.deepEqual(only.segments.map(s => s.builder.count), [100])
  only.done()
  await Promise.all(pushes)
})
