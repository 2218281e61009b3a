/**
 * Model-based test of the log and subscriber core: random command sequences (fast-check
 * `fc.commands`) run against a real queue in a fresh directory and against a small in-memory
 * reference model, and the two are compared after every command and at the end.
 *
 * Replay a failure with the seed and path it prints:
 *   EVAQ_MODEL_SEED=<seed> EVAQ_MODEL_PATH=<path> EVAQ_MODEL_REPLAY=<replayPath> npx ava test/facade/model.test.ts
 * Soak with more runs (and longer sequences):
 *   EVAQ_MODEL_RUNS=2000 [EVAQ_MODEL_COMMANDS=80] npx ava test/facade/model.test.ts
 */
import test from 'ava'
import fc from 'fast-check'
import { inspect } from 'node:util'
import { Evaq, EvaqError, type Batch, type EvaqOptions, type QueueRecord, type Subscriber } from '../../src/index.js'
import { ManualClock } from '../helpers/clock.js'
import { AdvanceCmd, expectEqual, fail, modelRun } from '../helpers/model.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const NAMES = ['a', 'b', 'c'] as const
const LEASE_MS = 1000
const MAX_NACK_DELAY_MS = 3000
/** Far above what a run can reach: records never go to the DLQ here. */
const SUB_OPTIONS = { start: 'earliest', leaseMs: LEASE_MS, maxDeliveries: 1_000_000 } as const
const T0 = 1_700_000_000_000

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${v}`)
  return n
}
const SEED = envInt('EVAQ_MODEL_SEED')
const PATH = process.env.EVAQ_MODEL_PATH
/** fc.commands' own replay path (its shrinking depends on which commands ran): needed with a path. */
const REPLAY = process.env.EVAQ_MODEL_REPLAY
const RUNS = envInt('EVAQ_MODEL_RUNS')
const SOAK = RUNS !== undefined
/** A replayed path starts with the index of the failing run: that many runs must be allowed. */
const NUM_RUNS = Math.max(RUNS ?? 50, PATH === undefined ? 0 : Number(PATH.split(':')[0]) + 1)
const MAX_COMMANDS = envInt('EVAQ_MODEL_COMMANDS') ?? 40
/**
 * The model says a removed record vanishes for subscribers too, even one holding a lease on it
 * (its lease ends as if acknowledged). EVAQ_MODEL_REDELIVER_REMOVED=1 models the old behaviour,
 * redelivering it within the process.
 */
const REDELIVER_REMOVED = process.env.EVAQ_MODEL_REDELIVER_REMOVED === '1'

// ---- the model ------------------------------------------------------------------------------

interface MRecord {
  readonly id: number
  readonly payload: string
  readonly pushedAt: number
  /** Explicitly removed: must never be read again. */
  removed: boolean
  /** Deleted by cleanup (seen absent once every subscriber had acked it): must never come back. */
  gone: boolean
}

interface MLease {
  deliveries: number
  visibleAt: number
}

interface MSub {
  /** Every ID this subscriber ever acknowledged (across reopens). */
  readonly acked: Set<number>
  /** Delivered, not acknowledged, in this process. Ascending ID order (deliveries come in ID order). */
  readonly leases: Map<number, MLease>
}

class Model {
  now = T0
  /** Highest ID the queue ever issued (0: none). */
  maxIssued = 0
  readonly records = new Map<number, MRecord>()
  readonly subs = new Map<string, MSub>()

  /** Records that exist as far as the model knows: committed, not removed, not cleaned up. */
  live (): MRecord[] {
    return [...this.records.values()].filter(r => !r.removed && !r.gone).sort((a, b) => a.id - b.id)
  }

  /** Whether cleanup may have deleted `id`: there are subscribers, and every one of them acked it. */
  deletable (id: number): boolean {
    if (this.subs.size === 0) return false
    for (const s of this.subs.values()) if (!s.acked.has(id)) return false
    return true
  }

  issue (ids: readonly number[], payloads: readonly string[]): void {
    ids.forEach((id, i) => {
      this.records.set(id, { id, payload: payloads[i]!, pushedAt: this.now, removed: false, gone: false })
    })
    this.maxIssued = Math.max(this.maxIssued, ...ids)
  }

  /**
   * What `next({ maxCount })` must deliver: due redeliveries first (lowest ID first), then records
   * never delivered to this subscriber in this process and not acknowledged, in ID order.
   */
  predictNext (sub: MSub, maxCount: number): Array<{ id: number, deliveryCount: number }> {
    const out: Array<{ id: number, deliveryCount: number }> = []
    for (const [id, lease] of sub.leases) {
      if (out.length >= maxCount) return out
      if (lease.visibleAt > this.now) continue
      // A removed record has vanished: it is not delivered again, even to a subscriber that held it.
      if (this.records.get(id)!.removed && !REDELIVER_REMOVED) continue
      out.push({ id, deliveryCount: lease.deliveries + 1 })
    }
    for (const r of this.live()) {
      if (out.length >= maxCount) break
      if (sub.acked.has(r.id) || sub.leases.has(r.id)) continue
      out.push({ id: r.id, deliveryCount: 1 })
    }
    return out
  }

  applyNext (sub: MSub, delivered: ReadonlyArray<{ id: number, deliveryCount: number }>): void {
    for (const d of delivered) sub.leases.set(d.id, { deliveries: d.deliveryCount, visibleAt: this.now + LEASE_MS })
  }

  /**
   * An explicit removal: the record vanishes, and a subscriber's lease on it ends as if it had
   * acknowledged it (there is nothing left to redeliver, and it must not hold the floor back).
   */
  removeRecord (id: number): void {
    this.records.get(id)!.removed = true
    if (REDELIVER_REMOVED) return
    for (const sub of this.subs.values()) {
      if (sub.leases.delete(id)) sub.acked.add(id)
    }
  }

  /** The records a subscriber still has to get: existing and not acknowledged by it. */
  owed (sub: MSub): number[] {
    return this.live().filter(r => !sub.acked.has(r.id)).map(r => r.id)
  }
}

// ---- the system under test ------------------------------------------------------------------

class Real {
  q!: Evaq
  readonly clock = new ManualClock(T0)
  readonly handles = new Map<string, Subscriber>()
  readonly options: EvaqOptions

  constructor (readonly dir: string, config: Config) {
    const set = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) as Config
    // ackDurability 'sync': the model says an acknowledgement survives a close at once.
    this.options = { minFreeDiskBytes: 0, clock: this.clock, durability: 'sync', ...set, ackDurability: 'sync' }
  }

  async open (): Promise<void> {
    this.q = await Evaq.open(this.dir, this.options)
  }

  /** The subscriber's handle; after a reopen, subscribing again resumes the persisted one. */
  async handle (name: string): Promise<Subscriber> {
    let h = this.handles.get(name)
    if (h === undefined) {
      h = await this.q.wal.subscribe(name, SUB_OPTIONS)
      this.handles.set(name, h)
    }
    return h
  }
}

interface Config {
  maxBatchCount?: number
  maxBatchBytes?: number
  flushWorkers?: number
  segmentCacheBytes?: number
  durability?: 'sync' | 'none'
}

// ---- checks ---------------------------------------------------------------------------------

async function expectNotFound (p: Promise<unknown>, ids: readonly number[], what: string): Promise<void> {
  try {
    await p
  } catch (err) {
    if (!(err instanceof EvaqError) || err.code !== 'EVAQ_NOT_FOUND') fail(`${what}: expected EVAQ_NOT_FOUND`, { got: err })
    expectEqual(err.ids === undefined ? undefined : [...err.ids], [...ids], `${what}: err.ids`)
    return
  }
  fail(`${what}: expected EVAQ_NOT_FOUND, it resolved`)
}

async function readAll (q: Evaq): Promise<QueueRecord[]> {
  return q.wal.read({ maxBytes: Infinity, maxCount: Infinity })
}

/** A delivered record against the model's copy: same payload and pushedAt, the predicted deliveryCount. */
function checkBatch (m: Model, batch: Batch | undefined, predicted: ReadonlyArray<{ id: number, deliveryCount: number }>, what: string): void {
  const got = batch === undefined ? [] : batch.records.map(r => ({ id: r.id, deliveryCount: r.deliveryCount }))
  expectEqual(got, predicted, `${what}: delivered (id, deliveryCount)`)
  for (const r of batch?.records ?? []) {
    const rec = m.records.get(r.id)!
    expectEqual({ payload: r.payload.toString('utf8'), pushedAt: r.pushedAt }, { payload: rec.payload, pushedAt: rec.pushedAt }, `${what}: record ${r.id}`)
  }
}

/**
 * After every command, once background work settled: the log holds exactly the model's records,
 * except that a record every subscriber acked may have been cleaned up (then it is gone for good).
 */
async function verify (m: Model, r: Real, what: string): Promise<void> {
  await internals(r.q).wal.drain()
  const actual = await readAll(r.q)
  for (let i = 1; i < actual.length; i++) {
    if (actual[i]!.id <= actual[i - 1]!.id) fail(`${what}: read returned IDs out of order`, { ids: actual.map(x => x.id) })
  }
  const present = new Set<number>()
  for (const rec of actual) {
    present.add(rec.id)
    const mr = m.records.get(rec.id)
    if (mr === undefined) fail(`${what}: read returned ID ${rec.id}, which was never pushed`)
    if (mr.removed) fail(`${what}: read returned ID ${rec.id}, which was removed`)
    if (mr.gone) fail(`${what}: ID ${rec.id} came back after cleanup had deleted it`)
    expectEqual({ payload: rec.payload.toString('utf8'), pushedAt: rec.pushedAt }, { payload: mr.payload, pushedAt: mr.pushedAt }, `${what}: record ${rec.id}`)
  }
  for (const mr of m.live()) {
    if (present.has(mr.id)) continue
    if (!m.deletable(mr.id)) {
      const notAcked = [...m.subs].filter(([, s]) => !s.acked.has(mr.id)).map(([n]) => n)
      fail(`${what}: record ${mr.id} is missing though it was not removed and not acked by every subscriber`, {
        subscribers: [...m.subs.keys()], notAckedBy: notAcked, read: actual.map(x => x.id),
      })
    }
    mr.gone = true
  }
  const stats = await r.q.wal.stats()
  expectEqual(
    { count: stats.count, bytes: stats.bytes, firstId: stats.firstId, lastId: stats.lastId },
    { count: actual.length, bytes: actual.reduce((n, x) => n + x.payload.byteLength, 0), firstId: actual[0]?.id, lastId: actual.at(-1)?.id },
    `${what}: stats() against the records read`)
  if (stats.nextId <= m.maxIssued) fail(`${what}: stats().nextId ${stats.nextId} would reuse an issued ID (highest issued ${m.maxIssued})`)
  expectEqual(stats.subscribers.map(s => s.name).sort(), [...m.subs.keys()].sort(), `${what}: subscribers`)
  for (const s of stats.subscribers) {
    expectEqual(s.inFlight, m.subs.get(s.name)!.leases.size, `${what}: inFlight of subscriber ${s.name}`)
  }
}

function checkNewIds (m: Model, ids: readonly number[], count: number, what: string): void {
  if (ids.length !== count) fail(`${what}: got ${ids.length} IDs for ${count} payloads`, { ids })
  let last = m.maxIssued
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id <= last) fail(`${what}: IDs not strictly increasing or reused`, { ids, highestBefore: m.maxIssued })
    last = id
  }
}

/** Distinct items chosen by `picks` (indices modulo the length), in pick order. */
function choose<T> (items: readonly T[], picks: readonly number[]): T[] {
  if (items.length === 0) return []
  const out: T[] = []
  for (const p of picks) {
    const item = items[p % items.length]!
    if (!out.includes(item)) out.push(item)
  }
  return out
}

async function reopen (m: Model, r: Real): Promise<void> {
  await r.q.close()
  r.handles.clear()
  await r.open()
  // Leases and delivery counts live in memory: a restart forgets them; acknowledgements stay.
  for (const s of m.subs.values()) s.leases.clear()
}

/** The `who`-th existing subscriber (by name), so commands on subscribers never miss. */
function subscriber (m: Model, who: number): [string, MSub] {
  const names = [...m.subs.keys()].sort()
  const name = names[who % names.length]!
  return [name, m.subs.get(name)!]
}

// ---- commands -------------------------------------------------------------------------------

type Cmd = fc.AsyncCommand<Model, Real>

class PushCmd implements Cmd {
  constructor (readonly payload: string) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const id = await r.q.wal.push(this.payload)
    checkNewIds(m, [id], 1, this.toString())
    m.issue([id], [this.payload])
    await verify(m, r, this.toString())
  }

  toString (): string { return `push(${JSON.stringify(this.payload)})` }
}

class PushManyCmd implements Cmd {
  constructor (readonly payloads: string[]) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const ids = await r.q.wal.pushMany(this.payloads)
    checkNewIds(m, ids, this.payloads.length, this.toString())
    for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]! + 1) fail(`${this.toString()}: pushMany IDs are not contiguous`, { ids })
    m.issue(ids, this.payloads)
    await verify(m, r, this.toString())
  }

  toString (): string { return `pushMany(${JSON.stringify(this.payloads)})` }
}

/** Concurrent single pushes: they share segments (group commit), so segments hold several pushes. */
class PushBurstCmd implements Cmd {
  constructor (readonly payloads: string[]) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const ids = await Promise.all(this.payloads.map(p => r.q.wal.push(p)))
    checkNewIds(m, ids, this.payloads.length, this.toString())
    m.issue(ids, this.payloads)
    await verify(m, r, this.toString())
  }

  toString (): string { return `pushBurst(${JSON.stringify(this.payloads)})` }
}

type Unknown = 'removed' | 'gone' | 'future'

class RemoveCmd implements Cmd {
  constructor (readonly picks: number[], readonly unknown: Unknown | null) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    const live = m.live().map(x => x.id)
    const ids = choose(live, this.picks)
    let bad: number | undefined
    if (this.unknown !== null) {
      const pool = this.unknown === 'future' ? [] : [...m.records.values()].filter(x => this.unknown === 'removed' ? x.removed : x.gone).map(x => x.id)
      bad = pool.length > 0 ? pool[this.picks[0]! % pool.length]! : m.maxIssued + 1 + (this.picks[0]! % 3)
    }
    const what = `${this.toString()} [ids ${JSON.stringify(ids)}${bad === undefined ? '' : `, unknown ${bad}`}]`
    if (bad !== undefined) {
      const all = [...ids, bad]
      await expectNotFound(r.q.wal.remove(all), [bad], what)
      // Nothing was removed: every chosen record is still readable at once.
      const after = new Set((await readAll(r.q)).map(x => x.id))
      for (const id of ids) if (!after.has(id)) fail(`${what}: a failed removal removed ${id}`)
    } else {
      if (ids.length === 0) return await verify(m, r, what)
      const highest = await r.q.wal.remove(ids)
      expectEqual(highest, Math.max(...ids), `${what}: remove() resolves with the highest ID`)
      for (const id of ids) m.removeRecord(id)
      // Gone from reads at once, before any background work settles.
      const after = (await readAll(r.q)).map(x => x.id)
      const still = ids.filter(id => after.includes(id))
      if (still.length > 0) fail(`${what}: removed IDs still readable right after remove()`, { still })
      for (const id of ids) {
        const [first] = await r.q.wal.read({ from: id, maxCount: 1 })
        if (first?.id === id) fail(`${what}: read({ from: ${id} }) still returns it`)
      }
    }
    await verify(m, r, what)
  }

  toString (): string { return `remove(picks=${JSON.stringify(this.picks)}${this.unknown === null ? '' : `, unknown=${this.unknown}`})` }
}

class SubscribeCmd implements Cmd {
  constructor (readonly name: string) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    // Subscribing again with an existing name resumes it (no change); a new name starts at the oldest live record.
    await r.handle(this.name)
    if (!m.subs.has(this.name)) m.subs.set(this.name, { acked: new Set(), leases: new Map() })
    await verify(m, r, this.toString())
  }

  toString (): string { return `subscribe(${this.name})` }
}

class NextCmd implements Cmd {
  constructor (readonly who: number, readonly maxCount: number) {}
  check (m: Readonly<Model>): boolean { return m.subs.size > 0 }
  async run (m: Model, r: Real): Promise<void> {
    const [name, sub] = subscriber(m, this.who)
    const what = `${this.toString()} [${name} at t0+${m.now - T0}]`
    const predicted = m.predictNext(sub, this.maxCount)
    const batch = await (await r.handle(name)).next({ maxCount: this.maxCount })
    checkBatch(m, batch, predicted, what)
    m.applyNext(sub, predicted)
    await verify(m, r, what)
  }

  toString (): string { return `next(sub#${this.who}, maxCount=${this.maxCount})` }
}

