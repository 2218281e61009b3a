/**
 * Backups of a queue whose WAL keeps its payloads in segment files (storage format 2): the archive
 * carries the segments' bytes, the restored directory starts its own segment files, and files a
 * backup still reads are not released under it.
 */
import test, { type ExecutionContext } from 'ava'
import { createWriteStream } from 'node:fs'
import { open as fsOpen, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { Evaq, isEvaqError, type EvaqOptions } from '../../src/index.js'
import { SEGMENTS_DIR } from '../../src/schema.js'
import { decodeFrameHeader, FRAME_HEADER_BYTES, frameSpan } from '../../src/store/frame.js'
import type { Store } from '../../src/store/store.js'
import { runFixture } from '../helpers/child.js'
import { internals } from '../helpers/internals.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'

const WRITER = fileURLToPath(new URL('../fixtures/crash-writer.ts', import.meta.url))
const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

async function open (t: ExecutionContext, dir: string, options: EvaqOptions = OPTIONS): Promise<Evaq> {
  const q = await Evaq.open(dir, options)
  t.teardown(() => q.close())
  return q
}

async function segmentFiles (dir: string): Promise<string[]> {
  return (await readdir(join(dir, SEGMENTS_DIR, 'wal')).catch(() => [])).filter(n => /^\d{10}\.seg$/.test(n)).sort()
}

test('a restored directory starts its own segment files, and open indexes again what LevelDB lost there (no tail carried over)', async t => {
  const root = await tmpDir(t, 'evaq-backup-files-')
  const src = join(root, 'src')
  const q = await Evaq.open(src, { ...OPTIONS, maxPayloadBytes: 1024 * 1024 })
  // Three frames of 700 KB: the first file (1 MiB) holds one, the second the next two.
  for (let i = 0; i < 3; i++) await q.pushWal(Buffer.alloc(700 * 1024, i + 1))
  t.true((await segmentFiles(src)).length >= 2)
  const file = join(root, 'b.evaq')
  await pipeline(Readable.from(await q.backup()), createWriteStream(file))
  await q.close()

  const restored = join(root, 'restored')
  await Evaq.restore(file, restored, { verify: true })
  t.deepEqual(await segmentFiles(restored), [], 'the archive carries the segments\' bytes: no segment file is restored')

  // A writer on the restored queue, killed once a flush's frames are synced and before their
  // locators are written: the next open must index those frames again from file 1.
  const run = await runFixture(WRITER, [restored, 'sync', 'after', JSON.stringify({ minFreeDiskBytes: 0 })], 'frame-append:synced:5', 60_000)
  t.is(run.signal, 'SIGKILL', run.stderr)
  t.deepEqual((await segmentFiles(restored))[0], '0000000001.seg')
  const r = await open(t, restored, { ...OPTIONS, maxPayloadBytes: 1024 * 1024 })
  t.true((r as unknown as { store: Store }).store.fileRecovery.segments > 0, 'the frames after the restored queue\'s own tail were indexed again')
  const records = await readAll(r.wal)
  t.deepEqual(records.slice(0, 3).map(x => [x.id, x.payload.byteLength, x.payload[0]]), [[1, 700 * 1024, 1], [2, 700 * 1024, 2], [3, 700 * 1024, 3]])
  t.true(records.length > 3)
})

test('a backup pins the segment files: cleanup releases none while it is read, and the archive restores every record', async t => {
  const root = await tmpDir(t, 'evaq-backup-files-')
  const src = join(root, 'src')
  // 64 KiB files: the records below fill several.
  const q = await open(t, src, { ...OPTIONS, segmentFileBytes: 64 * 1024 })
  const payloads = Array.from({ length: 24 }, (_, i) => Buffer.alloc(20 * 1024, i))
  const ids: number[] = []
  for (const p of payloads) ids.push(await q.pushWal(p))
  const before = await segmentFiles(src)
  t.true(before.length >= 4, `files: ${before.join(' ')}`)

  const stream = await q.backup()
  // Every record removed: the floor passes every file, and cleanup would release them now.
  await q.removeWal(ids)
  await internals(q).wal.compact()
  t.deepEqual(await segmentFiles(src), before, 'no file released while the backup is open')

  const file = join(root, 'b.evaq')
  await pipeline(Readable.from(stream), createWriteStream(file))
  await Evaq.restore(file, join(root, 'restored'), { verify: true })
  const r = await open(t, join(root, 'restored'))
  const records = await readAll(r.wal)
  t.deepEqual(records.map(x => x.id), ids)
  records.forEach((x, i) => t.true(x.payload.equals(payloads[i]!), `ID ${x.id}: the same bytes`))

  // The backup ended: the files go at the next round.
  await internals(q).wal.compact()
  t.true((await segmentFiles(src)).length < before.length, 'released once the backup ended')
})

test('a frame that cannot be read fails the backup with EVAQ_CORRUPTION naming its segment', async t => {
  const root = await tmpDir(t, 'evaq-backup-files-')
  const src = join(root, 'src')
  const q = await open(t, src)
  await q.pushWal('one')
  await q.pushWal(Buffer.alloc(1000, 'x'))
  await q.pushWal('three')
  // Segment 2's frame: after segment 1's frame (header + body, padded to 8 bytes).
  const path = join(src, SEGMENTS_DIR, 'wal', '0000000001.seg')
  const handle = await fsOpen(path, 'r+')
  try {
    const head = Buffer.alloc(FRAME_HEADER_BYTES)
    await handle.read(head, 0, FRAME_HEADER_BYTES, 0)
    const second = frameSpan(decodeFrameHeader(head, 0, 1)!.bodyLength)
    const byte = Buffer.alloc(1)
    await handle.read(byte, 0, 1, second + FRAME_HEADER_BYTES + 500)
    byte[0]! ^= 0x5a
    await handle.write(byte, 0, 1, second + FRAME_HEADER_BYTES + 500)
  } finally {
    await handle.close()
  }
  const stream = await q.backup()
  const err = await pipeline(Readable.from(stream), createWriteStream(join(root, 'b.evaq'))).then(() => undefined, (e: unknown) => e)
  t.true(isEvaqError(err, 'EVAQ_CORRUPTION'), String(err))
  t.deepEqual((err as { ids?: number[] }).ids, [2])
})
