import test from 'ava'
import { spawn } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import { checkPayload, digest, payloadFor } from '../fixtures/crash-writer.js'
import { tmpDir } from '../helpers/tmp.js'
import { prng } from '../helpers/prng.js'
import { readAll } from '../helpers/read-all.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/crash-writer.ts', import.meta.url))
const CYCLES = 20
/** A run that has not reached its kill threshold by then is hung. */
const CYCLE_WATCHDOG_MS = 30_000

interface RunReport {
  acks: Array<[id: number, sha: string]>
  removing: number[]
  removed: number[]
  openedNext: number | undefined
  killed: boolean
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
}

/** Run the writer on `dir` until it acknowledged `threshold` pushes, then SIGKILL it. */
async function runAndKill (dir: string, durability: string, tag: string, options: object, threshold: number): Promise<RunReport> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, durability, tag, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const report: RunReport = { acks: [], removing: [], removed: [], openedNext: undefined, killed: false, code: null, signal: null, stderr: '' }
  let rest = ''
  let hung = false
  const kill = (): void => {
    if (report.killed) return
    report.killed = true
    child.kill('SIGKILL')
  }
  const watchdog = setTimeout(() => { hung = true; kill() }, CYCLE_WATCHDOG_MS)
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (s: string) => { report.stderr += s })
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n')
    // A line is only complete with its newline; a killed writer may leave half of one.
    rest = lines.pop()!
    for (const line of lines) {
      const [kind, a, b] = line.split('\t')
      const id = Number(a)
      if (kind === 'A') report.acks.push([id, b!])
      // A removal line lists the IDs of one removeWal call.
      else if (kind === 'r') report.removing.push(...a!.split(',').map(Number))
      else if (kind === 'R') report.removed.push(...a!.split(',').map(Number))
      else if (kind === 'O') report.openedNext = id
      else throw new Error(`Unexpected line from the writer: ${JSON.stringify(line)}`)
    }
    if (report.acks.length >= threshold) kill()
  })
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  clearTimeout(watchdog)
  report.code = code
  report.signal = signal
  if (hung) throw new Error(`The writer acknowledged only ${report.acks.length} of ${threshold} pushes in ${CYCLE_WATCHDOG_MS} ms; stderr: ${report.stderr}`)
  return report
}

