import test from 'ava'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

// Found by the model test (seed -2025132701): a removal that empties a segment lets the cleanup
// delete it; a read made right after the removal resolved took the segment before the deletion
// and asked for its removal set after it, found none (it went with the segment), and returned
// the removed record.
test('a read right after a removal never returns the removed record while the cleanup deletes its segment', async t => {
  for (const segmentCacheBytes of [16, 32 * 1024 * 1024]) {
    const dir = await tmpDir(t, 'evaq-removal-race-')
    const q = await Evaq.open(dir, { minFreeDiskBytes: 0, segmentCacheBytes, maintenanceIntervalMs: 3_600_000 })
    await q.wal.pushMany(['', ''])
    await q.wal.push('')
    const sub = await q.wal.subscribe('a')
    await sub.next({ maxCount: 2 })
    await sub.ack(2)
    // 1 removed and 2 acknowledged: segment 1..2 is deleted by the cleanup that follows.
    await q.wal.remove([1, 3])
    const ids = (await q.wal.read({ maxBytes: Infinity, maxCount: Infinity })).map(r => r.id)
    t.deepEqual(ids.filter(id => id === 1 || id === 3), [], `segmentCacheBytes ${segmentCacheBytes}: read ${JSON.stringify(ids)}`)
    await q.close()
  }
})
