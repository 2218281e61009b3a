/**
 * What Evaq.open refuses before it writes anything: a path that is a regular file, and a
 * non-empty directory that holds no queue (no LevelDB CURRENT, and entries other than LevelDB's
 * and evaq's own, names starting with a dot, and lost+found). An empty or missing directory still
 * gets a new queue.
 */
import test from 'ava'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

test('a regular file is refused with EVAQ_INVALID_ARGUMENT and left as it was', async t => {
  const file = join(await tmpDir(t, 'evaq-refuse-'), 'data')
  await writeFile(file, 'not a queue')
  const err = await t.throwsAsync(Evaq.open(file, OPTIONS))
  t.is((err as { code?: string }).code, 'EVAQ_INVALID_ARGUMENT')
  t.is(await readFile(file, 'utf8'), 'not a queue')
})

test('a non-empty directory that is not a queue is refused with EVAQ_INVALID_ARGUMENT, nothing written into it', async t => {
  const dir = join(await tmpDir(t, 'evaq-refuse-'), 'photos')
  await mkdir(join(dir, '2024'), { recursive: true })
  await writeFile(join(dir, 'cat.jpg'), 'meow')
  const err = await t.throwsAsync(Evaq.open(dir, OPTIONS))
  t.is((err as { code?: string }).code, 'EVAQ_INVALID_ARGUMENT')
  t.deepEqual((await readdir(dir)).sort(), ['2024', 'cat.jpg'])
  // Refused twice alike: the first refusal left no claim behind.
  const again = await t.throwsAsync(Evaq.open(dir, OPTIONS))
  t.is((again as { code?: string }).code, 'EVAQ_INVALID_ARGUMENT')
})

test('an empty or missing directory, or one with only dotfiles and lost+found, gets a new queue; a queue opens again', async t => {
  const root = await tmpDir(t, 'evaq-refuse-')
  const empty = join(root, 'empty')
  await mkdir(empty)
  const dotted = join(root, 'dotted')
  await mkdir(join(dotted, 'lost+found'), { recursive: true })
  await writeFile(join(dotted, '.gitkeep'), '')
  for (const dir of [empty, join(root, 'missing', 'deeper'), dotted]) {
    let q = await Evaq.open(dir, OPTIONS)
    await q.pushWal('x')
    await q.close()
    q = await Evaq.open(dir, OPTIONS)
    t.is((await q.wal.stats()).count, 1, dir)
    await q.close()
  }
})
