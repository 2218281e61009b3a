/**
 * I/O errors (issue 4, part 4): EIO and ENOSPC injected into `fdatasync` (and `fsync`) and
 * `write` on LevelDB's log file, and into `fdatasync` and `pwritev` on the WAL's segment file
 * (storage format 2: a push's frame is appended there and its fdatasync is the commit point; the
 * locators then go to LevelDB's log without a sync), with strace, in a writer child process
 * (fixtures/io-writer.ts) pushing with `durability: 'sync'`.
 *
 * How the fault is aimed: strace's `-P path` restricts tracing, and so injection, to syscalls on
 * that path (fd arguments are resolved through /proc; calls on other paths are not counted), and
 * `-e inject=SET:error=E:when=N+` fails the Nth and later calls of each syscall in SET, counted
 * per thread. The path is the log file LevelDB will create when the writer opens the queue, or
 * the segment file the writer appends to first: LevelDB and the segment files number their files
 * deterministically, so opening a copy of the directory (and pushing one record to it) first
 * tells the names (and the strace output must show at least one `(INJECTED)` call, or the
 * prediction was wrong and the test fails). When evaq recovers it reopens the database, LevelDB
 * starts a new log file and the WAL a new segment file, the injection stops, and pushes must
 * work again in the same process.
 *
 * The segment file's pwritev and fdatasync run on libuv's thread pool: with its 4 threads each
 * counted N on its own, so a quarter of the file's calls reached N, and the first file after an
 * open is only 1 MiB (segment-files.ts FIRST_FILE_BYTES, whatever `segmentFileBytes` says),
 * filled by these loads in 325 (256 callers) to 356 (4 callers) flushes of one pwritev and one
 * fdatasync each (measured): from N = 98 on (~89 calls per thread) nothing was injected, the
 * writer had moved on to the next file. So the writer of a segment fault runs with
 * UV_THREADPOOL_SIZE=1: one thread makes every call on the file, and N counts them all. (Not for
 * LevelDB's log: its writes come from several pool threads at once, which the 256-caller load is
 * there for, and its 4 MiB log takes far more calls.) The cycles move N by 13 within the first
 * LATER_CALLS calls after `first`: at most 277, under the 325 measured (a missed point still
 * fails the run: nothing `(INJECTED)`).
 *
 *   strace -f -qq -o TRACE -P DIR/NNNNNN.log -e trace=write,fdatasync,fsync \
 *     -e inject=fdatasync,fsync:error=EIO:when=20+ node --import tsx io-writer.ts DIR ...
 *
 * Checked for every fault, under two loads: 4 callers with default batching (one flush at a time,
 * nothing queued behind it), and 256 callers with 2 KiB batches on 8 flush workers (when a write
 * fails, other flushes are in flight and more are queued, so LevelDB is asked to append to the
 * log after its failed write; measured: acknowledged records written that way are lost, see
 * the restart test):
 * - the caller gets EVAQ_IO, never a false acknowledgement; the queue goes `degraded` (a push
 *   made then fails fast with EVAQ_IO), then `recovered`, and takes pushes again;
 * - after the writer closed, a clean process (this one) finds every acknowledged record, byte
 *   for byte, and nothing that was never pushed; a push that failed may be there or not (counted,
 *   and logged per scenario);
 * - reads keep working while the queue is degraded.
 * A negative control runs the same writer under the same strace without injection: the checks on
 * the error must then report that nothing failed, which shows they can fail.
 *
 * Skips only when strace is missing or cannot trace here (ptrace not permitted).
 * `EVAQ_IO_CYCLES` repeats every scenario, each time failing a later call (soak; past 20 cycles
 * the points repeat, see LATER_CALLS).
 */
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { cp, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { cycles, report } from './report.js'
import { allFrames } from '../helpers/segment-files.js'
import { skipUnlessCi } from '../helpers/prerequisites.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const WRITER = fileURLToPath(new URL('./fixtures/io-writer.ts', import.meta.url))
/** Pushes the writer must get acknowledged after `recovered` before it stops. */
const AFTER = 50
/** The writer gives up (and the run fails) after this long without degrading and recovering. */
const WRITER_MAX_MS = 15_000
/** Hard limit on one run, strace included. */
const RUN_LIMIT_MS = 40_000
/** Records pushed (and acknowledged) before the writer runs, so the log is not empty. */
const SEEDS = 10
/**
 * Cycle i fails from call `first + (13 * i) % LATER_CALLS` on: at most 277 (pwritev), and the
 * first segment file takes at least 325 calls of each kind (see the header).
 */
const LATER_CALLS = 13 * 20

function sha (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

function straceUnavailable (): string | undefined {
  const r = spawnSync('strace', ['-o', '/dev/null', 'true'], { encoding: 'utf8' })
  if (r.error !== undefined) return `strace is not available (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`
  if (r.status !== 0) return `strace cannot trace here (ptrace not permitted?): ${r.stderr.trim()}`
  return undefined
}

interface Fault {
  readonly name: string
  /** Where: LevelDB's log file, or the WAL's segment file. */
  readonly target: 'log' | 'segment'
  /** strace syscall set. */
  readonly syscalls: string
  readonly error: 'EIO' | 'ENOSPC'
  /**
   * The first call that fails (per thread: the writer of a segment fault has one pool thread);
   * every later one fails too, until the file changes.
   */
  readonly first: number
}

interface Load {
  readonly name: string
  readonly callers: number
  readonly options: EvaqOptions
}

const FAULTS: Fault[] = [
  // LevelDB 1.20 syncs its log with fdatasync on Linux (fsync where that is missing).
  // A push commits with the fdatasync of its segment file (LevelDB's log is synced only when a
  // new segment file starts).
  { name: 'EIO on fdatasync', target: 'segment', syscalls: 'fdatasync,fsync', error: 'EIO', first: 20 },
  // Frames are written with one pwritev per flush.
  { name: 'ENOSPC on pwritev of the segment file', target: 'segment', syscalls: 'pwritev,pwrite64,write', error: 'ENOSPC', first: 30 },
  // The locators (LevelDB 1.20 writes its log with write).
  { name: 'ENOSPC on write', target: 'log', syscalls: 'write', error: 'ENOSPC', first: 30 },
  { name: 'EIO on write', target: 'log', syscalls: 'write', error: 'EIO', first: 30 },
]

const LOADS: Load[] = [
  { name: '4 callers, default batching', callers: 4, options: {} },
  // Many small batches: several LevelDB writes in flight and more queued when one fails.
  { name: '256 callers, 2 KiB batches on 8 flush workers', callers: 256, options: { flushWorkers: 8, maxBatchBytes: 2048 } },
]

interface Restart {
  /** Acknowledged records (seeds included) checked. */
  readonly acknowledged: number
  readonly lost: number
  /** Failed pushes found stored all the same, and not found. */
  readonly failedPresent: number
  readonly failedAbsent: number
  readonly problems: string[]
  /** What LevelDB reported as corrupt while this process opened the directory. */
  readonly corruption: readonly string[]
}

interface Run {
  readonly label: string
  readonly dir: string
  readonly logFile: string
  readonly inject: string | undefined
  code: number | null
  signal: string | null
  stderr: string
  /** Lines of strace's output marked `(INJECTED)`. */
  injected: string[]
  opened: boolean
  readonly acks: Array<{ key: string, id: number, sha: string }>
  readonly failures: Array<{ key: string, code: string, sha: string }>
  /** 'D' and 'V' events in the order they came. */
  readonly events: string[]
  readonly degraded: string[]
  whileDegraded: string | undefined
  reads: { ok: number, codes: Record<string, number>, messages: Record<string, string> } | undefined
  readonly recovered: string[]
  /** Acknowledgements reported after the first `recovered`. */
  ackedAfterRecovery: number
  gaveUp: boolean
  closed: string | undefined
  killed: boolean
  /** `Corruption` lines of LevelDB's info log after the writer closed (its recovery reopen). */
  engineCorruption: string[]
  restart: Restart | undefined
}

const skipReason = skipUnlessCi('test/reliability/io-errors.test.ts', straceUnavailable())
const dirs: string[] = []
let failedTests = 0

/** Create a queue holding SEEDS acknowledged records; return their digests by ID. */
async function seed (dir: string): Promise<Map<number, string>> {
  const seeds = new Map<number, string>()
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  try {
    for (let i = 0; i < SEEDS; i++) {
      const payload = `seed:${i}`
      seeds.set(await q.pushWal(payload), sha(payload))
    }
  } finally {
    await q.close()
  }
  return seeds
}

/**
 * The log file LevelDB creates when it next opens `dir`, and the segment file the WAL appends its
 * first push to: open a copy of it, push one record, and look.
 */
async function nextFiles (dir: string): Promise<{ log: string, segment: string }> {
  const probe = `${dir}-probe`
  await cp(dir, probe, { recursive: true })
  try {
    const q = await Evaq.open(probe, { minFreeDiskBytes: 0 })
    const logs = (await readdir(probe)).filter(f => /^\d+\.log$/.test(f))
    const id = await q.pushWal('probe')
    await q.close()
    if (logs.length !== 1) throw new Error(`Expected one LevelDB log file in the probe, found ${JSON.stringify(logs)}`)
    const frame = (await allFrames(probe)).find(f => f.firstId === id)
    if (frame === undefined) throw new Error(`The probe's push ${id} is in no segment file`)
    return { log: join(dir, logs[0]!), segment: join(dir, frame.path.slice(probe.length + 1)) }
  } finally {
    await rm(probe, { recursive: true, force: true })
  }
}

async function runWriter (label: string, fault: Fault | undefined, when: number, load: Load, maxMs = WRITER_MAX_MS): Promise<Run> {
  const base = await realpath(await mkdtemp(join(tmpdir(), 'evaq-io-')))
  dirs.push(base)
  const dir = join(base, 'q')
  const seeds = await seed(dir)
  const files = await nextFiles(dir)
  const logFile = fault?.target === 'segment' ? files.segment : files.log
  const traceFile = join(base, 'strace.txt')
  const inject = fault === undefined ? undefined : `inject=${fault.syscalls}:error=${fault.error}:when=${when}+`
  const run: Run = {
    label, dir, logFile, inject, code: null, signal: null, stderr: '', injected: [], opened: false,
    acks: [], failures: [], events: [], degraded: [], whileDegraded: undefined, reads: undefined,
    recovered: [], ackedAfterRecovery: 0, gaveUp: false, closed: undefined, killed: false,
    engineCorruption: [], restart: undefined,
  }
  const args = ['-f', '-qq', '-o', traceFile, '-P', logFile, '-e', 'trace=write,pwritev,pwrite64,fdatasync,fsync']
  if (inject !== undefined) args.push('-e', inject)
  args.push(process.execPath, '--import', 'tsx', WRITER, dir, 'io', String(load.callers), String(AFTER), String(maxMs), JSON.stringify(load.options))
  // One pool thread makes every pwritev and fdatasync on the segment file, so `when` counts them all (see the header).
  const env = fault?.target === 'segment' ? { ...process.env, UV_THREADPOOL_SIZE: '1' } : process.env
  const child = spawn('strace', args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>
  let writerPid: number | undefined
  const timer = setTimeout(() => {
    run.killed = true
    if (writerPid !== undefined) { try { process.kill(writerPid, 'SIGKILL') } catch {} }
    child.kill('SIGKILL')
  }, RUN_LIMIT_MS)
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (s: string) => { run.stderr += s })
  child.stdout.setEncoding('utf8')
  let rest = ''
  child.stdout.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n')
    rest = lines.pop()!
    for (const line of lines) {
      const [kind, a = '', b = '', c = ''] = line.split('\t')
      switch (kind) {
        case 'O': run.opened = true; writerPid = Number(b); break
        case 'A':
          run.acks.push({ key: a, id: Number(b), sha: c })
          if (run.recovered.length > 0) run.ackedAfterRecovery++
          break
        case 'F': run.failures.push({ key: a, code: b, sha: c }); break
        case 'D': run.events.push('degraded'); run.degraded.push(a); break
        case 'W': run.whileDegraded = a; break
        case 'Q':
          run.reads = { ok: Number(a), codes: JSON.parse(b) as Record<string, number>, messages: JSON.parse(c || '{}') as Record<string, string> }
          break
        case 'V': run.events.push('recovered'); run.recovered.push(a); break
        case 'T': run.gaveUp = true; break
        case 'C': run.closed = a; break
        default: run.stderr += `unexpected line from the writer: ${JSON.stringify(line)}\n`
      }
    }
  })
  try {
    [run.code, run.signal] = await closed
  } finally {
    clearTimeout(timer)
  }
  run.injected = (await readFile(traceFile, 'utf8').catch(() => '')).split('\n').filter(l => l.includes('(INJECTED)'))
  run.engineCorruption = (await readFile(join(dir, 'LOG'), 'utf8').catch(() => '')).split('\n').filter(l => l.includes('Corruption'))
  if (run.opened) run.restart = await checkRestart(dir, seeds, run)
  return run
}

