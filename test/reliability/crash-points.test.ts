/**
 * Part 1 of the reliability battery: process crashes, at random moments and at the named crash
 * points inside evaq (src/crash-points.ts).
 *
 * One directory lives through every cycle. Each cycle starts one child process on it, either
 * test/fixtures/crash-writer.ts (64 callers pushing with durability 'sync', 'none' or
 * { intervalMs }, and removing some of their own records) or test/fixtures/consumer.ts (pushers,
 * and subscribers `a`/`b` consuming, acking and nacking with ackDurability 'sync' or
 * { intervalMs }), and SIGKILLs it: either from here at a random moment (sometimes while it is
 * still opening), or the child kills itself at the Nth pass through a named crash point
 * (EVAQ_CRASH_POINT=name:N). Both fixtures print a line for each operation once it resolved, so
 * what this process has read when the child dies is exactly what was acknowledged.
 *
 * After each kill this process reopens the directory and checks it against a model:
 * - the database opens, cleanly (no corruption reported by LevelDB's recovery);
 * - no acknowledged push is lost or changed (every durability mode: this is a process crash,
 *   not an OS crash), unless an acknowledged removal took it or every subscriber acknowledged it;
 *   a record present but never acknowledged must be a whole payload of the killed run;
 * - IDs are never reused: every ID a run issues is above every ID seen before, and so is nextId;
 * - subscribers are at-least-once: draining each subscriber (without acking) delivers every
 *   present record it has not acknowledged, and nothing it acknowledged durably (ackDurability
 *   'sync', or acks by this process) — acks in flight at the kill, and acks under
 *   { intervalMs }, may go either way, and the drain settles which;
 * - a removeWal call is atomic: every call in flight at the kill (the writer reports each call's
 *   IDs as it starts and as it resolves) happened entirely or not at all;
 * - at the named points, the kill landed where it says: after a segment write, some
 *   unacknowledged pushes of the run are stored; before a removal's write, none of the removals in
 *   flight happened; after it, some did; after a progress write (ackDurability 'sync'), some acks
 *   in flight at the kill were persisted; in a segment-file append (frames written, or synced,
 *   and LevelDB not yet told where they are), the open indexed some unacknowledged pushes of the
 *   run again from the files. At segment-file:prepared (a file made ready, not yet used) and
 *   segment-file:release (a file whose records are all gone, about to be deleted or kept as a
 *   spare; runs use 64 KiB files so that this happens every cycle) the general checks hold:
 *   nothing acknowledged lost, nothing removed back, IDs not reused.
 * Then this process acknowledges a random share of what it drained (all, some or none, per
 * subscriber), so the next run starts from a mixed state and cleanup has work to do.
 *
 * Short form: 50 cycles (`EVAQ_CRASH_CYCLES`), every other one at a named point, every point
 * covered at least twice. Replay a run with `EVAQ_CRASH_POINTS_SEED`.
 */
