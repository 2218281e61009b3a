/**
 * The built `evaq` binary (dist/cli/main.js, built by `npm test` before ava runs), in child
 * processes. Exit codes: 0 success, 1 an evaq error (its code printed on stderr) or damage found,
 * 2 bad usage (EVAQ_INVALID_ARGUMENT included); check alone: 3 LOCKED, 4 NOT FOUND.
 */
import test, { type ExecutionContext } from 'ava'
import { readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { Evaq } from '../../src/index.js'
import { FORMAT_VERSION, SEGMENTS_DIR } from '../../src/schema.js'
import { decodeKey } from '../../src/store/codec.js'
import { decodeFrameHeader, decodeLocator, encodeFrameHeader, FRAME_HEADER_BYTES, LOCATOR_BYTES } from '../../src/store/frame.js'
import { segmentFileName } from '../../src/store/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'
import { cliBuilt, copyDir, diffTrees, runCli, type CheckJson, type CliResult, type RepairJson } from '../reliability/fixtures/corrupt-files.js'

const NOW = 1_800_000_000_000
const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, clock: { now: () => NOW } }

/** What the fixture queue holds: WAL IDs 1..5 with 2 removed, two DLQ records, one subscriber. */
const WAL: Array<[number, Buffer]> = [
  [1, Buffer.from('first')],
  [3, Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a])], // not UTF-8: base64 must carry it intact
  [4, Buffer.from('ünïcödé ✓')],
  [5, Buffer.alloc(3000, 'z')],
]
const REMOVED = Buffer.from('removed')
const DLQ_ERROR = { code: 'E_DOWNSTREAM', message: 'downstream refused' }

test.before(async () => {
  const missing = await cliBuilt()
  if (missing !== undefined) throw new Error(missing)
})

/** A closed queue with the content above. */
async function fixture (t: ExecutionContext): Promise<string> {
  const dir = join(await tmpDir(t, 'evaq-cli-'), 'q')
  const q = await Evaq.open(dir, OPTIONS)
  try {
    const ids = await q.pushWalMany([WAL[0]![1], REMOVED, WAL[1]![1], WAL[2]![1], WAL[3]![1]])
    t.deepEqual(ids, [1, 2, 3, 4, 5])
    await q.removeWal(2)
    t.is(await q.pushRetryItem('retry me', { error: DLQ_ERROR }), 1)
    t.is(await q.pushRetryItem(Buffer.from([1, 2, 3]), { error: 'plain string' }), 2)
    const sub = await q.wal.subscribe('reader', { start: 'earliest' })
    const batch = await sub.next({ maxCount: 2, waitMs: 0 })
    t.deepEqual(batch?.records.map(r => r.id), [1, 3])
    await batch!.ack()
  } finally {
    await q.close()
  }
  return dir
}

function json<T> (t: ExecutionContext, run: CliResult): T {
  try {
    return JSON.parse(run.stdout) as T
  } catch {
    t.fail(`stdout is not JSON (exit ${String(run.code)}): ${run.stdout.slice(0, 400)} stderr: ${run.stderr.slice(0, 400)}`)
    throw new Error('unreachable')
  }
}

interface PeekLine { id: number, pushedAt: number, payload: string, error?: { code?: string, message: string } }

function lines (t: ExecutionContext, run: CliResult): PeekLine[] {
  t.is(run.code, 0, `exit 0 (stderr: ${run.stderr.slice(0, 400)})`)
  return run.stdout.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as PeekLine)
}

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

// ---- usage --------------------------------------------------------------------------------------

test('--version and -v print the package version and exit 0', async t => {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const flag of ['--version', '-v']) {
    const run = await runCli([flag])
    t.is(run.code, 0, flag)
    t.is(run.stdout.trim(), pkg.version, flag)
    t.is(run.stderr, '')
  }
})