/** Open the directory here, after the writer is gone, and compare it with what was reported. */
async function checkRestart (dir: string, seeds: ReadonlyMap<number, string>, run: Run): Promise<Restart> {
  const problems: string[] = []
  const acked = new Map(seeds)
  for (const a of run.acks) {
    if (acked.has(a.id)) problems.push(`ID ${a.id} was acknowledged twice`)
    acked.set(a.id, a.sha)
  }
  const failed = new Set(run.failures.map(f => f.sha))
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  const stored = new Map<number, string>()
  try {
    for (let from = 0; ;) {
      const page = await q.wal.read({ from, maxBytes: 1 << 20, maxCount: 1000 })
      if (page.length === 0) break
      for (const r of page) stored.set(r.id, sha(r.payload))
      from = page[page.length - 1]!.id + 1
    }
  } finally {
    await q.close()
  }
  let lost = 0
  const missing: number[] = []
  for (const [id, digest] of acked) {
    const got = stored.get(id)
    if (got === undefined) { lost++; missing.push(id) } else if (got !== digest) { lost++; problems.push(`acknowledged ID ${id} holds a different payload`) }
  }
  if (missing.length > 0) {
    problems.push(`${missing.length} acknowledged record(s) missing, IDs ${missing.slice(0, 20).join(',')}${missing.length > 20 ? ',…' : ''}`)
  }
  const presentFailed = new Set<string>()
  for (const [id, digest] of stored) {
    if (acked.get(id) === digest) continue
    if (failed.has(digest) && !presentFailed.has(digest)) presentFailed.add(digest)
    else problems.push(`ID ${id} holds a record that was never pushed (or is stored twice)`)
  }
  return {
    acknowledged: acked.size,
    lost,
    failedPresent: presentFailed.size,
    failedAbsent: failed.size - presentFailed.size,
    problems,
    corruption: q.openReport.corruption,
  }
}

