/**
 * Per-segment compression of the WAL's segment files (`segmentCompression`, src/store/frame-codec.ts):
 * round trips per codec, incompressible segments stored raw, damage caught before decompressing,
 * a stated decoded length that does not match, zstd frames on a Node without zstd (forced through
 * the useZstd seam: never reported as damage), recovery of compressed frames at open, backup and
 * restore, and the option's validation.
 *
 * Where the running Node has no zstd, the zstd code path runs with a stand-in (brotli behind the
 * same interface) so that the frame format, the bounds and the errors are tested on every Node;
 * the real zstd is used where Node provides it.
 */
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import zlib from 'node:zlib'
import { Evaq, EvaqError, type EvaqOptions } from '../../src/index.js'
import { resolveOptions } from '../../src/options.js'
import { SEGMENTS_DIR } from '../../src/schema.js'
import { check } from '../../src/store/check.js'
import { encodeSegment } from '../../src/store/codec.js'
import { CODEC_DEFLATE, CODEC_NONE, CODEC_ZSTD, useZstd, zstdAvailable, type Zstd } from '../../src/store/frame-codec.js'
import { FRAME_HEADER_BYTES, SELF_COMMITTED, type Locator } from '../../src/store/frame.js'
import { SegmentFiles, DEFAULT_SEGMENT_FILE_OPTIONS, type FrameInput } from '../../src/store/segment-files.js'
import { readAll } from '../helpers/read-all.js'
import { allFrames, flipAt, resealFrame } from '../helpers/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

const realZstd = zstdAvailable()
/** zstd's interface over brotli: the zstd code path on a Node without zstd. */
const standIn: Zstd = {
  compress: data => zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }),
  decompress: (data, maxOutputLength) => zlib.brotliDecompressSync(data, { maxOutputLength }),
}
/** Tests that use the seam run serially (it is module state), and put back what Node provides. */
function withZstd (t: ExecutionContext, impl: Zstd | undefined): void {
  t.teardown(useZstd(impl))
}
function anyZstd (t: ExecutionContext): void {
  if (!realZstd) withZstd(t, standIn)
}

/** A log event as JSON: compresses about 4x. */
function event (i: number): Buffer {
  return Buffer.from(JSON.stringify({
    ts: new Date(1_700_000_000_000 + i * 137).toISOString(),
    level: ['info', 'warn', 'debug'][i % 3],
    service: 'checkout-api',
    host: `web-${i % 7}.eu-west-1.internal`,
    msg: `order ${100_000 + i} processed in ${(i * 7) % 500} ms`,
    user: { id: `u-${(i * 31) % 10_000}`, plan: i % 2 === 0 ? 'pro' : 'free' },
    trace: { id: (i * 2_654_435_761 >>> 0).toString(16).padStart(8, '0'), span: i % 64 },
    http: { method: 'POST', path: '/v1/orders', status: i % 50 === 0 ? 500 : 200 },
  }))
}
const events = (from: number, n: number): Buffer[] => Array.from({ length: n }, (_, i) => event(from + i))
const randoms = (n: number, size = 1024): Buffer[] => Array.from({ length: n }, () => randomBytes(size))

async function filesIn (t: ExecutionContext, compression: EvaqOptions['segmentCompression']): Promise<SegmentFiles> {
  const dir = join(await tmpDir(t, 'evaq-segcomp-'), 'wal')
  const files = await SegmentFiles.open(dir, { ...DEFAULT_SEGMENT_FILE_OPTIONS, compression })
  t.teardown(() => files.close())
  return files
}

/** The codec byte and stored length of the frame at `loc`, from the file itself. */
async function storedFrame (files: SegmentFiles, loc: Locator): Promise<{ codec: number, length: number }> {
  const buf = await readFile(files.path(loc.file))
  return { codec: buf.readUInt8(loc.offset + 6), length: buf.readUInt32BE(loc.offset + 12) }
}

// 'auto' writes zstd here: anyZstd() provides it (without it, see the validation test).
const CODECS = [['deflate', CODEC_DEFLATE], ['zstd', CODEC_ZSTD], ['auto', CODEC_ZSTD]] as const
for (const [choice, codec] of CODECS) {
  test.serial(`${choice}: JSON segments are stored compressed and read back; random ones are stored as they are`, async t => {
    anyZstd(t)
    const files = await filesIn(t, choice)
    const json = encodeSegment(events(1, 400), 0, 400, 1) // ~130 KiB: probed, then compressed whole
    const random = encodeSegment(randoms(16), 0, 16, 2)
    // Larger than the probe's threshold: judged by its first 16 KiB (frame-codec.ts PROBE_BYTES).
    const bigRandom = encodeSegment(randoms(200), 0, 200, 3)
    const [a, b, c] = await files.append([
      { firstId: 1, end: 401, body: json, flags: SELF_COMMITTED },
      { firstId: 401, end: 417, body: random, flags: SELF_COMMITTED },
      { firstId: 417, end: 617, body: bigRandom, flags: SELF_COMMITTED },
    ])
    const jsonFrame = await storedFrame(files, a!)
    t.is(jsonFrame.codec, codec)
    t.true(jsonFrame.length < json.byteLength / 2, `${jsonFrame.length} of ${json.byteLength} bytes`)
    t.is(a!.length, jsonFrame.length, 'the locator holds the stored length')
    t.deepEqual(await storedFrame(files, b!), { codec: CODEC_NONE, length: random.byteLength }, 'random bytes: stored raw')
    t.deepEqual(await storedFrame(files, c!), { codec: CODEC_NONE, length: bigRandom.byteLength })
    t.deepEqual(await files.read(a!, 1), json)
    t.deepEqual(await files.readRun([{ loc: a!, firstId: 1 }, { loc: b!, firstId: 401 }, { loc: c!, firstId: 417 }]), [json, random, bigRandom])
    const scanned = []
    for await (const f of files.scan({ file: a!.file, offset: 0 })) scanned.push([f.firstId, f.body])
    t.deepEqual(scanned, [[1, json], [401, random], [417, bigRandom]], 'recovery scans decoded segments')
  })
}

