/**
 * One process per data directory, however the directory is reached in the holding process.
 * LevelDB's lock is a POSIX record lock, dropped by the kernel when the process closes any
 * descriptor of LOCK: a second open inside the holder must never reach LevelDB.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { symlink } from 'node:fs/promises'
import { basename, dirname, join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { Evaq } from '../../src/index.js'
import { check } from '../../src/store/check.js'
import { tmpDir } from '../helpers/tmp.js'

const HOLDER = new URL('../fixtures/lock-holder.ts', import.meta.url).pathname

type Answer = { ok?: true, id?: number, code?: string, status?: string }

/** A lock-holder child process; send() resolves with its answer to one command. */
function holder (t: ExecutionContext): (command: object) => Promise<Answer> {
  const proc = spawn(process.execPath, ['--import', 'tsx', HOLDER], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  return async command => {
    proc.stdin.write(JSON.stringify(command) + '\n')
    const next = await lines.next()
    if (next.done === true) throw new Error('the holder exited')
    return JSON.parse(next.value) as Answer
  }
}

async function readIds (dir: string): Promise<number[]> {
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  try {
    return (await q.wal.read({ from: 0 })).map(r => r.id)
  } finally {
    await q.close()
  }
}

test('a failed second open in the holding process leaves the directory locked for other processes', async t => {
  const dir = join(await tmpDir(t, 'evaq-lock-'), 'q')
  const a = holder(t)
  const b = holder(t)
  t.deepEqual(await a({ op: 'open', dir }), { ok: true })
  t.deepEqual(await a({ op: 'push', payload: 'a1' }), { id: 1 })
  t.deepEqual(await a({ op: 'push', payload: 'a2' }), { id: 2 })
  t.deepEqual(await b({ op: 'open', dir }), { code: 'EVAQ_LOCKED' }, 'B is refused while A holds the directory')

  t.deepEqual(await a({ op: 'open', dir }), { code: 'EVAQ_LOCKED' }, 'a second open in A is refused')
  t.deepEqual(await b({ op: 'open', dir }), { code: 'EVAQ_LOCKED' }, 'and B is still refused after it')

  t.deepEqual(await a({ op: 'push', payload: 'a3' }), { id: 3 })
  t.deepEqual(await a({ op: 'push', payload: 'a4' }), { id: 4 })
  t.deepEqual(await b({ op: 'open', dir }), { code: 'EVAQ_LOCKED' })
  t.deepEqual(await a({ op: 'close' }), { ok: true })
  t.deepEqual(await readIds(dir), [1, 2, 3, 4], 'every push A saw acknowledged is there after a reopen')
})

test('other spellings of the held directory are the same directory: a relative path, a symlink', async t => {
  const parent = await tmpDir(t, 'evaq-lock-')
  const dir = join(parent, 'q')
  const link = join(parent, 'link')
  const a = holder(t)
  const b = holder(t)
  t.deepEqual(await a({ op: 'open', dir }), { ok: true })
  await symlink(dir, link)
  for (const other of [link, join(parent, '.', 'q') + '/', relative(process.cwd(), dir), join(dirname(dir), '..', basename(parent), 'q')]) {
    t.deepEqual(await a({ op: 'open', dir: other }), { code: 'EVAQ_LOCKED' }, other)
    t.deepEqual(await b({ op: 'open', dir }), { code: 'EVAQ_LOCKED' }, `B after A opened ${other}`)
  }
  t.deepEqual(await a({ op: 'push', payload: 'x' }), { id: 1 })
  t.deepEqual(await a({ op: 'close' }), { ok: true })
  t.deepEqual(await readIds(dir), [1])
})

test('check, repair, restore and backup in the holding process never free the directory', async t => {
  const parent = await tmpDir(t, 'evaq-lock-')
  const dir = join(parent, 'q')
  const a = holder(t)
  const b = holder(t)
  t.deepEqual(await a({ op: 'open', dir }), { ok: true })
  t.deepEqual(await a({ op: 'push', payload: 'a1' }), { id: 1 })
  const archive = join(parent, 'full.evaq')
  const steps: Array<[object, Answer]> = [
    [{ op: 'check', dir }, { status: 'locked' }],
    [{ op: 'repair', dir, backup: join(parent, 'repair-backup') }, { code: 'EVAQ_LOCKED' }],
    [{ op: 'backup', file: archive }, { ok: true }],
    [{ op: 'restore', from: archive, dir }, { code: 'EVAQ_INVALID_ARGUMENT' }],
  ]
  for (const [command, answer] of steps) {
    t.deepEqual(await a(command), answer, JSON.stringify(command))
    t.deepEqual(await b({ op: 'open', dir }), { code: 'EVAQ_LOCKED' }, `B after ${JSON.stringify(command)}`)
  }
  t.deepEqual(await a({ op: 'push', payload: 'a2' }), { id: 2 })
  t.deepEqual(await a({ op: 'close' }), { ok: true })
  t.deepEqual(await readIds(dir), [1, 2])
})

test('in one process: a second open is EVAQ_LOCKED, close releases the directory, a failed open holds nothing', async t => {
  const dir = join(await tmpDir(t, 'evaq-lock-'), 'q')
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  await t.throwsAsync(Evaq.open(dir), { code: 'EVAQ_LOCKED' })
  t.is((await check(dir)).status, 'locked')
  await q.close()
  // An open that fails after claiming the directory (bad options are checked before) releases it.
  await t.throwsAsync(Evaq.open(dir, { bogus: 1 } as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  const again = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  await again.close()
  t.is((await check(dir)).status, 'ok')
})

test('two copies of evaq in one process share the registry', async t => {
  const parent = await tmpDir(t, 'evaq-lock-')
  const dir = join(parent, 'q')
  const link = join(parent, 'link')
  // The built package, a second copy of every module (npm test builds it before ava runs).
  const built = await import(new URL('../../dist/index.js', import.meta.url).href) as { Evaq: typeof Evaq }
  t.not(built.Evaq, Evaq)
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  await symlink(dir, link)
  // Through a symlink, LevelDB's own in-process table (keyed by the path as spelled) does not see it.
  await t.throwsAsync(built.Evaq.open(link), { code: 'EVAQ_LOCKED' })
  await q.close()
  const other = await built.Evaq.open(link, { minFreeDiskBytes: 0 })
  await t.throwsAsync(Evaq.open(dir), { code: 'EVAQ_LOCKED' })
  await other.close()
})
