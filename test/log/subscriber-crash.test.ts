import test from 'ava'
import { fileURLToPath } from 'node:url'
import { Evaq, type Batch, type Subscriber } from '../../src/index.js'
import { createSubscribers, SUBSCRIBE_OPTIONS } from '../fixtures/consumer.js'
import { checkPayload, digest } from '../fixtures/crash-writer.js'
import { runLines } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { prng, seedFor } from '../helpers/prng.js'
import { Problems } from '../helpers/problems.js'
import { readAll } from '../helpers/read-all.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/consumer.ts', import.meta.url))
const CYCLES = 20
const SUBS = ['a', 'b'] as const
type SubName = typeof SUBS[number]
/** A run that has not reached its kill threshold by then is hung. */
const CYCLE_WATCHDOG_MS = 30_000
const OPTIONS = { minFreeDiskBytes: 0, durability: 'sync', ackDurability: 'sync' } as const

type Line =
  | { kind: 'O', next: number }
  | { kind: 'S', sub: string, floor: number }
  | { kind: 'A', id: number, sha: string }
  | { kind: 'D', sub: string, id: number, count: number }
  | { kind: 'k' | 'K' | 'N', sub: string, id: number }

interface RunReport {
  lines: Line[]
  killed: boolean
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
}

/** Run the consumer on `dir` until it reported `threshold` resolved acks, then SIGKILL it. */
async function runAndKill (dir: string, tag: string, subs: readonly string[], seed: number, threshold: number): Promise<RunReport> {
  const report: RunReport = { lines: [], killed: false, code: null, signal: null, stderr: '' }
  let acks = 0
  const outcome = await runLines(FIXTURE, [dir, tag, subs.join(','), 'sync', String(seed)], {
    watchdogMs: CYCLE_WATCHDOG_MS,
    onLine: line => {
      const f = line.split('\t')
      const kind = f[0]
      if (kind === 'O') report.lines.push({ kind, next: Number(f[1]) })
      else if (kind === 'S') report.lines.push({ kind, sub: f[1]!, floor: Number(f[2]) })
      else if (kind === 'A') report.lines.push({ kind, id: Number(f[1]), sha: f[2]! })
      else if (kind === 'D') report.lines.push({ kind, sub: f[1]!, id: Number(f[2]), count: Number(f[3]) })
      else if (kind === 'k' || kind === 'K' || kind === 'N') {
        report.lines.push({ kind, sub: f[1]!, id: Number(f[2]) })
        if (kind === 'K') acks++
      } else throw new Error(`Unexpected line from the consumer: ${JSON.stringify(line)}`)
    },
    killWhen: () => acks >= threshold,
  })
  Object.assign(report, { killed: outcome.killed, code: outcome.code, signal: outcome.signal, stderr: outcome.stderr })
  if (outcome.hung) throw new Error(`The consumer reported only ${acks} of ${threshold} acks in ${CYCLE_WATCHDOG_MS} ms; stderr: ${report.stderr}`)
  return report
}

function shuffle<T> (items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = items[i]!
    items[i] = items[j]!
    items[j] = tmp
  }
  return items
}

/*
 * The model, exact between cycles:
 * - `pushed`: every record that exists or existed (acknowledged pushes, plus the unacknowledged
 *   pushes of a killed run that turned out to be committed), with its payload digest;
 * - `acked[s]`: the records subscriber s acknowledged for sure (a `K` line, or an ack by the check
 *   phase). During the check of a run, `maybe[s]` holds the acks that were in flight at the kill
 *   (`k` without `K`); the drain resolves them: delivered again means not acknowledged.
 *
 * How the check phase and the next cycle interact: the check phase first drains every subscriber
 * completely WITHOUT acknowledging (so what is verified is exactly what the killed run left
 * behind), then acknowledges a random share per subscriber (all, none, or a random out-of-order
 * subset, through batch.ack(), sub.ack(id) and sub.ack(ids)), closes, reopens, and checks what that
 * did: the acknowledged floor survived, nothing a subscriber still holds was cleaned up, and
 * everything went once both acknowledged everything. So the next cycle starts from a mixed state
 * (acknowledged ranges above the floor, one subscriber far behind the other) instead of a clean
 * slate, which exercises more of resume and cleanup than draining everything every time; and the
 * test's own acks are checked again by the next runs and drains (they must never be delivered).
 * The last cycle acknowledges everything, so the run ends with an empty log.
 */
