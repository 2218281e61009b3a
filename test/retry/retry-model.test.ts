/**
 * Model-based test of the retry daemon: random sequences of pushes to the DLQ, daemon ticks whose
 * handler succeeds, fails or fails for good, clock advances, requeues, purges, the manual path,
 * and close/reopen, against a small reference model. After every command a record is in exactly
 * one of the DLQ, parked, or removed after success (or by hand), with the attempts, due time and
 * schedule entry the model predicts.
 *
 * Replay a failure with the seed and path it prints:
 *   EVAQ_RETRY_MODEL_SEED=<seed> EVAQ_RETRY_MODEL_PATH=<path> npx ava test/retry/retry-model.test.ts
 * More runs: EVAQ_RETRY_MODEL_RUNS=500
 */
import test from 'ava'
import fc from 'fast-check'
import { Evaq, EvaqError, type EvaqOptions } from '../../src/index.js'
import { backoffDelay } from '../../src/retry/backoff.js'
import { ManualClock } from '../helpers/clock.js'
import { AdvanceCmd, expectEqual, fail, modelRun } from '../helpers/model.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const T0 = 1_700_000_000_000
const BACKOFF = { initialMs: 100, maxMs: 1000, multiplier: 2 }
const RANDOM = 0.5
const random = (): number => RANDOM
const SEED = process.env.EVAQ_RETRY_MODEL_SEED === undefined ? undefined : Number(process.env.EVAQ_RETRY_MODEL_SEED)
const PATH = process.env.EVAQ_RETRY_MODEL_PATH
const RUNS = Number(process.env.EVAQ_RETRY_MODEL_RUNS ?? 40)

type Outcome = 'success' | 'transient' | 'permanent'

/** What the handler does with a record on an attempt: a function of both, known to the model. */
function decide (table: readonly Outcome[], payload: string, attempt: number): Outcome {
  return table[(Number(payload.slice(1)) * 7 + attempt * 3) % table.length]!
}

interface MRecord {
  readonly payload: string
  where: 'dlq' | 'parked' | 'removed'
  attempts: number
  nextAttemptAt: number
  reason?: 'max-attempts' | 'permanent'
}

class Model {
  now = T0
  next = 0
  readonly records: MRecord[] = []
  constructor (readonly maxAttempts: number) {}
  add (attempts: number): MRecord {
    const r: MRecord = { payload: `p${this.next++}`, where: 'dlq', attempts, nextAttemptAt: this.now }
    this.records.push(r)
    return r
  }

  in (where: MRecord['where']): MRecord[] {
    return this.records.filter(r => r.where === where)
  }
}

let executed = 0

class Real {
  q!: Evaq
  readonly clock = new ManualClock(T0)
  constructor (readonly dir: string, readonly options: EvaqOptions, readonly concurrency: number, readonly maxAttempts: number) {}
  async open (): Promise<void> {
    this.q = await Evaq.open(this.dir, { ...this.options, clock: this.clock, minFreeDiskBytes: 0 })
  }
}

async function verify (m: Model, r: Real, what: string): Promise<void> {
  executed++
  const dlq = await r.q.dlq.read({ maxBytes: Infinity, maxCount: Infinity })
  const parked = await r.q.parked.read({ maxBytes: Infinity, maxCount: Infinity })
  const where = new Map<string, string[]>()
  for (const x of dlq) where.set(x.payload.toString(), [...where.get(x.payload.toString()) ?? [], 'dlq'])
  for (const x of parked) where.set(x.payload.toString(), [...where.get(x.payload.toString()) ?? [], 'parked'])
  for (const rec of m.records) {
    expectEqual(where.get(rec.payload) ?? [], rec.where === 'removed' ? [] : [rec.where], `${what}: where ${rec.payload} is`)
    where.delete(rec.payload)
  }
  expectEqual([...where.keys()], [], `${what}: records the model does not know`)
  const byPayload = (a: { p: string }, b: { p: string }): number => Number(a.p.slice(1)) - Number(b.p.slice(1))
  expectEqual(
    dlq.map(x => ({ p: x.payload.toString(), attempts: x.retry.attempts, nextAttemptAt: x.retry.nextAttemptAt })).sort(byPayload),
    m.in('dlq').map(x => ({ p: x.payload, attempts: x.attempts, nextAttemptAt: x.nextAttemptAt })).sort(byPayload),
    `${what}: DLQ records`)
  expectEqual(
    parked.map(x => ({ p: x.payload.toString(), attempts: x.retry.attempts, reason: x.retry.reason })).sort(byPayload),
    m.in('parked').map(x => ({ p: x.payload, attempts: x.attempts, reason: x.reason })).sort(byPayload),
    `${what}: parked records`)
  const entries = await internals(r.q).dlq.dueEntries(Number.MAX_SAFE_INTEGER, 10_000)
  expectEqual(entries.map(e => `${e.id}@${e.at}`).sort(), dlq.map(x => `${x.id}@${x.retry.nextAttemptAt}`).sort(), `${what}: schedule index`)
  const stats = await r.q.stats()
  expectEqual([stats.dlq.count, stats.parked.count], [dlq.length, parked.length], `${what}: stats`)
}

