/**
 * Part 7 of the reliability battery: leaks. The loops run in a child process started with
 * `--expose-gc` (test/reliability/fixtures/leak-worker.ts), so the heap is measured after full
 * collections instead of guessed at; the child reports 10 samples (one per tenth of the cycles,
 * with nothing in flight). The first sample is the warm-up baseline (by then every lazily
 * created descriptor, handle, cache and compiled function exists); every later sample, up to
 * the last, is compared with it:
 *
 * - file descriptors: flat. FD_SLACK absorbs descriptors that libuv or LevelDB's Env create once
 *   and lazily (an io_uring or eventfd, a thread-pool pipe) after the warm-up; a leak per cycle
 *   shows as hundreds or thousands. No descriptor on a deleted file, ever; none in the queue's
 *   directory while it is closed, and no more than it has files while it is open.
 * - active resources (`process.getActiveResourcesInfo()`, which lists handles and requests by
 *   type): flat, per type. RESOURCE_SLACK absorbs one callback in flight at the sampling moment
 *   (an `Immediate` queued by a stream or by LevelDB's close); a leaked timer or wait per cycle
 *   shows as hundreds.
 * - heap: bounded. `heapData` (heapUsed without compiled code: V8 keeps optimizing and
 *   deoptimizing hot functions over a long run, which grows code space by a few MB and is not a
 *   leak) plus `arrayBuffers` (payload Buffers live outside the heap) may grow by at most
 *   HEAP_SLACK over the warm-up, a constant: one 1 KiB payload kept per cycle exceeds it within
 *   the short run's 10,000 push/ack cycles (by about 9 MiB), about 50 bytes per cycle within the
 *   soak's 100,000. Measured without leaks: +0.3 MiB over the short runs, +1 MiB over 3,000
 *   opens (V8's own bookkeeping; no object count grows with the cycles in heap snapshots).
 *   Smaller leaks of bookkeeping that matters are checked directly: the worker fails when a
 *   finished wait stays registered (`sub.waiting`).
 * - resident memory (native: LevelDB's caches and buffers, freed on close): grows by at most
 *   RSS_SLACK, generous because the allocator keeps freed arenas. Measured without leaks over 300
 *   opens: -3 to +7 MiB on Node 20, +56 to +66 MiB on Node 24, in steps, levelling off at +71 to
 *   +80 MiB by 900 opens (glibc's arenas; MALLOC_ARENA_MAX changes nothing). A leaked LevelDB
 *   instance per open (its 4 MiB write buffer and its caches) exceeds 96 MiB within 30 opens;
 *   what this bound cannot see, the descriptor, resource and heap checks above do.
 *
 * Cycle counts: `EVAQ_LEAK_OPENS` (300) and `EVAQ_LEAK_OPS` (10,000).
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'
import type { Sample } from './fixtures/leak-worker.js'
import { cycles, report } from './report.js'

const WORKER = fileURLToPath(new URL('./fixtures/leak-worker.ts', import.meta.url))
const OPENS = cycles('EVAQ_LEAK_OPENS', 300)
const OPS = cycles('EVAQ_LEAK_OPS', 10_000)

const FD_SLACK = 2
const RESOURCE_SLACK = 1
const HEAP_SLACK = 4 * 1024 * 1024
const RSS_SLACK = 96 * 1024 * 1024

interface Done { done: true, pushed: number, delivered: number }

async function runWorker (
  dir: string,
  mode: 'opens' | 'ops',
  count: number
): Promise<{ samples: Sample[], done: Done | undefined, code: number | null, stderr: string }> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', WORKER, dir, mode, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (s: string) => { stdout += s })
  child.stderr.on('data', (s: string) => { stderr += s })
  const [code] = await once(child, 'close') as [number | null]
  const samples: Sample[] = []
  let done: Done | undefined
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue
    const value = JSON.parse(line) as Sample | Done
    if ('done' in value) done = value
    else samples.push(value)
  }
  return { samples, done, code, stderr }
}

const MiB = (n: number): string => `${(n / 1024 / 1024).toFixed(2)} MiB`

/** Compare every sample after the first with the first; returns the problems found. */
function flat (samples: readonly Sample[], closed: boolean): string[] {
  const problems: string[] = []
  const warm = samples[0]!
  for (const s of samples) {
    const at = `at cycle ${s.cycle} (warm-up: cycle ${warm.cycle})`
    if (s.deletedFds > 0) problems.push(`${at}: ${s.deletedFds} descriptor(s) on deleted files`)
    if (closed && s.dbFds > 0) problems.push(`${at}: ${s.dbFds} descriptor(s) in the queue's directory after close`)
    if (s.dbFds > s.dbFiles) problems.push(`${at}: ${s.dbFds} descriptors in the queue's directory, which has ${s.dbFiles} files`)
    if (s === warm) continue
    if (s.fds - warm.fds > FD_SLACK) problems.push(`${at}: ${s.fds} descriptors, ${warm.fds} after the warm-up`)
    for (const type of new Set([...Object.keys(s.resources), ...Object.keys(warm.resources)])) {
      const now = s.resources[type] ?? 0
      const then = warm.resources[type] ?? 0
      if (now - then > RESOURCE_SLACK) problems.push(`${at}: ${now} active ${type}, ${then} after the warm-up`)
    }
    const grown = s.heapData + s.arrayBuffers - warm.heapData - warm.arrayBuffers
    if (grown > HEAP_SLACK) problems.push(`${at}: heap (without code) + ArrayBuffers grew by ${MiB(grown)} since the warm-up (bound ${MiB(HEAP_SLACK)})`)
    if (s.rss - warm.rss > RSS_SLACK) problems.push(`${at}: resident memory grew by ${MiB(s.rss - warm.rss)} since the warm-up (bound ${MiB(RSS_SLACK)})`)
  }
  return problems
}

