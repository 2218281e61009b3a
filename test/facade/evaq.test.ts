import test from 'ava'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { Evaq, type EvaqError, type FlushEvent, type QueueRecord } from '../../src/index.js'
import { encodeKey } from '../../src/store/codec.js'
import { findBytes, flipAt, resealFrame } from '../helpers/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'
import { until } from '../helpers/wait.js'

async function open (t: Parameters<typeof tmpDir>[0], options?: Parameters<typeof Evaq.open>[1]): Promise<Evaq> {
  const q = await Evaq.open(await tmpDir(t), options)
  t.teardown(() => q.close())
  return q
}

const text = (records: QueueRecord[]): string[] => records.map(r => r.payload.toString())
const ids = (records: QueueRecord[]): number[] => records.map(r => r.id)

/** Push `n` payloads of `size` bytes, one segment per push (each push awaited). */
async function pushEach (q: Evaq, n: number, size: number, tag = 'r'): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await q.pushWal(`${tag}${i}`.padEnd(size, '.')))
  return out
}

test('pushWal returns increasing IDs from 1 and read returns the payloads', async t => {
  const q = await open(t)
  t.is(await q.pushWal('a'), 1)
  t.is(await q.pushWal(Buffer.from('b')), 2)
  t.is(await q.pushWal(new Uint8Array([0x63])), 3)
  t.deepEqual(text(await q.wal.read()), ['a', 'b', 'c'])
  t.like(await q.wal.stats(), { count: 3, bytes: 3, firstId: 1, lastId: 3, nextId: 4 })
})