test('--help and -h print the usage with every command and exit 0; after a command, that command\'s help', async t => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const run = await runCli(args)
    t.is(run.code, 0, args.join(' '))
    for (const command of ['stats', 'peek', 'check', 'repair']) {
      t.regex(run.stdout, new RegExp(`^\\s+${command} `, 'm'), `${args.join(' ')} lists ${command}`)
    }
  }
  for (const args of [['stats', '--help'], ['repair', '-h']]) {
    const run = await runCli(args)
    t.is(run.code, 0, args.join(' '))
    t.true(run.stdout.startsWith(`Usage: evaq ${args[0]!} `), run.stdout.slice(0, 100))
  }
})

test('no arguments: the usage, exit 2', async t => {
  const run = await runCli([])
  t.is(run.code, 2)
  t.regex(run.stdout, /^\s+check /m)
})

test('bad usage exits 2: unknown command, unknown option, a flag without its value, peek without a log name', async t => {
  const dir = await fixture(t)
  const cases: string[][] = [
    ['frob', '--data', dir],
    ['frob'],
    ['stats', '--data', dir, '--bogus'],
    ['stats', '--data'],
    ['peek', 'wal', '--data', dir, '--from'],
    ['peek', '--data', dir],
    ['peek', 'queue', '--data', dir],
    ['repair', '--data', dir],
  ]
  for (const args of cases) {
    const run = await runCli(args)
    t.is(run.code, 2, `${args.join(' ')} (stderr: ${run.stderr.slice(0, 200)})`)
    t.not(run.stderr, '', `${args.join(' ')} says what is wrong on stderr`)
    t.is(run.stdout, '', `${args.join(' ')} prints nothing on stdout`)
  }
})

// ---- stats and peek --------------------------------------------------------------------------------

test('stats --json: counts, bytes, ID ranges and subscribers of every log', async t => {
  const dir = await fixture(t)
  const run = await runCli(['stats', '--data', dir, '--json'])
  t.is(run.code, 0, run.stderr)
  const stats = json<{ wal: Record<string, unknown>, dlq: Record<string, unknown>, parked: Record<string, unknown> }>(t, run)
  t.like(stats.wal, {
    count: 4,
    bytes: WAL.reduce((n, [, p]) => n + p.byteLength, 0),
    firstId: 1,
    lastId: 5,
    nextId: 6,
    dropped: { records: 0, bytes: 0 },
    quarantined: 0,
  })
  const subs = stats.wal.subscribers as Array<{ name: string, ackFloor: number, inFlight: number }>
  t.is(subs.length, 1)
  t.like(subs[0], { name: 'reader', ackFloor: 4, inFlight: 0 })
  t.like(stats.dlq, { count: 2, bytes: 'retry me'.length + 3, firstId: 1, lastId: 2, nextId: 3 })
  t.like(stats.parked, { count: 0, bytes: 0, nextId: 1 })

  const text = await runCli(['stats', '--data', dir])
  t.is(text.code, 0)
  t.deepEqual(text.stdout.trim().split('\n').map(l => l.split('\t')[0]), ['wal', 'dlq', 'parked'])
})

test('peek wal --json: one JSON line per record, payloads in base64, bounded by --from, --max-count and --max-bytes', async t => {
  const dir = await fixture(t)
  const all = lines(t, await runCli(['peek', 'wal', '--data', dir, '--json']))
  t.deepEqual(all.map(r => r.id), WAL.map(([id]) => id), 'the removed record is not listed')
  for (const r of all) {
    t.true(Buffer.from(r.payload, 'base64').equals(new Map(WAL).get(r.id)!), `payload of ${r.id}`)
    t.is(r.pushedAt, NOW)
    t.false('error' in r)
  }
  t.deepEqual(lines(t, await runCli(['peek', 'wal', '--data', dir, '--json', '--from', '4'])).map(r => r.id), [4, 5])
  t.deepEqual(lines(t, await runCli(['peek', 'wal', '--data', dir, '--json', '--from', '2', '--max-count', '1'])).map(r => r.id), [3])
  t.deepEqual(lines(t, await runCli(['peek', 'wal', '--data', dir, '--json', '--max-bytes', '0'])).map(r => r.id), [1], 'at least one record')
  t.deepEqual(lines(t, await runCli(['peek', 'wal', '--data', dir, '--json', '--from', '6'])), [])
  // Peeking removes nothing.
  t.is(json<{ wal: { count: number } }>(t, await runCli(['stats', '--data', dir, '--json'])).wal.count, 4)
})