test('SIGKILL at random moments: acknowledged pushes and removals survive, nothing else changes, IDs are never reused', async t => {
  const seed = process.env.EVAQ_CRASH_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.EVAQ_CRASH_SEED)
  t.log(`seed ${seed} (replay with EVAQ_CRASH_SEED=${seed})`)
  const random = prng(seed)
  const dir = await tmpDir(t, 'evaq-crash-')

  /** Records that must be present, with their payload digests. */
  const live = new Map<number, string>()
  /** Records whose removal was in flight at the kill: present or not, both are fine. */
  const maybe = new Map<number, string>()
  /** Records that must never appear again. */
  const removed = new Set<number>()
  /** Highest ID acknowledged (or seen stored) in any cycle. */
  let maxId = 0
  const durabilities = ['sync', 'sync', 'sync', 'none', 'interval:5']
  const optionSets: object[] = [{}, { flushWorkers: 1 }, { flushWorkers: 4 }, { maxBatchCount: 7, flushWorkers: 3 }, { maxBatchBytes: 4096 }]

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const tag = `c${cycle}`
    const durability = durabilities[Math.floor(random() * durabilities.length)]!
    const options = optionSets[Math.floor(random() * optionSets.length)]!
    const threshold = 50 + Math.floor(random() * 2951)
    const where = `cycle ${cycle} (seed ${seed}, durability ${durability}, options ${JSON.stringify(options)}, kill after ${threshold} acks)`

    const run = await runAndKill(dir, durability, tag, options, threshold)
    t.true(run.killed && run.signal === 'SIGKILL', `${where}: the writer exited by itself (code ${run.code}): ${run.stderr}`)
    if (run.signal !== 'SIGKILL') return
    t.true(run.openedNext !== undefined && run.openedNext > maxId, `${where}: the writer opened with next ID ${run.openedNext}, not above ${maxId}`)

    // Fold the run's report into the model.
    const maxBefore = maxId
    const acked = new Map<number, string>()
    for (const [id, sha] of run.acks) {
      if (id <= maxBefore || live.has(id) || maybe.has(id) || removed.has(id) || acked.has(id)) {
        t.fail(`${where}: ID ${id} was issued again`)
        return
      }
      acked.set(id, sha)
      live.set(id, sha)
      if (id > maxId) maxId = id
    }
    const done = new Set(run.removed)
    for (const id of run.removing) {
      const sha = acked.get(id)
      if (sha === undefined) { t.fail(`${where}: the writer removed ID ${id} it never acknowledged`); return }
      live.delete(id)
      if (done.has(id)) removed.add(id)
      else maybe.set(id, sha)
    }

    // Check the directory against the model.
    const evaq = await Evaq.open(dir)
    try {
      const records = await readAll(evaq.wal, 256 * 1024, 1000)
      const seen = new Set<number>()
      let previous = 0
      let bytes = 0
      const problems: string[] = []
      for (const r of records) {
        if (r.id <= previous) problems.push(`ID ${r.id} read after ${previous}`)
        previous = r.id
        seen.add(r.id)
        bytes += r.payload.length
        const sha = live.get(r.id) ?? maybe.get(r.id)
        if (sha !== undefined) {
          if (digest(r.payload) !== sha) problems.push(`ID ${r.id} has a different payload: ${JSON.stringify(r.payload.subarray(0, 40).toString('latin1'))}`)
          continue
        }
        if (removed.has(r.id)) { problems.push(`ID ${r.id} was removed (acknowledged) but is present`); continue }
        // Not acknowledged: a push of the killed run that was committed before its ack was sent.
        const from = checkPayload(r.payload)
        if (from !== tag || r.id <= maxBefore) {
          problems.push(`ID ${r.id} was never acknowledged and is not a whole payload of this run (tag ${String(from)})`)
          continue
        }
        live.set(r.id, digest(r.payload))
        if (r.id > maxId) maxId = r.id
      }
      for (const id of live.keys()) if (!seen.has(id)) problems.push(`acknowledged ID ${id} is missing`)
      if (problems.length > 0) {
        t.fail(`${where}: ${problems.length} problem(s): ${problems.slice(0, 20).join('; ')}`)
        return
      }
      // The removals in flight at the kill either happened or not; from now on the model is exact.
      for (const [id, sha] of maybe) {
        if (seen.has(id)) live.set(id, sha)
        else removed.add(id)
      }
      maybe.clear()

      const stats = await evaq.wal.stats()
      t.is(stats.count, records.length, `${where}: stats().count`)
      t.is(stats.bytes, bytes, `${where}: stats().bytes`)
      t.is(stats.firstId, records[0]?.id, `${where}: stats().firstId`)
      t.is(stats.lastId, records.at(-1)?.id, `${where}: stats().lastId`)
      t.true(stats.nextId > maxId, `${where}: stats().nextId ${stats.nextId} is not above ${maxId}`)

      // Remove a random share of what is left, so that later cycles see partly removed segments.
      const victims = [...live.keys()].filter(() => random() < 0.25)
      if (victims.length > 0) {
        await evaq.removeWal(victims)
        for (const id of victims) { live.delete(id); removed.add(id) }
      }

      const payload = payloadFor(`p${cycle}`, 0, 0)
      const id = await evaq.pushWal(payload)
      t.true(id > maxId, `${where}: the next push got ID ${id}, not above ${maxId}`)
      live.set(id, digest(payload))
      maxId = id
    } finally {
      await evaq.close()
    }
  }

  // A last look after the final cycle's own writes.
  const evaq = await Evaq.open(dir)
  try {
    const records = await readAll(evaq.wal, 256 * 1024, 1000)
    t.deepEqual(records.map(r => r.id), [...live.keys()].sort((a, b) => a - b))
    t.true(records.every(r => live.get(r.id) === digest(r.payload)))
    t.is((await evaq.wal.stats()).count, live.size)
  } finally {
    await evaq.close()
  }
})
