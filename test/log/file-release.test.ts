import test from 'ava'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { Evaq } from '../../src/index.js'
import { logSublevels, SEGMENTS_DIR } from '../../src/schema.js'
import { decodeKey, encodeKey } from '../../src/store/codec.js'
import { tmpDir } from '../helpers/tmp.js'

const KiB = 1024
const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, segmentFileBytes: 64 * KiB, maxBatchCount: 8 }
const payload = (i: number): Buffer => Buffer.alloc(KiB, i % 251)

async function segmentFiles (dir: string): Promise<string[]> {
  return (await readdir(join(dir, SEGMENTS_DIR, 'wal'))).filter(n => /^\d+\.seg$/.test(n)).sort()
}

async function fileEnds (dir: string): Promise<Map<number, number>> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false })
  try {
    const out = new Map<number, number>()
    const level = db.sublevel<Buffer, Buffer>(logSublevels('wal').files, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    for await (const [k, v] of level.iterator()) out.set(decodeKey(k), decodeKey(v))
    return out
  } finally {
    await db.close()
  }
}

test('segment files are released once every record in them is gone, and the queue reads on', async t => {
  const dir = await tmpDir(t, 'evaq-release-')
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const ids: number[] = []
  for (let i = 0; i < 40; i++) ids.push(...await q.pushWalMany(Array.from({ length: 8 }, (_, j) => payload(i * 8 + j))))
  const before = await segmentFiles(dir)
  t.true(before.length >= 4, `${before.length} files`)
  await q.removeWal(ids.slice(0, 240))
  await q.maintain()
  const after = await segmentFiles(dir)
  t.true(after.length < before.length, `released: ${before.length} -> ${after.length} files`)
  t.false(after.includes(before[0]!), 'the oldest file is gone (or kept as a spare)')
  const left = await q.wal.read({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(left.map(r => r.id), ids.slice(240))
  t.true(left.every(r => r.payload.equals(payload(r.id - 1))))
})

test('a recorded file end lower than the file\'s records (batches applied out of order) does not release the file early', async t => {
  const dir = await tmpDir(t, 'evaq-release-')
  const q = await Evaq.open(dir, OPTIONS)
  const ids: number[] = []
  for (let i = 0; i < 8; i++) ids.push(...await q.pushWalMany(Array.from({ length: 8 }, (_, j) => payload(i * 8 + j))))
  await q.close()
  const ends = await fileEnds(dir)
  const [first, trueEnd] = [...ends].sort((a, b) => a[0] - b[0])[0]!
  t.true(trueEnd > 3)
  // Make the first file's recorded end too low, as a stale write applied last would leave it.
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false })
  await db.sublevel<Buffer, Buffer>(logSublevels('wal').files, { keyEncoding: 'buffer', valueEncoding: 'buffer' }).put(encodeKey(first), encodeKey(3))
  await db.close()
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  // Remove the first segment: the floor passes the stale end, not the file's last records.
  await again.removeWal(ids.slice(0, 8))
  await again.maintain()
  const left = await again.wal.read({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(left.map(r => r.id), ids.slice(8))
  t.true(left.every(r => r.payload.equals(payload(r.id - 1))), 'every record left reads back')
})
