import test from 'ava'
import { open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError } from '../../src/errors.js'
import {
  decodeLocator, encodeLocator, FRAME_HEADER_BYTES, frameSpan, SELF_COMMITTED, type Locator,
} from '../../src/store/frame.js'
import { SegmentFiles, segmentFileName, type FrameInput, type SegmentFilesOptions } from '../../src/store/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'

const SMALL: SegmentFilesOptions = { fileBytes: 4096, preallocate: true, spares: 2 }

function frames (first: number, n: number, size = 100): FrameInput[] {
  return Array.from({ length: n }, (_, i) => ({
    firstId: first + i * 10,
    end: first + i * 10 + 1,
    body: Buffer.alloc(size, (first + i) % 251),
    flags: SELF_COMMITTED,
  }))
}

async function scanAll (files: SegmentFiles, from = { file: 0, offset: 0 }): Promise<Array<{ firstId: number, body: Buffer, loc: Locator }>> {
  const out = []
  for await (const f of files.scan(from)) out.push(f)
  return out
}

test('a locator round-trips; one of the wrong length or with an offset no file reaches is EVAQ_CORRUPTION naming the segment', t => {
  const loc = { file: 7, offset: 2 ** 40 + 8, length: 123_456 }
  t.deepEqual(decodeLocator(5, encodeLocator(loc)), loc)
  const err = t.throws(() => decodeLocator(5, Buffer.alloc(3)), { instanceOf: EvaqError })
  t.is(err.code, 'EVAQ_CORRUPTION')
  t.deepEqual(err.ids, [5])
  // A flipped bit in the offset's high word: not a safe integer, so no read may be tried with it
  // (Node 22 and later throw ERR_OUT_OF_RANGE for such a position, which would surface as EVAQ_IO).
  const damaged = encodeLocator(loc)
  damaged[4]! ^= 0x01
  const far = t.throws(() => decodeLocator(5, damaged), { instanceOf: EvaqError })
  t.is(far.code, 'EVAQ_CORRUPTION')
  t.deepEqual(far.ids, [5])
})

test('frames appended across several files read back, and a scan finds them all in order', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  const written: FrameInput[] = []
  const locators: Locator[] = []
  for (let g = 0; g < 10; g++) {
    const group = frames(1 + g * 100, 7, 50 + g * 20)
    written.push(...group)
    locators.push(...await files.append(group))
  }
  t.true(files.files.length > 3, `frames of 10 groups spread over ${files.files.length} files of 4 KiB`)
  for (let i = 0; i < written.length; i++) {
    t.deepEqual(await files.read(locators[i]!, written[i]!.firstId), Buffer.from(written[i]!.body))
  }
  const run = await files.readRun(written.map((f, i) => ({ loc: locators[i]!, firstId: f.firstId })))
  t.deepEqual(run.map(b => b.toString('hex')), written.map(f => Buffer.from(f.body).toString('hex')))
  await files.close()
  const again = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => again.close())
  const scanned = await scanAll(again)
  t.deepEqual(scanned.map(f => f.firstId), written.map(f => f.firstId))
  t.deepEqual(scanned.map(f => f.loc), locators)
})

test('files are prepared at full size, zero-filled, and the next one is made ready ahead', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  await files.append(frames(1, 1))
  await files.close()
  const names = (await readdir(dir)).sort()
  t.deepEqual(names, [segmentFileName(1), segmentFileName(2)])
  for (const n of names) t.is((await stat(join(dir, n))).size, 4096)
  const next = await readFile(join(dir, segmentFileName(2)))
  t.true(next.every(b => b === 0))
})

