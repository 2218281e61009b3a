/**
 * The floor (the first ID that may still be live) after removals in any order: segment files are
 * released by it, so a floor left behind keeps files on disk for good.
 */
import test from 'ava'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { SEGMENTS_DIR } from '../../src/schema.js'
import { tmpDir } from '../helpers/tmp.js'

const segmentFiles = async (dir: string): Promise<string[]> =>
  (await readdir(join(dir, SEGMENTS_DIR, 'wal')).catch(() => [] as string[])).filter(n => /^\d{10}\.seg$/.test(n))

for (const order of [[2, 1, 3], [3, 2, 1], [2, 3, 1]]) {
  test(`records removed in the order ${order.join(', ')}: the segment file is released once all are gone`, async t => {
    const dir = await tmpDir(t)
    const q = await Evaq.open(dir, { maxBatchCount: 1, minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 })
    t.teardown(() => q.close())
    for (let i = 0; i < 3; i++) await q.pushWal(Buffer.alloc(1000, i))
    // The file written to (the next one is prepared ahead, empty).
    const written = (await segmentFiles(dir))[0]!
    for (const id of order) await q.removeWal(id)
    t.is((await q.wal.stats()).count, 0)
    for (let round = 0; round < 5 && (await segmentFiles(dir)).includes(written); round++) await q.maintain()
    t.false((await segmentFiles(dir)).includes(written), `${written} is still there`)
    // And the queue goes on: new records, read back.
    const id = await q.pushWal('after')
    t.deepEqual((await q.wal.read({ from: 0 })).map(r => [r.id, r.payload.toString()]), [[id, 'after']])
  })
}