/** What is wrong with how the failure reached the caller (empty when nothing is). */
function errorProblems (run: Run): string[] {
  const p: string[] = []
  if (run.injected.length === 0) p.push(`strace injected nothing into ${run.logFile}`)
  if (run.failures.length === 0) p.push('no push failed')
  const codes = [...new Set(run.failures.map(f => f.code))]
  if (codes.some(c => c !== 'EVAQ_IO')) p.push(`pushes failed with ${codes.join(', ')}, not only EVAQ_IO`)
  if (run.degraded.length === 0) p.push('no degraded event')
  if (run.degraded.some(d => d !== 'EVAQ_IO')) p.push(`degraded with ${run.degraded.join(', ')}`)
  if (run.whileDegraded !== 'EVAQ_IO') p.push(`a push made while degraded: ${String(run.whileDegraded)}, expected EVAQ_IO`)
  return p
}

/** What is wrong with the recovery (empty when nothing is). */
function recoveryProblems (run: Run): string[] {
  const p: string[] = []
  if (run.killed) p.push(`the run was killed after ${RUN_LIMIT_MS} ms`)
  if (run.code !== 0) p.push(`the writer exited with ${String(run.code ?? run.signal)}: ${run.stderr.slice(0, 2000)}`)
  if (run.events[0] !== 'degraded' || !run.events.includes('recovered')) p.push(`events ${JSON.stringify(run.events)}, expected degraded then recovered`)
  if (run.recovered.some(s => s !== 'open')) p.push(`status after recovered: ${run.recovered.join(', ')}`)
  if (run.gaveUp) p.push(`the writer gave up after ${WRITER_MAX_MS} ms`)
  if (run.ackedAfterRecovery < AFTER) p.push(`${run.ackedAfterRecovery} pushes acknowledged after recovery, expected ${AFTER}`)
  if (run.closed !== 'closed') p.push(`closed with status ${String(run.closed)}`)
  return p
}

