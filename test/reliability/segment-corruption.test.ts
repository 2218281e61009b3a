/**
 * Damage to segment files (storage format 2: the WAL's payloads, src/store/segment-files.ts), the
 * counterpart of corruption.test.ts (damage to LevelDB's files):
 *
 * - a torn tail after a crash (the last file cut, or zeroed, inside a frame whose append was never
 *   acknowledged): the open recovers every acknowledged push, indexing again the frames LevelDB
 *   lost the locators of, and writes on in a new file;
 * - a flipped byte in a frame's body or header, a truncated file, a missing file: reads fail with
 *   EVAQ_CORRUPTION naming each damaged segment, once, and go on; every other record is returned
 *   intact, no damaged payload ever is, and the damaged segments are counted as quarantined.
 */
import test, { type ExecutionContext } from 'ava'
import { cp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { Evaq, EvaqError, type EvaqOptions } from '../../src/index.js'
import { FRAME_HEADER_BYTES } from '../../src/store/frame.js'
import { allFrames, findBytes, flipAt, framesIn, segmentFiles } from '../helpers/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'
import { report } from './report.js'

const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, segmentFileBytes: 64 * 1024 }
const PER_SEGMENT = 5
const SEGMENTS = 60
/** ~2 KiB per segment: 60 segments fill two 64 KiB segment files and start a third. */
const PAYLOAD_BYTES = 400

function payloadFor (id: number): string {
  return `rec-${String(id).padStart(6, '0')}-`.padEnd(PAYLOAD_BYTES, String.fromCharCode(97 + (id % 26)))
}

/** A queue of SEGMENTS segments of PER_SEGMENT records (IDs 1..), one frame each, closed. */
async function build (t: ExecutionContext): Promise<string> {
  const dir = await tmpDir(t, 'evaq-segcorrupt-')
  const q = await Evaq.open(dir, OPTIONS)
  for (let s = 0; s < SEGMENTS; s++) {
    const ids = await q.pushWalMany(Array.from({ length: PER_SEGMENT }, (_, i) => payloadFor(s * PER_SEGMENT + i + 1)))
    if (ids[0] !== s * PER_SEGMENT + 1) throw new Error(`unexpected IDs ${ids.join(',')}`)
  }
  await q.close()
  return dir
}

/**
 * Read the whole WAL from the start, again after each EVAQ_CORRUPTION (at most `bound` times):
 * the records returned (each checked against what was pushed) and the IDs the errors named.
 */
async function readThrough (t: ExecutionContext, q: Evaq, bound: number): Promise<{ ids: number[], named: number[] }> {
  const named: number[] = []
  for (let attempt = 0; attempt <= bound; attempt++) {
    try {
      const records = await q.wal.read({ maxCount: 10_000, maxBytes: 64 * 1024 * 1024 })
      for (const r of records) {
        if (r.payload.toString() !== payloadFor(r.id)) t.fail(`ID ${r.id} was returned with a payload other than the one pushed`)
      }
      return { ids: records.map(r => r.id), named }
    } catch (err) {
      if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION') throw err
      named.push(...(err.ids ?? []))
    }
  }
  t.fail(`the read still failed after ${bound} attempts`)
  return { ids: [], named }
}

/** Records read back intact across the scenarios, for the soak's table. */
let checked = 0

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const all = range(1, SEGMENTS * PER_SEGMENT)

/** Open `dir`, read through the damage, and check that exactly the segments starting at `bad` are named and missing. */
async function expectDamaged (t: ExecutionContext, dir: string, bad: readonly number[]): Promise<void> {
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const { ids, named } = await readThrough(t, q, bad.length + 3)
  t.deepEqual(named, bad, 'each damaged segment is named once, by its first ID')
  const lost = new Set(bad.flatMap(first => range(first, first + PER_SEGMENT - 1)))
  t.deepEqual(ids, all.filter(id => !lost.has(id)), 'every other record is returned')
  checked += ids.length
  t.like(await q.wal.stats(), { count: all.length - lost.size, quarantined: lost.size })
  // Read again: the damage was taken out, and the read no longer fails.
  t.deepEqual((await readThrough(t, q, 0)).named, [])
}

test('a flipped byte in a frame body: EVAQ_CORRUPTION names the segment, the rest is read', async t => {
  const dir = await build(t)
  const { path, at, frame } = await findBytes(dir, 'rec-000123-')
  t.is(frame.firstId, 121)
  await flipAt(path, at + 20)
  await expectDamaged(t, dir, [121])
})