type AckExtra = 'none' | 'again' | 'unknown'

class AckCmd implements Cmd {
  constructor (readonly who: number, readonly picks: number[], readonly extra: AckExtra) {}
  check (m: Readonly<Model>): boolean { return m.subs.size > 0 }
  async run (m: Model, r: Real): Promise<void> {
    const [name, sub] = subscriber(m, this.who)
    // Pick order is random: acknowledgements arrive out of order.
    const ids = choose([...sub.leases.keys()], this.picks)
    const h = await r.handle(name)
    if (this.extra === 'unknown') {
      // Never delivered to this subscriber: a record it has not got yet, or an ID not issued yet.
      const fresh = m.live().filter(x => !sub.acked.has(x.id) && !sub.leases.has(x.id)).map(x => x.id)
      const bad = fresh.length > 0 ? fresh[this.picks[0]! % fresh.length]! : m.maxIssued + 1 + (this.picks[0]! % 3)
      const what = `${this.toString()} [${name}, ids ${JSON.stringify(ids)}, unknown ${bad}]`
      await expectNotFound(h.ack([...ids, bad]), [bad], what)
      return await verify(m, r, what)
    }
    const again = this.extra === 'again' ? choose([...sub.acked], this.picks) : []
    const all = [...ids, ...again.slice(0, 2)]
    const what = `${this.toString()} [${name}, ids ${JSON.stringify(all)}]`
    if (all.length === 0) return await verify(m, r, what)
    await h.ack(all)
    for (const id of ids) { sub.leases.delete(id); sub.acked.add(id) }
    await verify(m, r, what)
  }