test('pushWalMany gives contiguous IDs in call order, also when split over segments', async t => {
  const q = await open(t, { maxBatchCount: 3 })
  await q.pushWal('x')
  const many = await q.pushWalMany(Array.from({ length: 10 }, (_, i) => `m${i}`))
  t.deepEqual(many, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
  t.deepEqual(await q.pushWalMany([]), [])
  t.deepEqual(text(await q.wal.read({ from: 2 })), Array.from({ length: 10 }, (_, i) => `m${i}`))
})

test('concurrent pushes are grouped and all committed in ID order', async t => {
  const q = await open(t)
  const got = await Promise.all(Array.from({ length: 500 }, (_, i) => q.pushWal(`c${i}`)))
  t.deepEqual(got, Array.from({ length: 500 }, (_, i) => i + 1))
  const records = await q.wal.read({ maxCount: Infinity, maxBytes: Infinity })
  t.deepEqual(text(records), Array.from({ length: 500 }, (_, i) => `c${i}`))
})

test('byte-bounded reads stop at whole records, at, below and above boundaries', async t => {
  const q = await open(t)
  await pushEach(q, 5, 10) // five segments of one 10-byte record each
  await q.pushWalMany(['x'.repeat(10), 'y'.repeat(10), 'z'.repeat(10)]) // one segment of three
  t.deepEqual(ids(await q.wal.read({ maxBytes: 30 })), [1, 2, 3], 'exactly at a boundary')
  t.deepEqual(ids(await q.wal.read({ maxBytes: 29 })), [1, 2], 'just below a boundary')
  t.deepEqual(ids(await q.wal.read({ maxBytes: 31 })), [1, 2, 3], 'just above a boundary')
  t.deepEqual(ids(await q.wal.read({ maxBytes: 0 })), [1], 'always at least one record')
  t.deepEqual(ids(await q.wal.read({ maxBytes: 5 })), [1], 'one record larger than the bound')
  t.deepEqual(ids(await q.wal.read({ from: 4, maxBytes: 40 })), [4, 5, 6, 7], 'across segment boundaries')
  t.deepEqual(ids(await q.wal.read({ from: 7, maxBytes: 10 })), [7], 'starting inside a segment')
  t.deepEqual(ids(await q.wal.read({ from: 7, maxBytes: 1000 })), [7, 8])
  t.deepEqual(ids(await q.wal.read({ from: 2, maxCount: 2 })), [2, 3])
  t.deepEqual(ids(await q.wal.read({ from: 9 })), [])
  t.deepEqual(ids(await q.wal.read({ from: 0, maxBytes: Infinity })), [1, 2, 3, 4, 5, 6, 7, 8])
})

test('firstNBytesFromDeadLetterQueue follows the same rule and carries the error', async t => {
  const q = await open(t)
  const a = await q.pushRetryItem('aaaa', { error: Object.assign(new Error('broker down'), { code: 'ECONNREFUSED' }) })
  const b = await q.pushRetryItem('bbbb', { error: 'timeout' })
  const c = await q.pushRetryItem('cccc')
  let records = await q.firstNBytesFromDeadLetterQueue(0, 8)
  t.deepEqual(ids(records), [a, b])
  t.deepEqual(records[0]!.error, { code: 'ECONNREFUSED', message: 'broker down' })
  t.deepEqual(records[1]!.error, { message: 'timeout' })
  records = await q.firstNBytesFromDeadLetterQueue(b, 1)
  t.deepEqual(ids(records), [b])
  records = await q.firstNBytesFromDeadLetterQueue(c, 100)
  t.deepEqual(ids(records), [c])
  t.is(records[0]!.error, undefined)
  t.deepEqual(await q.firstNBytesFromDeadLetterQueue(c + 1, 100), [])
})

test('doneRetryItems removes atomically and returns the highest ID removed', async t => {
  const q = await open(t)
  const got = await Promise.all(['a', 'b', 'c', 'd'].map(p => q.pushRetryItem(p, { error: 'x' })))
  t.is(await q.doneRetryItems([]), undefined)
  t.is(await q.doneRetryItems([got[2]!, got[0]!]), got[2])
  await t.throwsAsync(q.doneRetryItems([got[1]!, got[0]!]), { code: 'EVAQ_NOT_FOUND' })
  t.deepEqual(text(await q.firstNBytesFromDeadLetterQueue(0, 100)), ['b', 'd'])
  t.is((await q.dlq.stats()).count, 2)
  // The WAL and the DLQ are separate: their IDs and contents do not mix.
  t.is(await q.pushWal('w'), 1)
  t.is((await q.dlq.stats()).count, 2)
})

test('removeWal is atomic: one unknown ID removes nothing and is named', async t => {
  const q = await open(t)
  await q.pushWalMany(['a', 'b', 'c'])
  const err = await t.throwsAsync<EvaqError>(q.removeWal([1, 2, 99]), { code: 'EVAQ_NOT_FOUND' })
  t.deepEqual(err?.ids, [99])
  t.deepEqual(ids(await q.wal.read()), [1, 2, 3])
  await q.removeWal([1, 2])
  const again = await t.throwsAsync<EvaqError>(q.removeWal([2, 3]), { code: 'EVAQ_NOT_FOUND' })
  t.deepEqual(again?.ids, [2])
  t.deepEqual(ids(await q.wal.read()), [3])
  t.is((await q.wal.stats()).count, 1)
})

test('removeWal of an ID not yet issued is EVAQ_NOT_FOUND', async t => {
  const q = await open(t)
  await q.pushWal('a')
  await t.throwsAsync(q.removeWal(2), { code: 'EVAQ_NOT_FOUND' })
  await t.throwsAsync(q.removeWal(Number.MAX_SAFE_INTEGER), { code: 'EVAQ_NOT_FOUND' })
})

test('concurrent removes of one ID: exactly one succeeds', async t => {
  const q = await open(t)
  await q.pushWalMany(['a', 'b'])
  const results = await Promise.allSettled([q.removeWal(1), q.removeWal(1), q.removeWal([1, 2])])
  t.deepEqual(results.map(r => r.status), ['fulfilled', 'rejected', 'rejected'])
  t.deepEqual(ids(await q.wal.read()), [2])
})

test('removing single records from the middle of a segment, then the rest', async t => {
  const q = await open(t)
  await q.pushWalMany(['a', 'b', 'c', 'd', 'e'])
  await q.removeWal(3)
  t.deepEqual(text(await q.wal.read()), ['a', 'b', 'd', 'e'])
  await q.removeWal([2, 4])
  t.deepEqual(text(await q.wal.read()), ['a', 'e'])
  t.deepEqual(text(await q.wal.read({ from: 2 })), ['e'])
  t.like(await q.wal.stats(), { count: 2, bytes: 2, firstId: 1, lastId: 5, nextId: 6 })
  await q.removeWal(1)
  t.like(await q.wal.stats(), { count: 1, bytes: 1, firstId: 5, lastId: 5, nextId: 6 })
  await q.removeWal(5)
  t.like(await q.wal.stats(), { count: 0, bytes: 0, firstId: undefined, lastId: undefined, nextId: 6 })
  t.deepEqual(await q.wal.read(), [])
})

test('removals and counters survive reopen', async t => {
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir)
  await q.pushWalMany(['a', 'b', 'c', 'd'])
  await pushEach(q, 3, 4, 's')
  await q.removeWal([2, 5])
  const before = await q.wal.stats()
  await q.close()
  q = await Evaq.open(dir)
  t.teardown(() => q.close())
  t.deepEqual(await q.wal.stats(), before)
  t.deepEqual(ids(await q.wal.read()), [1, 3, 4, 6, 7])
  await q.removeWal([1, 3, 4])
  t.deepEqual(ids(await q.wal.read()), [6, 7])
})

