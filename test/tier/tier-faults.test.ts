/**
 * The tier when the bucket fails (docs/tier.md, "Failures"), against a real s3rver: a server that
 * is gone holds pushes back (nothing acknowledged lost, the `full` event says why) until it is
 * back; an object whose bytes changed in the bucket is EVAQ_CORRUPTION naming its records, never
 * returned as data; check and repair refuse a directory with offloaded files; a backup of a
 * tiered queue holds every record and restores without the bucket.
 */
import test from 'ava'
import { createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Evaq, EvaqError, type FullEvent, type TierErrorEvent } from '../../src/index.js'
import { check, repair } from '../../src/store/check.js'
import { readAll } from '../helpers/read-all.js'
import { Bucket } from '../../src/store/s3-bucket.js'
import { S3Server } from '../helpers/s3.js'
import { S3Proxy, type Fault } from '../helpers/s3-proxy.js'
import { tmpDir } from '../helpers/tmp.js'
import { tierOptions } from '../helpers/tier.js'

function payload (i: number, size = 1000): Buffer {
  const b = Buffer.alloc(size, i % 251)
  b.write(`record ${i} `)
  return b
}

async function pushRange (q: Evaq, from: number, to: number): Promise<number[]> {
  return Promise.all(Array.from({ length: to - from }, (_, k) => q.pushWal(payload(from + k))))
}

test('the bucket gone: pushes wait (full, with the tier error), nothing acknowledged is lost, and all goes on once it is back', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'gone', { tier: { s3: s3.options('gone', { requestTimeoutMs: 2000 }) } }))
  t.teardown(() => q.close())
  const full: FullEvent[] = []
  const errors: TierErrorEvent[] = []
  q.on('full', e => full.push(e))
  q.on('tier-error', e => errors.push(e))
  // Offloading works first.
  let n = 0
  while ((await q.stats()).tier!.uploads === 0) { await pushRange(q, n, n + 500); n += 500 }
  await s3.kill()
  // Far more than the budget: the pushes beyond it wait.
  const acked = new Set<number>()
  const pending = Array.from({ length: 8000 }, (_, k) => q.pushWal(payload(n + k)).then(id => { acked.add(id) }))
  const total = n + 8000
  for (let i = 0; i < 200 && !full.some(e => e.tier !== undefined); i++) await new Promise(resolve => setTimeout(resolve, 50))
  const withTier = full.find(e => e.tier !== undefined)
  t.truthy(withTier, 'a full event names the tier error')
  t.is(withTier?.tier?.code, 'EVAQ_IO')
  t.true(errors.length > 0)
  t.true(errors.every(e => e.error instanceof EvaqError && e.error.code === 'EVAQ_IO'))
  const stuck = acked.size
  t.true(stuck < 8000, 'pushes past the budget wait while the bucket is gone')
  t.true((await q.stats()).tier!.errors > 0)
  t.is((await q.stats()).tier!.lastError?.code, 'EVAQ_IO')

  await s3.run()
  await Promise.all(pending)
  t.is(acked.size, 8000)
  const all = await readAll(q.wal, 256 * 1024, 1000)
  t.is(all.length, total)
  t.deepEqual(all.filter((r, i) => !r.payload.equals(payload(i))).map(r => r.id).slice(0, 5), [])
  t.is((await q.stats()).tier!.lastError, undefined)
})

test('an object changed in the bucket: EVAQ_CORRUPTION naming its records, never its bytes as data, and not fetched again', async t => {
  const s3 = await S3Server.start(t)
  const proxy = await S3Proxy.start(t, s3)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'rot', { tier: { s3: proxy.options('rot') } }))
  t.teardown(() => q.close())
  const offloads: Array<{ file: number, firstId?: number, end?: number }> = []
  q.on('offload', e => offloads.push(e))
  let n = 0
  while (offloads.length === 0) { await pushRange(q, n, n + 500); n += 500 }
  const first = offloads[0]!
  const key = (await s3.keys('rot/'))[0]!
  t.true(key.endsWith(`${String(first.file).padStart(10, '0')}.seg`))
  await s3.corrupt(key, 5000)
  const gets = proxy.requests.GET ?? 0
  const err = await t.throwsAsync(q.wal.read({ from: first.firstId!, maxCount: 10 }), { instanceOf: EvaqError })
  t.is(err?.code, 'EVAQ_CORRUPTION')
  t.deepEqual(err?.ids?.[0], first.firstId)
  t.true((await q.stats()).tier!.errors > 0)
  // The read tries each segment of the page on its own after the first failure: they all get
  // the file's answer without another download.
  t.is((proxy.requests.GET ?? 0) - gets, 1)
  // Like damage in a local file: the records are quarantined and counted, never returned changed.
  t.true((await q.wal.stats()).quarantined > 0)
  const after = await q.wal.read({ from: first.firstId!, maxCount: 10 })
  t.true(after.every(r => r.payload.equals(payload(r.id - 1))))
})

test('an object missing from the bucket is EVAQ_IO (the settings may point elsewhere), and reads work once it is back', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'gone-object'))
  t.teardown(() => q.close())
  const offloads: Array<{ file: number, firstId?: number }> = []
  q.on('offload', e => offloads.push(e))
  let n = 0
  while (offloads.length < 2) { await pushRange(q, n, n + 500); n += 500 }
  const key = (await s3.keys('gone-object/'))[0]!
  const saved = join(await tmpDir(t), 'object')
  const bucket = await Bucket.open(s3.options())
  t.teardown(() => bucket.close())
  const digest = await bucket.getFile(key, saved)
  await bucket.delete([key])
  const err = await t.throwsAsync(q.wal.read({ from: offloads[0]!.firstId!, maxCount: 10 }), { instanceOf: EvaqError })
  t.is(err?.code, 'EVAQ_IO')
  await bucket.putFile(key, saved, digest!)
  const records = await q.wal.read({ from: offloads[0]!.firstId!, maxCount: 10 })
  t.is(records.length, 10)
  t.true(records.every(r => r.payload.equals(payload(r.id - 1))))
})