type Cmd = fc.AsyncCommand<Model, Real>

class PushCmd implements Cmd {
  constructor (readonly attempts: number) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const rec = m.add(this.attempts)
    await r.q.pushRetryItem(rec.payload, { error: 'failed', attempts: this.attempts })
    await verify(m, r, this.toString())
  }

  toString (): string { return `push(attempts=${this.attempts})` }
}

class PushManyCmd implements Cmd {
  constructor (readonly n: number) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const recs = Array.from({ length: this.n }, () => m.add(0))
    await r.q.dlq.pushMany(recs.map(x => x.payload))
    await verify(m, r, this.toString())
  }

  toString (): string { return `dlq.pushMany(${this.n})` }
}

class TickCmd implements Cmd {
  constructor (readonly table: Outcome[]) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const what = `${this.toString()} at t0+${m.now - T0}`
    const expected: string[] = []
    for (const rec of m.in('dlq')) {
      if (rec.nextAttemptAt > m.now) continue
      if (rec.attempts >= m.maxAttempts) { rec.where = 'parked'; rec.reason = 'max-attempts'; continue }
      const attempt = rec.attempts + 1
      expected.push(`${rec.payload}#${attempt}`)
      rec.attempts = attempt
      const outcome = decide(this.table, rec.payload, attempt)
      if (outcome === 'success') rec.where = 'removed'
      else if (outcome === 'permanent' || attempt >= m.maxAttempts) {
        rec.where = 'parked'
        rec.reason = outcome === 'permanent' ? 'permanent' : 'max-attempts'
      } else rec.nextAttemptAt = m.now + backoffDelay(attempt + 1, BACKOFF, random)
    }
    const calls: string[] = []
    const d = r.q.retry((record, { attempt }) => {
      const payload = record.payload.toString()
      calls.push(`${payload}#${attempt}`)
      if (record.retry.attempts !== attempt) fail(`${what}: the handler saw attempts ${record.retry.attempts} for attempt ${attempt}`)
      const outcome = decide(this.table, payload, attempt)
      if (outcome === 'permanent') throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'permanent')
      if (outcome === 'transient') throw Object.assign(new Error('transient'), { code: 'E503' })
    }, { autoStart: false, concurrency: r.concurrency, maxAttempts: r.maxAttempts, backoff: BACKOFF, random })
    const errors: unknown[] = []
    d.on('error', err => errors.push(err))
    await d.tick()
    await d.stop()
    expectEqual(errors, [], `${what}: daemon errors`)
    expectEqual(calls.sort(), expected.sort(), `${what}: handler calls`)
    await verify(m, r, what)
  }

  toString (): string { return `tick(${this.table.join(',')})` }
}

class AdvanceToDueCmd implements Cmd {
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const later = m.in('dlq').map(x => x.nextAttemptAt).filter(t => t > m.now)
    if (later.length > 0) m.now = Math.min(...later)
    r.clock.t = m.now
    await verify(m, r, this.toString())
  }

  toString (): string { return 'advanceToNextDue()' }
}

/** Pick records of one place by index (distinct, modulo the count). */
function pick (recs: MRecord[], picks: number[]): MRecord[] {
  if (recs.length === 0) return []
  return [...new Set(picks.map(p => recs[p % recs.length]!))]
}

async function idsOf (r: Real, log: 'dlq' | 'parked', recs: MRecord[]): Promise<number[]> {
  const all = await r.q[log].read({ maxBytes: Infinity, maxCount: Infinity })
  return recs.map(x => all.find(y => y.payload.toString() === x.payload)!.id)
}

/** The parked records `picks` names (all of them with 'all'), and the IDs to name them by in the call. */
async function pickParked (m: Model, r: Real, picks: number[] | 'all'): Promise<{ recs: MRecord[], ids: number[] | 'all' }> {
  if (picks === 'all') return { recs: m.in('parked'), ids: 'all' }
  const recs = pick(m.in('parked'), picks)
  return { recs, ids: await idsOf(r, 'parked', recs) }
}