type LoopResult = { cycles: number, pushed: number, delivered: number, problems: string[] }
const results: Record<'opens' | 'ops', LoopResult | undefined> = { opens: undefined, ops: undefined }

async function leakRun (t: ExecutionContext, mode: 'opens' | 'ops', count: number): Promise<void> {
  t.timeout(Math.max(120_000, count * (mode === 'opens' ? 200 : 20)))
  const dir = await tmpDir(t, `evaq-leaks-${mode}-`)
  const run = await runWorker(dir, mode, count)
  const problems: string[] = []
  if (run.code !== 0 || run.done === undefined) problems.push(`the worker failed (exit code ${run.code}): ${run.stderr}`)
  else if (run.samples.length !== 10) problems.push(`the worker reported ${run.samples.length} samples, expected 10`)
  else problems.push(...flat(run.samples, mode === 'opens'))
  if (run.done !== undefined && run.done.delivered !== run.done.pushed) problems.push(`${run.done.pushed} records pushed but ${run.done.delivered} delivered`)
  results[mode] = { cycles: count, pushed: run.done?.pushed ?? 0, delivered: run.done?.delivered ?? 0, problems }
  const first = run.samples[0]
  const last = run.samples.at(-1)
  if (first !== undefined && last !== undefined) {
    t.log(`${count} ${mode}: descriptors ${first.fds} → ${last.fds}, resources ${JSON.stringify(first.resources)} → ${JSON.stringify(last.resources)}, ` +
      `heap without code ${MiB(first.heapData)} → ${MiB(last.heapData)} (with code ${MiB(first.heapUsed)} → ${MiB(last.heapUsed)}), ` +
      `ArrayBuffers ${MiB(first.arrayBuffers)} → ${MiB(last.arrayBuffers)}, rss ${MiB(first.rss)} → ${MiB(last.rss)}`)
  }
  t.deepEqual(problems, [])
}

test(`${OPENS} open/close cycles (failed second opens, abandoned generators, a next() waiting at close): ` +
  'descriptors and handles flat, heap bounded', async t => {
  await leakRun(t, 'opens', OPENS)
})

test(`${OPS} push/ack cycles with abandoned generators, aborted and timed-out waits: descriptors and handles flat, heap bounded`, async t => {
  await leakRun(t, 'ops', OPS)
})

/*
 * close() wakes every next() that is waiting. A next() called just before close() is still
 * looking for records (an await on LevelDB) when close() wakes the waiters; it used to start its
 * wait after that without looking at the queue's status again, and so waited out all of its
 * waitMs, keeping a timer (and the process) alive, before it rejected with EVAQ_CLOSED. No wall
 * clock here: after close() resolves and a few turns of the event loop, the call must have
 * settled.
 */
for (const when of ['called just before close()', 'already waiting when close() is called'] as const) {
  test(`a next() ${when} settles with EVAQ_CLOSED when the queue closes, not after its waitMs`, async t => {
    const dir = await tmpDir(t, 'evaq-leaks-close-')
    const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
    t.teardown(() => q.close())
    const sub = await q.wal.subscribe('s')
    // Ends the wait if the test fails, so that no 60 s timer outlives it.
    const ac = new AbortController()
    t.teardown(() => ac.abort())
    let settled: string | undefined
    const pending = sub.next({ waitMs: 60_000, signal: ac.signal }).then(
      b => { settled = `resolved ${b === undefined ? 'undefined' : 'a batch'}` },
      (err: { code?: string }) => { settled = err.code }
    )
    if (when === 'already waiting when close() is called') {
      for (let i = 0; i < 1000 && sub.waiting === 0; i++) await new Promise(resolve => setImmediate(resolve))
      t.is(sub.waiting, 1)
    }
    await q.close()
    for (let i = 0; i < 20; i++) {
      if (settled !== undefined) break
      await new Promise(resolve => setImmediate(resolve))
    }
    t.is(settled, 'EVAQ_CLOSED')
    ac.abort()
    await pending
  })
}

test.after.always('report', async () => {
  const opens = results.opens
  const ops = results.ops
  const problems = [...(opens?.problems ?? []), ...(ops?.problems ?? [])]
  await report({
    part: 'leaks',
    failure: 'Long runs: open/close cycles; push/ack cycles with abandoned iterators, aborted and timed-out waits',
    guarantee: 'File descriptors and active handles flat, heap bounded, every record pushed delivered and acknowledged',
    test: 'test/reliability/leaks.test.ts',
    cycles: (opens?.cycles ?? 0) + (ops?.cycles ?? 0),
    acknowledged: (opens?.delivered ?? 0) + (ops?.delivered ?? 0),
    lost: Math.max(0, (opens?.pushed ?? 0) - (opens?.delivered ?? 0)) + Math.max(0, (ops?.pushed ?? 0) - (ops?.delivered ?? 0)),
    note: `${opens === undefined ? 'open/close loop did not run' : `${opens.cycles} open/close cycles`}, ` +
      `${ops === undefined ? 'push/ack loop did not run' : `${ops.cycles} push/ack cycles`}` +
      (problems.length > 0 ? `; FAILED: ${problems[0]}` : ''),
  })
})
