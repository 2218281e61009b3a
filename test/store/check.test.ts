/**
 * `evaq check` reads a copy and changes nothing: the same answer twice on a directory whose
 * LevelDB log is damaged, byte-identical files afterwards, no copy left behind; LOCKED (exit 3)
 * while another process holds the directory, NOT FOUND (exit 4) where there is no queue.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { watch } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { check } from '../../src/store/check.js'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'
import { buildLayout, CLI, cliBuilt, flipByte, payloadOffset, runCli, tableOf, type CheckJson } from '../reliability/fixtures/corrupt-files.js'
import { repairInPlace } from '../../src/store/repair.js'

const HOLDER = new URL('../fixtures/lock-holder.ts', import.meta.url).pathname

test.before(async () => {
  const missing = await cliBuilt()
  if (missing !== undefined) throw new Error(missing)
})

/** Every file under `dir` (LOCK and LevelDB's info log included) with the SHA-256 of its bytes. */
async function hashes (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out[path.slice(dir.length + 1)] = createHash('sha256').update(await readFile(path)).digest('hex')
  }
  return out
}

/** A queue whose LevelDB log has a flipped byte in a payload: opening it drops the rest of that log block. */
async function damagedLog (t: ExecutionContext): Promise<{ parent: string, dir: string }> {
  const parent = await tmpDir(t, 'evaq-check-')
  const dir = join(parent, 'q')
  await mkdir(dir)
  const layout = await buildLayout(dir, 'log')
  const file = join(dir, layout.log!)
  await flipByte(file, payloadOffset(await readFile(file), 45) + 100)
  return { parent, dir }
}

function parse (t: ExecutionContext, stdout: string): CheckJson & { status: string } {
  try {
    return JSON.parse(stdout) as CheckJson & { status: string }
  } catch {
    t.fail(`not JSON: ${stdout.slice(0, 300)}`)
    throw new Error('unreachable')
  }
}

test('check twice on a damaged log: the same answer, the directory byte-identical, no copy left', async t => {
  const { parent, dir } = await damagedLog(t)
  const before = await hashes(dir)
  const first = await check(dir)
  t.deepEqual(await hashes(dir), before, 'the first check changed no file')
  t.true(first.damaged)
  t.true(first.engine.some(line => line.includes('dropping')), 'LevelDB dropped part of the log while opening the copy')
  t.is(first.status, 'damaged')
  const second = await check(dir)
  t.deepEqual(second, first, 'the second check sees what the first saw')
  t.deepEqual(await hashes(dir), before)

  const run = await runCli(['check', '--data', dir, '--json'])
  t.is(run.code, 1)
  const c = parse(t, run.stdout)
  t.is(c.status, 'damaged')
  t.deepEqual(c.logs, first.logs)
  const text = await runCli(['check', '--data', dir])
  t.is(text.code, 1)
  t.regex(text.stdout, /^DAMAGED$/m)
  t.deepEqual(await hashes(dir), before, 'neither did the command')
  t.deepEqual(await readdir(parent), ['q'], 'no copy is left beside the directory')
})

