import test from 'ava'
import { cp, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { ClassicLevel } from 'classic-level'
import { ID_FILE } from '../../src/schema.js'
import { RESERVATION } from '../../src/store/id-floor.js'
import { encodeKey } from '../../src/store/codec.js'
import { repairInPlace } from '../../src/store/repair.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

/** LevelDB's current log file: the highest-numbered `*.log`. */
async function levelLog (dir: string): Promise<string> {
  const logs = (await readdir(dir)).filter(n => /^\d+\.log$/.test(n)).sort((a, b) => parseInt(a) - parseInt(b))
  return join(dir, logs[logs.length - 1]!)
}

/** Push `n` records to the DLQ, one segment each (each push awaited). */
async function pushDlq (q: Evaq, tag: string, n: number): Promise<number[]> {
  const ids: number[] = []
  for (let i = 0; i < n; i++) ids.push(await q.pushRetryItem(`${tag} ${i}`, { error: 'e' }))
  return ids
}

test('a clean close leaves no gap: IDs continue at the next one', async t => {
  const dir = await tmpDir(t, 'evaq-ids-')
  const q = await Evaq.open(dir, OPTIONS)
  const ids = await q.pushWalMany(['a', 'b', 'c'])
  const dlq = await q.pushRetryItem('x', { error: 'e' })
  await q.close()
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  t.is(await again.pushWal('d'), ids[2]! + 1)
  t.is(await again.pushRetryItem('y', { error: 'e' }), dlq + 1)
  t.deepEqual(again.openReport.corruption, [])
})

test('after a crash, IDs continue above every ID issued even when LevelDB lost the end of its log', async t => {
  const dir = await tmpDir(t, 'evaq-ids-')
  const crashed = await tmpDir(t, 'evaq-ids-crashed-')
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const first = await q.pushWalMany(Array.from({ length: 50 }, (_, i) => `early ${i}`))
  const dlqFirst = await pushDlq(q, 'early', 5)
  const log = await levelLog(dir)
  const keep = (await stat(log)).size
  const late = await q.pushWalMany(Array.from({ length: 50 }, (_, i) => `late ${i}`))
  const dlqLate = await pushDlq(q, 'late', 5)
  // The directory as a crash leaves it (every push above was synced), then the log cut back to
  // before the late pushes: what a torn log loses.
  await cp(dir, crashed, { recursive: true })
  await truncate(join(crashed, log.slice(dir.length + 1)), keep)
  const reopened = await Evaq.open(crashed, OPTIONS)
  t.teardown(() => reopened.close())
  // The WAL's pushes are committed by their segment files: the open indexes again the frames
  // whose locators went with the log, and nothing acknowledged is lost.
  const left = await reopened.wal.read({ maxCount: 1000 })
  t.deepEqual(left.map(r => r.id), [...first, ...late], 'the WAL lost nothing')
  t.deepEqual(left.slice(50).map(r => r.payload.toString()), late.map((_, i) => `late ${i}`))
  const walNext = await reopened.pushWal('after')
  t.true(walNext > late[late.length - 1]! && walNext <= late[late.length - 1]! + RESERVATION + 1, `a new WAL push got ${walNext}`)
  // The DLQ's records live only in LevelDB: the late ones are gone with the log, but their IDs
  // are not issued again.
  const dlqLeft = await reopened.dlq.read({ maxCount: 1000 })
  t.deepEqual(dlqLeft.map(r => r.id), dlqFirst, 'the late DLQ pushes are gone with the log')
  const next = await reopened.pushRetryItem('after', { error: 'e' })
  const lastLost = dlqLate[dlqLate.length - 1]!
  t.true(next > lastLost, `a new push got ${next}, above the lost ${lastLost}`)
  t.true(next <= lastLost + RESERVATION + 1, 'the gap is at most one reservation')
})

test('after a clean close, records LevelDB lost are reported at open and by their IDs never issued again', async t => {
  const dir = await tmpDir(t, 'evaq-ids-')
  const q = await Evaq.open(dir, OPTIONS)
  const early = await q.pushWalMany(Array.from({ length: 20 }, (_, i) => `early ${i}`))
  const dlqEarly = await pushDlq(q, 'early', 5)
  await q.close()
  // Reopen and push more; copy the directory while open (a crash image with the pushes in
  // LevelDB's log), then close cleanly.
  const q2 = await Evaq.open(dir, OPTIONS)
  const log2 = await levelLog(dir)
  const keep2 = (await stat(log2)).size
  const more = await q2.pushWalMany(Array.from({ length: 20 }, (_, i) => `more ${i}`))
  const dlqMore = await pushDlq(q2, 'more', 5)
  const copy = await tmpDir(t, 'evaq-ids-copy-')
  await cp(dir, copy, { recursive: true })
  await q2.close()
  // Give the copy the EVAQ-IDS of the clean close, then tear its log: LevelDB lost the last
  // batches after a clean close, and opens without a word.
  const ids = JSON.parse(await readFile(join(dir, ID_FILE), 'utf8')) as { clean: boolean, logs: Record<string, { next: number, committed?: number }> }
  t.true(ids.clean)
  t.is(ids.logs.wal!.committed, more[more.length - 1]! + 1)
  t.is(ids.logs.dlq!.committed, dlqMore[dlqMore.length - 1]! + 1)
  await writeFile(join(copy, ID_FILE), JSON.stringify(ids))
  await truncate(join(copy, log2.slice(dir.length + 1)), keep2)
  const reopened = await Evaq.open(copy, OPTIONS)
  t.teardown(() => reopened.close())
  // The WAL's frames survived the log: indexed again, nothing lost, nothing to report for it.
  const left = await reopened.wal.read({ maxCount: 1000 })
  t.deepEqual(left.map(r => r.id), [...early, ...more], 'the WAL lost nothing')
  t.is(await reopened.pushWal('after'), more[more.length - 1]! + 1)
  // The DLQ's late records went with the log: reported, and their IDs not issued again.
  t.is(reopened.openReport.corruption.length, 1, 'the loss LevelDB did not see is reported')
  t.regex(reopened.openReport.corruption[0]!, /^dlq:/)
  const dlqLeft = await reopened.dlq.read({ maxCount: 1000 })
  t.deepEqual(dlqLeft.map(r => r.id), dlqEarly, 'what the torn log held is gone')
  t.is(await reopened.pushRetryItem('after', { error: 'e' }), dlqMore[dlqMore.length - 1]! + 1, 'and the lost IDs are not issued again')
})

test(`a damaged ${ID_FILE} does not keep the queue closed: it is reported and IDs continue from LevelDB`, async t => {
  const dir = await tmpDir(t, 'evaq-ids-')
  const q = await Evaq.open(dir, OPTIONS)
  const [id] = await q.pushWalMany(['a'])
  await q.close()
  await writeFile(join(dir, ID_FILE), '{"version":1,"clean":tr')
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  t.is(again.openReport.corruption.length, 1)
  t.true(await again.pushWal('b') > id!)
  await again.close()
  const third = await Evaq.open(dir, OPTIONS)
  t.teardown(() => third.close())
  t.deepEqual(third.openReport.corruption, [], 'the file is whole again after the next reservation and close')
})

test(`a repair after LevelDB lost the last segment and the counters keeps IDs above the lost segment's, even with ${ID_FILE} unreadable`, async t => {
  const dir = await tmpDir(t, 'evaq-ids-')
  const q = await Evaq.open(dir, OPTIONS)
  // The DLQ: its segments are in LevelDB (the WAL's are in segment files, which LevelDB's repair
  // does not touch). One segment per push.
  await pushDlq(q, 'a', 3)
  const last = (await pushDlq(q, 'd', 2))[1]!
  await q.close()
  // What LevelDB's repair does to blocks it cannot read: the last segment is gone (its summary,
  // in another block, stays) and so are the counters, and the reservation file cannot help.
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  await db.sublevel<Buffer, Buffer>('dlq', { keyEncoding: 'buffer', valueEncoding: 'buffer' }).del(encodeKey(last))
  // and the counters' snapshots with it.
  await db.sublevel('snap').clear()
  await db.close()
  await writeFile(join(dir, ID_FILE), 'garbage')
  const fixed = await repairInPlace(dir)
  t.deepEqual(fixed.dlq!.ranges, [{ firstId: last, lastId: last, records: 1 }], 'the repair names the lost segment')
  t.like(fixed.dlq, { before: 5, after: 4, lostRecords: 1 })
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  t.is((await again.dlq.stats()).quarantined, 1, 'the lost records are counted')
  t.true(await again.pushRetryItem('f', { error: 'e' }) > last, 'the IDs of the lost records are not issued again')
})