function describeRun (run: Run): string {
  const r = run.restart
  return `${run.label}: strace ${run.inject ?? '(no injection)'} -P ${run.logFile.slice(run.dir.length + 1)}; ` +
    `${run.injected.length} call(s) failed by strace (${[...new Set(run.injected.map(l => /^\d+\s+(?:<\.\.\. )?(\w+)[( ]/.exec(l)?.[1] ?? '?'))].join(',') || '-'}); ${run.acks.length} acknowledged, ${run.failures.length} failed ` +
    `(${run.failures.length > 0 ? [...new Set(run.failures.map(f => f.code))].join(',') : '-'}), ` +
    `${run.ackedAfterRecovery} acknowledged after recovery; reads while degraded ${JSON.stringify(run.reads)}; ` +
    (r === undefined
      ? 'no restart check'
      : `after restart: ${r.acknowledged} acknowledged checked, lost ${r.lost}, failed pushes stored ${r.failedPresent}, not stored ${r.failedAbsent}`) +
    (run.engineCorruption.length > 0 ? `; LevelDB dropped log data when evaq reopened it: ${run.engineCorruption.map(l => l.replace(/^\S+ \S+ /, '')).join(' | ')}` : '')
}

const runs: Run[] = []
const memo = new Map<string, Promise<Run[]>>()