test('peek dlq --json: records carry the stored error', async t => {
  const dir = await fixture(t)
  const dlq = lines(t, await runCli(['peek', 'dlq', '--data', dir, '--json']))
  t.deepEqual(dlq.map(r => r.id), [1, 2])
  t.is(Buffer.from(dlq[0]!.payload, 'base64').toString(), 'retry me')
  t.deepEqual(dlq[0]!.error, DLQ_ERROR)
  t.deepEqual(dlq[1]!.error, { message: 'plain string' })
  t.deepEqual([...Buffer.from(dlq[1]!.payload, 'base64')], [1, 2, 3])

  const text = await runCli(['peek', 'dlq', '--data', dir])
  t.is(text.code, 0)
  t.deepEqual(text.stdout.trim().split('\n').map(l => Number(l.split('\t')[0])), [1, 2])
})

test('peek dlq and peek parked --json carry the retry state; stats --json counts parked records', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-'), 'q')
  const q = await Evaq.open(dir, OPTIONS)
  try {
    await q.pushRetryItem('poison', { error: DLQ_ERROR, attempts: 2 })
    await q.pushRetryItem('later')
    const d = q.retry(record => {
      throw record.payload.toString() === 'poison' ? Object.assign(new Error('rejected'), { retriable: false }) : new Error('unavailable')
    }, { autoStart: false })
    await d.tick()
  } finally {
    await q.close()
  }
  type RetryLine = PeekLine & { retry: { attempts: number, reason?: string, dlqId?: number } }
  const parked = lines(t, await runCli(['peek', 'parked', '--data', dir, '--json'])) as RetryLine[]
  t.is(parked.length, 1)
  t.is(Buffer.from(parked[0]!.payload, 'base64').toString(), 'poison')
  t.like(parked[0]!.retry, { attempts: 3, reason: 'permanent', dlqId: 1 })
  const dlq = lines(t, await runCli(['peek', 'dlq', '--data', dir, '--json'])) as RetryLine[]
  t.deepEqual(dlq.map(r => [r.id, r.retry.attempts]), [[2, 1]])
  t.is(json<{ parked: { count: number } }>(t, await runCli(['stats', '--data', dir, '--json'])).parked.count, 1)
})

test('peek with a bad --from, --max-count or --max-bytes: EVAQ_INVALID_ARGUMENT, exit 2', async t => {
  const dir = await fixture(t)
  for (const bad of [
    ['--from', 'abc'],
    ['--from=-1'],
    ['--from', '1.5'],
    ['--from', ''],
    ['--from', '9007199254740993'],
    ['--max-count', '0'],
    ['--max-bytes', 'lots'],
  ]) {
    const run = await runCli(['peek', 'wal', '--data', dir, ...bad])
    t.is(run.code, 2, `${bad.join(' ')} (stderr: ${run.stderr.slice(0, 200)})`)
    t.true(run.stderr.includes('EVAQ_INVALID_ARGUMENT'), `${bad.join(' ')} prints EVAQ_INVALID_ARGUMENT: ${run.stderr.slice(0, 200)}`)
    t.is(run.stdout, '')
  }
})

test('stats and peek on a directory that does not exist: exit 1 with EVAQ_NOT_FOUND, nothing created', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-'), 'typo')
  for (const args of [['stats', '--data', dir, '--json'], ['peek', 'wal', '--data', dir]]) {
    const run = await runCli(args)
    t.is(run.code, 1, `${args.join(' ')}: exit ${String(run.code)}, stdout ${run.stdout.slice(0, 200)}`)
    t.true(run.stderr.includes('EVAQ_NOT_FOUND'), `${args.join(' ')} prints EVAQ_NOT_FOUND: ${run.stderr.slice(0, 200)}`)
    t.false(await exists(dir), `${args.join(' ')} created ${dir}`)
  }
})

