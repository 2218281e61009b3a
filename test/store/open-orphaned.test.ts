/**
 * A directory holding LevelDB's files but no CURRENT is refused before LevelDB sees it: the
 * refusal leaves nothing open and nothing written, and a new directory is never mistaken for one
 * while LevelDB creates it.
 */
import test from 'ava'
import { readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0 }

test('a directory without CURRENT is refused with nothing left open or written: with CURRENT back it opens whole', async t => {
  const dir = join(await tmpDir(t, 'evaq-orphaned-'), 'q')
  const q = await Evaq.open(dir, OPTIONS)
  await q.wal.pushMany(['a', 'b', 'c'].map(s => Buffer.from(s)))
  await q.close()
  const current = await readFile(join(dir, 'CURRENT'))
  await rm(join(dir, 'CURRENT'))
  const before = (await readdir(dir)).sort()

  for (let i = 0; i < 3; i++) {
    const err = await t.throwsAsync(Evaq.open(dir, OPTIONS))
    t.is((err as { code?: string }).code, 'EVAQ_CORRUPTION')
  }
  await writeFile(join(dir, 'CURRENT'), current)
  const r = await Evaq.open(dir, OPTIONS)
  try {
    t.deepEqual((await r.wal.read({ from: 0 })).map(x => x.payload.toString()), ['a', 'b', 'c'])
  } finally {
    await r.close()
  }
  t.deepEqual((await readdir(dir)).filter(n => !before.includes(n) && n !== 'CURRENT' && !/^(\d+\.(log|ldb)|MANIFEST-\d+|LOG(\.old)?)$/.test(n)), [])
})

test('new directories opened at once all open as new queues', async t => {
  const root = await tmpDir(t, 'evaq-orphaned-new-')
  const results = await Promise.allSettled(Array.from({ length: 24 }, async (_, i) => {
    const q = await Evaq.open(join(root, `q${i}`), OPTIONS)
    await q.close()
  }))
  t.deepEqual(results.filter(r => r.status === 'rejected').map(r => (r.reason as { code?: string }).code), [])
})
