/**
 * Process crashes inside the tier (docs/tier.md, "Crashes"): SIGKILL at each of its crash points,
 * against a real S3-compatible server (s3rver on loopback), on one directory through every cycle.
 *
 * - `tier:uploaded` (the object is in the bucket, no marker yet), `tier:recorded` (the marker is
 *   synced, the local file still there), `tier:freed` (the local file is gone): in
 *   test/fixtures/crash-writer.ts, pushing and removing with `onFull: 'offload'` past a 4 MiB
 *   budget;
 * - `tier:deleted` (an offloaded file's object is deleted, its marker not yet): in
 *   fixtures/tier-remover.ts, which removes everything and runs upkeep until the bucket is empty.
 *
 * After each kill the directory is opened with its tier and checked against the model of what
 * was acknowledged: no acknowledged push lost or changed (offloaded ones are read back through the
 * bucket), no acknowledged removal undone, IDs never reused; every offloaded file's object is in
 * the bucket (a crash never leaves neither copy). At the end everything is removed: the bucket
 * prefix must be empty (objects a crash left without a marker are swept).
 *
 * Short form: 8 cycles (`EVAQ_TIER_CRASH_CYCLES`), each point twice. Replay with `EVAQ_TIER_CRASH_SEED`.
 */
import test from 'ava'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { runLines } from '../helpers/child.js'
import { prng, seedFor } from '../helpers/prng.js'
import { readAll } from '../helpers/read-all.js'
import { S3Server } from '../helpers/s3.js'
import { tierOptions } from '../helpers/tier.js'
import { tmpDir } from '../helpers/tmp.js'
import { WriterModel } from '../helpers/writer-model.js'
import { cycles, report } from './report.js'

const WRITER = fileURLToPath(new URL('../fixtures/crash-writer.ts', import.meta.url))
const REMOVER = fileURLToPath(new URL('./fixtures/tier-remover.ts', import.meta.url))
const POINTS = ['tier:uploaded', 'tier:recorded', 'tier:freed', 'tier:deleted'] as const
const CYCLES = cycles('EVAQ_TIER_CRASH_CYCLES', 2 * POINTS.length)
const WATCHDOG_MS = 60_000
/** A point not reached by then (the writer is killed from here): counted, and must be rare. */
const FALLBACK_MS = 20_000

/** Fold in a run of the remover: it removes records of earlier runs (WriterModel.fold takes a writer's own). */
function foldRemover (model: WriterModel, removing: readonly number[], removed: readonly number[]): string | undefined {
  model.maxBefore = model.maxId
  const done = new Set(removed)
  for (const id of removing) {
    const sha = model.live.get(id)
    if (sha === undefined) return `the remover removed ID ${id}, which is not live`
    model.live.delete(id)
    if (done.has(id)) model.removed.add(id)
    else model.maybe.set(id, sha)
  }
  return undefined
}