// ---- a directory another process holds --------------------------------------------------------------

test('stats, peek and check on a directory another process holds: EVAQ_LOCKED, exit 1 (check: LOCKED, exit 3)', async t => {
  const dir = await fixture(t)
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  for (const args of [['stats', '--data', dir], ['stats', '--data', dir, '--json'], ['peek', 'wal', '--data', dir, '--json']]) {
    const run = await runCli(args)
    t.is(run.code, 1, args.join(' '))
    t.true(run.stderr.includes('EVAQ_LOCKED'), `${args.join(' ')}: ${run.stderr.slice(0, 200)}`)
    t.is(run.stdout, '')
  }
  const check = await runCli(['check', '--data', dir, '--json'])
  t.is(check.code, 3)
  const c = json<CheckJson>(t, check)
  t.false(c.opened)
  t.false(c.damaged)
  t.is(c.error?.code, 'EVAQ_LOCKED')
  // The holder is unaffected.
  t.is((await q.wal.stats()).count, 4)
})

test('repair on a directory another process holds: EVAQ_LOCKED, exit 1, and the holder loses nothing', async t => {
  const dir = await fixture(t)
  const backup = join(await tmpDir(t, 'evaq-cli-'), 'backup')
  let q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const run = await runCli(['repair', '--data', dir, '--backup', backup, '--json'])
  t.is(run.code, 1)
  t.true(run.stderr.includes('EVAQ_LOCKED'), run.stderr.slice(0, 300))
  // The holder goes on: an acknowledged (fsynced) push must survive a reopen.
  const id = await q.pushWal('acknowledged while repair ran')
  t.is(id, 6)
  await q.close()
  q = await Evaq.open(dir, OPTIONS)
  const records = await q.wal.read({ from: 0 })
  t.deepEqual(records.map(r => r.id), [1, 3, 4, 5, 6], 'every acknowledged record is there after a reopen')
  t.is((await q.wal.stats()).nextId, 7)
  t.deepEqual(await readdir(dir).then(names => names.filter(n => n === 'lost')), [], 'LevelDB\'s repair did not run on the held directory (no lost/ directory)')
})

// ---- check and repair ---------------------------------------------------------------------------------

test('check: exit 0 and a clean report on a healthy queue; exit 4 with EVAQ_NOT_FOUND on a missing directory', async t => {
  const dir = await fixture(t)
  const run = await runCli(['check', '--data', dir, '--json'])
  t.is(run.code, 0, run.stdout)
  const c = json<CheckJson>(t, run)
  t.like(c, { dir, opened: true, damaged: false, engine: [], format: FORMAT_VERSION, subscribers: { ok: 1, bad: 0 } })
  t.like(c.logs.wal, { segments: 1, records: 4, badSegments: 0, badRecords: 0, inconsistencies: 0, unreadable: false, counted: { records: 4 }, quarantined: 0 })
  t.like(c.logs.dlq, { records: 2, badRecords: 0, inconsistencies: 0, counted: { records: 2 } })
  t.is((await runCli(['check', '--data', dir])).code, 0, 'the same without --json')

  const missing = join(await tmpDir(t, 'evaq-cli-'), 'nothing-here')
  const gone = await runCli(['check', '--data', missing, '--json'])
  t.is(gone.code, 4)
  const g = json<CheckJson>(t, gone)
  t.like(g, { opened: false, damaged: false, error: { code: 'EVAQ_NOT_FOUND' } })
  t.false(await exists(missing), 'check created nothing')
})

