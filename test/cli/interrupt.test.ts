/**
 * Interrupting `evaq restore` and `evaq bench` (the built binary, in child processes): by SIGINT,
 * SIGTERM and SIGKILL, at exact steps (crash points: EVAQ_CRASH_POINT with EVAQ_CRASH_SIGNAL) and
 * at random moments. A restore never leaves a queue at its target unless it completed: the target
 * does not exist afterwards (or is still the empty directory it was), and a restore run again
 * afterwards gives exactly the backed-up records and next IDs. Bench leaves no directory behind.
 */
import test, { type ExecutionContext } from 'ava'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { saveArchive } from '../../src/backup/archive-file.js'
import { Evaq } from '../../src/index.js'
import { start, when } from '../fixtures/signal-cli.js'
import { prng } from '../helpers/prng.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'
import { canMountOrFail, Mounts } from '../reliability/fixtures/disk-images.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

interface QueueView {
  wal: { count: number, nextId: number, digest: string }
  dlq: { count: number, nextId: number }
  parked: { nextId: number }
}

let shared: string
let archive: string
let expected: QueueView

/** What a restore must give: every WAL record (ID and payload), counts and next IDs. */
async function viewOf (dir: string): Promise<QueueView> {
  const q = await Evaq.open(dir, OPTIONS)
  try {
    const stats = await q.stats()
    const hash = createHash('sha256')
    for (const r of await readAll(q.wal)) hash.update(`${r.id}:`).update(r.payload)
    return {
      wal: { count: stats.wal.count, nextId: stats.wal.nextId, digest: hash.digest('hex') },
      dlq: { count: stats.dlq.count, nextId: stats.dlq.nextId },
      parked: { nextId: stats.parked.nextId },
    }
  } finally {
    await q.close()
  }
}

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
  shared = await mkdtemp(join(tmpdir(), 'evaq-interrupt-'))
  const dir = join(shared, 'q')
  const q = await Evaq.open(dir, OPTIONS)
  // 3,000 records of 1 KB in 30 segments, some removed, a DLQ record, pushes after the removals.
  for (let i = 0; i < 3000; i += 100) await q.pushWalMany(Array.from({ length: 100 }, (_, j) => Buffer.alloc(1000, i + j)))
  await q.removeWal(Array.from({ length: 300 }, (_, j) => j * 7 + 1))
  await q.pushRetryItem('poison', { error: 'refused' })
  archive = join(shared, 'full.evaq')
  await saveArchive(await q.backup(), archive)
  await q.close()
  expected = await viewOf(dir)
  expected.wal.nextId = 3001
})

test.after.always(async () => {
  if (shared !== undefined) await rm(shared, { recursive: true, force: true, maxRetries: 3 })
})

/** The work directories of restores into `target` (`.NAME.evaq-restore-…` beside it). */
async function workDirs (root: string, name: string): Promise<string[]> {
  return (await readdir(root)).filter(n => n.startsWith(`.${name}.evaq-restore-`))
}

/** The target as it was before the restore: absent, or the empty directory it was. */
async function assertUntouched (t: ExecutionContext, target: string, existed: boolean, what: string): Promise<void> {
  if (existed) t.deepEqual(await readdir(target), [], `${what}: the target is still empty`)
  else await t.throwsAsync(stat(target), { code: 'ENOENT' }, `${what}: there is no target`)
}

/** Restore again into the same target: it completes, with exactly the backed-up queue; no work directory is left. */
async function assertRestoresAfter (t: ExecutionContext, root: string, name: string, what: string): Promise<void> {
  // In this process (the same code as the command's), to keep the test quick.
  await Evaq.restore(archive, join(root, name))
  t.deepEqual(await viewOf(join(root, name)), expected, `${what}: the exact records and next IDs`)
  t.deepEqual(await workDirs(root, name), [], `${what}: no work directory is left (a killed one's is removed)`)
}

const EXIT = { SIGINT: 130, SIGTERM: 143 } as const