  toString (): string { return `ack(sub#${this.who}, picks=${JSON.stringify(this.picks)}${this.extra === 'none' ? '' : `, ${this.extra}`})` }
}

class NackCmd implements Cmd {
  constructor (readonly who: number, readonly picks: number[], readonly delayMs: number) {}
  check (m: Readonly<Model>): boolean { return m.subs.size > 0 }
  async run (m: Model, r: Real): Promise<void> {
    const [name, sub] = subscriber(m, this.who)
    const ids = choose([...sub.leases.keys()], this.picks)
    const what = `${this.toString()} [${name}, ids ${JSON.stringify(ids)}]`
    if (ids.length === 0) return await verify(m, r, what)
    await (await r.handle(name)).nack(ids, { delayMs: this.delayMs })
    for (const id of ids) sub.leases.get(id)!.visibleAt = m.now + this.delayMs
    await verify(m, r, what)
  }

  toString (): string { return `nack(sub#${this.who}, picks=${JSON.stringify(this.picks)}, delayMs=${this.delayMs})` }
}

/**
 * A push, an ack and a removal at once: they meet in the group-commit buffer, the progress writer
 * and the serial lane. Only records some subscriber still holds back are removed, so that cleanup
 * cannot legitimately take one first.
 */
class ConcurrentCmd implements Cmd {
  constructor (readonly payloads: string[], readonly who: number, readonly ackPicks: number[], readonly removePicks: number[]) {}
  check (m: Readonly<Model>): boolean { return m.subs.size > 0 }
  async run (m: Model, r: Real): Promise<void> {
    const [name, sub] = subscriber(m, this.who)
    const acks = choose([...sub.leases.keys()], this.ackPicks)
    const heldBack = (id: number): boolean => [...m.subs.values()].some(s => !s.acked.has(id) && !(s === sub && acks.includes(id)))
    const removes = choose(m.live().map(x => x.id).filter(heldBack), this.removePicks)
    const what = `${this.toString()} [${name}, ack ${JSON.stringify(acks)}, remove ${JSON.stringify(removes)}]`
    const h = await r.handle(name)
    const [ids] = await Promise.all([
      Promise.all(this.payloads.map(p => r.q.wal.push(p))),
      acks.length > 0 ? h.ack(acks) : undefined,
      removes.length > 0 ? r.q.wal.remove(removes) : undefined,
    ])
    checkNewIds(m, ids, this.payloads.length, what)
    m.issue(ids, this.payloads)
    for (const id of acks) { sub.leases.delete(id); sub.acked.add(id) }
    for (const id of removes) m.removeRecord(id)
    await verify(m, r, what)
  }

