/**
 * Model-based test with crashes and concurrency: rounds of concurrent producers (push, pushMany),
 * removers and consumers (two subscribers: next + ack) run against one queue, in an order that
 * fast-check's scheduler picks (`fc.scheduler`: which operation starts next, and when each
 * caller sees its result). In some rounds a crash lands at a scheduler-picked moment: the data
 * directory is copied as it is at that instant (what a SIGKILL leaves: everything LevelDB handed
 * to the OS), the round runs to its end on the old queue, and the test goes on with the copy.
 *
 * Checked against a small model, after every round and every crash:
 * - every push acknowledged before the crash is there with its payload, unless a removal
 *   acknowledged before the crash took it or both subscribers acknowledged it (cleanup);
 * - nothing else is there but whole payloads of pushes that were in flight, and nothing removed;
 * - IDs never go down (`stats().nextId` above every ID acknowledged);
 * - a subscriber never gets a record it acknowledged durably, never gets a record twice within one
 *   process (the clock is frozen: leases do not expire), gets payloads exactly as pushed, and after
 *   a crash gets every record it did not acknowledge (at-least-once).
 *
 * The copy is taken synchronously between two JavaScript turns; LevelDB's own threads may write
 * during it, as they may at a real kill. The data stays far below the write buffer, so no
 * memtable flush or compaction moves files during a copy (a copy is not one atomic snapshot of
 * several files; a kill is).
 *
 *   EVAQ_MODEL_CRASH_RUNS=500 npx ava test/reliability/model-crash.test.ts
 */
import test from 'ava'
import fc from 'fast-check'
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Evaq, EvaqError, type Durability, type Subscriber } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'
import { cycles, report } from './report.js'
import { internals } from '../helpers/internals.js'

const RUNS = cycles('EVAQ_MODEL_CRASH_RUNS', 25)
const SEED = process.env.EVAQ_MODEL_CRASH_SEED === undefined ? undefined : Number(process.env.EVAQ_MODEL_CRASH_SEED)
const SUBS = ['s0', 's1'] as const

type Op =
  | { readonly kind: 'push', readonly payloads: readonly string[] }
  | { readonly kind: 'remove', readonly picks: readonly number[] }
  | { readonly kind: 'consume', readonly sub: 0 | 1, readonly maxCount: number, readonly ack: boolean }

interface Round {
  readonly ops: readonly Op[]
  /** Crash after this many operations started (scheduler order), or no crash. */
  readonly crashAfter: number | undefined
}

interface Config {
  readonly durability: Durability
  readonly flushWorkers: number
  readonly maxBatchCount: number
}

const payload = fc.string({ minLength: 0, maxLength: 24 })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.array(payload, { minLength: 1, maxLength: 4 }).map(payloads => ({ kind: 'push', payloads }) as const) },
  { weight: 1, arbitrary: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }).map(picks => ({ kind: 'remove', picks }) as const) },
  {
    weight: 3,
    arbitrary: fc.record({ sub: fc.constantFrom(0 as const, 1 as const), maxCount: fc.integer({ min: 1, max: 6 }), ack: fc.boolean() })
      .map(c => ({ kind: 'consume', ...c }) as const),
  }
)
const roundArb: fc.Arbitrary<Round> = fc.array(opArb, { minLength: 1, maxLength: 10 }).chain(ops =>
  fc.option(fc.integer({ min: 0, max: ops.length }), { freq: 3 }).map(crashAfter => ({ ops, crashAfter: crashAfter ?? undefined })))
const configArb: fc.Arbitrary<Config> = fc.record({
  durability: fc.constantFrom<Durability>('sync', 'none'),
  flushWorkers: fc.integer({ min: 1, max: 3 }),
  maxBatchCount: fc.constantFrom(1, 2, 1000),
})

/**
 * Copy the directory `from` to `to` synchronously. The segment files prepare, rename and delete
 * files on libuv's threads while the copy runs: a file gone by the time it is copied is left out,
 * as a kill would have found it gone.
 */
