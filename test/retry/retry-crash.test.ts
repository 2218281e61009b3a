/**
 * The retry daemon under SIGKILL, in real child processes (test/fixtures/retry-worker.ts):
 * no DLQ record is lost or lands in two places, and no attempt is counted twice beyond the one
 * in flight at the kill. Then the steps of a move between the DLQ and parked, each killed exactly
 * at a named crash point.
 *
 * Replay a random run with EVAQ_RETRY_CRASH_SEED=<seed>.
 */
import test from 'ava'
import { randomInt } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Evaq, EvaqError, type DeadLetterRecord, type ParkedRecord } from '../../src/index.js'
import { LOOP_OPTIONS } from '../fixtures/retry-worker.js'
import { rawKeys, runLines } from '../helpers/child.js'
import { prng } from '../helpers/prng.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/retry-worker.ts', import.meta.url))
const RECORDS = 150
const CYCLES = 5
const WATCHDOG_MS = 30_000

interface Call {
  readonly id: number
  readonly attempt: number
  readonly payload: string
}

interface Run {
  calls: Call[]
  /** Payloads whose handler succeeded (the removal may or may not have been written). */
  succeeded: Set<string>
  done: boolean
  signal: NodeJS.Signals | null
  code: number | null
  stderr: string
}

/** Run the worker; SIGKILL it after `killAfter` handler calls (if given) or once it is done or idle. */
async function run (dir: string, mode: string, options: { seed?: string, killAfter?: number, crashPoint?: string } = {}): Promise<Run> {
  const report: Run = { calls: [], succeeded: new Set(), done: false, signal: null, code: null, stderr: '' }
  const outcome = await runLines(FIXTURE, [dir, mode, options.seed ?? 's'], {
    point: options.crashPoint,
    watchdogMs: WATCHDOG_MS,
    onLine: line => {
      const [kind, a, b, c] = line.split('\t')
      if (kind === 'C') report.calls.push({ id: Number(a), attempt: Number(b), payload: c! })
      else if (kind === 'S') report.succeeded.add(b!)
      else if (kind === 'D' || kind === 'E') report.done = true
      else if (kind !== 'O') throw new Error(`Unexpected line from the worker: ${JSON.stringify(line)}`)
    },
    killWhen: () => (options.killAfter !== undefined && report.calls.length >= options.killAfter) || (report.done && mode !== 'requeue'),
  })
  Object.assign(report, { code: outcome.code, signal: outcome.signal, stderr: outcome.stderr })
  if (outcome.hung) throw new Error(`The worker (${mode}) hung; ${report.calls.length} calls; stderr: ${report.stderr}`)
  return report
}

interface Seen {
  dlq: Map<string, DeadLetterRecord[]>
  parked: Map<string, ParkedRecord[]>
}

async function look (evaq: Evaq): Promise<Seen> {
  const seen: Seen = { dlq: new Map(), parked: new Map() }
  for (const r of await evaq.dlq.read({ maxBytes: Infinity, maxCount: Infinity })) {
    const p = r.payload.toString()
    seen.dlq.set(p, [...seen.dlq.get(p) ?? [], r])
  }
  for (const r of await evaq.parked.read({ maxBytes: Infinity, maxCount: Infinity })) {
    const p = r.payload.toString()
    seen.parked.set(p, [...seen.parked.get(p) ?? [], r])
  }
  return seen
}

/** Where the record with `payload` is: its copies in the DLQ and in parked. */
async function placesOf (evaq: Evaq, payload: string): Promise<{ dlq: DeadLetterRecord[], parked: ParkedRecord[] }> {
  const seen = await look(evaq)
  return { dlq: seen.dlq.get(payload) ?? [], parked: seen.parked.get(payload) ?? [] }
}

