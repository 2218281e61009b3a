/**
 * `evaq check` and `evaq repair` on a directory whose WAL keeps its payloads in segment files:
 * a frame with a flipped byte and a segment file gone are named per segment, and repair takes
 * those segments out so that the queue opens and reads the rest.
 */
import test from 'ava'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { check, repair } from '../../src/store/check.js'
import { decodeKey } from '../../src/store/codec.js'
import { decodeLocator, FRAME_HEADER_BYTES, LOCATOR_BYTES } from '../../src/store/frame.js'
import { ENC, openRaw } from '../../src/store/repair.js'
import { segmentFileName } from '../../src/store/segment-files.js'
import { SEGMENTS_DIR } from '../../src/schema.js'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, segmentFileBytes: 64 * 1024 }

/** Each WAL segment's first ID -> the segment file its locator names. */
async function locators (dir: string): Promise<Map<number, { file: number, offset: number }>> {
  const db = await openRaw(dir)
  const out = new Map<number, { file: number, offset: number }>()
  try {
    for await (const [key, value] of db.sublevel<Buffer, Buffer>('wal', ENC).iterator()) {
      if (value.byteLength !== LOCATOR_BYTES) continue
      const first = decodeKey(key)
      out.set(first, decodeLocator(first, value))
    }
  } finally {
    await db.close()
  }
  return out
}

test('check names a segment whose frame has a flipped byte and those whose file is missing; repair takes them out and the rest reads', async t => {
  const root = await tmpDir(t, 'evaq-check-files-')
  const dir = join(root, 'q')
  const q = await Evaq.open(dir, OPTIONS)
  const payloads = Array.from({ length: 12 }, (_, i) => Buffer.alloc(20 * 1024, i + 1))
  for (const p of payloads) await q.pushWal(p)
  await q.pushRetryItem('dead', { error: 'e' })
  await q.close()
  t.is((await check(dir)).status, 'ok', 'a sound directory with segment files checks clean')

  const where = await locators(dir)
  t.is(where.size, 12, 'every WAL segment is in a segment file')
  const files = [...new Set([...where.values()].map(l => l.file))].sort((a, b) => a - b)
  t.true(files.length >= 3, `files: ${files.join(' ')}`)
  // A byte of segment 2's frame body flipped; the second-to-last file deleted.
  const damaged = where.get(2)!
  const path = join(dir, SEGMENTS_DIR, 'wal', segmentFileName(damaged.file))
  const bytes = await readFile(path)
  bytes[damaged.offset + FRAME_HEADER_BYTES + 100]! ^= 0x5a
  await writeFile(path, bytes)
  const gone = files[files.length - 2]!
  t.not(gone, damaged.file)
  await rm(join(dir, SEGMENTS_DIR, 'wal', segmentFileName(gone)))
  const lost = [...where].filter(([, l]) => l.file === gone).map(([first]) => first)
  t.true(lost.length > 0)

  const report = await check(dir)
  t.is(report.status, 'damaged')
  const wal = report.logs.wal!
  t.is(wal.badSegments, 1 + lost.length)
  t.deepEqual(wal.badFrames.map(f => [f.segment, f.file, f.missing]), [[2, damaged.file, false], ...lost.map(first => [first, gone, true])])
  t.true(wal.badFrames.every(f => f.message.includes(dir) || !f.message.includes(root)), 'messages name the directory, not the copy')
  t.is(report.logs.dlq!.badSegments, 0)

  const result = await repair(dir, join(root, 'backup'))
  t.deepEqual(result.before.logs.wal!.badFrames, wal.badFrames)
  const fixed = result.fixed.wal!
  t.deepEqual(fixed.frames.map(f => [f.segment, f.file, f.missing]), [[2, damaged.file, false], ...lost.map(first => [first, gone, true])])
  t.is(fixed.quarantinedSegments, 1 + lost.length)
  t.is(fixed.after, 12 - 1 - lost.length)
  t.deepEqual(fixed.ranges.map(r => r.firstId), [2, ...lost])
  t.is(result.after.status, 'ok')

  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  const records = await readAll(again.wal)
  const expected = Array.from({ length: 12 }, (_, i) => i + 1).filter(id => id !== 2 && !lost.includes(id))
  t.deepEqual(records.map(r => r.id), expected)
  for (const r of records) t.true(r.payload.equals(payloads[r.id - 1]!), `ID ${r.id}: the same bytes`)
  const stats = await again.wal.stats()
  t.is(stats.count, expected.length)
  t.is(stats.quarantined, 1 + lost.length)
  t.is(await again.pushWal('after'), 13)
  t.is((await again.dlq.read()).length, 1)
})