  toString (): string {
    return `concurrently(push ${JSON.stringify(this.payloads)}, ack sub#${this.who} picks=${JSON.stringify(this.ackPicks)}, ` +
      `remove picks=${JSON.stringify(this.removePicks)})`
  }
}

/** Move the clock to 1 ms before, or exactly to, the moment the next lease or nack delay runs out. */
class AdvanceToDueCmd implements Cmd {
  constructor (readonly offset: 0 | -1) {}
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    let due = Infinity
    for (const s of m.subs.values()) for (const l of s.leases.values()) if (l.visibleAt > m.now) due = Math.min(due, l.visibleAt)
    const what = `${this.toString()} [${due === Infinity ? 'nothing due' : `t0+${due - T0}`}]`
    if (due !== Infinity && due + this.offset > m.now) {
      m.now = due + this.offset
      r.clock.t = m.now
    }
    await verify(m, r, what)
  }

  toString (): string { return this.offset === 0 ? 'advanceToDue()' : 'advanceToJustBeforeDue()' }
}

class ReopenCmd implements Cmd {
  check (): boolean { return true }
  async run (m: Model, r: Real): Promise<void> {
    await reopen(m, r)
    await verify(m, r, this.toString())
  }

  toString (): string { return 'closeAndReopen()' }
}