test('check: exit 1 when a record fails its checksum, with and without --json', async t => {
  const dir = await fixture(t)
  // Rewrite the last WAL record's payload in place (same length): its CRC no longer matches. The
  // segment is in a segment file: its frame is rewritten whole (header CRCs recomputed), so that
  // only the record's own checksum fails.
  const raw = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false })
  await raw.open()
  const wal = raw.sublevel<Buffer, Buffer>('wal', { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  const entries = await wal.iterator().all()
  await raw.close()
  t.is(entries.length, 1, 'the fixture WAL is one segment')
  const [key, value] = entries[0]!
  t.is(value.byteLength, LOCATOR_BYTES, 'in a segment file')
  const loc = decodeLocator(decodeKey(key), value)
  const path = join(dir, SEGMENTS_DIR, 'wal', segmentFileName(loc.file))
  const file = await readFile(path)
  const header = decodeFrameHeader(file, loc.offset, loc.file)!
  const body = file.subarray(loc.offset + FRAME_HEADER_BYTES, loc.offset + FRAME_HEADER_BYTES + loc.length)
  const at = body.indexOf(WAL[3]![1])
  t.true(at > 0)
  body[at + 10] = 'y'.charCodeAt(0)
  encodeFrameHeader(loc.file, header.firstId, body, header.flags).copy(file, loc.offset)
  await writeFile(path, file)

  const run = await runCli(['check', '--data', dir, '--json'])
  t.is(run.code, 1)
  t.like(json<CheckJson>(t, run), { damaged: true, logs: { wal: { badRecords: 1, records: 3 } } })
  t.is((await runCli(['check', '--data', dir])).code, 1, 'the same without --json')
})

test('repair: copies first, reports records before and after, exit 0; refuses a non-empty backup; needs an existing directory', async t => {
  const dir = await fixture(t)
  const root = await tmpDir(t, 'evaq-cli-')
  const reference = join(root, 'reference')
  await copyDir(dir, reference)

  // A backup directory that is not empty: refused before anything is touched.
  const busy = join(root, 'busy')
  await copyDir(dir, busy)
  await writeFile(join(busy, 'keep-me'), 'x')
  const refused = await runCli(['repair', '--data', dir, '--backup', busy, '--json'])
  t.is(refused.code, 2, refused.stderr.slice(0, 200))
  t.true(refused.stderr.includes('EVAQ_INVALID_ARGUMENT'))
  t.deepEqual(await diffTrees(reference, dir), [], 'the data directory is untouched')

  const backup = join(root, 'backup')
  const run = await runCli(['repair', '--data', dir, '--backup', backup, '--json'])
  t.is(run.code, 0, run.stderr.slice(0, 300))
  const r = json<RepairJson>(t, run)
  t.is(r.backup, backup)
  t.deepEqual(await diffTrees(reference, backup), [], 'the backup equals the directory as it was')
  t.like(r.before, { damaged: false, logs: { wal: { records: 4 }, dlq: { records: 2 } } })
  t.like(r.after, { damaged: false, logs: { wal: { records: 4 }, dlq: { records: 2 } } })
  t.deepEqual(r.fixed.wal, {
    quarantinedSegments: 0,
    frames: [],
    quarantinedRecords: 0,
    summariesRewritten: 0,
    orphansRemoved: 0,
    lostRecords: 0,
    before: 4,
    after: 4,
    ranges: [],
  })

  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual((await q.wal.read()).map(r => r.id), [1, 3, 4, 5])
  t.is(await q.pushWal('next'), 6, 'IDs continue')
  t.is((await q.wal.subscribe('reader')).floor, 4, 'the subscriber kept its progress')
  await q.close()

  // Human-readable output: exit 0 as well.
  const text = await runCli(['repair', '--data', dir, '--backup', join(root, 'backup2')])
  t.is(text.code, 0, text.stderr.slice(0, 300))
  t.true(await exists(join(root, 'backup2', 'CURRENT')))

  // A data directory that does not exist: an evaq error, exit 1, no backup made.
  const nowhere = join(root, 'nowhere')
  const gone = await runCli(['repair', '--data', nowhere, '--backup', join(root, 'backup3')])
  t.is(gone.code, 1)
  t.regex(gone.stderr, /EVAQ_[A-Z_]+/, `an evaq error code is printed: ${gone.stderr.slice(0, 300)}`)
  t.false(await exists(join(root, 'backup3')))
})