test('SIGKILL at every crash point of the tier: nothing acknowledged lost, never neither copy, nothing left in the bucket', async t => {
  t.timeout(60_000 + CYCLES * 40_000)
  const seed = seedFor(t, 'EVAQ_TIER_CRASH_SEED')
  const random = prng(seed)
  const s3 = await S3Server.start(t)
  const dir = await tmpDir(t)
  // The options as JSON for the children (the client's settings are plain data).
  const options: EvaqOptions = { ...tierOptions(s3, 'crash'), maintenanceIntervalMs: 20 }
  const model = new WriterModel()
  const reached = new Map<string, number>(POINTS.map(p => [p, 0]))
  let checked = 0
  let lost = 0
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const point = POINTS[cycle % POINTS.length]!
    const nth = 1 + Math.floor(random() * 3)
    const tag = `t${cycle}`
    const where = `cycle ${cycle} (seed ${seed}, ${point}:${nth})`
    const acks: Array<[number, string]> = []
    const removing: number[] = []
    const removed: number[] = []
    let fallback = false
    let done = false
    const args = point === 'tier:deleted' ? [dir, JSON.stringify(options)] : [dir, 'sync', tag, JSON.stringify(options)]
    const outcome = await runLines(point === 'tier:deleted' ? REMOVER : WRITER, args, {
      point: `${point}:${nth}`,
      watchdogMs: WATCHDOG_MS,
      onLine: (text, child) => {
        const [kind, a, b] = text.split('\t')
        if (kind === 'A') acks.push([Number(a), b!])
        else if (kind === 'r') removing.push(...a!.split(',').map(Number))
        else if (kind === 'R') removed.push(...a!.split(',').map(Number))
        else if (kind === 'D') done = true
        else if (kind === 'O') child.after(FALLBACK_MS, () => { fallback = true; child.kill() })
      },
    })
    t.false(outcome.hung, `${where}: hung`)
    if (done) {
      // The remover emptied the bucket before the Nth deletion: nothing to crash in.
      t.is(outcome.code, 0, `${where}: ${outcome.stderr}`)
    } else {
      t.is(outcome.signal, 'SIGKILL', `${where}: exited ${String(outcome.code)}: ${outcome.stderr.slice(0, 2000)}`)
      if (!fallback) reached.set(point, reached.get(point)! + 1)
    }
    const wrong = point === 'tier:deleted' ? foldRemover(model, removing, removed) : model.fold(acks, removing, removed)
    if (wrong !== undefined) { t.fail(`${where}: ${wrong}`); return }
    checked += acks.length

    const q = await Evaq.open(dir, options)
    try {
      const records = await readAll(q.wal, 256 * 1024, 1000)
      const seen = new Set(records.map(r => r.id))
      const problems: string[] = []
      for (const r of records) {
        const verdict = model.judge(r, tag)
        if (verdict === 'changed') { problems.push(`ID ${r.id} has a different payload (${r.payload.subarray(0, 24).toString('latin1')}…)`); lost++ }
        if (verdict === 'back') problems.push(`ID ${r.id} was removed (acknowledged) but is back`)
        if (verdict === 'foreign') problems.push(`ID ${r.id} was never acknowledged and is not a whole payload of this run`)
      }
      for (const id of model.missing(seen)) { problems.push(`acknowledged ID ${id} is missing`); lost++ }
      model.settle(seen)
      // Every offloaded file has its object (a crash leaves the local copy, the remote one, or both).
      const markers = (await readdir(join(dir, 'segments', 'wal'))).filter(n => n.endsWith('.remote'))
      const keys = new Set(await s3.keys('crash/'))
      for (const m of markers) {
        const name = m.replace('.remote', '.seg')
        if (![...keys].some(k => k.endsWith(`/${name}`))) problems.push(`${m}: its object is not in the bucket`)
      }
      const stats = await q.wal.stats()
      if (stats.count !== model.live.size) problems.push(`stats().count is ${stats.count}, ${model.live.size} records are live`)
      if (stats.nextId <= model.maxId) problems.push(`nextId ${stats.nextId} is not above ${model.maxId}`)
      t.deepEqual(problems.slice(0, 20), [], `${where}: ${problems.length} problem(s)`)
      if (problems.length > 0) return
    } finally {
      await q.close()
    }
  }
  t.log(`seed ${seed}: ${checked} acknowledged pushes checked; kills at ${[...reached].map(([p, n]) => `${p} ${n}`).join(', ')}`)
  for (const point of POINTS) t.true(reached.get(point)! > 0, `${point} was never reached (seed ${seed})`)

  // Everything removed: nothing of the queue is left in the bucket, orphans of crashes included.
  const final = await runLines(REMOVER, [dir, JSON.stringify(options)], { watchdogMs: WATCHDOG_MS, onLine: () => {} })
  t.is(final.code, 0, final.stderr)
  const q = await Evaq.open(dir, options)
  try {
    // An object a crash left before its marker is swept at the first offload or deletion after
    // an open; the queue is empty now, so delete through one more round of upkeep if need be.
    t.is((await q.wal.stats()).count, 0)
  } finally {
    await q.close()
  }
  t.deepEqual(await s3.keys('crash/'), [])

  await report({
    part: 'tier-crash',
    failure: 'SIGKILL at the crash points of the tier (s3rver on loopback)',
    guarantee: 'no acknowledged push lost, never neither copy of an offloaded file, nothing left in the bucket',
    test: 'test/reliability/tier-crash.test.ts',
    cycles: CYCLES,
    acknowledged: checked,
    lost,
    note: `points reached: ${[...reached].map(([p, n]) => `${p} ${n}`).join(', ')}`,
  })
})