test('a flipped byte inside a stored payload is EVAQ_CORRUPTION naming the ID, never data', async t => {
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir)
  // One push each: each record is a frame of its own in the WAL's segment file.
  for (const p of ['good-1', 'evil-2', 'good-3']) await q.pushWal(p)
  await q.close()
  // The frame's body checksum catches the flip: the read names the segment.
  const { path, at } = await findBytes(dir, 'evil-2')
  await flipAt(path, at + 1)
  q = await Evaq.open(dir)
  t.teardown(() => q.close())
  const dropped: unknown[] = []
  q.on('dropped', e => dropped.push(e))
  const err = await t.throwsAsync<EvaqError>(q.wal.read(), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [2])
  // The damaged record was quarantined: readers go past it from now on, and it is counted.
  t.deepEqual(text(await q.wal.read()), ['good-1', 'good-3'])
  t.like(await q.wal.stats(), { count: 2, quarantined: 1, firstId: 1, lastId: 3 })
  t.deepEqual(dropped, [{ log: 'wal', reason: 'corruption', records: 1, bytes: 6, firstId: 2, lastId: 2 }])
  await q.close()
  q = await Evaq.open(dir)
  t.deepEqual(text(await q.wal.read()), ['good-1', 'good-3'])
  t.like(await q.wal.stats(), { count: 2, quarantined: 1 })
})

test('a flipped payload byte the frame checksum does not see is caught by the record checksum, naming the ID', async t => {
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir)
  await q.pushWalMany(['good-1', 'evil-2', 'good-3'])
  await q.close()
  // Flip a byte of one record inside a frame of three, then seal the frame again (its checksums
  // match the damaged body): only the record's own CRC is left to catch it.
  const { path, number, at, frame } = await findBytes(dir, 'evil-2')
  t.is(frame.firstId, 1)
  await flipAt(path, at + 1)
  await resealFrame(path, number, frame.offset)
  q = await Evaq.open(dir)
  t.teardown(() => q.close())
  const dropped: unknown[] = []
  q.on('dropped', e => dropped.push(e))
  const err = await t.throwsAsync<EvaqError>(q.wal.read(), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [2])
  t.deepEqual(text(await q.wal.read()), ['good-1', 'good-3'])
  t.like(await q.wal.stats(), { count: 2, quarantined: 1, firstId: 1, lastId: 3 })
  t.deepEqual(dropped, [{ log: 'wal', reason: 'corruption', records: 1, bytes: 0, firstId: 2, lastId: 2 }])
  await q.close()
  q = await Evaq.open(dir)
  t.deepEqual(text(await q.wal.read()), ['good-1', 'good-3'])
  t.like(await q.wal.stats(), { count: 2, quarantined: 1 })
})

