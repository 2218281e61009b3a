/**
 * A read that passes over removed records moves the subscriber's floor with nothing delivered,
 * so no ack writes it: the read writes it, and the floor the queue reports is the one a restart
 * and a backup find.
 */
import test from 'ava'
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const floors = async (q: Evaq): Promise<Array<[string, number]>> =>
  (await q.wal.stats()).subscribers.map(s => [s.name, s.ackFloor] as [string, number]).sort()

test('a read that passes over removed records leaves the floor a restart and a restored backup find', async t => {
  const root = await tmpDir(t, 'evaq-sub-floor-')
  const dir = join(root, 'q')
  const options: EvaqOptions = { minFreeDiskBytes: 0, durability: 'none', clock: { now: () => 1_800_000_000_000 } }
  const q = await Evaq.open(dir, options)
  let live: Array<[string, number]>
  try {
    const reader = await q.wal.subscribe('reader')
    await q.wal.subscribe('idle') // holds every record, so that the removed IDs stay below the log's end
    await q.pushWalMany(['a', 'b', 'c'])
    await (await reader.next({ maxCount: 1 }))!.ack()
    await q.removeWal([2, 3])
    t.is(await reader.next({ maxCount: 1 }), undefined)
    live = await floors(q)
    t.deepEqual(live, [['idle', 1], ['reader', 4]])
    const stream = await q.backup()
    await pipeline(Readable.from(stream), createWriteStream(join(root, 'b.evaq')))
  } finally {
    await q.close()
  }
  const reopened = await Evaq.open(dir, options)
  try {
    t.deepEqual(await floors(reopened), live)
  } finally {
    await reopened.close()
  }
  await Evaq.restore(join(root, 'b.evaq'), join(root, 'r'))
  const restored = await Evaq.open(join(root, 'r'), options)
  try {
    t.deepEqual(await floors(restored), live)
  } finally {
    await restored.close()
  }
})