// ---- the end of a run: every subscriber gets exactly what it is owed -------------------------

async function drainAll (m: Model, r: Real, what: string): Promise<void> {
  // Every lease and nack delay runs out.
  m.now += LEASE_MS + MAX_NACK_DELAY_MS + 1
  r.clock.t = m.now
  for (const [name, sub] of m.subs) {
    const owed = m.owed(sub)
    const h = await r.handle(name)
    const got: number[] = []
    for (let round = 0; ; round++) {
      if (round > owed.length + 10) fail(`${what}: subscriber ${name} keeps getting records`, { owed, got })
      const predicted = m.predictNext(sub, 3)
      const batch = await h.next({ maxCount: 3 })
      checkBatch(m, batch, predicted, `${what}: drain ${name} round ${round}`)
      if (batch === undefined) break
      m.applyNext(sub, predicted)
      for (const rec of batch.records) {
        if (sub.acked.has(rec.id)) fail(`${what}: subscriber ${name} got ${rec.id} again after acking it`)
        got.push(rec.id)
      }
      await batch.ack()
      for (const rec of batch.records) { sub.leases.delete(rec.id); sub.acked.add(rec.id) }
    }
    expectEqual(got.filter(id => !m.records.get(id)!.removed).sort((a, b) => a - b), owed,
      `${what}: subscriber ${name} got exactly the records it had not acked`)
    expectEqual(new Set(got).size, got.length, `${what}: subscriber ${name} got a record twice in the drain`)
  }
  await verify(m, r, `${what}: after the drain`)
  // Acknowledged records are never delivered again, across a restart either.
  await reopen(m, r)
  for (const name of m.subs.keys()) {
    const batch = await (await r.handle(name)).next({ maxCount: 100 })
    checkBatch(m, batch, [], `${what}: after the drain and a reopen, ${name}`)
  }
  await verify(m, r, `${what}: after the drain and a reopen`)
}