import test from 'ava'
import { cp, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import { createSubscribers, SUBSCRIBE_OPTIONS } from '../fixtures/consumer.js'
import { checkPayload, digest } from '../fixtures/crash-writer.js'
import { runFixture, runLines } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { cycles, report } from './report.js'
import { prng, seedFor } from '../helpers/prng.js'
import { Problems } from '../helpers/problems.js'
import { readAll } from '../helpers/read-all.js'

const WRITER = fileURLToPath(new URL('../fixtures/crash-writer.ts', import.meta.url))
const CONSUMER = fileURLToPath(new URL('../fixtures/consumer.ts', import.meta.url))

const CYCLES = cycles('EVAQ_CRASH_CYCLES', 50)
const POINTS = [
  'segment-write:before', 'segment-write:after',
  'progress-write:before', 'progress-write:after',
  'cleanup:before', 'cleanup:after',
  'removal:before', 'removal:after',
  'frame-append:written', 'frame-append:synced',
  'segment-file:prepared', 'segment-file:release',
] as const
type Point = typeof POINTS[number]
/**
 * Largest N drawn for `point:N` (N is 1 + floor(u³ · max), mostly small; a third of the segment
 * and progress writes use N = 1, where the check can be exact): pass counts the fixtures reach
 * well within FALLBACK_MS and MAX_PUSHES.
 */
const MAX_NTH: Record<Point, number> = {
  'segment-write:before': 400,
  'segment-write:after': 400,
  'progress-write:before': 200,
  'progress-write:after': 200,
  'cleanup:before': 10,
  'cleanup:after': 10,
  // The writer's removals are merged into groups of ~80: N = 12 is ~6,000 pushes in.
  'removal:before': 12,
  'removal:after': 12,
  // Each flush's append passes both (group commits: fewer passes than pushes).
  'frame-append:written': 150,
  'frame-append:synced': 150,
  // With 64 KiB segment files (FILE_POINT_OPTIONS) a file holds ~90 records; the point is passed
  // only by new files, not by released files taken back from the spares (once acks release some).
  'segment-file:prepared': 4,
  // Files are released once both subscribers acknowledged past them: a few per cycle.
  'segment-file:release': 3,
}
/**
 * Options of the runs killed at a segment-file point: the smallest segment files, so that files
 * are prepared and released many times per cycle.
 */
const FILE_POINT_OPTIONS = { segmentFileBytes: 64 * 1024 }
/** A crash-point run that has not killed itself this long after it opened is killed from here. */
const FALLBACK_MS = 4000
/** The segment-file points need files filled (and, for release, acknowledged past): more time. */
const FILE_FALLBACK_MS = 3 * FALLBACK_MS
/** A crash-point run that pushed this many records without reaching its point is killed from here. */
const MAX_PUSHES = 8000
/** A run that has not even opened by then is hung. */
const WATCHDOG_MS = 30_000
const SUBS = ['a', 'b'] as const
type SubName = typeof SUBS[number]
/** How this process opens the directory to check it. */
const CHECK_OPTIONS = { minFreeDiskBytes: 0, durability: 'sync', ackDurability: 'sync' } as const

interface Plan {
  fixture: 'writer' | 'consumer'
  args: string[]
  /** Push durability ('sync', 'none', 'interval:N'). */
  durability: string
  /** Ack durability, for the consumer ('sync', 'interval:N'). */
  ackDurability: string
  /** Subscribers the consumer consumes as. */
  subs: SubName[]
  point?: Point
  nth?: number
  /** Random kill: ms after the spawn (may land while the child still opens)... */
  killAtMs?: number
  /** ...or ms after the child reported that it opened. */
  killAfterOpenMs?: number
  /** Kill (from here) once the child acknowledged this many pushes: bounds the data per cycle. */
  maxPushes: number
}

type Line =
  | { kind: 'O', next: number }
  | { kind: 'S', sub: string, floor: number }
  | { kind: 'A', id: number, sha: string }
  | { kind: 'r', ids: number[] }
  | { kind: 'R', ids: number[] }
  | { kind: 'D', sub: string, id: number, count: number }
  | { kind: 'k' | 'K' | 'N', sub: string, id: number }

interface Run {
  lines: Line[]
  /** Killed from here (a random kill, or the fallback of a crash point that was not reached). */
  killedByParent: boolean
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
  hung: boolean
}

function parseLine (line: string): Line {
  const f = line.split('\t')
  switch (f[0]) {
    case 'O': return { kind: 'O', next: Number(f[1]) }
    case 'S': return { kind: 'S', sub: f[1]!, floor: Number(f[2]) }
    case 'A': return { kind: 'A', id: Number(f[1]), sha: f[2]! }
    case 'r': return { kind: 'r', ids: f[1]!.split(',').map(Number) }
    case 'R': return { kind: 'R', ids: f[1]!.split(',').map(Number) }
    case 'D': return { kind: 'D', sub: f[1]!, id: Number(f[2]), count: Number(f[3]) }
    case 'k': case 'K': case 'N': return { kind: f[0], sub: f[1]!, id: Number(f[2]) }
    default: throw new Error(`Unexpected line from the child: ${JSON.stringify(line)}`)
  }
}

async function runChild (dir: string, plan: Plan): Promise<Run> {
  const lines: Line[] = []
  let opened = false
  let pushes = 0
  const outcome = await runLines(plan.fixture === 'writer' ? WRITER : CONSUMER, [dir, ...plan.args], {
    point: plan.point === undefined ? undefined : `${plan.point}:${plan.nth}`,
    watchdogMs: WATCHDOG_MS,
    onStart: child => { if (plan.killAtMs !== undefined) child.after(plan.killAtMs, child.kill) },
    onLine: (text, child) => {
      const line = parseLine(text)
      lines.push(line)
      if (line.kind === 'A' && ++pushes >= plan.maxPushes) child.kill()
      if (line.kind === 'O' && !opened) {
        opened = true
        if (plan.killAfterOpenMs !== undefined) child.after(plan.killAfterOpenMs, child.kill)
        if (plan.point !== undefined) child.after(plan.point.startsWith('segment-file') ? FILE_FALLBACK_MS : FALLBACK_MS, child.kill)
      }
    },
  })
  return { lines, killedByParent: outcome.killed, code: outcome.code, signal: outcome.signal, stderr: outcome.stderr, hung: outcome.hung }
}

const DURABILITIES = ['sync', 'sync', 'none', 'interval:1', 'interval:20', 'interval:200'] as const
const ACK_DURABILITIES = ['sync', 'sync', 'interval:5', 'interval:100'] as const
const OPTION_SETS: object[] = [{}, { flushWorkers: 1 }, { flushWorkers: 4 }, { maxBatchCount: 7, flushWorkers: 3 }, { maxBatchBytes: 4096 }, FILE_POINT_OPTIONS]

/** The plan of cycle `cycle`: odd cycles kill at a named point (round robin, so the short run covers each at least twice). */
function planCycle (cycle: number, random: () => number): Plan {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  const tag = `c${cycle}`
  let extra = pick(OPTION_SETS)
  const childSeed = String(Math.floor(random() * 2 ** 31))
  let point: Point | undefined
  let fixture: 'writer' | 'consumer'
  if (cycle % 2 === 1) {
    point = POINTS[((cycle - 1) / 2) % POINTS.length]!
    // Removals only happen in the writer; progress writes, cleanup and the release of segment
    // files (the floor passes them once both subscribers acknowledged) only with subscribers.
    fixture = point.startsWith('removal')
      ? 'writer'
      : point.startsWith('segment-write') || point.startsWith('frame-append') || point === 'segment-file:prepared'
        ? pick(['writer', 'consumer'] as const)
        : 'consumer'
    if (point.startsWith('segment-file')) extra = { ...extra, ...FILE_POINT_OPTIONS }
  } else {
    fixture = random() < 0.5 ? 'writer' : 'consumer'
  }
  const options = JSON.stringify({ minFreeDiskBytes: 0, ...extra })
  const durability = fixture === 'writer' ? pick(DURABILITIES) : 'sync'
  // A release needs acks written: under interval ack durability that takes too long.
  const ackDurability = fixture === 'consumer' && point !== 'segment-file:release' ? pick(ACK_DURABILITIES) : 'sync'
  const r = random()
  // Cleanup needs both subscribers to move their floors.
  const bothSubs = point?.startsWith('cleanup') === true || point === 'segment-file:release'
  const subs: SubName[] = bothSubs || r < 0.6 ? ['a', 'b'] : r < 0.8 ? ['a'] : ['b']
  const args = fixture === 'writer'
    ? [durability, tag, options]
    : [tag, subs.join(','), ackDurability, childSeed, options]
  const plan: Plan = { fixture, args, durability, ackDurability, subs, maxPushes: MAX_PUSHES }
  if (point !== undefined) {
    plan.point = point
    const u = random()
    // Under interval ack durability progress is written once per interval: fewer passes.
    const max = point.startsWith('progress') && ackDurability !== 'sync' ? 10 : MAX_NTH[point]
    const exact = point.startsWith('segment-write') || point.startsWith('frame-append') || point.startsWith('progress')
    plan.nth = exact && random() < 1 / 3 ? 1 : 1 + Math.floor(u * u * u * max)
    return plan
  }
  // A random kill: at a random moment, or once a random number of pushes was acknowledged.
  plan.maxPushes = 1 + Math.floor(random() * random() * 4000)
  if (random() < 0.15) {
    // Anywhere from start-up to the first moments after open: kills during Evaq.open too.
    plan.killAtMs = Math.floor(random() * 900)
  } else {
    plan.killAfterOpenMs = Math.floor(random() * random() * 800)
  }
  return plan
}

test('SIGKILL at random moments and at every named crash point: nothing acknowledged lost, IDs never reused, ' +
  'subscribers at-least-once, the database always opens', async t => {
  t.timeout(Math.max(120_000, CYCLES * 10_000))
  const seed = seedFor(t, 'EVAQ_CRASH_POINTS_SEED')
  t.log(`${CYCLES} cycles`)
  const plans = prng(seed)
  const random = prng(seed ^ 0x5bd1e995)
  const dir = await tmpDir(t, 'evaq-crash-points-')

  /** Exactly the records present after the last check, with their payload digests. */
  let live = new Map<number, string>()
  /** Per subscriber: the live records it acknowledged durably (they must never be delivered again). */
  const acked: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
  let maxId = 0

  // Both subscribers exist before the first push, so each must see every record.
  await createSubscribers(dir, CHECK_OPTIONS, SUBS)

  const problems = new Problems()
  const problem = problems.add
  let lost = 0
  const totals = { acknowledgedPushes: 0, checkedPresent: 0, removals: 0, removalGroups: 0, subscriberAcks: 0, deliveries: 0, randomKills: 0, earlyKills: 0 }
  const pointKills: Record<Point, number> = Object.fromEntries(POINTS.map(p => [p, 0])) as Record<Point, number>
  const pointFallbacks: Record<Point, number> = Object.fromEntries(POINTS.map(p => [p, 0])) as Record<Point, number>

  const finish = async (): Promise<void> => {
    const note = `kills at named points: ${POINTS.map(p => `${p} ${pointKills[p]}`).join(', ')}; ` +
      `${totals.randomKills} random kills (${totals.earlyKills} before the child had opened); ` +
      `${totals.removals} acknowledged removals, ${totals.removalGroups} removal calls in flight at a kill checked all-or-nothing, ` +
      `${totals.subscriberAcks} acknowledged subscriber acks, ${totals.deliveries} deliveries checked` +
      (problems.found.length > 0 ? `; FAILED: ${problems.found[0]}` : '')
    t.log(note)
    await report({
      part: 'crash-loop',
      failure: 'Process crash (SIGKILL) at random moments and at named points inside evaq',
      guarantee: 'No acknowledged push lost (every durability mode), IDs never reused, subscribers at-least-once ' +
        "(nothing acked with ackDurability 'sync' redelivered, nothing unacked missing), every in-flight removeWal call all or nothing, " +
        'the database always opens',
      test: 'test/reliability/crash-points.test.ts',
      cycles: CYCLES,
      acknowledged: totals.acknowledgedPushes,
      lost,
      note,
    })
  }
  /** The last child run, kept with the directory for diagnosis when a cycle fails. */
  let lastRun: { cycle: number, plan: Plan, run: Run } | undefined
  const stop = async (): Promise<boolean> => {
    if (problems.found.length === 0) return false
    if (lastRun !== undefined) {
      // test/artifacts/ is not committed: the directory as the check left it, the child's lines
      // and the problems, to replay the cycle by hand.
      const keep = fileURLToPath(new URL(`../artifacts/crash-points-${seed}-${lastRun.cycle}/`, import.meta.url))
      await mkdir(keep, { recursive: true })
      await cp(dir, join(keep, 'data'), { recursive: true }).catch(() => {})
      const saved = { where: problems.where, problems: problems.found, plan: lastRun.plan, run: lastRun.run }
      await writeFile(join(keep, 'run.json'), JSON.stringify(saved, null, 1))
      t.log(`kept the failing cycle's directory and the child's lines in ${keep}`)
    }
    await finish()
    t.fail(problems.summary())
    return true
  }

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const plan = planCycle(cycle, plans)
    const tag = `c${cycle}`
    const ackSync = plan.fixture === 'consumer' && plan.ackDurability === 'sync'
    problems.where = `cycle ${cycle} (seed ${seed}, ${plan.fixture} ${plan.args.slice(0, -1).join(' ')}` +
      (plan.point !== undefined
        ? `, EVAQ_CRASH_POINT=${plan.point}:${plan.nth}`
        : plan.killAtMs !== undefined ? `, kill ${plan.killAtMs} ms after spawn` : `, kill ${plan.killAfterOpenMs} ms after open`) + ')'

    const run = await runChild(dir, plan)
    lastRun = { cycle, plan, run }
    if (run.hung) { problem(`the child did not open within ${WATCHDOG_MS} ms; stderr: ${run.stderr}`); await stop(); return }
    if (run.signal !== 'SIGKILL') { problem(`the child exited by itself (code ${run.code}, signal ${run.signal}): ${run.stderr}`); await stop(); return }
    const atPoint = plan.point !== undefined && !run.killedByParent ? plan.point : undefined
    if (atPoint !== undefined) pointKills[atPoint]++
    else {
      totals.randomKills++
      if (plan.point !== undefined) {
        pointFallbacks[plan.point]++
        t.log(`${problems.where}: the point was not reached (${run.lines.filter(l => l.kind === 'A').length} pushes acknowledged); killed from here`)
      }
      if (!run.lines.some(l => l.kind === 'O')) totals.earlyKills++
    }

    // ---- fold the run's report into the model, checking it on the way ------------------------
    const maxBefore = maxId
    /** Acknowledged pushes of this run. */
    const pushed = new Map<number, string>()
    const removing = new Set<number>()
    const removed = new Set<number>()
    /** removeWal calls in flight at the kill (started, not resolved): each is all or nothing. */
    const groups = new Map<string, number[]>()
    /** Per subscriber: acks started in the run (`k`), and those that resolved (`K`). */
    const ackStarted: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
    const ackDone: Record<SubName, Set<number>> = { a: new Set(), b: new Set() }
    /** IDs delivered in the run: a delivery proves a commit, even without an `A` line. */
    const delivered = new Set<number>()
    for (const line of run.lines) {
      if (line.kind === 'O') {
        if (line.next <= maxId) problem(`the child opened with next ID ${line.next}, not above ${maxId}`)
      } else if (line.kind === 'A') {
        if (line.id <= maxBefore || pushed.has(line.id)) { problem(`ID ${line.id} was issued again`); continue }
        pushed.set(line.id, line.sha)
        if (line.id > maxId) maxId = line.id
      } else if (line.kind === 'r') {
        for (const id of line.ids) {
          if (!pushed.has(id)) problem(`the writer removed ID ${id}, which it did not push`)
          removing.add(id)
        }
        groups.set(line.ids.join(','), line.ids)
      } else if (line.kind === 'R') {
        if (!groups.delete(line.ids.join(','))) problem(`the writer reported the removal of ${line.ids.join(',')}, which it did not start`)
        for (const id of line.ids) {
          removing.delete(id)
          removed.add(id)
        }
      } else {
        const sub = line.sub as SubName
        if (!plan.subs.includes(sub) || plan.fixture !== 'consumer') {
          problem(`a line for subscriber ${line.sub}, which this run does not consume: ${JSON.stringify(line)}`)
          continue
        }
        if (line.kind === 'S') {
          // Every ID below the resumed floor must have been acknowledged by this subscriber.
          for (const id of live.keys()) {
            if (id < line.floor && !acked[sub].has(id)) { problem(`${sub} resumed at floor ${line.floor}, above ID ${id} it never acknowledged`); break }
          }
        } else if (line.kind === 'D') {
          totals.deliveries++
          if (acked[sub].has(line.id)) problem(`${sub} was delivered ID ${line.id} (deliveryCount ${line.count}), which it had acknowledged durably`)
          if (line.id <= maxBefore && !live.has(line.id)) problem(`${sub} was delivered ID ${line.id}, which was gone before the run`)
          delivered.add(line.id)
        } else if (line.kind === 'k') {
          ackStarted[sub].add(line.id)
        } else if (line.kind === 'K') {
          ackDone[sub].add(line.id)
        }
      }
    }
    totals.acknowledgedPushes += pushed.size
    totals.removals += removed.size
    if (ackSync) totals.subscriberAcks += ackDone.a.size + ackDone.b.size
    if (await stop()) return

    // ---- reopen: what is stored ----------------------------------------------------------------
    let q: Evaq
    try {
      q = await Evaq.open(dir, CHECK_OPTIONS)
    } catch (err) {
      problem(`the database does not open: ${String((err as { code?: unknown }).code)} ${String((err as Error).stack ?? err)}`)
      await stop()
      return
    }
    try {
      if (q.status !== 'open') problem(`status ${q.status} after open`)
      if (q.openReport.corruption.length > 0) problem(`LevelDB reported corruption while recovering: ${q.openReport.corruption.join(' | ')}`)
      const records = await readAll(q.wal)
      const present = new Map<number, string>()
      /** Present records of this run that were never acknowledged (committed before the kill). */
      const unacknowledged: number[] = []
      let previous = 0
      for (const rec of records) {
        if (rec.id <= previous) problem(`read ID ${rec.id} after ${previous}`)
        previous = rec.id
        const sha = digest(rec.payload)
        present.set(rec.id, sha)
        const expected = live.get(rec.id) ?? pushed.get(rec.id)
        if (expected !== undefined) {
          if (sha !== expected) problem(`ID ${rec.id} has a different payload: ${JSON.stringify(rec.payload.subarray(0, 40).toString('latin1'))}`)
          if (removed.has(rec.id)) problem(`ID ${rec.id} is present, but its removal was acknowledged`)
          continue
        }
        if (rec.id <= maxBefore) { problem(`ID ${rec.id} is present but was gone before the run (or never issued)`); continue }
        if (checkPayload(rec.payload) !== tag) { problem(`ID ${rec.id} was never acknowledged and is not a whole payload of this run`); continue }
        unacknowledged.push(rec.id)
        if (rec.id > maxId) maxId = rec.id
      }
      // Acknowledged pushes (earlier ones still live, and this run's) are present unless an
      // acknowledged (or in-flight) removal took them or every subscriber acknowledged them.
      const mayBeGone = (id: number): boolean =>
        removed.has(id) || removing.has(id) || SUBS.every(s => acked[s].has(id) || ackStarted[s].has(id))
      let checked = 0
      for (const id of new Set([...live.keys(), ...pushed.keys(), ...delivered])) {
        if (present.has(id)) { checked++; continue }
        if (mayBeGone(id)) continue
        const holder = SUBS.find(s => !acked[s].has(id) && !ackStarted[s].has(id))
        if (live.has(id) || pushed.has(id)) lost++
        problem(`acknowledged ID ${id} is missing (subscriber ${String(holder)} never acknowledged it)`)
      }
      totals.checkedPresent += checked
      const stats = await q.wal.stats()
      if (stats.count !== records.length) problem(`stats().count ${stats.count}, but ${records.length} records were read`)
      if (stats.nextId <= maxId) problem(`stats().nextId ${stats.nextId} is not above ${maxId}: IDs would be reused`)
      const dlq = await q.dlq.stats()
      if (dlq.count !== 0) problem(`${dlq.count} record(s) in the DLQ; nothing may be dead-lettered`)

      // ---- the named points: the kill landed where it says ------------------------------------
      if (atPoint === 'segment-write:after' && unacknowledged.length === 0) {
        problem('killed right after a segment write, yet no unacknowledged push of the run is stored')
      }
      // The frames of the append at the kill are in the segment file (a process crash keeps
      // what was written, synced or not), and LevelDB never got their locators: the open must
      // have indexed them again from the file.
      if ((atPoint === 'frame-append:written' || atPoint === 'frame-append:synced') && unacknowledged.length === 0) {
        problem(`killed at ${atPoint}, yet the open indexed no unacknowledged push of the run from the segment files`)
      }
      if (atPoint?.startsWith('frame-append') === true && plan.nth === 1 && pushed.size > 0) {
        problem(`killed in the run's first append, yet ${pushed.size} push(es) were acknowledged`)
      }
      // At the first pass, exactly: the first segment write of the run never happened, or
      // happened and acknowledged nothing.
      if (atPoint === 'segment-write:before' && plan.nth === 1 && (pushed.size > 0 || unacknowledged.length > 0)) {
        problem(`killed before the run's first segment write, yet ${pushed.size} push(es) were acknowledged ` +
          `and ${unacknowledged.length} unacknowledged one(s) are stored`)
      }
      if (atPoint === 'segment-write:after' && plan.nth === 1 && pushed.size > 0) {
        problem(`killed right after the run's first segment write, yet ${pushed.size} push(es) were acknowledged`)
      }
      // A removeWal call is atomic: every call in flight at the kill happened entirely or not at all.
      for (const ids of groups.values()) {
        const gone = ids.filter(id => !present.has(id))
        if (gone.length > 0 && gone.length < ids.length) {
          problem(`the removal of ${ids.join(', ')} was in flight and only ${gone.join(', ')} went: half a removal`)
        }
      }
      totals.removalGroups += groups.size
      if (atPoint === 'removal:before') {
        const done = [...removing].filter(id => !present.has(id))
        if (done.length > 0) problem(`killed before a removal's write, yet removals in flight took effect: ${done.slice(0, 10).join(', ')}`)
      }
      if (atPoint === 'removal:after') {
        if (removing.size === 0) problem('killed after a removal\'s write, but no removal was in flight')
        else if ([...removing].every(id => present.has(id))) {
          problem(`killed after a removal's write, yet none of the ${removing.size} removals in flight took effect`)
        }
      }
      if (await stop()) return

      // ---- drain every subscriber, without acknowledging ----------------------------------------
      const drained: Record<SubName, number[]> = { a: [], b: [] }
      const batches: Record<SubName, Array<{ ack: () => Promise<void>, ids: number[] }>> = { a: [], b: [] }
      const subscribers = { a: await q.wal.subscribe('a', SUBSCRIBE_OPTIONS), b: await q.wal.subscribe('b', SUBSCRIBE_OPTIONS) }
      for (const s of SUBS) {
        const sub = subscribers[s]
        let last = 0
        for (;;) {
          const batch = await sub.next({ maxCount: 2000, maxBytes: 4 * 1024 * 1024 })
          if (batch === undefined) break
          for (const r of batch.records) {
            if (r.id <= last) problem(`drain of ${s}: ID ${r.id} delivered after ${last}`)
            last = r.id
            const sha = present.get(r.id)
            if (sha === undefined) problem(`drain of ${s}: ID ${r.id} delivered, but read() does not return it`)
            else if (digest(r.payload) !== sha) problem(`drain of ${s}: ID ${r.id} delivered with a payload other than read()'s`)
            if (acked[s].has(r.id)) problem(`drain of ${s}: ID ${r.id} delivered again, but it was acknowledged durably before the run`)
            if (ackSync && ackDone[s].has(r.id)) {
              problem(`drain of ${s}: ID ${r.id} delivered again, but its ack (ackDurability 'sync') resolved before the kill`)
            }
            drained[s].push(r.id)
          }
          batches[s].push({ ack: () => batch.ack(), ids: batch.records.map(r => r.id) })
        }
        const got = new Set(drained[s])
        let missing = 0
        for (const id of present.keys()) {
          if (got.has(id) || acked[s].has(id) || ackStarted[s].has(id)) continue
          if (missing++ < 5) problem(`drain of ${s}: ID ${id} is stored and ${s} never acknowledged it, but it was not delivered`)
        }
      }
      // Before the run's first progress write, no ack of the run can have been persisted: every
      // ack the run started is delivered again, unless its record is gone (cleanup may delete
      // what every subscriber acknowledged before the progress is written; the check above
      // made sure that every subscriber did).
      if (atPoint === 'progress-write:before' && plan.nth === 1) {
        for (const s of SUBS) {
          const got = new Set(drained[s])
          const kept = [...ackStarted[s]].filter(id => present.has(id) && !got.has(id))
          if (kept.length > 0) problem(`killed before the run's first progress write, yet ${s}'s acks of ${kept.slice(0, 10).join(', ')} were persisted`)
        }
      }
      if (atPoint === 'progress-write:after' && ackSync) {
        const inFlight = SUBS.flatMap(s => [...ackStarted[s]].filter(id => !ackDone[s].has(id)).map(id => [s, id] as const))
        if (inFlight.length === 0) problem('killed right after a progress write, but no ack was in flight')
        else if (inFlight.every(([s, id]) => drained[s].includes(id))) {
          problem(`killed right after a progress write, yet none of the ${inFlight.length} acks in flight was persisted`)
        }
      }
      if (await stop()) return

      // ---- settle the model: it is exact again ----------------------------------------------
      live = present
      for (const s of SUBS) {
        const got = new Set(drained[s])
        acked[s] = new Set([...present.keys()].filter(id => !got.has(id)))
      }

      // Acknowledge a random share per subscriber: everything, some batches and IDs, or nothing.
      const last = cycle === CYCLES - 1
      for (const s of SUBS) {
        const sub = subscribers[s]
        const r = random()
        if (last || r < 0.45) {
          for (const b of batches[s]) await b.ack()
          for (const id of drained[s]) acked[s].add(id)
        } else if (r < 0.8) {
          const share = random()
          const pick = drained[s].filter(() => random() < share)
          for (let i = 0; i < pick.length;) {
            const part = pick.slice(i, i + 1 + Math.floor(random() * 50))
            i += part.length
            await sub.ack(part.length === 1 ? part[0]! : part)
            for (const id of part) acked[s].add(id)
          }
        }
      }
    } finally {
      await q.close()
    }
  }

  // Every named point was reached (at least once) in this run (when the run is long enough to
  // target each: every other cycle targets the next point).
  const missed = POINTS.filter(p => pointKills[p] === 0)
  if (missed.length > 0 && CYCLES >= 2 * POINTS.length) {
    problems.where = 'coverage'
    problem(`no run died at ${missed.join(', ')} (fallback kills: ${missed.map(p => pointFallbacks[p]).join(', ')})`)
  }
  // A last look: the final cycle acknowledged everything, and nothing acked comes back.
  {
    const q = await Evaq.open(dir, CHECK_OPTIONS)
    try {
      for (const s of SUBS) {
        const sub = await q.wal.subscribe(s, SUBSCRIBE_OPTIONS)
        const batch = await sub.next({ maxCount: 10 })
        if (batch !== undefined) {
          problems.where = 'final'
          problem(`${s} was delivered ${batch.records.map(r => r.id).join(', ')} after acknowledging everything`)
        }
      }
    } finally {
      await q.close()
    }
  }
  if (await stop()) return
  await finish()
  t.pass()
})

