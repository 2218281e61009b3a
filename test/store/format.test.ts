import test from 'ava'
import { cp, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { Evaq } from '../../src/index.js'
import { FORMAT_KEY, FORMAT_VERSION, META_SUBLEVEL, SEGMENTS_DIR } from '../../src/schema.js'
import { tmpDir } from '../helpers/tmp.js'

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'format-1')
const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

async function formatOf (dir: string): Promise<unknown> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false })
  try {
    const value = await db.sublevel<Buffer, Buffer>(META_SUBLEVEL, { keyEncoding: 'buffer', valueEncoding: 'buffer' }).get(FORMAT_KEY)
    return (JSON.parse(value!.toString()) as { version: unknown }).version
  } finally {
    await db.close()
  }
}

test('a format-1 directory opens as it is: its inline segments read back, and new pushes go to segment files', async t => {
  const dir = await tmpDir(t, 'evaq-format1-')
  await cp(FIXTURE, dir, { recursive: true, filter: src => !src.endsWith('README.md') })
  t.is(await formatOf(dir), 1)
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const records = await q.wal.read({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(records.map(r => [r.id, r.payload.toString()]), [5, 6, 7, 8, 9, 10].map(id => [id, `wal record ${id}`]))
  t.like((await q.stats()).wal, { count: 6, bytes: 73, firstId: 5, lastId: 10, nextId: 11 })
  t.deepEqual((await q.dlq.read({})).map(r => [r.id, r.payload.toString(), r.error!.message]), [[1, 'dead letter 1', 'boom']])
  const sub = await q.wal.subscribe('reader')
  t.deepEqual((await sub.next({ maxCount: 100 }))!.records.map(r => r.id), [6, 7, 8, 9, 10])
  t.is(await q.pushWal('new record'), 11)
  t.true((await readdir(join(dir, SEGMENTS_DIR, 'wal'))).some(name => name.endsWith('.seg')), 'the new record went to a segment file')
  await q.close()
  t.is(await formatOf(dir), FORMAT_VERSION, 'marked format 2, so that an older evaq refuses it')
  const again = await Evaq.open(dir, OPTIONS)
  t.teardown(() => again.close())
  const all = await again.wal.read({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(all.map(r => r.payload.toString()), [5, 6, 7, 8, 9, 10].map(id => `wal record ${id}`).concat('new record'))
})

test('a directory of an unknown format is refused with EVAQ_UNSUPPORTED_FORMAT and left as it is', async t => {
  const dir = await tmpDir(t, 'evaq-format3-')
  const q = await Evaq.open(dir, OPTIONS)
  await q.close()
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.sublevel<Buffer, Buffer>(META_SUBLEVEL, { keyEncoding: 'buffer', valueEncoding: 'buffer' }).put(FORMAT_KEY, Buffer.from('{"version":3}'))
  await db.close()
  const err = await t.throwsAsync(Evaq.open(dir, OPTIONS))
  t.is((err as { code?: string }).code, 'EVAQ_UNSUPPORTED_FORMAT')
  t.is(await formatOf(dir), 3)
  t.false((await readdir(dir)).includes(SEGMENTS_DIR))
})