test('none: frames are written as before compression existed (codec byte 0)', async t => {
  const files = await filesIn(t, 'none')
  const json = encodeSegment(events(1, 100), 0, 100, 1)
  const [loc] = await files.append([{ firstId: 1, end: 101, body: json, flags: SELF_COMMITTED }])
  t.deepEqual(await storedFrame(files, loc!), { codec: CODEC_NONE, length: json.byteLength })
  t.deepEqual(await files.read(loc!, 1), json)
})

test.serial('a stated decoded length other than the body\'s is EVAQ_CORRUPTION naming the segment, bounded by it', async t => {
  for (const [choice, delta] of [['deflate', -1], ['deflate', 1], ['zstd', -100], ['zstd', 5]] as const) {
    anyZstd(t)
    const files = await filesIn(t, choice)
    const json = encodeSegment(events(1, 50), 0, 50, 1)
    const [loc] = await files.append([{ firstId: 7, end: 57, body: json, flags: SELF_COMMITTED }])
    const path = files.path(loc!.file)
    const buf = await readFile(path)
    const at = loc!.offset + FRAME_HEADER_BYTES
    buf.writeUInt32BE(buf.readUInt32BE(at) + delta, at)
    await writeFile(path, buf)
    await resealFrame(path, loc!.file, loc!.offset) // the CRCs match: only the length can catch it
    const reader = await SegmentFiles.openReadOnly(files.dir)
    t.teardown(() => reader.close())
    const err = await t.throwsAsync(reader.read(loc!, 7), { code: 'EVAQ_CORRUPTION' }, `${choice} ${delta}`)
    t.deepEqual((err as EvaqError | undefined)?.ids, [7])
  }
})

/** A queue written with `compression`: 20 frames of 10 JSON events each (IDs 1..200), closed. */
async function build (t: ExecutionContext, compression: EvaqOptions['segmentCompression']): Promise<string> {
  const dir = await tmpDir(t, 'evaq-segcomp-q-')
  const q = await Evaq.open(dir, { ...OPTIONS, segmentCompression: compression })
  for (let s = 0; s < 20; s++) await q.pushWalMany(events(s * 10 + 1, 10))
  await q.close()
  return dir
}

test('a flipped byte in a compressed body: EVAQ_CORRUPTION names the segment (caught by the CRC), the other segments read', async t => {
  const dir = await build(t, 'deflate')
  const frames = await allFrames(dir)
  t.true(frames.every(f => f.codec === CODEC_DEFLATE))
  const victim = frames.find(f => f.firstId === 51)!
  await flipAt(victim.path, victim.offset + FRAME_HEADER_BYTES + 10)
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const err = await t.throwsAsync(q.wal.read({ from: 1, maxCount: 1000, maxBytes: 1 << 24 }), { instanceOf: EvaqError, code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [51])
  const records = await readAll(q.wal)
  t.deepEqual(records.map(r => r.id), [...Array(200).keys()].map(i => i + 1).filter(id => id < 51 || id > 60))
  for (const r of records) t.deepEqual(r.payload, event(r.id))
})

test('open indexes again compressed frames whose locators LevelDB lost', async t => {
  const dir = await build(t, 'deflate')
  const files = await SegmentFiles.open(join(dir, SEGMENTS_DIR, 'wal'), { ...DEFAULT_SEGMENT_FILE_OPTIONS, compression: 'deflate' })
  const segment = (first: number): FrameInput =>
    ({ firstId: first, end: first + 10, body: encodeSegment(events(first, 10), 0, 10, Date.now()), flags: SELF_COMMITTED })
  await files.append([segment(201), segment(211)])
  await files.close()
  t.true((await allFrames(dir)).filter(f => f.firstId >= 201).every(f => f.codec === CODEC_DEFLATE))
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.indexed, { segments: 2, records: 20 })
  const records = await readAll(q.wal)
  t.is(records.length, 220)
  for (const r of records) t.deepEqual(r.payload, event(r.id))
})