test('a frame larger than a file gets a file of its own size', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  const big = { firstId: 1, end: 2, body: Buffer.alloc(10_000, 7), flags: SELF_COMMITTED }
  const [small1, loc, small2] = await files.append([frames(0, 1)[0]!, big, { ...frames(0, 1)[0]!, firstId: 2 }])
  t.is((await stat(files.path(loc!.file))).size, frameSpan(10_000))
  t.deepEqual(await files.read(loc!, 1), big.body)
  t.not(small1!.file, loc!.file)
  t.not(small2!.file, loc!.file)
  t.deepEqual((await scanAll(files)).map(f => f.firstId), [0, 1, 2])
})

test('a scan stops at a torn frame and goes on with the next file; reads of damage are EVAQ_CORRUPTION', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  const locs = await files.append(frames(1, 12, 500))
  await files.close()
  const [f1, f2] = [locs[0]!.file, locs.find(l => l.file !== locs[0]!.file)!.file]
  const inFirst = locs.filter(l => l.file === f1)
  // Tear the third frame of the first file: its body ends in zeros, as after a lost write.
  const third = inFirst[2]!
  const handle = await open(join(dir, segmentFileName(f1)), 'r+')
  await handle.write(Buffer.alloc(100), 0, 100, third.offset + FRAME_HEADER_BYTES + 300)
  await handle.close()
  const again = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => again.close())
  const scanned = await scanAll(again)
  const expected = [...inFirst.slice(0, 2), ...locs.filter(l => l.file !== f1)]
  t.deepEqual(scanned.map(f => f.loc), expected)
  t.true(scanned.some(f => f.loc.file === f2))
  const err = await t.throwsAsync(again.read(third, 21), { instanceOf: EvaqError })
  t.is(err.code, 'EVAQ_CORRUPTION')
  t.deepEqual(err.ids, [21])
  // A locator that names another segment than the frame holds is damage too.
  t.is((await t.throwsAsync(again.read(inFirst[0]!, 999), { instanceOf: EvaqError })).code, 'EVAQ_CORRUPTION')
})

test('a missing file is EVAQ_CORRUPTION naming the segment; a truncated one ends the scan', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, { ...SMALL, preallocate: false })
  t.teardown(() => files.close())
  const locs = await files.append(frames(1, 12, 500))
  await files.close()
  const last = locs[locs.length - 1]!
  const first = locs[0]!
  await truncate(join(dir, segmentFileName(last.file)), last.offset + 40)
  await writeFile(join(dir, segmentFileName(first.file)), '')
  const { rm } = await import('node:fs/promises')
  await rm(join(dir, segmentFileName(first.file)))
  const again = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => again.close())
  const err = await t.throwsAsync(again.read(first, 1), { instanceOf: EvaqError })
  t.is(err.code, 'EVAQ_CORRUPTION')
  t.deepEqual(err.ids, [1])
  const scanned = await scanAll(again)
  t.deepEqual(scanned.map(f => f.loc), locs.filter(l => l.file !== first.file && l !== last))
})

for (const preallocate of [true, false]) {
  test(`a released file is reused under a new number and its old frames are never scanned as new (preallocate: ${String(preallocate)})`, async t => {
    const dir = await tmpDir(t, 'evaq-segfiles-')
    const files = await SegmentFiles.open(dir, { ...SMALL, preallocate })
    t.teardown(() => files.close())
    const old = await files.append(frames(1, 12, 500))
    const oldFile = old[0]!.file
    const released = old.filter(l => l.file === oldFile).length
    await files.release(oldFile)
    t.false(files.files.includes(oldFile))
    t.true((await readdir(dir)).includes(`spare-${segmentFileName(oldFile)}`))
    // Write frames of the same size until the spare is taken and holds one new frame: the old
    // frames after it start where a new one would.
    const later: Locator[] = []
    let reused: number | undefined
    for (let g = 0; g < 50 && (reused === undefined || files.position?.file !== reused); g++) {
      later.push(...await files.append(frames(1000 + g * 100, 1, 500)))
      const names = await readdir(dir)
      if (reused === undefined && !names.includes(`spare-${segmentFileName(oldFile)}`)) {
        reused = Math.max(...names.filter(n => /^\d+\.seg$/.test(n)).map(n => parseInt(n)))
      }
    }
    t.is(files.position?.file, reused, 'the spare was reused')
    await files.close()
    const again = await SegmentFiles.open(dir, SMALL)
    t.teardown(() => again.close())
    const scanned = await scanAll(again)
    t.deepEqual(scanned.map(f => f.loc), [...old.slice(released), ...later].sort((a, b) => a.file - b.file || a.offset - b.offset))
    t.false(scanned.some(f => f.firstId < 1 + released * 10), 'no frame of the released file came back')
  })
}