class RequeueCmd implements Cmd {
  constructor (readonly picks: number[] | 'all') {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const { recs, ids } = await pickParked(m, r, this.picks)
    const got = await r.q.requeueParked(ids)
    expectEqual(got.length, recs.length, `${this.toString()}: requeued`)
    for (const x of recs) { x.where = 'dlq'; x.attempts = 0; x.nextAttemptAt = m.now; delete x.reason }
    await verify(m, r, this.toString())
  }

  toString (): string { return `requeueParked(${JSON.stringify(this.picks)})` }
}

class PurgeCmd implements Cmd {
  constructor (readonly picks: number[] | 'all') {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const { recs, ids } = await pickParked(m, r, this.picks)
    expectEqual(await r.q.purgeParked(ids), recs.length, `${this.toString()}: purged`)
    for (const x of recs) x.where = 'removed'
    await verify(m, r, this.toString())
  }

  toString (): string { return `purgeParked(${JSON.stringify(this.picks)})` }
}

/** The Evaq-compatible manual path: retried by hand, then doneRetryItems. */
class DoneCmd implements Cmd {
  constructor (readonly picks: number[]) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const recs = pick(m.in('dlq'), this.picks)
    await r.q.doneRetryItems(await idsOf(r, 'dlq', recs))
    for (const x of recs) x.where = 'removed'
    await verify(m, r, this.toString())
  }

  toString (): string { return `doneRetryItems(${JSON.stringify(this.picks)})` }
}

class ReopenCmd implements Cmd {
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    await r.q.close()
    await r.open()
    await verify(m, r, this.toString())
  }

  toString (): string { return 'closeAndReopen()' }
}

const outcome = fc.constantFrom<Outcome>('success', 'transient', 'transient', 'permanent')
const picks = fc.array(fc.nat({ max: 31 }), { minLength: 1, maxLength: 4 })
const commands = [
  fc.integer({ min: 0, max: 3 }).map(a => new PushCmd(a)),
  fc.integer({ min: 0, max: 3 }).map(a => new PushCmd(a)),
  fc.integer({ min: 1, max: 5 }).map(n => new PushManyCmd(n)),
  fc.array(outcome, { minLength: 1, maxLength: 5 }).map(t => new TickCmd(t)),
  fc.array(outcome, { minLength: 1, maxLength: 5 }).map(t => new TickCmd(t)),
  fc.array(outcome, { minLength: 1, maxLength: 5 }).map(t => new TickCmd(t)),
  fc.oneof(fc.integer({ min: 1, max: 2000 }), fc.constant(BACKOFF.maxMs)).map(ms => new AdvanceCmd(ms, verify)),
  fc.constant(null).map(() => new AdvanceToDueCmd()),
  fc.oneof(picks, fc.constant<'all'>('all')).map(p => new RequeueCmd(p)),
  fc.oneof(picks, fc.constant<'all'>('all')).map(p => new PurgeCmd(p)),
  picks.map(p => new DoneCmd(p)),
  fc.constant(null).map(() => new ReopenCmd()),
]

const config = fc.record({
  concurrency: fc.integer({ min: 1, max: 4 }),
  maxAttempts: fc.integer({ min: 1, max: 4 }),
  maxBatchCount: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  segmentCacheBytes: fc.option(fc.constant(0), { nil: undefined }),
})

test('DLQ, daemon and parked records behave like the reference model (fast-check commands)', async t => {
  t.timeout(115_000)
  const root = await tmpDir(t, 'evaq-retry-model-')
  const property = fc.asyncProperty(config, fc.commands(commands, { maxCommands: 25, size: 'max' }), async (cfg, cmds) => {
    const options: EvaqOptions = {}
    if (cfg.maxBatchCount !== undefined) options.maxBatchCount = cfg.maxBatchCount
    if (cfg.segmentCacheBytes !== undefined) options.segmentCacheBytes = cfg.segmentCacheBytes
    await modelRun(root, dir => ({ model: new Model(cfg.maxAttempts), real: new Real(dir, options, cfg.concurrency, cfg.maxAttempts) }), cmds)
  })
  const started = performance.now()
  const details = await fc.check(property, {
    numRuns: RUNS,
    ...(SEED === undefined ? {} : { seed: SEED }),
    ...(PATH === undefined ? {} : { path: PATH }),
    interruptAfterTimeLimit: 100_000,
  })
  t.log(`${details.numRuns} run(s), ${executed} commands, in ${Math.round(performance.now() - started)} ms; seed ${details.seed}`)
  if (details.failed) {
    t.fail(`Model mismatch. Replay with EVAQ_RETRY_MODEL_SEED=${details.seed} EVAQ_RETRY_MODEL_PATH=${details.counterexamplePath ?? ''}` +
      `\n\n${fc.defaultReportMessage(details) ?? ''}`)
  } else {
    t.pass()
  }
})
