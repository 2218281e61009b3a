import test from 'ava'
import { Evaq } from '../../src/index.js'
import { FrameReader } from '../../src/store/frame-reader.js'
import type { Locator } from '../../src/store/frame.js'
import { tmpDir } from '../helpers/tmp.js'

/**
 * A read (and a subscriber's next()) reads about what it returns from the segment files, not
 * every segment one LevelDB iterator page names: a locator is 16 bytes, so one page names up to
 * 256 segments, and with large records those are hundreds of MiB. Measured by the bytes asked of
 * the segment files (FrameReader.readRun).
 */

const KiB = 1024
const MiB = 1024 * KiB

/** Run `fn` and count the frame bytes read from segment files meanwhile. */
async function framesRead (fn: () => Promise<unknown>): Promise<number> {
  const original = FrameReader.prototype.readRun
  let bytes = 0
  FrameReader.prototype.readRun = function (segments: ReadonlyArray<{ loc: Locator, firstId: number }>) {
    for (const s of segments) bytes += s.loc.length
    return original.call(this, segments)
  }
  try {
    await fn()
  } finally {
    FrameReader.prototype.readRun = original
  }
  return bytes
}

test.serial('a read of a few large records, and a next() of a subscriber far behind, read about what they return', async t => {
  const dir = await tmpDir(t, 'evaq-read-amp-')
  // 64 segments of 1 MiB (64 records of 16 KiB each), not in the cache of recent segments.
  let q = await Evaq.open(dir, { minFreeDiskBytes: 0, maxBatchBytes: MiB })
  const record = Buffer.alloc(16 * KiB, 7)
  for (let i = 0; i < 16; i++) await q.pushWalMany(Array.from({ length: 256 }, () => record))
  await q.close()
  q = await Evaq.open(dir, { minFreeDiskBytes: 0, segmentCacheBytes: 0 })
  t.teardown(() => q.close())
  t.is((await q.wal.stats()).count, 4096)

  let got = 0
  const read = await framesRead(async () => { got = (await q.wal.read({ maxCount: 10, maxBytes: Infinity })).length })
  t.is(got, 10)
  t.true(read <= 2 * MiB, `read ${read} bytes of frames for 10 records of 16 KiB`)

  const sub = await q.wal.subscribe('far-behind')
  let batch = 0
  const next = await framesRead(async () => { batch = (await sub.next({ maxCount: 100, maxBytes: 100 * 16 * KiB }))?.records.length ?? 0 })
  t.is(batch, 100)
  t.true(next <= 4 * MiB, `next() read ${next} bytes of frames for 100 records of 16 KiB`)
})

test.serial('a read of a few hundred small records reads the few segments holding them, not a whole 1 MiB chunk', async t => {
  const dir = await tmpDir(t, 'evaq-read-amp-')
  // 256 segments of 256 records of 100 B (about 26 KB each).
  let q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  const record = Buffer.alloc(100, 7)
  for (let i = 0; i < 256; i++) await q.pushWalMany(Array.from({ length: 256 }, () => record))
  await q.close()
  q = await Evaq.open(dir, { minFreeDiskBytes: 0, segmentCacheBytes: 0 })
  t.teardown(() => q.close())
  let got = 0
  const read = await framesRead(async () => { got = (await q.wal.read({ maxCount: 300, maxBytes: Infinity })).length })
  t.is(got, 300)
  t.true(read <= 4 * 27 * KiB, `read ${read} bytes of frames for 300 records of 100 B`)
})