test('check and repair refuse a directory with offloaded files (they cannot read the bucket)', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'chk'))
  let n = 0
  while ((await q.stats()).tier!.segments === 0) { await pushRange(q, n, n + 500); n += 500 }
  await q.close()
  const report = await check(dir)
  t.is(report.status, 'tiered')
  t.is(report.error?.code, 'EVAQ_INVALID_ARGUMENT')
  const out = await tmpDir(t)
  const err = await t.throwsAsync(repair(dir, join(out, 'copy')), { instanceOf: EvaqError })
  t.is(err?.code, 'EVAQ_INVALID_ARGUMENT')
})

test('a backup of a tiered queue holds every record, offloaded ones included, and restores without the bucket', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'bak'))
  t.teardown(() => q.close())
  let n = 0
  while ((await q.stats()).tier!.segments < 3) { await pushRange(q, n, n + 500); n += 500 }
  const out = await tmpDir(t)
  const archive = join(out, 'q.evaqb')
  await pipeline(await q.backup(), createWriteStream(archive))
  const restored = join(out, 'restored')
  await Evaq.restore(archive, restored)
  const r = await Evaq.open(restored, { minFreeDiskBytes: 0 })
  t.teardown(() => r.close())
  const all = await readAll(r.wal, 256 * 1024, 1000)
  t.is(all.length, n)
  t.deepEqual(all.filter((rec, i) => !rec.payload.equals(payload(i))).map(rec => rec.id).slice(0, 5), [])
})

/** Push until the queue has offloaded `files` files (or fails trying); returns how many were pushed. */
async function pushUntilOffloaded (q: Evaq, files: number, from = 0): Promise<number> {
  let n = from
  while ((await q.stats()).tier!.uploads < files) { await pushRange(q, n, n + 500); n += 500 }
  return n
}

for (const [what, fault] of [
  ['500 InternalError', { status: 500, code: 'InternalError', method: 'PUT', times: 3 }],
  ['503 SlowDown', { status: 503, code: 'SlowDown', method: 'PUT', times: 3 }],
  ['403 AccessDenied', { status: 403, code: 'AccessDenied', method: 'PUT', times: 3 }],
  ['an upload cut short', { cutAfterBytes: 100_000, method: 'PUT', times: 2 }],
  ['a truncated upload answered 200', { cutAfterBytes: 100_000, ack: { etag: '"0123456789abcdef0123456789abcdef"' }, method: 'PUT', times: 2 }],
  ['a byte flipped on the way up', { flipByteAt: 5000, method: 'PUT', times: 2 }],
] as Array<[string, Fault]>) {
  test(`offloads that meet ${what} fail (EVAQ_IO, counted), are tried again, and nothing acknowledged is lost`, async t => {
    const s3 = await S3Server.start(t)
    const proxy = await S3Proxy.start(t, s3)
    const dir = await tmpDir(t)
    const q = await Evaq.open(dir, tierOptions(s3, 'f', { tier: { s3: proxy.options('f') } }))
    t.teardown(() => q.close())
    const errors: TierErrorEvent[] = []
    q.on('tier-error', e => errors.push(e))
    let n = await pushUntilOffloaded(q, 1)
    proxy.fault = fault
    n = await pushUntilOffloaded(q, 4, n)
    t.true(errors.length > 0, 'the fault met an offload')
    t.true(errors.every(e => e.op === 'offload' && e.error.code === 'EVAQ_IO'))
    const stats = (await q.stats()).tier!
    t.true(stats.errors >= errors.length)
    // Every offloaded file's object holds exactly what was uploaded: read back through the bucket.
    const all = await readAll(q.wal, 256 * 1024, 1000)
    t.is(all.length, n)
    t.deepEqual(all.filter((r, i) => !r.payload.equals(payload(i))).map(r => r.id).slice(0, 5), [])
    t.true((await q.stats()).tier!.downloads > 0)
  })
}

test('a fetch that gets no answer in time fails with EVAQ_IO (retriable), and the read works once the bucket answers again', async t => {
  const s3 = await S3Server.start(t)
  const proxy = await S3Proxy.start(t, s3)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'slow', { tier: { s3: proxy.options('slow', { requestTimeoutMs: 300 }) } }))
  t.teardown(() => q.close())
  const offloads: Array<{ file: number, firstId?: number }> = []
  q.on('offload', e => offloads.push(e))
  await pushUntilOffloaded(q, 1)
  // The local copy goes right after the offload event.
  const local = join(dir, 'segments', 'wal', `${String(offloads[0]!.file).padStart(10, '0')}.seg`)
  for (let i = 0; i < 100 && await stat(local).then(() => true, () => false); i++) await new Promise(resolve => setTimeout(resolve, 20))
  proxy.fault = { delayMs: 2000, method: 'GET' }
  t.is((await q.stats()).tier!.downloads, 0, 'nothing fetched yet (stats reads no segment)')
  const started = performance.now()
  const err = await t.throwsAsync(q.wal.read({ from: offloads[0]!.firstId!, maxCount: 5 }), { instanceOf: EvaqError })
  t.is(err?.code, 'EVAQ_IO')
  t.true(err?.retriable)
  t.true(performance.now() - started < 1900, 'failed before the delayed answer came')
  proxy.fault = undefined
  const records = await q.wal.read({ from: offloads[0]!.firstId!, maxCount: 5 })
  t.is(records.length, 5)
  t.true(records.every(r => r.payload.equals(payload(r.id - 1))))
})