test('SIGKILL of a child running the daemon: no DLQ record lost or in two places, no attempt counted twice beyond the one in flight', async t => {
  t.timeout(240_000)
  const seed = process.env.EVAQ_RETRY_CRASH_SEED ?? String(randomInt(2 ** 31))
  t.log(`seed ${seed} (replay with EVAQ_RETRY_CRASH_SEED=${seed})`)
  const random = prng(Number(seed))
  const dir = await tmpDir(t, 'evaq-retry-crash-')
  const payloads = Array.from({ length: RECORDS }, (_, i) => `record ${i}`)
  const setup = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  for (const p of payloads) await setup.pushRetryItem(p, { error: 'first failure' })
  await setup.close()

  /** Where each record was after the last check, and its attempts. */
  const state = new Map<string, { where: 'dlq' | 'parked' | 'gone', attempts: number }>(payloads.map(p => [p, { where: 'dlq', attempts: 0 }]))
  const succeededEver = new Set<string>()
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const killAfter = 10 + Math.floor(random() * 120)
    const where = `cycle ${cycle} (seed ${seed}, kill after ${killAfter} calls)`
    const r = await run(dir, 'loop', { seed: `${seed}:${cycle}`, killAfter })
    t.is(r.signal, 'SIGKILL', `${where}: the worker exited by itself (${r.code}): ${r.stderr}`)
    for (const p of r.succeeded) succeededEver.add(p)
    const calls = new Map<string, number>()
    for (const c of r.calls) calls.set(c.payload, (calls.get(c.payload) ?? 0) + 1)

    const evaq = await Evaq.open(dir, { minFreeDiskBytes: 0 })
    try {
      const seen = await look(evaq)
      let inFlightCounts = 0
      const problems: string[] = []
      for (const p of payloads) {
        const before = state.get(p)!
        const d = seen.dlq.get(p) ?? []
        const k = seen.parked.get(p) ?? []
        if (d.length + k.length > 1) { problems.push(`${p} is in ${d.length} DLQ and ${k.length} parked records`); continue }
        const n = calls.get(p) ?? 0
        if (d.length + k.length === 0) {
          if (!succeededEver.has(p)) problems.push(`${p} vanished without a successful call`)
          state.set(p, { where: 'gone', attempts: before.attempts })
          continue
        }
        if (before.where === 'gone') { problems.push(`${p} came back after it was removed`); continue }
        const record: DeadLetterRecord | ParkedRecord = d[0] ?? k[0]!
        if (before.where === 'parked' && d.length > 0) problems.push(`${p} left parked by itself`)
        const counted = record.retry.attempts - before.attempts
        if (counted === n + 1) inFlightCounts++
        else if (counted !== n) problems.push(`${p}: ${counted} attempts counted for ${n} calls`)
        if (record.retry.attempts > LOOP_OPTIONS.maxAttempts) problems.push(`${p}: ${record.retry.attempts} attempts, more than maxAttempts`)
        state.set(p, { where: d.length > 0 ? 'dlq' : 'parked', attempts: record.retry.attempts })
      }
      t.true(inFlightCounts <= LOOP_OPTIONS.concurrency, `${where}: ${inFlightCounts} attempts counted without a call, more than the handlers in flight`)
      t.deepEqual(problems, [], where)

      // The schedule holds exactly one entry per DLQ record, at its nextAttemptAt.
      const dlq = [...seen.dlq.values()].flat()
      const entries = await internals(evaq).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10 * RECORDS)
      t.deepEqual(entries.map(e => `${e.id}@${e.at}`).sort(), dlq.map(r => `${r.id}@${r.retry.nextAttemptAt}`).sort(), `${where}: schedule`)
      const stats = await evaq.stats()
      t.is(stats.dlq.count, dlq.length, `${where}: dlq count`)
      t.is(stats.parked.count, [...seen.parked.values()].flat().length, `${where}: parked count`)
      t.log(`${where}: ${r.calls.length} calls; ${stats.dlq.count} in the DLQ, ${stats.parked.count} parked, ${inFlightCounts} counted in flight`)
    } finally {
      await evaq.close()
    }
    t.is(await rawKeys(dir, 'retry-moves'), 0, `${where}: a move intent was left after recovery`)
  }
})

test('a crash at each step of parking leaves the record in exactly one place', async t => {
  for (const [point, expected] of [['retry:counted', 'dlq'], ['move:before', 'dlq'], ['move:after', 'parked']] as const) {
    const dir = await tmpDir(t, 'evaq-retry-point-')
    const setup = await Evaq.open(dir, { minFreeDiskBytes: 0 })
    const id = await setup.pushRetryItem('poison', { error: 'x', source: { log: 'wal', id: 3 } })
    await setup.close()
    const r = await run(dir, 'park', { crashPoint: point })
    t.is(r.signal, 'SIGKILL', `${point}: ${r.stderr}`)
    for (let reopen = 0; reopen < 2; reopen++) {
      const evaq = await Evaq.open(dir, { minFreeDiskBytes: 0 })
      try {
        const { dlq, parked } = await placesOf(evaq, 'poison')
        t.is(dlq.length + parked.length, 1, `${point}: in exactly one place`)
        if (expected === 'dlq') {
          t.is(dlq[0]?.id, id, point)
          t.is(dlq[0]?.retry.attempts, 1, `${point}: the attempt was counted once`)
          t.is(r.calls.length, point === 'retry:counted' ? 0 : 1, point)
        } else {
          t.like(parked[0]?.retry, { attempts: 1, reason: 'permanent', dlqId: id, source: { log: 'wal', id: 3 } }, point)
          t.deepEqual(await internals(evaq).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10), [], `${point}: nothing left in the schedule`)
        }
        t.like(await evaq.stats(), { dlq: { count: dlq.length }, parked: { count: parked.length } }, point)
      } finally {
        await evaq.close()
      }
      t.is(await rawKeys(dir, 'retry-moves'), 0, `${point}: no intent left`)
    }
  }
})

test('a crash at each step of a requeue leaves the record in exactly one place', async t => {
  for (const [point, expected] of [['move:before', 'parked'], ['move:after', 'dlq']] as const) {
    const dir = await tmpDir(t, 'evaq-requeue-point-')
    const setup = await Evaq.open(dir, { minFreeDiskBytes: 0 })
    await setup.pushRetryItem('poison')
    const d = setup.retry(() => { throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'poison') }, { autoStart: false })
    await d.tick()
    const [parkedBefore] = await setup.parked.read()
    await setup.close()
    const r = await run(dir, 'requeue', { crashPoint: point })
    t.is(r.signal, 'SIGKILL', `${point}: ${r.stderr}`)
    const evaq = await Evaq.open(dir, { minFreeDiskBytes: 0 })
    try {
      const { dlq, parked } = await placesOf(evaq, 'poison')
      t.is(dlq.length + parked.length, 1, `${point}: in exactly one place`)
      if (expected === 'dlq') t.like(dlq[0]?.retry, { attempts: 0, source: { log: 'parked', id: parkedBefore!.id } }, point)
      else t.is(parked[0]?.id, parkedBefore!.id, point)
      t.is((await internals(evaq).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10)).length, dlq.length, `${point}: schedule`)
    } finally {
      await evaq.close()
    }
    t.is(await rawKeys(dir, 'retry-moves'), 0, `${point}: no intent left`)
  }
})