const REMOVAL_WRITER = fileURLToPath(new URL('./fixtures/removal-writer.ts', import.meta.url))

test('a removeWal call spanning several segments, killed between its steps, happened entirely or not at all', async t => {
  const SEGMENTS = 5
  // removal:staged:N: N of the segments staged into the batch; removal:after: the write returned.
  const cases = [['removal:staged:1', 'present'], ['removal:staged:3', 'present'], ['removal:before', 'present'], ['removal:after', 'gone']] as const
  await Promise.all(cases.map(async ([point, expected]) => {
    const dir = await tmpDir(t, 'evaq-removal-steps-')
    const { signal, stdout, stderr } = await runFixture(REMOVAL_WRITER, [dir, String(SEGMENTS)], point, WATCHDOG_MS)
    t.is(signal, 'SIGKILL', `${point}: ${stderr}`)
    const started = /^r\t(.+)$/m.exec(stdout)
    t.truthy(started, `${point}: the removal never started: ${stdout}`)
    t.false(/^R\t/m.test(stdout), `${point}: the removal resolved before the kill`)
    const ids = started![1]!.split(',').map(Number)
    const q = await Evaq.open(dir, CHECK_OPTIONS)
    try {
      const present = new Set((await readAll(q.wal)).map(r => r.id))
      t.deepEqual(ids.filter(id => present.has(id)), expected === 'present' ? ids : [], point)
      t.is((await q.wal.stats()).count, present.size, `${point}: count`)
      // Each record was a segment of its own.
      t.is(ids.length, SEGMENTS, point)
    } finally {
      await q.close()
    }
  }))
})