test('after an open, writing starts in a new file numbered above every file and spare', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  await files.append(frames(1, 1))
  await files.close()
  await writeFile(join(dir, `spare-${segmentFileName(40)}`), Buffer.alloc(4096))
  const again = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => again.close())
  const [loc] = await again.append(frames(100, 1))
  t.true(loc!.file > 40)
})

test('a failed write fails that append and every later one until reset(); then writing goes on in a new file', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  const [before] = await files.append(frames(1, 1))
  const current = (files as unknown as { current: { handle: { writev: unknown } } }).current
  const writev = current.handle.writev
  current.handle.writev = async () => { throw Object.assign(new Error('injected EIO'), { code: 'EIO' }) }
  const failed = files.append(frames(20, 1))
  const after = files.append(frames(30, 1))
  t.is((await t.throwsAsync(failed, { instanceOf: EvaqError })).code, 'EVAQ_IO')
  t.is((await t.throwsAsync(after, { instanceOf: EvaqError })).code, 'EVAQ_IO')
  t.is((await t.throwsAsync(files.append(frames(40, 1)), { instanceOf: EvaqError })).code, 'EVAQ_IO')
  current.handle.writev = writev
  await files.reset()
  const [next] = await files.append(frames(50, 1))
  t.not(next!.file, before!.file)
  t.deepEqual((await scanAll(files)).map(f => f.firstId), [1, 50])
})

test('appends resolve in the order they were made', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  const files = await SegmentFiles.open(dir, SMALL)
  t.teardown(() => files.close())
  const order: number[] = []
  await Promise.all(Array.from({ length: 40 }, (_, i) => files.append(frames(1 + i * 10, 1, 300)).then(() => order.push(i))))
  t.deepEqual(order, Array.from({ length: 40 }, (_, i) => i))
})

test.serial('syncedBelow: the first ID of the oldest append not synced, the end of the last one placed once all are', async t => {
  const dir = await tmpDir(t, 'evaq-segfiles-')
  // One file, nothing zero-filled ahead, and serial: the only datasyncs are these appends'.
  const files = await SegmentFiles.open(join(dir, 'wal'), { fileBytes: 1 << 20, preallocate: false, spares: 2 })
  t.teardown(() => files.close())
  t.is(files.syncedBelow, 0, 'nothing placed')
  await files.append(frames(1, 2), true)
  t.is(files.syncedBelow, 12, 'synced: the end of the last frame placed')
  await files.append(frames(21, 1), false)
  await files.append(frames(31, 1), false)
  t.is(files.syncedBelow, 21, 'the oldest append not synced')
  // IDs placed before (a flush written again): synced whatever it was asked, never counted.
  const probe = await open(join(dir, 'probe'), 'w')
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> }
  await probe.close()
  const datasync = proto.datasync
  let syncs = 0
  proto.datasync = function (this: unknown) { syncs++; return datasync.call(this) }
  try {
    await files.append(frames(51, 1), false)
    t.is(syncs, 0, 'an append without a sync syncs nothing')
    await files.append(frames(5, 1), false)
    t.is(syncs, 1, 'an append below IDs placed before is synced')
  } finally {
    proto.datasync = datasync
  }
  t.is(files.syncedBelow, 21)
  await files.sync()
  t.is(files.syncedBelow, 52)
  await files.append(frames(61, 1), false)
  t.is(files.syncedBelow, 61)
})