test('a flipped byte in a frame header: EVAQ_CORRUPTION names the segment, the rest is read', async t => {
  const dir = await build(t)
  const { path, frame } = await findBytes(dir, 'rec-000203-')
  t.is(frame.firstId, 201)
  await flipAt(path, frame.offset + 22, 0x01) // the first ID's low byte: the header checksum fails
  await expectDamaged(t, dir, [201])
})

test('a truncated segment file: the segments past the cut are named, the rest is read', async t => {
  const dir = await build(t)
  const files = await segmentFiles(dir)
  t.true(files.length >= 3, `${files.length} segment files`)
  // Cut the first file inside one of its frames (not the last one).
  const first = files[0]!
  const frames = framesIn(await readFile(first.path), first.number)
  const cut = frames[Math.floor(frames.length / 2)]!
  await truncate(first.path, cut.offset + FRAME_HEADER_BYTES + 100)
  const bad = frames.filter(f => f.offset >= cut.offset).map(f => f.firstId)
  await expectDamaged(t, dir, bad)
})

test('a missing segment file: its segments are named, the rest is read', async t => {
  const dir = await build(t)
  const files = await segmentFiles(dir)
  t.true(files.length >= 3, `${files.length} segment files`)
  const middle = files[1]!
  const bad = framesIn(await readFile(middle.path), middle.number).map(f => f.firstId)
  t.true(bad.length > 0)
  await rm(middle.path)
  await expectDamaged(t, dir, bad)
})

for (const how of ['cut', 'zeroed'] as const) {
  test(`a torn tail after a crash (${how} inside a frame never acknowledged): the open recovers every acknowledged push`, async t => {
    const dir = await tmpDir(t, 'evaq-segtorn-')
    const crashed = await tmpDir(t, 'evaq-segtorn-crashed-')
    const q = await Evaq.open(dir, { ...OPTIONS, segmentFileBytes: 1024 * 1024 })
    t.teardown(() => q.close())
    const early = await q.pushWalMany(range(1, 20).map(payloadFor))
    // LevelDB as a power cut leaves it: only what it had when the early pushes were acknowledged.
    await cp(dir, crashed, { recursive: true })
    const late: number[] = []
    for (let i = 0; i < 10; i++) late.push(...await q.pushWalMany(range(21 + i * 3, 23 + i * 3).map(payloadFor)))
    // The push whose append the crash tore: its frame is written, never acknowledged.
    const torn = await q.pushWalMany(range(51, 55).map(payloadFor))
    // The segment file as the crash left it: every acknowledged frame, then part of the last one.
    const frames = await allFrames(dir)
    const last = frames.find(f => f.firstId === torn[0])!
    t.is(frames.filter(f => f.path === last.path).at(-1)!.firstId, torn[0]!, 'the torn frame is the file\'s last')
    const file = await readFile(last.path)
    const target = last.path.replace(dir, crashed)
    const tearAt = last.offset + FRAME_HEADER_BYTES + 37
    if (how === 'cut') {
      await writeFile(target, file.subarray(0, tearAt))
    } else {
      file.fill(0, tearAt, last.end)
      await writeFile(target, file)
    }
    const reopened = await Evaq.open(crashed, OPTIONS)
    t.teardown(() => reopened.close())
    t.deepEqual(reopened.openReport.corruption, [])
    const records = await reopened.wal.read({ maxCount: 1000 })
    t.deepEqual(records.map(r => r.id), [...early, ...late], 'every acknowledged push, none of the torn one')
    for (const r of records) t.is(r.payload.toString(), payloadFor(r.id))
    checked += records.length
    // Writing goes on (in a new file, never after the torn frame), above every ID issued.
    const next = await reopened.pushWal('after')
    t.true(next > torn.at(-1)!, `the next ID ${next} is above the torn push's`)
    await reopened.close()
    const again = await Evaq.open(crashed, OPTIONS)
    t.teardown(() => again.close())
    t.deepEqual((await again.wal.read({ maxCount: 1000 })).map(r => r.id), [...early, ...late, next])
  })
}

// Runs once every scenario passed: what the soak's table shows for this part.
test.after(async () => {
  await report({
    part: 'segment-corruption',
    failure: 'A torn tail, flipped frame bytes (body and header), a truncated and a missing segment file',
    guarantee: 'Every acknowledged push recovered after a torn tail; damaged segments named once and quarantined, every other record read intact',
    test: 'test/reliability/segment-corruption.test.ts',
    cycles: 6,
    acknowledged: checked,
    lost: 0,
  })
})