// ---- arbitraries ----------------------------------------------------------------------------

const payload = fc.string({ maxLength: 12 })
const name = fc.constantFrom(...NAMES)
const who = fc.nat({ max: NAMES.length - 1 })
const picks = fc.array(fc.nat({ max: 63 }), { minLength: 1, maxLength: 6 })

const commands = [
  payload.map(p => new PushCmd(p)),
  payload.map(p => new PushCmd(p)),
  fc.array(payload, { minLength: 1, maxLength: 5 }).map(ps => new PushManyCmd(ps)),
  fc.array(payload, { minLength: 2, maxLength: 6 }).map(ps => new PushBurstCmd(ps)),
  fc.tuple(picks, fc.option(fc.constantFrom<Unknown>('removed', 'gone', 'future'), { freq: 4 })).map(([p, u]) => new RemoveCmd(p, u)),
  name.map(n => new SubscribeCmd(n)),
  name.map(n => new SubscribeCmd(n)),
  fc.tuple(who, fc.integer({ min: 1, max: 6 })).map(([n, c]) => new NextCmd(n, c)),
  fc.tuple(who, fc.integer({ min: 1, max: 6 })).map(([n, c]) => new NextCmd(n, c)),
  fc.tuple(who, picks, fc.constantFrom<AckExtra>('none', 'none', 'none', 'again', 'unknown')).map(([n, p, e]) => new AckCmd(n, p, e)),
  fc.tuple(who, picks, fc.constantFrom<AckExtra>('none', 'none', 'none', 'again', 'unknown')).map(([n, p, e]) => new AckCmd(n, p, e)),
  fc.tuple(who, picks, fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_NACK_DELAY_MS }))).map(([n, p, d]) => new NackCmd(n, p, d)),
  fc.tuple(who, picks, fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_NACK_DELAY_MS }))).map(([n, p, d]) => new NackCmd(n, p, d)),
  fc.tuple(fc.array(payload, { maxLength: 4 }), who, picks, fc.array(fc.nat({ max: 63 }), { maxLength: 3 }))
    .map(([ps, w, a, rm]) => new ConcurrentCmd(ps, w, a, rm)),
  fc.oneof(fc.constant(LEASE_MS), fc.constant(LEASE_MS + 1), fc.integer({ min: 1, max: 2 * LEASE_MS })).map(ms => new AdvanceCmd(ms, verify)),
  fc.constantFrom<0 | -1>(0, -1).map(o => new AdvanceToDueCmd(o)),
  fc.constant(null).map(() => new ReopenCmd()),
]