function copyImage (from: string, to: string): void {
  mkdirSync(to, { recursive: true })
  let entries
  try {
    entries = readdirSync(from, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  for (const e of entries) {
    if (e.isDirectory()) { copyImage(join(from, e.name), join(to, e.name)); continue }
    try {
      copyFileSync(join(from, e.name), join(to, e.name))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
}

class Mismatch extends Error {}
function fail (what: string, details?: unknown): never {
  throw new Mismatch(details === undefined ? what : `${what}: ${inspect(details, { depth: 4, breakLength: 160 })}`)
}

/** What the model knows. Payloads are kept for every ID ever acknowledged to a pusher. */
class Model {
  /** Every push the queue acknowledged (or acknowledged after a crash image was taken), by ID. */
  readonly pushed = new Map<number, string>()
  /** Records that must be there: acknowledged, not removed, not cleaned up. */
  readonly live = new Set<number>()
  /** Acknowledged removals: must never come back. */
  readonly removed = new Set<number>()
  /** Acks that resolved (ackDurability 'sync'): never delivered again to that subscriber. */
  readonly acked = SUBS.map(() => new Set<number>())
  /** Acks called and not resolved yet: the queue may already have applied them. */
  readonly acking = SUBS.map(() => new Set<number>())
  /** Delivered in this process and not acknowledged: leased until a restart (the clock is frozen). */
  readonly leased = SUBS.map(() => new Set<number>())
  highestAcked = 0

  /** Both subscribers acknowledged it (or may have: an ack in flight): cleanup may delete it. */
  cleanable (id: number): boolean {
    return SUBS.every((_, i) => this.acked[i]!.has(id) || this.acking[i]!.has(id))
  }
}

interface Ctx {
  q: Evaq
  dir: string
  readonly subs: Subscriber[]
  readonly config: Config
}

async function open (dir: string, config: Config): Promise<Ctx> {
  const frozen = { now: () => 1_700_000_000_000 }
  const q = await Evaq.open(dir, {
    durability: config.durability, ackDurability: 'sync', flushWorkers: config.flushWorkers, maxBatchCount: config.maxBatchCount,
    minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, clock: frozen,
  })
  if (q.openReport.corruption.length > 0) fail('the queue opened with corruption reported', q.openReport.corruption)
  const subs: Subscriber[] = []
  for (const name of SUBS) subs.push(await q.wal.subscribe(name, { start: 'earliest', leaseMs: 60_000, maxDeliveries: 1_000_000 }))
  return { q, dir, subs, config }
}

/** Everything in the log, checked against the model: `inFlight` holds payloads pushes may have stored. */
async function verifyLog (m: Model, ctx: Ctx, inFlight: ReadonlyMap<string, number>, what: string): Promise<Map<number, string>> {
  await internals(ctx.q).wal.drain()
  const records = await ctx.q.wal.read({ maxCount: Infinity, maxBytes: Infinity })
  const present = new Map<number, string>()
  let last = 0
  for (const r of records) {
    if (r.id <= last) fail(`${what}: IDs out of order`, records.map(x => x.id))
    last = r.id
    const text = r.payload.toString('utf8')
    present.set(r.id, text)
    if (m.removed.has(r.id)) fail(`${what}: record ${r.id} came back after an acknowledged removal`)
    const known = m.pushed.get(r.id)
    if (known !== undefined) {
      if (known !== text) fail(`${what}: record ${r.id} changed`, { pushed: known, read: text })
    } else if ((inFlight.get(text) ?? 0) === 0) {
      fail(`${what}: record ${r.id} (${JSON.stringify(text)}) was never pushed`)
    }
  }
  for (const id of m.live) {
    if (!present.has(id) && !m.cleanable(id)) fail(`${what}: acknowledged record ${id} is missing`, { present: [...present.keys()] })
  }
  const stats = await ctx.q.wal.stats()
  if (stats.nextId <= m.highestAcked) fail(`${what}: nextId ${stats.nextId} would reuse acknowledged ID ${m.highestAcked}`)
  if (stats.count !== records.length) fail(`${what}: stats().count ${stats.count} disagrees with ${records.length} records read`)
  return present
}

/** Run one round; when it crashed, also what was acknowledged at the crash. */
async function runRound (
  s: fc.Scheduler,
  m: Model,
  ctx: Ctx,
  round: Round,
  image: string
): Promise<{ crashed: boolean, pending: Map<string, number>, snapshot?: Snapshot }> {
  /** Payloads of pushes not acknowledged (yet): what may be stored without the model knowing the ID. */
  const pending = new Map<string, number>()
  const add = (p: string, n: number): void => { pending.set(p, (pending.get(p) ?? 0) + n) }
  let started = 0
  let snapshot: Snapshot | undefined
  const crashNow = (): void => {
    snapshot = takeSnapshot(m)
    copyImage(ctx.dir, image)
  }
  const tasks: Array<Promise<void>> = []
  for (const op of round.ops) {
    tasks.push(s.schedule(Promise.resolve(op.kind), `start ${op.kind}`).then(async () => {
      if (round.crashAfter === started && snapshot === undefined) crashNow()
      started++
      await runOp(s, m, ctx, op, add)
    }))
  }
  await s.waitFor(Promise.all(tasks))
  if (round.crashAfter !== undefined && snapshot === undefined) crashNow()
  return { crashed: snapshot !== undefined, pending, snapshot }
}

async function runOp (s: fc.Scheduler, m: Model, ctx: Ctx, op: Op, pending: (p: string, n: number) => void): Promise<void> {
  if (op.kind === 'push') {
    for (const p of op.payloads) pending(p, 1)
    const ids = op.payloads.length === 1
      ? [await s.schedule(ctx.q.wal.push(op.payloads[0]!), 'push')]
      : await s.schedule(ctx.q.wal.pushMany(op.payloads), 'pushMany')
    ids.forEach((id, i) => {
      if (m.pushed.has(id)) fail(`ID ${id} issued twice`)
      m.pushed.set(id, op.payloads[i]!)
      m.live.add(id)
      m.highestAcked = Math.max(m.highestAcked, id)
    })
    for (const p of op.payloads) pending(p, -1)
  } else if (op.kind === 'remove') {
    const candidates = [...m.live].sort((a, b) => a - b)
    if (candidates.length === 0) return
    const ids = [...new Set(op.picks.map(p => candidates[p % candidates.length]!))]
    // Claimed at once, so that no other operation of the round picks them too.
    for (const id of ids) m.live.delete(id)
    try {
      await s.schedule(ctx.q.wal.remove(ids), 'remove')
    } catch (err) {
      // Cleanup got there first (every subscriber had acknowledged the record): the removal is
      // atomic, so nothing was removed; what cleanup deleted is gone, the rest stays.
      if (!(err instanceof EvaqError) || err.code !== 'EVAQ_NOT_FOUND') throw err
      const gone = new Set(err.ids ?? [])
      for (const id of gone) if (!m.cleanable(id)) fail(`remove: ${id} not found though not every subscriber acknowledged it`)
      for (const id of ids) if (!gone.has(id)) m.live.add(id)
      return
    }
    for (const id of ids) m.removed.add(id)
  } else {
    // What was settled when next() was called: a removal or ack resolving while it runs may or
    // may not be seen by it.
    const removedBefore = new Set(m.removed)
    const batch = await s.schedule(ctx.subs[op.sub]!.next({ maxCount: op.maxCount, waitMs: 0 }), 'next')
    if (batch === undefined) return
    for (const r of batch.records) {
      const known = m.pushed.get(r.id)
      if (m.acked[op.sub]!.has(r.id)) fail(`subscriber ${op.sub} got ${r.id}, which it acknowledged`)
      if (m.leased[op.sub]!.has(r.id)) fail(`subscriber ${op.sub} got ${r.id} twice while it held the lease`)
      if (removedBefore.has(r.id)) fail(`subscriber ${op.sub} got ${r.id}, which was removed`)
      if (known !== undefined && known !== r.payload.toString('utf8')) fail(`subscriber ${op.sub} got record ${r.id} changed`)
      m.leased[op.sub]!.add(r.id)
    }
    if (!op.ack) return
    for (const r of batch.records) m.acking[op.sub]!.add(r.id)
    await s.schedule(batch.ack(), 'ack')
    for (const r of batch.records) {
      m.acking[op.sub]!.delete(r.id)
      m.leased[op.sub]!.delete(r.id)
      m.acked[op.sub]!.add(r.id)
    }
  }
}

/** What was acknowledged at the instant of the crash: only that must survive it. */
interface Snapshot {
  readonly live: Set<number>
  readonly removed: Set<number>
  readonly acked: Array<Set<number>>
  readonly acking: Array<Set<number>>
  readonly pushed: Map<number, string>
  readonly highestAcked: number
}

function takeSnapshot (m: Model): Snapshot {
  return {
    live: new Set(m.live),
    removed: new Set(m.removed),
    acked: m.acked.map(s => new Set(s)),
    acking: m.acking.map(s => new Set(s)),
    pushed: new Map(m.pushed),
    highestAcked: m.highestAcked,
  }
}

/**
 * After a crash: the model becomes what was acknowledged at the crash, and the image must hold
 * it; whatever else it holds came from operations in flight.
 */
async function afterCrash (m: Model, snap: Snapshot, all: Snapshot, ctx: Ctx, pending: ReadonlyMap<string, number>): Promise<void> {
  // Payloads the image may hold beyond the snapshot: pushes in flight at the crash, acknowledged
  // later or never.
  const inFlight = new Map(pending)
  for (const [id, p] of all.pushed) if (!snap.pushed.has(id)) inFlight.set(p, (inFlight.get(p) ?? 0) + 1)
  m.pushed.clear()
  for (const [id, p] of snap.pushed) m.pushed.set(id, p)
  m.live.clear()
  for (const id of snap.live) m.live.add(id)
  m.removed.clear()
  for (const id of snap.removed) m.removed.add(id)
  for (let i = 0; i < SUBS.length; i++) {
    m.acked[i]!.clear()
    for (const id of snap.acked[i]!) m.acked[i]!.add(id)
    // Acks in flight at the crash may or may not have been kept: cleanup may have acted on them.
    m.acking[i]!.clear()
    for (const id of snap.acking[i]!) m.acking[i]!.add(id)
    m.leased[i]!.clear()
  }
  m.highestAcked = snap.highestAcked
  const present = await verifyLog(m, ctx, inFlight, 'after the crash')
  // What the image holds is the new truth: records of in-flight pushes are adopted, in-flight
  // removals that happened stay removed (and were not acknowledged: nobody holds their IDs).
  for (const [id, p] of present) {
    if (!m.pushed.has(id)) { m.pushed.set(id, p); m.highestAcked = Math.max(m.highestAcked, id) }
    m.live.add(id)
  }
  for (const id of [...m.live]) if (!present.has(id)) m.live.delete(id)
  // At-least-once: each subscriber now gets every record there that it had not acknowledged at
  // the crash (an ack in flight may or may not have been kept), and never one it had.
  for (let i = 0; i < SUBS.length; i++) {
    const got = new Set<number>()
    for (;;) {
      const batch = await ctx.subs[i]!.next({ maxCount: 1000, waitMs: 0 })
      if (batch === undefined) break
      for (const r of batch.records) {
        if (m.acked[i]!.has(r.id)) fail(`after the crash subscriber ${i} got ${r.id}, acknowledged before the crash`)
        if (got.has(r.id)) fail(`after the crash subscriber ${i} got ${r.id} twice`)
        got.add(r.id)
      }
      await batch.ack()
    }
    for (const id of present.keys()) {
      if (!m.acked[i]!.has(id) && !got.has(id)) {
        const ackedLater = all.acked[i]!.has(id)
        if (!ackedLater) fail(`after the crash subscriber ${i} did not get ${id}, which it never acknowledged`)
      }
    }
    for (const id of present.keys()) m.acked[i]!.add(id)
    m.acking[i]!.clear()
  }
}

let runs = 0
let crashes = 0
let acknowledged = 0

test(`concurrent producers, removers and consumers, interleaved by fast-check's scheduler, with crashes (${RUNS} runs)`, async t => {
  const root = await tmpDir(t, 'evaq-model-crash-')
  let n = 0
  const out = await fc.check(fc.asyncProperty(fc.scheduler(), configArb, fc.array(roundArb, { minLength: 1, maxLength: 6 }), async (s, config, rounds) => {
    const base = join(root, String(n++))
    let ctx = await open(base, config)
    const m = new Model()
    try {
      for (let i = 0; i < rounds.length; i++) {
        const image = `${base}-crash-${i}`
        const { crashed, pending, snapshot } = await runRound(s, m, ctx, rounds[i]!, image)
        if (!crashed) {
          await verifyLog(m, ctx, new Map(), `round ${i}`)
          continue
        }
        crashes++
        // Everything the round did by its end, crash or not: pushes acknowledged after the crash
        // image was taken may be in it, acks resolved after it may have been kept.
        const all = takeSnapshot(m)
        await ctx.q.close()
        ctx = await open(image, config)
        await afterCrash(m, snapshot!, all, ctx, pending)
      }
      acknowledged += m.pushed.size
      runs++
    } finally {
      await ctx.q.close().catch(() => {})
    }
  }), { numRuns: RUNS, endOnFailure: true, ...(SEED === undefined ? {} : { seed: SEED }) })
  if (out.failed) {
    // The scheduler's report (every resolved promise) is long: the error and the seed come first.
    t.fail(`${String(out.errorInstance)}\nseed ${out.seed} (replay with EVAQ_MODEL_CRASH_SEED=${out.seed})\n${fc.defaultReportMessage(out) ?? ''}`)
    return
  }
  t.is(runs, RUNS)
  t.log(`${runs} runs, ${crashes} crashes, ${acknowledged} acknowledged pushes checked`)
  await report({
    part: 'model-crash',
    failure: 'process crash at scheduler-chosen moments while producers, removers and consumers run concurrently',
    guarantee: 'acknowledged pushes, removals and acks survive; in-flight ones are whole or absent; IDs never reused; subscribers at-least-once',
    test: 'test/reliability/model-crash.test.ts',
    cycles: crashes,
    acknowledged,
    lost: 0,
    note: `${runs} fast-check runs`,
  })
})
