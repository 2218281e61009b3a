/**
 * `evaq import --in FILE` interrupted (the built binary, in child processes): Ctrl-C and SIGTERM
 * stop it after the batch under way and print how many records were imported; a SIGKILL at the
 * exact steps around a batch (EVAQ_CRASH_POINT import:pending / import:pushed) leaves a progress
 * file the next run settles. Run again, the same command imports the rest: the queue then holds
 * every record of the file exactly once, in order.
 */
import test, { type ExecutionContext } from 'ava'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { evaq, type Run } from '../fixtures/cli.js'
import { start, when } from '../fixtures/signal-cli.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }
/** 5 batches of 1,000 (the import's batch size). */
const RECORDS = 5000

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

const payload = (i: number): string => `record ${i} ${'x'.repeat(i % 50)}`

/** A source file of RECORDS records (with a blank line, which is skipped), and the queue's directory. */
async function setup (t: ExecutionContext): Promise<{ root: string, source: string, data: string, marker: string }> {
  const root = await tmpDir(t, 'evaq-import-resume-')
  const source = join(root, 'wal.ndjson')
  const lines: string[] = []
  for (let i = 1; i <= RECORDS; i++) {
    lines.push(JSON.stringify({ id: i, pushedAt: 0, payload: Buffer.from(payload(i)).toString('base64') }))
    if (i === 1500) lines.push('')
  }
  await writeFile(source, lines.join('\n') + '\n')
  return { root, source, data: join(root, 'q'), marker: `${source}.evaq-import` }
}

/** The WAL's payloads, in ID order. */
async function walPayloads (data: string): Promise<string[]> {
  const q = await Evaq.open(data, OPTIONS)
  try {
    return (await readAll(q.wal)).map(r => r.payload.toString())
  } finally {
    await q.close()
  }
}

const first = (n: number): string[] => Array.from({ length: n }, (_, i) => payload(i + 1))

function summary (run: Run): { imported: number, interrupted?: string, line?: number } {
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { imported: number, interrupted?: string, line?: number }
}

/** Run the import again to the end: exactly every record of the file, once each; no progress file left. */
async function assertResumes (
  t: ExecutionContext,
  s: { root: string, source: string, data: string, marker: string },
  before: number,
  what: string
): Promise<void> {
  const run = await evaq(['import', 'wal', '--in', s.source, '--data', s.data, '--json'])
  t.is(run.code, 0, `${what}: the import run again completes (${run.stderr.slice(0, 300)})`)
  t.is(summary(run).imported, RECORDS - before, `${what}: it imports the rest`)
  t.deepEqual(await walPayloads(s.data), first(RECORDS), `${what}: every record once, in order`)
  await t.throwsAsync(stat(s.marker), { code: 'ENOENT' }, `${what}: the progress file is removed`)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`import interrupted by ${signal}: it says how many records it imported, and the same command continues after them`, async t => {
    const s = await setup(t)
    const running = start(t, ['import', 'wal', '--in', s.source, '--data', s.data, '--json'])
    // Once a batch is stored: the WAL's segment files hold more than the first batch's bytes.
    const importing = await when(running, async () => {
      const wal = join(s.data, 'segments', 'wal')
      let bytes = 0
      for (const name of await readdir(wal).catch(() => [])) {
        if (name.endsWith('.seg')) bytes += (await stat(join(wal, name)).catch(() => ({ size: 0 }))).size
      }
      return bytes > 30_000
    })
    t.true(importing, 'the import was under way')
    running.child.kill(signal)
    const run = await running.exited
    t.is(run.code, signal === 'SIGINT' ? 130 : 143, run.stderr.slice(0, 300))
    const done = summary(run)
    t.is(done.interrupted, signal)
    t.true(done.imported > 0 && done.imported < RECORDS, `imported ${done.imported}`)
    t.regex(run.stderr, new RegExp(`imported ${done.imported} record`), 'the count is printed')
    t.deepEqual(await walPayloads(s.data), first(done.imported), 'exactly the records it reported')
    await assertResumes(t, s, done.imported, signal)
  })
}

test('import killed around a batch (SIGKILL before and after the push is stored): the next run neither duplicates nor loses', async t => {
  for (const [point, stored] of [['import:pending:3', 2000], ['import:pushed:3', 3000], ['import:pushed:1', 1000]] as const) {
    const s = await setup(t)
    const run = await start(t, ['import', 'wal', '--in', s.source, '--data', s.data], { EVAQ_CRASH_POINT: point }).exited
    t.is(run.signal, 'SIGKILL', point)
    t.deepEqual(await walPayloads(s.data), first(stored), `${point}: stored when killed`)
    t.truthy((JSON.parse(await readFile(s.marker, 'utf8')) as { pending?: unknown }).pending, `${point}: a batch is pending`)
    await assertResumes(t, s, stored, point)
  }
})

test('an import that cannot tell whether its last batch was stored, or whose file or target changed, stops and pushes nothing', async t => {
  const s = await setup(t)
  t.is((await start(t, ['import', 'wal', '--in', s.source, '--data', s.data], { EVAQ_CRASH_POINT: 'import:pending:2' }).exited).signal, 'SIGKILL')
  // Another writer pushed since: a record the import did not push lies where its batch would be.
  const q = await Evaq.open(s.data, OPTIONS)
  await q.pushWal('other')
  await q.close()
  const before = await walPayloads(s.data)
  const ambiguous = await evaq(['import', 'wal', '--in', s.source, '--data', s.data])
  t.is(ambiguous.code, 2)
  t.regex(ambiguous.stderr, /^evaq: EVAQ_INVALID_ARGUMENT:/m)
  t.deepEqual(await walPayloads(s.data), before, 'nothing pushed')

  const other = await evaq(['import', 'wal', '--in', s.source, '--data', join(s.root, 'other')])
  t.is(other.code, 2, 'another target while the file has an unfinished import')
  t.regex(other.stderr, /^evaq: EVAQ_INVALID_ARGUMENT:/m)
  await writeFile(s.source, (await readFile(s.source, 'utf8')) + '\n')
  const changed = await evaq(['import', 'wal', '--in', s.source, '--data', s.data])
  t.is(changed.code, 2, 'the file changed')
  t.deepEqual(await walPayloads(s.data), before, 'nothing pushed')
  t.deepEqual(await walPayloads(join(s.root, 'other')), [], 'nothing pushed to the other target')
  t.true((await readdir(s.root)).includes('wal.ndjson.evaq-import'), 'the progress file is kept')
})