/** Undefined (the default) half of the time. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { freq: 2 }).map(v => v ?? undefined)

const config: fc.Arbitrary<Config> = fc.record({
  // Small segments make segment-level cleanup happen often.
  maxBatchCount: sometimes(fc.integer({ min: 1, max: 4 })),
  maxBatchBytes: sometimes(fc.integer({ min: 4, max: 32 })),
  flushWorkers: sometimes(fc.integer({ min: 1, max: 3 })),
  // No segment cache (reads, removals and cleanup go to LevelDB), or one that evicts all the time.
  segmentCacheBytes: sometimes(fc.oneof(fc.constant(0), fc.integer({ min: 16, max: 256 }))),
  // A clean close keeps unsynced writes too.
  durability: sometimes(fc.constantFrom<'sync' | 'none'>('none')),
})

// ---- the test -------------------------------------------------------------------------------

test('log and subscribers behave like the reference model (fast-check commands)', async t => {
  const root = await tmpDir(t, 'evaq-model-')
  t.timeout(SOAK ? 24 * 3_600_000 : 115_000)
  let runs = 0
  const sequences = fc.commands(commands, { maxCommands: MAX_COMMANDS, size: 'max', ...(REPLAY === undefined ? {} : { replayPath: REPLAY }) })
  const property = fc.asyncProperty(config, sequences, async (cfg, cmds) => {
    runs++
    await modelRun(root, dir => ({ model: new Model(), real: new Real(dir, cfg) }), cmds, {
      begin: async (m, r) => {
        const first = (await r.q.wal.stats()).nextId
        if (first < 1) fail('the first ID must be at least 1', { nextId: first })
      },
      end: (m, r) => drainAll(m, r, 'final drain'),
    })
  })
  const started = performance.now()
  const details = await fc.check(property, {
    numRuns: NUM_RUNS,
    ...(SEED === undefined ? {} : { seed: SEED }),
    ...(PATH === undefined ? {} : { path: PATH }),
    // Shrinking a failure must end before the test's timeout; the counterexample so far is reported.
    ...(SOAK ? {} : { interruptAfterTimeLimit: 100_000 }),
  })
  t.log(`${details.numRuns} run(s), ${runs} execution(s) with shrinking, in ${Math.round(performance.now() - started)} ms; ` +
    `seed ${details.seed}${details.interrupted ? ' (interrupted by the time limit)' : ''}`)
  if (details.failed) {
    const commandsVar = (process.env.EVAQ_MODEL_COMMANDS === undefined ? '' : ` EVAQ_MODEL_COMMANDS=${MAX_COMMANDS}`) +
      (REDELIVER_REMOVED ? ' EVAQ_MODEL_REDELIVER_REMOVED=1' : '')
    const report = fc.defaultReportMessage(details) ?? ''
    const replayPath = /replayPath="([^"]*)"/.exec(report)?.[1]
    const replayVar = replayPath === undefined ? '' : ` EVAQ_MODEL_REPLAY='${replayPath}'`
    const replay = `EVAQ_MODEL_SEED=${details.seed} EVAQ_MODEL_PATH=${details.counterexamplePath ?? ''}${replayVar}${commandsVar}` +
      ' npx ava test/facade/model.test.ts'
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : inspect(details.errorInstance)
    t.fail(`Model mismatch (seed ${details.seed}, path ${details.counterexamplePath ?? ''}). Replay with:\n  ${replay}\n\n${report}\n\nError: ${error}`)
  } else {
    t.pass()
  }
})