test('SIGKILL while consuming: acknowledged records are never redelivered, unacknowledged ones never lost or cleaned up, ' +
  'fresh deliveries in ID order', async t => {
  const seed = seedFor(t, 'EVAQ_SUB_CRASH_SEED')
  // The plan of each cycle comes from its own generator, so that it replays exactly even though
  // the check phase's choices depend on what the killed runs left behind.
  const plan = prng(seed)
  const random = prng(seed ^ 0x5bd1e995)
  const dir = await tmpDir(t, 'evaq-sub-crash-')

  const pushed = new Map<number, string>()
  const acked: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
  let maxId = 0

  // Both subscribers exist before the first push, so each must see every record.
  await createSubscribers(dir, OPTIONS, SUBS)

  const problems = new Problems()
  const problem = problems.add
  const stop = (): boolean => {
    if (problems.found.length === 0) return false
    t.fail(problems.summary())
    return true
  }
  let totalAcks = 0
  let totalDeliveries = 0

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const tag = `c${cycle}`
    const r = plan()
    const runSubs: SubName[] = r < 0.6 ? ['a', 'b'] : r < 0.8 ? ['a'] : ['b']
    // Mostly early kills, sometimes late ones.
    const threshold = 1 + Math.floor(plan() * plan() * 3000)
    const childSeed = Math.floor(plan() * 2 ** 31)
    const last = cycle === CYCLES - 1
    problems.where = `cycle ${cycle} (seed ${seed}, subs ${runSubs.join(',')}, kill after ${threshold} acks)`

    const run = await runAndKill(dir, tag, runSubs, childSeed, threshold)
    t.true(run.killed && run.signal === 'SIGKILL', `${problems.where}: the consumer exited by itself (code ${run.code}): ${run.stderr}`)
    if (run.signal !== 'SIGKILL') return

    // ---- fold the run's report into the model, checking it on the way ----------------------
    const maxBefore = maxId
    const ackedBefore: Record<SubName, Set<number>> = { a: new Set(acked.a), b: new Set(acked.b) }
    const maybe: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
    /** Per subscriber: the fresh deliveries (deliveryCount 1) of this run, in order. */
    const freshList: Record<SubName, number[]> = { a: [], b: [] }
    /** Per subscriber and ID: the last deliveryCount, and the IDs nacked since their last delivery. */
    const lastCount: Record<SubName, Map<number, number>> = { a: new Map(), b: new Map() }
    const nacked: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
    const ackStarted: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
    /** IDs a delivery proved committed (some may lack an `A` line). */
    const deliveredIds = new Set<number>()
    let opened = false
    for (const line of run.lines) {
      if (line.kind === 'O') {
        opened = true
        if (line.next <= maxId) problem(`the consumer opened with next ID ${line.next}, not above ${maxId}`)
        continue
      }
      if (line.kind === 'A') {
        if (line.id <= maxBefore || pushed.has(line.id)) { problem(`ID ${line.id} was issued again`); continue }
        pushed.set(line.id, line.sha)
        if (line.id > maxId) maxId = line.id
        continue
      }
      const sub = line.sub as SubName
      if (!runSubs.includes(sub)) { problem(`a line for subscriber ${line.sub}, which this run does not consume: ${JSON.stringify(line)}`); continue }
      if (line.kind === 'S') {
        // Every ID below the resumed floor must have been acknowledged by this subscriber.
        for (const id of pushed.keys()) {
          if (id < line.floor && !acked[sub].has(id)) { problem(`${sub} resumed at floor ${line.floor}, above ID ${id} it never acknowledged`); break }
        }
        continue
      }
      if (line.kind === 'D') {
        totalDeliveries++
        deliveredIds.add(line.id)
        if (acked[sub].has(line.id)) problem(`(a) ${sub} was delivered ID ${line.id} again after its ack was reported (deliveryCount ${line.count})`)
        if (ackStarted[sub].has(line.id)) problem(`${sub} was delivered ID ${line.id} after it started acknowledging it`)
        if (line.id <= maxBefore && !pushed.has(line.id)) problem(`${sub} was delivered ID ${line.id}, which no run pushed (or which vanished before)`)
        const previous = lastCount[sub].get(line.id)
        if (line.count === 1) {
          const list = freshList[sub]
          if (previous !== undefined) problem(`${sub} was delivered ID ${line.id} fresh (deliveryCount 1) twice in one run`)
          else if (list.length > 0 && line.id <= list[list.length - 1]!) problem(`(c) ${sub} was delivered ID ${line.id} fresh after ${list[list.length - 1]}`)
          list.push(line.id)
        } else {
          if (previous === undefined || line.count !== previous + 1) {
            problem(`${sub} was delivered ID ${line.id} with deliveryCount ${line.count} after ${String(previous)}`)
          } else if (!nacked[sub].has(line.id)) {
            problem(`${sub} was delivered ID ${line.id} again (deliveryCount ${line.count}) without a nack or an expired lease`)
          }
        }
        nacked[sub].delete(line.id)
        lastCount[sub].set(line.id, line.count)
        continue
      }
      if (!lastCount[sub].has(line.id)) { problem(`${line.kind} line for ID ${line.id} that ${sub} was not delivered in this run`); continue }
      if (line.kind === 'N') {
        if (ackStarted[sub].has(line.id)) problem(`${sub} nacked ID ${line.id} after acknowledging it`)
        nacked[sub].add(line.id)
      } else if (line.kind === 'k') {
        if (ackStarted[sub].has(line.id)) problem(`${sub} started acknowledging ID ${line.id} twice`)
        ackStarted[sub].add(line.id)
        maybe[sub].add(line.id)
      } else {
        if (!maybe[sub].has(line.id)) problem(`${sub} reported an ack of ID ${line.id} it did not start`)
        maybe[sub].delete(line.id)
        acked[sub].add(line.id)
        totalAcks++
      }
    }
    if (!opened) problem('the consumer never reported that it opened the queue')
    if (stop()) return

    let q = await Evaq.open(dir, OPTIONS)
    try {
      // ---- what is stored -------------------------------------------------------------------
      const records = await readAll(q.wal)
      const present = new Set<number>()
      let previous = 0
      for (const rec of records) {
        if (rec.id <= previous) problem(`read ID ${rec.id} after ${previous}`)
        previous = rec.id
        present.add(rec.id)
        const sha = pushed.get(rec.id)
        if (sha !== undefined) {
          if (digest(rec.payload) !== sha) problem(`ID ${rec.id} has a different payload`)
          continue
        }
        // Not acknowledged: a push of the killed run that committed before its ack was written.
        if (checkPayload(rec.payload) !== tag || rec.id <= maxBefore) {
          problem(`ID ${rec.id} was never acknowledged and is not a whole payload of this run`)
          continue
        }
        pushed.set(rec.id, digest(rec.payload))
        if (rec.id > maxId) maxId = rec.id
      }
      const stats = await q.wal.stats()
      if (stats.count !== records.length) problem(`stats().count ${stats.count}, but ${records.length} records were read`)
      if (stats.nextId <= maxId) problem(`stats().nextId ${stats.nextId} is not above ${maxId}`)
      const dlq = await q.dlq.stats()
      if (dlq.count !== 0) problem(`${dlq.count} record(s) in the DLQ; nothing may be dead-lettered`)

      // (d) A record some subscriber has not (even tentatively) acknowledged is still there.
      for (const id of pushed.keys()) {
        const holder = SUBS.find(s => !acked[s].has(id) && !maybe[s].has(id))
        if (holder !== undefined && !present.has(id)) problem(`(d) ID ${id} is gone, but ${holder} never acknowledged it`)
      }
      // A delivery proves a commit: such a record may only be gone if every subscriber acked it.
      for (const id of deliveredIds) {
        if (pushed.has(id)) continue
        const holder = SUBS.find(s => !acked[s].has(id) && !maybe[s].has(id))
        if (holder !== undefined) problem(`(d) ID ${id} was delivered in the run and is gone, but ${holder} never acknowledged it`)
      }
      // (b, in the run) Fresh deliveries skipped nothing: every record below the last fresh
      // delivery that the subscriber had not acknowledged before the run was delivered.
      for (const s of runSubs) {
        const list = freshList[s]
        if (list.length === 0) continue
        const top = list[list.length - 1]!
        const seen = new Set(list)
        for (const id of pushed.keys()) {
          if (id < top && !ackedBefore[s].has(id) && !seen.has(id)) { problem(`(b) ${s} skipped ID ${id} in the run (it was delivered ${top})`); break }
        }
      }
      if (stop()) return

      // ---- drain every subscriber, without acknowledging --------------------------------------
      const drained: Record<SubName, { sub: Subscriber, batches: Batch[], ids: number[] }> = {} as never
      for (const s of SUBS) {
        const sub = await q.wal.subscribe(s, SUBSCRIBE_OPTIONS)
        let lowestHeld = Infinity
        for (const id of pushed.keys()) if (!acked[s].has(id) && !maybe[s].has(id) && id < lowestHeld) lowestHeld = id
        if (sub.floor > Math.min(lowestHeld, stats.nextId)) problem(`${s} reopened with floor ${sub.floor}, above ID ${lowestHeld} it never acknowledged`)
        const batches: Batch[] = []
        const ids: number[] = []
        for (;;) {
          const batch = await sub.next({ maxCount: 1 + Math.floor(random() * 400), waitMs: 0 })
          if (batch === undefined) break
          batches.push(batch)
          for (const rec of batch.records) {
            if (rec.deliveryCount !== 1) problem(`${s} got ID ${rec.id} with deliveryCount ${rec.deliveryCount} right after open`)
            if (ids.length > 0 && rec.id <= ids[ids.length - 1]!) problem(`(c) ${s} got ID ${rec.id} after ${ids[ids.length - 1]}`)
            if (acked[s].has(rec.id)) problem(`(a) ${s} got ID ${rec.id} again, though its ack was reported`)
            const sha = pushed.get(rec.id)
            if (sha === undefined) problem(`${s} got ID ${rec.id}, which read() did not return`)
            else if (digest(rec.payload) !== sha) problem(`(b) ${s} got ID ${rec.id} with a different payload`)
            ids.push(rec.id)
          }
        }
        const got = new Set(ids)
        for (const id of pushed.keys()) {
          if (!acked[s].has(id) && !maybe[s].has(id) && !got.has(id)) problem(`(b) ${s} was not delivered ID ${id}, which it never acknowledged`)
        }
        // The acks in flight at the kill either happened or not; from now on the model is exact.
        for (const id of maybe[s]) if (!got.has(id)) acked[s].add(id)
        maybe[s].clear()
        drained[s] = { sub, batches, ids }
      }
      if (stop()) return

      // ---- acknowledge a random share, then check what that did after a reopen ---------------
      const expectedFloor: Partial<Record<SubName, number>> = {}
      const floorAtMost: Partial<Record<SubName, number>> = {}
      for (const s of SUBS) {
        const { sub, batches, ids } = drained[s]
        const how = last ? 'all' : ['all', 'all', 'some', 'some', 'none'][Math.floor(plan() * 5)]!
        floorAtMost[s] = ids[0] ?? stats.nextId
        if (how === 'none' || ids.length === 0) continue
        const share = how === 'all' ? 1 : random()
        const calls: Array<Promise<void>> = []
        const acking: number[] = []
        // Some whole batches through batch.ack()...
        const loose: number[] = []
        for (const b of batches) {
          if (random() < share * 0.3) {
            calls.push(b.ack())
            for (const r of b.records) acking.push(r.id)
          } else for (const r of b.records) if (random() < share) loose.push(r.id)
        }
        // ...the rest out of order, as single IDs and as lists, several calls in flight.
        shuffle(loose, random)
        for (let i = 0; i < loose.length;) {
          const n = random() < 0.3 ? 1 : 1 + Math.floor(random() * 200)
          const part = loose.slice(i, i + n)
          i += n
          calls.push(sub.ack(part.length === 1 ? part[0]! : part))
          for (const id of part) acking.push(id)
        }
        if (calls.length === 0) continue
        await Promise.all(calls)
        for (const id of acking) acked[s].add(id)
        totalAcks += acking.length
        let floor = stats.nextId
        for (const id of ids) if (!acked[s].has(id)) { floor = id; break }
        if (sub.floor !== floor) problem(`${s}: floor ${sub.floor} after the check phase's acks, expected ${floor}`)
        expectedFloor[s] = floor
      }
      if (stop()) return
      await q.close()

      q = await Evaq.open(dir, OPTIONS)
      const after = await readAll(q.wal)
      const afterIds = new Set(after.map(rec => rec.id))
      for (const id of pushed.keys()) {
        const holder = SUBS.find(s => !acked[s].has(id))
        if (holder !== undefined && !afterIds.has(id)) problem(`(d) after the check phase's acks, ID ${id} is gone, but ${holder} never acknowledged it`)
      }
      for (const info of q.wal.subscribers()) {
        const floor = expectedFloor[info.name as SubName]
        if (floor !== undefined && info.ackFloor !== floor) problem(`${info.name}: floor ${info.ackFloor} after reopen, expected ${floor}`)
        const most = floorAtMost[info.name as SubName]!
        if (floor === undefined && info.ackFloor > most) problem(`${info.name}: floor ${info.ackFloor} after reopen, above ID ${most} it never acknowledged`)
      }
      const everyoneDone = [...pushed.keys()].every(id => SUBS.every(s => acked[s].has(id)))
      const count = (await q.wal.stats()).count
      if (count !== after.length) problem(`stats().count ${count} after the acks, but ${after.length} records were read`)
      if (everyoneDone && count !== 0) problem(`both subscribers acknowledged everything, but ${count} record(s) are left`)
      if (last && !everyoneDone) problem('the last cycle did not acknowledge everything')
    } finally {
      await q.close()
    }
    if (stop()) return
  }
  t.log(`${pushed.size} records, ${totalDeliveries} deliveries and ${totalAcks} acks over ${CYCLES} kills`)
  t.pass()
})
