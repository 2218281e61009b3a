/**
 * The tier on object storage (docs/tier.md), against a real S3-compatible server (s3rver on
 * loopback): a queue pushed several times past its disk budget with `onFull: 'offload'` stays
 * within the budget, reads every record back byte for byte, drains it through a subscriber in ID
 * order, and leaves nothing in the bucket once everything is acknowledged.
 */
import test from 'ava'
import { Evaq, EvaqError } from '../../src/index.js'
import { readAll } from '../helpers/read-all.js'
import { S3Server } from '../helpers/s3.js'
import { tmpDir } from '../helpers/tmp.js'
import { BUDGET, du, tierOptions, tierPayload } from '../helpers/tier.js'

const payload = tierPayload

test('pushed four times past the disk budget: within it, every record read back, drained in order, the bucket empty after the acks', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  const q = await Evaq.open(dir, tierOptions(s3, 'q1'))
  t.teardown(() => q.close())
  const offloads: number[] = []
  q.on('offload', e => offloads.push(e.file))
  const SIZE = 1000
  const COUNT = Math.ceil(4 * BUDGET / SIZE)
  let peak = 0
  for (let i = 0; i < COUNT; i += 500) {
    const batch = Array.from({ length: Math.min(500, COUNT - i) }, (_, k) => payload(i + k, SIZE))
    await Promise.all(batch.map(p => q.pushWal(p)))
    peak = Math.max(peak, await du(dir))
  }
  t.log(`the data directory peaked at ${peak} bytes of ${BUDGET}`)
  t.true(peak <= BUDGET, `the data directory peaked at ${peak} bytes, over its budget of ${BUDGET}`)
  const stats = await q.stats()
  t.is(stats.wal.count, COUNT)
  t.true(offloads.length > 0)
  t.truthy(stats.tier)
  t.true(stats.tier!.segments > 0)
  // (An offload may be under way: its object can be in the bucket before its file is counted.)
  t.true((await s3.keys('q1/')).length >= stats.tier!.segments)

  // Every record, byte for byte, through reads (which fetch offloaded files back).
  const all = await readAll(q.wal, 256 * 1024, 1000)
  t.is(all.length, COUNT)
  const wrong = all.filter((r, i) => r.id !== i + 1 || !r.payload.equals(payload(i, SIZE)))
  t.deepEqual(wrong.map(r => r.id).slice(0, 5), [])
  t.true((await q.stats()).tier!.downloads > 0)
  t.true(await du(dir) <= BUDGET)

  // Drained by a subscriber in ID order, each batch acknowledged.
  const sub = await q.wal.subscribe('drain', { from: 'earliest' } as never).catch(() => q.wal.subscribe('drain'))
  let expect = 1
  for (let b = await sub.next({ maxCount: 700 }); b !== undefined; b = await sub.next({ maxCount: 700 })) {
    for (const r of b.records) {
      if (r.id !== expect || !r.payload.equals(payload(expect - 1, SIZE))) t.fail(`record ${r.id} delivered where ${expect} was due, or changed`)
      expect++
    }
    await b.ack()
  }
  t.is(expect - 1, COUNT)
  // Acknowledged by every subscriber: the cleanup deletes the segments, and their files go,
  // offloaded ones from the bucket.
  for (let round = 0; round < 50 && (await s3.keys('q1/')).length > 0; round++) await q.maintain()
  t.deepEqual(await s3.keys('q1/'), [])
  const end = (await q.stats()).tier!
  t.is(end.segments, 0)
  t.is(end.uploads, offloads.length)
  t.is(end.deletes, end.uploads)
  t.is(end.errors, 0)
})

test('a directory with files in the bucket does not open without its tier, and opens with it', async t => {
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  let q = await Evaq.open(dir, tierOptions(s3, 'q2'))
  for (let i = 0; i < 6000; i += 500) await Promise.all(Array.from({ length: 500 }, (_, k) => q.pushWal(payload(i + k, 1000))))
  t.true((await q.stats()).tier!.segments > 0)
  await q.close()
  const err = await t.throwsAsync(Evaq.open(dir, { minFreeDiskBytes: 0 }), { instanceOf: EvaqError })
  t.is(err?.code, 'EVAQ_INVALID_ARGUMENT')
  q = await Evaq.open(dir, tierOptions(s3, 'q2'))
  t.teardown(() => q.close())
  const all = await readAll(q.wal, 256 * 1024, 1000)
  t.is(all.length, 6000)
  t.true(all.every((r, i) => r.payload.equals(payload(i, 1000))))
})