/** The runs of one scenario (EVAQ_IO_CYCLES of them, each failing a later call), run once. */
function scenario (fault: Fault, load: Load): Promise<Run[]> {
  const key = `${fault.name} (${load.name})`
  let p = memo.get(key)
  if (p === undefined) {
    p = (async () => {
      const out: Run[] = []
      const n = cycles('EVAQ_IO_CYCLES', 1)
      for (let i = 0; i < n; i++) {
        const run = await runWriter(key, fault, fault.first + (13 * i) % LATER_CALLS, load)
        out.push(run)
        runs.push(run)
      }
      return out
    })()
    memo.set(key, p)
  }
  return p
}

const maybe = skipReason === undefined ? test.serial : test.skip
const suffix = skipReason === undefined ? '' : ` (skipped: ${skipReason})`

test.afterEach.always(t => { if (!t.passed) failedTests++ })

for (const fault of FAULTS) {
  for (const load of LOADS) {
    const name = `${fault.name} (${load.name})`

    maybe(`${name}: the push gets EVAQ_IO, the queue goes degraded, recovers, and takes pushes again${suffix}`, async t => {
      for (const run of await scenario(fault, load)) {
        t.log(describeRun(run))
        t.deepEqual(errorProblems(run), [], 'the failure reached the caller as EVAQ_IO')
        t.deepEqual(recoveryProblems(run), [], 'evaq recovered in the same process')
      }
    })

    maybe(`${name}: every acknowledged push is present after a restart; a failed one may be${suffix}`, async t => {
      for (const run of await scenario(fault, load)) {
        const r = run.restart
        if (r === undefined) { t.fail(`the writer never opened the queue: ${run.stderr.slice(0, 2000)}`); continue }
        t.log(`${r.acknowledged} acknowledged records checked; failed pushes stored anyway: ${r.failedPresent}, not stored: ${r.failedAbsent}`)
        if (run.engineCorruption.length > 0) t.log(`LevelDB's recovery when evaq reopened the database: ${run.engineCorruption.join(' | ')}`)
        t.deepEqual(r.problems, [], 'every acknowledged record present, byte for byte, and nothing else but failed pushes')
        t.is(r.lost, 0)
        t.true(r.acknowledged > SEEDS + AFTER)
      }
    })

    maybe(`${name}: reads keep working while the queue is degraded${suffix}`, async t => {
      for (const run of await scenario(fault, load)) {
        t.not(run.reads, undefined, 'the writer read while degraded')
        t.log(`reads while degraded: ${JSON.stringify(run.reads)}`)
        const codes = Object.keys(run.reads?.codes ?? {})
        t.deepEqual(codes.filter(c => c !== 'EVAQ_IO'), [], 'no read failed with a non-retriable code while degraded')
        // docs/api.md (Guarantees): while degraded "reads keep working" (also while evaq reopens the database).
        t.deepEqual(run.reads?.codes, {}, 'no read failed while the queue was degraded')
      }
    })
  }
}