test('restore interrupted at exact steps: before it completes nothing is at the target; a restore run again gives the exact queue', async t => {
  const root = await tmpDir(t, 'evaq-interrupt-restore-')
  // [crash point, signal, --verify, the target existed (empty), outcome]
  const cases: Array<[string, 'SIGKILL' | 'SIGINT' | 'SIGTERM', boolean, boolean, 'untouched' | 'complete']> = [
    ['restore:loaded', 'SIGKILL', false, false, 'untouched'],
    ['restore:loaded', 'SIGINT', false, false, 'untouched'],
    ['restore:loaded', 'SIGTERM', true, true, 'untouched'],
    ['restore:synced', 'SIGKILL', true, true, 'untouched'],
    // Once the complete directory is being renamed into place, the restore finishes.
    ['restore:synced', 'SIGINT', false, false, 'complete'],
    ['restore:renamed', 'SIGKILL', false, false, 'complete'],
  ]
  for (const [i, [point, signal, verify, existed, outcome]] of cases.entries()) {
    const what = `${point} ${signal}${verify ? ' --verify' : ''}${existed ? ' (empty target)' : ''}`
    const name = `r${i}`
    const target = join(root, name)
    if (existed) await mkdir(target)
    const running = start(t, ['restore', '--from', archive, '--data', target, ...(verify ? ['--verify'] : [])],
      { EVAQ_CRASH_POINT: point, EVAQ_CRASH_SIGNAL: signal })
    const run = await running.exited
    if (outcome === 'complete') {
      if (signal === 'SIGKILL') t.is(run.signal, 'SIGKILL', what)
      else t.is(run.code, 0, `${what}: completed (${run.stderr.slice(0, 300)})`)
      t.deepEqual(await viewOf(target), expected, `${what}: the whole queue is in place`)
      await rm(target, { recursive: true })
    } else {
      if (signal === 'SIGKILL') t.is(run.signal, 'SIGKILL', what)
      else {
        t.is(run.code, EXIT[signal], `${what}: exit code (${run.stderr.slice(0, 300)})`)
        t.regex(run.stderr, /interrupted/, `${what}: says so`)
        t.deepEqual(await workDirs(root, name), [], `${what}: its work directory is removed`)
      }
      await assertUntouched(t, target, existed, what)
    }
    await assertRestoresAfter(t, root, name, what)
  }
})

test('restore interrupted by SIGINT, SIGTERM or SIGKILL at random moments while it writes', async t => {
  const root = await tmpDir(t, 'evaq-interrupt-random-')
  const seed = Number(process.env.EVAQ_INTERRUPT_SEED ?? Date.now() % 1_000_000)
  t.log(`seed ${seed} (EVAQ_INTERRUPT_SEED)`)
  const random = prng(seed)
  const signals = ['SIGINT', 'SIGTERM', 'SIGKILL'] as const
  let interrupted = 0
  for (let i = 0; i < 4; i++) {
    const signal = signals[i % 3]!
    const name = `r${i}`
    const target = join(root, name)
    const running = start(t, ['restore', '--from', archive, '--data', target, ...(i % 2 === 0 ? ['--verify'] : [])])
    // Once it writes (its work directory, or the target, exists), after a random few milliseconds.
    const writing = await when(running, async () => (await readdir(root)).some(n => n === name || n.startsWith(`.${name}.`)))
    const delay = Math.floor(random() * 40)
    if (writing) {
      await new Promise(resolve => setTimeout(resolve, delay))
      running.child.kill(signal)
    }
    const run = await running.exited
    const what = `${signal} ${delay} ms into the write`
    if (run.code === 0) {
      // It completed before the signal came.
      t.deepEqual(await viewOf(target), expected, `${what}: completed`)
      await rm(target, { recursive: true })
    } else {
      interrupted++
      t.log(`${what}: interrupted`)
      if (signal === 'SIGKILL') t.is(run.signal, 'SIGKILL', what)
      else t.is(run.code, EXIT[signal], `${what} (${run.stderr.slice(0, 300)})`)
      await assertUntouched(t, target, false, what)
    }
    await assertRestoresAfter(t, root, name, what)
  }
  t.true(interrupted > 0, 'at least one restore was interrupted')
})