test.serial('backup of a queue with compressed frames restores and reads back byte for byte', async t => {
  anyZstd(t)
  const root = await tmpDir(t, 'evaq-segcomp-backup-')
  const q = await Evaq.open(join(root, 'src'), { ...OPTIONS, segmentCompression: 'zstd' })
  const pushed = [...events(1, 300), ...randoms(20, 4096)]
  for (let i = 0; i < pushed.length; i += 32) await q.pushWalMany(pushed.slice(i, i + 32))
  const codecs = new Set((await allFrames(join(root, 'src'))).map(f => f.codec))
  t.deepEqual([...codecs].sort(), [CODEC_NONE, CODEC_ZSTD], 'JSON frames compressed, random ones raw')
  const file = join(root, 'b.evaq')
  await pipeline(Readable.from(await q.backup()), createWriteStream(file))
  await q.close()
  await Evaq.restore(file, join(root, 'restored'), { verify: true })
  const r = await Evaq.open(join(root, 'restored'), OPTIONS)
  t.teardown(() => r.close())
  t.deepEqual((await readAll(r.wal)).map(x => x.payload), pushed)
})

test.serial('zstd frames on a Node without zstd: EVAQ_UNSUPPORTED_FORMAT naming the segment, never quarantined or counted as damage', async t => {
  const restore = realZstd ? () => {} : useZstd(standIn)
  const dir = await build(t, 'zstd')
  restore()
  t.true((await allFrames(dir)).every(f => f.codec === CODEC_ZSTD))
  withZstd(t, undefined)

  const q = await Evaq.open(dir, OPTIONS)
  const err = await t.throwsAsync(q.wal.read({ from: 1, maxCount: 1000, maxBytes: 1 << 24 }), { instanceOf: EvaqError, code: 'EVAQ_UNSUPPORTED_FORMAT' })
  t.deepEqual(err?.ids, [1])
  t.true(err!.message.includes('Segment 1 '))
  await t.throwsAsync(q.wal.read({ from: 100, maxCount: 1000, maxBytes: 1 << 24 }), { code: 'EVAQ_UNSUPPORTED_FORMAT' }, 'still there: not taken out')
  await q.close()
  const report = await check(dir)
  t.is(report.error?.code, 'EVAQ_UNSUPPORTED_FORMAT')
  t.like(report.logs['wal'], { badSegments: 0, badFrames: [] })

  // With zstd back, everything reads: nothing was taken out.
  useZstd(realZstd ? zstdImpl() : standIn)
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  t.like(await again.wal.stats(), { count: 200, quarantined: 0 })
  const records = await readAll(again.wal)
  t.is(records.length, 200)
  for (const r of records) t.deepEqual(r.payload, event(r.id))
})

/** The real zstd, for putting it back inside a test that removed it (the teardown restores it anyway). */
function zstdImpl (): Zstd {
  const z = zlib as unknown as Record<string, (d: Uint8Array, o: object) => Buffer>
  return { compress: d => z['zstdCompressSync']!(d, {}), decompress: (d, max) => z['zstdDecompressSync']!(d, { maxOutputLength: max }) }
}

test.serial('recovery on a Node without zstd: open fails with EVAQ_UNSUPPORTED_FORMAT instead of dropping acknowledged frames', async t => {
  anyZstd(t)
  const dir = await build(t, 'none')
  const files = await SegmentFiles.open(join(dir, SEGMENTS_DIR, 'wal'), { ...DEFAULT_SEGMENT_FILE_OPTIONS, compression: 'zstd' })
  await files.append([{ firstId: 201, end: 211, body: encodeSegment(events(201, 10), 0, 10, Date.now()), flags: SELF_COMMITTED }])
  await files.close()
  withZstd(t, undefined)
  await t.throwsAsync(Evaq.open(dir, OPTIONS), { instanceOf: EvaqError, code: 'EVAQ_UNSUPPORTED_FORMAT' })
})

test.serial('segmentCompression: validated; zstd on a Node without it is refused at open, before anything is written', async t => {
  for (const value of ['lz4', true, 1, null, 'ZSTD']) {
    t.throws(() => resolveOptions({ segmentCompression: value as never }), { code: 'EVAQ_INVALID_ARGUMENT' }, String(value))
  }
  for (const value of ['none', 'auto', 'deflate'] as const) t.is(resolveOptions({ segmentCompression: value }).segmentCompression, value)
  t.is(resolveOptions({}).segmentCompression, 'none')
  withZstd(t, undefined)
  const dir = join(await tmpDir(t, 'evaq-segcomp-opt-'), 'q')
  await t.throwsAsync(Evaq.open(dir, { ...OPTIONS, segmentCompression: 'zstd' }), { code: 'EVAQ_INVALID_ARGUMENT' })
  await t.throwsAsync(readFile(join(dir, 'CURRENT')), { code: 'ENOENT' }, 'nothing was written')
  // 'auto' falls back to deflate.
  const q = await Evaq.open(dir, { ...OPTIONS, segmentCompression: 'auto' })
  await q.pushWalMany(events(1, 50))
  await q.close()
  t.deepEqual([...new Set((await allFrames(dir)).map(f => f.codec))], [CODEC_DEFLATE])
})
