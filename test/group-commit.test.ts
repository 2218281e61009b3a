import test from 'ava'
import { GroupCommit, type Entry } from '../src/write/group-commit.js'

const options = { maxBatchBytes: 1000, maxBatchCount: 100, lingerMs: 0, flushWorkers: 2, maxBufferedBytes: 10_000 }

interface Pending { entries: readonly Entry[], done (): void, fail (err: Error): void }

/** A GroupCommit whose flushes complete only when the test says so. */
function controlled (opts = options) {
  const flushes: Pending[] = []
  let waiters: Array<() => void> = []
  const gc = new GroupCommit(opts, 1, entries => new Promise<void>((resolve, reject) => {
    flushes.push({ entries, done: resolve, fail: reject })
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

test('pushes made while flushes are in flight form the next batch', async t => {
  const { gc, nextFlush } = controlled({ ...options, flushWorkers: 1 })
  const first = gc.push([payload('a')], 1, undefined, undefined)
  const flush1 = await nextFlush()
  const more = Array.from({ length: 10 }, (_, i) => gc.push([payload(String(i))], 1, undefined, undefined))
  flush1.done()
  await first
  const flush2 = await nextFlush()
  t.is(flush2.entries.length, 10)
  flush2.done()
  t.deepEqual(await Promise.all(more), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
})

test('a batch stops at maxBatchCount and maxBatchBytes but takes at least one entry', async t => {
  const { gc, nextFlush } = controlled({ ...options, flushWorkers: 1, maxBatchCount: 3, maxBatchBytes: 10 })
  const all = [
    gc.push([payload('1')], 1, undefined, undefined),
    gc.push([payload('2')], 1, undefined, undefined),
    gc.push([payload('3')], 1, undefined, undefined),
    gc.push([payload('4')], 1, undefined, undefined),
    gc.push([payload('x'.repeat(20))], 20, undefined, undefined),
  ]
  const sizes: number[] = []
  for (let i = 0; i < 3; i++) {
    const f = await nextFlush()
    sizes.push(f.entries.length)
    f.done()
  }
  t.deepEqual(sizes, [3, 1, 1])
  t.deepEqual(await Promise.all(all), [1, 2, 3, 4, 5])
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