test('a segment whose locator is damaged is quarantined whole, and readers go on after it', async t => {
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir, { maxBatchCount: 2 })
  await q.pushWalMany(['a1', 'a2', 'b1', 'b2', 'c1'])
  await q.close()
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const wal = db.sublevel<Buffer, Buffer>('wal', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const value = (await wal.get(encodeKey(3)))!
  value[4]! ^= 0x01 // a bit of the locator's offset: it points nowhere a segment file reaches
  await wal.put(encodeKey(3), value)
  await db.close()
  q = await Evaq.open(dir)
  t.teardown(() => q.close())
  const err = await t.throwsAsync<EvaqError>(q.wal.read(), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [3])
  t.true(await until(async () => (await q.wal.stats()).quarantined === 2, 10_000))
  t.deepEqual(text(await q.wal.read()), ['a1', 'a2', 'c1'])
  t.like(await q.wal.stats(), { count: 3, quarantined: 2 })
})

test('a flipped byte in a LevelDB table file is caught by the record checksum', async t => {
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir, { compression: false })
  const marker = 'MARKER-PAYLOAD-0123456789'
  const walMarker = 'WAL-MARKER-0123456789'
  // The DLQ keeps its segments in LevelDB (inline); the WAL's payloads are in segment files.
  await q.pushRetryItem('before', { error: 'e' })
  await q.pushRetryItem(marker, { error: 'e' })
  await q.pushRetryItem('after', { error: 'e' })
  await q.pushWal(walMarker)
  await q.close()
  const db = new ClassicLevel(dir)
  await db.open()
  await db.compactRange('\x00', '\xff') // move the segment from the log into a table file
  await db.close()
  let flipped = 0
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.ldb')) continue
    const file = join(dir, name)
    const bytes = await readFile(file)
    t.is(bytes.indexOf(walMarker), -1, 'no WAL payload in a LevelDB table')
    const at = bytes.indexOf(marker)
    if (at < 0) continue
    bytes[at + 3]! ^= 0x01
    await writeFile(file, bytes)
    flipped++
  }
  t.is(flipped, 1)
  q = await Evaq.open(dir)
  t.teardown(() => q.close())
  const err = await t.throwsAsync<EvaqError>(q.dlq.read(), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [2])
  t.deepEqual((await q.dlq.read()).map(r => r.payload.toString()), ['before', 'after'])
  t.deepEqual(text(await q.wal.read()), [walMarker])
})