maybe(`negative control: under the same strace without injection nothing fails, and the checks say so${suffix}`, async t => {
  const load = LOADS[LOADS.length - 1]!
  const run = await runWriter(`no injection (${load.name})`, undefined, 0, load, 1500)
  t.log(describeRun(run))
  t.true(run.opened, run.stderr)
  t.is(run.failures.length, 0, 'no push failed without injection')
  t.deepEqual(run.events, [], 'the queue never degraded')
  t.true(run.acks.length > 0, 'pushes were acknowledged')
  const problems = errorProblems(run)
  t.true(problems.includes('no push failed') && problems.some(p => p.startsWith('strace injected nothing')),
    `the error checks fail without injection: ${problems.join('; ')}`)
  t.true(recoveryProblems(run).length > 0, 'the recovery checks fail without a failure')
  t.deepEqual(run.restart?.problems, [], 'the restart check finds every acknowledged record')
})

test.after.always(async () => {
  const lost = runs.reduce((n, r) => n + (r.restart?.lost ?? 0), 0)
  const notes = FAULTS.map(f => {
    const mine = runs.filter(r => r.label.startsWith(f.name))
    const present = mine.reduce((n, r) => n + (r.restart?.failedPresent ?? 0), 0)
    const absent = mine.reduce((n, r) => n + (r.restart?.failedAbsent ?? 0), 0)
    return `${f.name}: failed pushes found stored afterwards ${present}, not stored ${absent}`
  })
  await report({
    part: 'io-errors',
    failure: 'EIO/ENOSPC injected (strace) into fdatasync and write on LevelDB\'s log and the WAL\'s segment file',
    guarantee: 'the push gets EVAQ_IO, never a false acknowledgement; evaq degrades and recovers by itself; ' +
      'every acknowledged record survives (a failed push may be stored too)',
    test: 'test/reliability/io-errors.test.ts',
    cycles: runs.length,
    acknowledged: runs.reduce((n, r) => n + (r.restart?.acknowledged ?? 0), 0),
    lost,
    note: skipReason !== undefined ? `skipped: ${skipReason}` : notes.join('; '),
  })
  if (process.env.EVAQ_KEEP_TMP !== undefined && failedTests > 0) return
  await Promise.all(dirs.map(d => rm(d, { recursive: true, force: true, maxRetries: 3 })))
})