test('check while another process holds the directory: LOCKED, exit 3, the holder unaffected', async t => {
  const dir = join(await tmpDir(t, 'evaq-check-'), 'q')
  const proc = spawn(process.execPath, ['--import', 'tsx', HOLDER], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  const send = async (command: object): Promise<unknown> => {
    proc.stdin.write(JSON.stringify(command) + '\n')
    return JSON.parse((await lines.next()).value as string)
  }
  t.deepEqual(await send({ op: 'open', dir }), { ok: true })
  t.deepEqual(await send({ op: 'push', payload: 'p' }), { id: 1 })

  t.is((await check(dir)).status, 'locked', 'found without opening LOCK (another process holds it)')
  const run = await runCli(['check', '--data', dir, '--json'])
  t.is(run.code, 3)
  t.like(parse(t, run.stdout), { status: 'locked', damaged: false, opened: false, error: { code: 'EVAQ_LOCKED' } })
  const text = await runCli(['check', '--data', dir])
  t.is(text.code, 3)
  t.regex(text.stdout, /^LOCKED/m)
  t.notRegex(text.stdout, /DAMAGED/)

  t.deepEqual(await send({ op: 'push', payload: 'q' }), { id: 2 }, 'the holder goes on')
  await t.throwsAsync(Evaq.open(dir), { code: 'EVAQ_LOCKED' }, 'and still holds the directory')
  t.deepEqual(await send({ op: 'close' }), { ok: true })
  t.is((await check(dir)).status, 'ok', 'once it is closed, the directory checks clean')
})

test('check where there is no queue: NOT FOUND, exit 4, nothing created', async t => {
  const parent = await tmpDir(t, 'evaq-check-')
  const missing = join(parent, 'missing')
  const empty = join(parent, 'empty')
  const other = join(parent, 'other')
  const file = join(parent, 'file')
  await mkdir(empty)
  await mkdir(other)
  await writeFile(join(other, 'notes.txt'), 'not a queue')
  await writeFile(file, 'not a directory')
  for (const dir of [missing, empty, other, file]) {
    t.is((await check(dir)).status, 'not-found', dir)
    const run = await runCli(['check', '--data', dir, '--json'])
    t.is(run.code, 4, dir)
    t.like(parse(t, run.stdout), { status: 'not-found', damaged: false, error: { code: 'EVAQ_NOT_FOUND' } })
    const text = await runCli(['check', '--data', dir])
    t.is(text.code, 4)
    t.regex(text.stdout, /^NOT FOUND/m)
  }
  t.deepEqual((await readdir(parent)).sort(), ['empty', 'file', 'other'], 'check created nothing')
  t.deepEqual(await readdir(empty), [])
  t.deepEqual(await readdir(other), ['notes.txt'])
})

test('an interrupted check removes its copy', async t => {
  const parent = await tmpDir(t, 'evaq-check-')
  const dir = join(parent, 'q')
  await mkdir(dir)
  await buildLayout(dir, 'tables')
  const before = await hashes(dir)
  const proc = spawn(process.execPath, [CLI, 'check', '--data', dir, '--json'], { stdio: 'ignore' })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  // Interrupt as soon as the copy appears beside the directory.
  let seen = false
  const watcher = watch(parent, (_, name) => {
    if (!seen && name !== null && name.startsWith('.q.check-')) { seen = true; proc.kill('SIGINT') }
  })
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => proc.once('exit', (c, s) => resolve([c, s])))
  watcher.close()
  t.true(seen, 'the copy was made beside the directory')
  t.log(code === 130 ? 'interrupted while checking' : `finished before the interrupt (exit ${String(code)}, signal ${String(signal)})`)
  t.deepEqual(await readdir(parent), ['q'], 'no copy is left')
  t.deepEqual(await hashes(dir), before)
})

test('repair of a damaged record in a segment that already had removals: the record stays out after the repair', async t => {
  const parent = await tmpDir(t, 'evaq-repair-')
  const dir = join(parent, 'q')
  const layout = await buildLayout(dir, 'table')
  const q = await Evaq.open(dir, { compression: false, minFreeDiskBytes: 0 })
  await q.removeWal([1])
  await q.close()
  const table = join(dir, tableOf(layout, 5))
  await flipByte(table, payloadOffset(await readFile(table), 5) + 20)
  const fixed = await repairInPlace(dir)
  t.is(fixed.wal!.quarantinedRecords, 1)
  const again = await Evaq.open(dir, { compression: false, minFreeDiskBytes: 0 })
  t.teardown(() => again.close())
  // The repair's removal set marks the damaged record: reads pass it without meeting it again.
  const records = await again.wal.read({ from: 0, maxCount: 1000 })
  t.deepEqual(records.map(r => r.id), Array.from({ length: layout.records }, (_, i) => i + 1).filter(id => id !== 1 && id !== 5))
  const stats = await again.wal.stats()
  t.is(stats.count, layout.records - 2)
  t.is(stats.quarantined, 1)
})