test('a work directory of a restore still running is left alone; an aborted Evaq.restore() leaves nothing', async t => {
  const root = await tmpDir(t, 'evaq-interrupt-api-')
  // This process is alive: its work directory is not stale.
  const live = join(root, `.r.evaq-restore-${process.pid}-00c0ffee`)
  await mkdir(live)
  // A process that no longer runs: stale.
  const gone = start(t, ['--version'])
  await gone.exited
  const stale = join(root, `.r.evaq-restore-${gone.child.pid!}-0badf00d`)
  await mkdir(stale)

  const controller = new AbortController()
  const err = await t.throwsAsync(Evaq.restore(archive, join(root, 'r'), {
    signal: controller.signal,
    onProgress: phase => { if (phase === 'restore') controller.abort() },
  }))
  t.is((err as { code?: string }).code, 'EVAQ_ABORTED')
  t.deepEqual((await readdir(root)).sort(), [`.r.evaq-restore-${process.pid}-00c0ffee`],
    'nothing at the target, no work directory but the live one; the stale one was removed')

  const result = await Evaq.restore(archive, join(root, 'r'), { verify: true })
  t.true(result.verified)
  t.deepEqual(await viewOf(join(root, 'r')), expected)
  t.deepEqual((await readdir(root)).sort(), [`.r.evaq-restore-${process.pid}-00c0ffee`, 'r'])
})

test('bench removes its directory on SIGINT and SIGTERM', async t => {
  const root = await tmpDir(t, 'evaq-interrupt-bench-')
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const running = start(t, ['bench', '--dir', root, '--seconds', '60', '--concurrency', '4', '--size', '100'])
    // Once it pushes: its directory holds a database.
    const pushing = await when(running, async () => {
      for (const name of await readdir(root)) {
        if ((await readdir(join(root, name)).catch(() => [])).some(n => n.endsWith('.log'))) return true
      }
      return false
    })
    t.true(pushing, `${signal}: bench started`)
    running.child.kill(signal)
    const run = await running.exited
    t.is(run.code, EXIT[signal], `${signal}: exit code (${run.stderr.slice(0, 300)})`)
    t.deepEqual(await readdir(root), [], `${signal}: no directory is left`)
  }
})

test('a target that is a mount point is filled in place, CURRENT last: interrupted, it never opens as a queue', async t => {
  if (!canMountOrFail(t)) return
  const root = await tmpDir(t, 'evaq-interrupt-mount-')
  const target = (await new Mounts(t).mountTmpfs(join(root, 'mnt'), '32m')).mountpoint
  const empty = async (): Promise<void> => {
    for (const name of await readdir(target)) await rm(join(target, name), { recursive: true })
  }

  // Ctrl-C while it writes: its work directory inside the target is removed.
  let run = await start(t, ['restore', '--from', archive, '--data', target], { EVAQ_CRASH_POINT: 'restore:loaded', EVAQ_CRASH_SIGNAL: 'SIGINT' }).exited
  t.is(run.code, 130, run.stderr.slice(0, 300))
  t.deepEqual(await readdir(target), [])

  // Killed while it writes: the next restore removes the work directory it left, and completes.
  run = await start(t, ['restore', '--from', archive, '--data', target], { EVAQ_CRASH_POINT: 'restore:synced' }).exited
  t.is(run.signal, 'SIGKILL')
  t.is((await readdir(target)).length, 1, 'the work directory is left')
  await Evaq.restore(archive, target)
  t.deepEqual(await viewOf(target), expected)
  t.false((await readdir(target)).some(n => n.startsWith('.evaq-restore-')))
  await empty()

  // Killed while it moves the files up: LevelDB's files without CURRENT, which evaq refuses to open.
  run = await start(t, ['restore', '--from', archive, '--data', target], { EVAQ_CRASH_POINT: 'restore:moved:2' }).exited
  t.is(run.signal, 'SIGKILL')
  t.false((await readdir(target)).includes('CURRENT'))
  const err = await t.throwsAsync(Evaq.open(target, OPTIONS))
  t.is((err as { code?: string }).code, 'EVAQ_CORRUPTION')
  await empty()
  await Evaq.restore(archive, target, { verify: true })
  t.deepEqual(await viewOf(target), expected)
})
