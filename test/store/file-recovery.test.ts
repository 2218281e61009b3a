import test from 'ava'
import { stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { SEGMENTS_DIR } from '../../src/schema.js'
import { encodeSegment } from '../../src/store/codec.js'
import { JOINS_NEXT, JOINS_PREVIOUS, SELF_COMMITTED } from '../../src/store/frame.js'
import { SegmentFiles, DEFAULT_SEGMENT_FILE_OPTIONS } from '../../src/store/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'

/**
 * Open indexes again the frames whose locators LevelDB never wrote (a crash between a frame's
 * fdatasync and its locator batch) or lost (a power cut before LevelDB synced). Here such frames
 * are appended to a closed queue's segment files directly, as that crash would leave them.
 */

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

const payloads = (from: number, n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`record ${from + i}`))

async function queueWith (dir: string, n: number): Promise<void> {
  const q = await Evaq.open(dir, OPTIONS)
  await q.pushWalMany(payloads(1, n))
  await q.close()
}

/** Append segments (first ID, payloads, flags) to the WAL's segment files, without locators. */
async function appendFrames (dir: string, segments: Array<[first: number, payloads: Buffer[], flags: number]>): Promise<SegmentFiles> {
  const files = await SegmentFiles.open(join(dir, SEGMENTS_DIR, 'wal'), DEFAULT_SEGMENT_FILE_OPTIONS)
  await files.append(segments.map(([firstId, p, flags]) => ({ firstId, end: firstId + p.length, body: encodeSegment(p, 0, p.length, Date.now()), flags })))
  await files.close()
  return files
}

async function readWal (q: Evaq): Promise<string[]> {
  return (await q.wal.read({ maxBytes: Infinity, maxCount: Infinity })).map(r => r.payload.toString())
}

test('frames committed after the last locator LevelDB holds are indexed again at open, and counted', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  await queueWith(dir, 5)
  await appendFrames(dir, [[6, payloads(6, 3), SELF_COMMITTED], [9, payloads(9, 2), SELF_COMMITTED]])
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 2, records: 5 })
  t.deepEqual(q.openReport.corruption, [])
  t.deepEqual(await readWal(q), payloads(1, 10).map(String))
  t.like((await q.stats()).wal, { count: 10, bytes: payloads(1, 10).reduce((n, p) => n + p.byteLength, 0), lastId: 10, nextId: 11 })
  t.is(await q.pushWal('next'), 11)
  await q.close()
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  t.deepEqual(again.openReport.indexed, { segments: 0, records: 0 }, 'indexed once, durably')
  t.is((await again.stats()).wal.count, 11)
})

test('a pushMany spread over several frames is indexed whole or not at all', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  await queueWith(dir, 2)
  const whole: Array<[number, Buffer[], number]> = [
    [3, payloads(3, 2), SELF_COMMITTED | JOINS_NEXT],
    [5, payloads(5, 2), SELF_COMMITTED | JOINS_NEXT | JOINS_PREVIOUS],
    [7, payloads(7, 1), SELF_COMMITTED | JOINS_PREVIOUS],
  ]
  const torn: Array<[number, Buffer[], number]> = [
    [8, payloads(8, 2), SELF_COMMITTED | JOINS_NEXT],
    [10, payloads(10, 2), SELF_COMMITTED | JOINS_PREVIOUS],
  ]
  const files = await appendFrames(dir, [...whole, ...torn])
  // The crash tore the last frame: the first frame of its pushMany is whole, the push is not.
  const last = join(dir, SEGMENTS_DIR, 'wal', files.files[files.files.length - 1]!.toString().padStart(10, '0') + '.seg')
  const { size } = await stat(last)
  t.true(size > 0)
  const q0 = await SegmentFiles.open(join(dir, SEGMENTS_DIR, 'wal'), DEFAULT_SEGMENT_FILE_OPTIONS)
  let tornAt = 0
  for await (const frame of q0.scan({ file: 0, offset: 0 })) if (frame.firstId === 10) tornAt = frame.loc.offset + 40
  await q0.close()
  t.true(tornAt > 0)
  await truncate(last, tornAt)
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 3, records: 5 })
  t.deepEqual(await readWal(q), payloads(1, 7).map(String), 'the whole pushMany is there, the torn one is not')
})

test('the rest of a pushMany whose first frame is not whole is not indexed', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  await queueWith(dir, 2)
  // A frame that continues a push whose head is missing, then a whole push after it.
  await appendFrames(dir, [[3, payloads(3, 2), SELF_COMMITTED | JOINS_PREVIOUS], [5, payloads(5, 1), SELF_COMMITTED]])
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(await readWal(q), [...payloads(1, 2), ...payloads(5, 1)].map(String))
})

test('a frame without SELF_COMMITTED (committed by its LevelDB batch, which never came) is not indexed', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  await queueWith(dir, 2)
  await appendFrames(dir, [[3, payloads(3, 2), 0]])
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 0, records: 0 })
  t.deepEqual(await readWal(q), payloads(1, 2).map(String))
})

test('a frame whose IDs were indexed before (below next) is not indexed again: what was removed since stays removed', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  const q0 = await Evaq.open(dir, OPTIONS)
  const ids = await q0.pushWalMany(payloads(1, 5))
  await q0.removeWal(ids)
  await q0.close()
  // The same segment again after the tail, as a flush written twice (refused by LevelDB, then
  // written again after a repair) would leave it.
  await appendFrames(dir, [[1, payloads(1, 5), SELF_COMMITTED]])
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 0, records: 0 })
  t.deepEqual(await readWal(q), [])
  t.is((await q.stats()).wal.count, 0)
})

test('a flush appended twice (LevelDB refused its first index write) is indexed and counted once', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  await queueWith(dir, 2)
  await appendFrames(dir, [[3, payloads(3, 3), SELF_COMMITTED], [3, payloads(3, 3), SELF_COMMITTED], [6, payloads(6, 1), SELF_COMMITTED]])
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 2, records: 4 })
  t.deepEqual(await readWal(q), payloads(1, 6).map(String))
  t.like((await q.stats()).wal, { count: 6, nextId: 7 })
})

test('with every segment file gone, new files are numbered above the file the counters\' tail names', async t => {
  const dir = await tmpDir(t, 'evaq-reindex-')
  const q0 = await Evaq.open(dir, OPTIONS)
  const ids = await q0.pushWalMany(payloads(1, 3))
  await q0.removeWal(ids)
  await q0.close()
  const { readdir, rm } = await import('node:fs/promises')
  const walDir = join(dir, SEGMENTS_DIR, 'wal')
  const { stat } = await import('node:fs/promises')
  // The files that held frames (the one prepared ahead is empty).
  const before: number[] = []
  for (const name of await readdir(walDir)) if ((await stat(join(walDir, name))).size > 0) before.push(parseInt(name.replace(/^spare-/, '')))
  t.true(before.length > 0)
  // The records are gone; so are their files (as after a repair, or by hand).
  for (const name of await readdir(walDir)) await rm(join(walDir, name))
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  await q.pushWal('after')
  const after = (await readdir(walDir)).filter(n => /^\d+\.seg$/.test(n)).map(n => parseInt(n))
  t.true(Math.min(...after) > Math.max(...before), `${after} above ${before}`)
})