test('bad arguments are EVAQ_INVALID_ARGUMENT and change nothing', async t => {
  const q = await open(t)
  await q.pushWalMany(['a', 'b'])
  await q.pushRetryItem('d', { error: 'e' })
  const badIds: unknown[] = [-1, 0, 1.5, 2 ** 53, 2 ** 53 + 1, Number.NaN, Infinity, '1', null, undefined, {}, [1, -1], [1, 1.5], [1, '2'], 10n]
  for (const id of badIds) {
    await t.throwsAsync(q.removeWal(id as never), { code: 'EVAQ_INVALID_ARGUMENT' }, `removeWal(${String(id)})`)
    await t.throwsAsync(q.doneRetryItems((Array.isArray(id) ? id : [id]) as never), { code: 'EVAQ_INVALID_ARGUMENT' }, `doneRetryItems(${String(id)})`)
  }
  await t.throwsAsync(q.doneRetryItems(1 as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  const badPayloads: unknown[] = [1, null, undefined, {}, [1], true, new ArrayBuffer(2), 5n]
  for (const p of badPayloads) {
    await t.throwsAsync(q.pushWal(p as never), { code: 'EVAQ_INVALID_ARGUMENT' })
    await t.throwsAsync(q.pushRetryItem(p as never), { code: 'EVAQ_INVALID_ARGUMENT' })
    await t.throwsAsync(q.pushWalMany(['ok', p] as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  }
  await t.throwsAsync(q.pushWalMany('abc' as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(q.pushRetryItem('x', { error: 42 }), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(q.pushWal('x', { signal: 'no' } as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  for (const maxBytes of [Number.NaN, -1, 1.5, '10', null]) {
    await t.throwsAsync(q.firstNBytesFromDeadLetterQueue(0, maxBytes as never), { code: 'EVAQ_INVALID_ARGUMENT' })
    await t.throwsAsync(q.wal.read({ maxBytes: maxBytes as never }), { code: 'EVAQ_INVALID_ARGUMENT' })
  }
  for (const from of [-1, 1.5, 2 ** 53, Number.NaN, '1']) {
    await t.throwsAsync(q.firstNBytesFromDeadLetterQueue(from as never, 10), { code: 'EVAQ_INVALID_ARGUMENT' })
    await t.throwsAsync(q.wal.read({ from: from as never }), { code: 'EVAQ_INVALID_ARGUMENT' })
  }
  for (const maxCount of [0, -1, 1.5, Number.NaN]) {
    await t.throwsAsync(q.wal.read({ maxCount }), { code: 'EVAQ_INVALID_ARGUMENT' })
  }
  await t.throwsAsync(q.wal.read({ form: 1 } as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  t.deepEqual(text(await q.wal.read()), ['a', 'b'])
  t.like(await q.wal.stats(), { count: 2, bytes: 2, firstId: 1, lastId: 2, nextId: 3 })
  t.is((await q.dlq.stats()).count, 1)
})

test('open rejects bad directories and options', async t => {
  await t.throwsAsync(Evaq.open('' as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(Evaq.open(42 as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(Evaq.open(await tmpDir(t), { durabilty: 'none' } as never), { code: 'EVAQ_INVALID_ARGUMENT' })
})

test('a payload over maxPayloadBytes is EVAQ_TOO_LARGE and nothing is written', async t => {
  const q = await open(t, { maxPayloadBytes: 10 })
  await q.pushWal('0123456789')
  await t.throwsAsync(q.pushWal('0123456789a'), { code: 'EVAQ_TOO_LARGE' })
  await t.throwsAsync(q.pushWalMany(['ok', 'x'.repeat(11)]), { code: 'EVAQ_TOO_LARGE' })
  t.like(await q.wal.stats(), { count: 1, bytes: 10, firstId: 1, lastId: 1, nextId: 2 })
})

test('a push waiting for buffer space is aborted by its signal with EVAQ_ABORTED', async t => {
  const q = await open(t, { maxBufferedBytes: 100, maxPayloadBytes: 100 })
  const first = q.pushWal('x'.repeat(100)) // fills the buffer until it is committed
  const controller = new AbortController()
  const waiting = q.pushWal('y'.repeat(10), { signal: controller.signal })
  const behind = q.pushWal('z'.repeat(10))
  controller.abort()
  await t.throwsAsync(waiting, { code: 'EVAQ_ABORTED' })
  t.is(await first, 1)
  t.is(await behind, 2, 'the aborted push took no ID')
  t.deepEqual(text(await q.wal.read()).map(s => s[0]), ['x', 'z'])
  const pre = new AbortController()
  pre.abort()
  const filler = q.pushWal('f'.repeat(100))
  await t.throwsAsync(q.pushWal('late', { signal: pre.signal }), { code: 'EVAQ_ABORTED' })
  await filler
})

test('pushes beyond maxBufferedBytes wait and then go through in call order', async t => {
  const q = await open(t, { maxBufferedBytes: 64, maxPayloadBytes: 64 })
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => q.pushWal(String(i).padStart(16, '0'))))
  t.deepEqual(got, Array.from({ length: 40 }, (_, i) => i + 1))
  t.deepEqual(text(await q.wal.read({ maxCount: Infinity })), Array.from({ length: 40 }, (_, i) => String(i).padStart(16, '0')))
})

for (const durability of ['none', { intervalMs: 5 }] as const) {
  test(`durability ${JSON.stringify(durability)} writes and reopens`, async t => {
    const dir = await tmpDir(t)
    let q = await Evaq.open(dir, { durability })
    await Promise.all(Array.from({ length: 100 }, (_, i) => q.pushWal(`d${i}`)))
    await q.removeWal([1, 2])
    await q.close()
    q = await Evaq.open(dir, { durability })
    t.teardown(() => q.close())
    t.is((await q.wal.stats()).count, 98)
    t.is(await q.pushWal('next'), 101)
  })
}

test('lingerMs and small batches still commit everything', async t => {
  const q = await open(t, { lingerMs: 2, maxBatchCount: 7, maxBatchBytes: 64, flushWorkers: 3 })
  const got = await Promise.all(Array.from({ length: 100 }, (_, i) => q.pushWal(`l${i}`)))
  t.deepEqual(got, Array.from({ length: 100 }, (_, i) => i + 1))
  t.is((await q.wal.read({ maxCount: Infinity })).length, 100)
})

test('a returned payload is the caller\'s own copy', async t => {
  const q = await open(t)
  const source = Buffer.from('original')
  await q.pushWal(source)
  source.fill(0)
  const [record] = await q.wal.read()
  t.is(record!.payload.toString(), 'original')
  record!.payload.fill(0)
  t.is((await q.wal.read())[0]!.payload.toString(), 'original')
})

test('a push acknowledged while an older flush is in flight can be removed at once', async t => {
  // Small batches and several workers make flushes finish out of order.
  const q = await open(t, { maxBatchCount: 1, flushWorkers: 8 })
  const pushes = Array.from({ length: 200 }, (_, i) => q.pushWal(`o${i}`))
  const removals = pushes.map(p => p.then(id => q.removeWal(id)))
  await Promise.all(removals)
  t.is((await q.wal.stats()).count, 0)
})

test('counters stay exact when removal sets were evicted from the cache', async t => {
  // More partly removed segments than the removal-set cache holds (4096).
  const q = await open(t, { maxBatchCount: 2 })
  const n = 4200
  const got = await q.pushWalMany(Array.from({ length: 2 * n }, (_, i) => `r${i}`))
  await q.removeWal(got.filter((_, i) => i % 2 === 1)) // the second record of every segment
  t.like(await q.wal.stats(), { count: n })
  await q.removeWal(got[0]!) // the first segment's set is long evicted: it is read back
  t.like(await q.wal.stats(), { count: n - 1, firstId: got[2] })
  t.is((await q.wal.read({ maxCount: Infinity, maxBytes: Infinity })).length, n - 1)
  // One removal touching every segment evicts sets it read itself before it writes.
  await q.removeWal(got.filter((_, i) => i % 2 === 0 && i > 0))
  t.like(await q.wal.stats(), { count: 0, bytes: 0, firstId: undefined })
})

test('the flush event reports each flush: records, segments, bytes, time, and whether it was synced', async t => {
  const dir = await tmpDir(t, 'evaq-flush-')
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  t.teardown(() => q.close())
  const flushes: FlushEvent[] = []
  q.on('flush', e => flushes.push(e))
  await q.pushWalMany(['a', 'bb', 'ccc'])
  await q.pushRetryItem('d', { error: 'e' })
  t.deepEqual(flushes.map(f => ({ log: f.log, records: f.records, segments: f.segments, bytes: f.bytes, synced: f.synced })), [
    { log: 'wal', records: 3, segments: 1, bytes: 6, synced: true },
    { log: 'dlq', records: 1, segments: 1, bytes: 1, synced: true },
  ])
  t.true(flushes.every(f => f.durationMs >= 0))
})
