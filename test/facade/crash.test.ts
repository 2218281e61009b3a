import test from 'ava'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import { checkPayload, digest, payloadFor } from '../fixtures/crash-writer.js'
import { runLines } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { WriterModel } from '../helpers/writer-model.js'
import { prng, seedFor } from '../helpers/prng.js'
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
  const report: RunReport = { acks: [], removing: [], removed: [], openedNext: undefined, killed: false, code: null, signal: null, stderr: '' }
  const outcome = await runLines(FIXTURE, [dir, durability, tag, JSON.stringify(options)], {
    watchdogMs: CYCLE_WATCHDOG_MS,
    onLine: line => {
      const [kind, a, b] = line.split('\t')
      const id = Number(a)
      if (kind === 'A') report.acks.push([id, b!])
      // A removal line lists the IDs of one removeWal call.
      else if (kind === 'r') report.removing.push(...a!.split(',').map(Number))
      else if (kind === 'R') report.removed.push(...a!.split(',').map(Number))
      else if (kind === 'O') report.openedNext = id
      else throw new Error(`Unexpected line from the writer: ${JSON.stringify(line)}`)
    },
    killWhen: () => report.acks.length >= threshold,
  })
  Object.assign(report, { killed: outcome.killed, code: outcome.code, signal: outcome.signal, stderr: outcome.stderr })
  if (outcome.hung) {
    throw new Error(`The writer acknowledged only ${report.acks.length} of ${threshold} pushes in ${CYCLE_WATCHDOG_MS} ms; stderr: ${report.stderr}`)
  }
  return report
}

test('SIGKILL at random moments: acknowledged pushes and removals survive, nothing else changes, IDs are never reused', async t => {
  const seed = seedFor(t, 'EVAQ_CRASH_SEED')
  const random = prng(seed)
  const dir = await tmpDir(t, 'evaq-crash-')

  const model = new WriterModel()
  const { live, removed } = model
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
    t.true(run.openedNext !== undefined && run.openedNext > model.maxId, `${where}: the writer opened with next ID ${run.openedNext}, not above ${model.maxId}`)

    const wrong = model.fold(run.acks, run.removing, run.removed)
    if (wrong !== undefined) {
      t.fail(`${where}: ${wrong}`)
      return
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
        const verdict = model.judge(r, tag)
        if (verdict === 'changed') problems.push(`ID ${r.id} has a different payload: ${JSON.stringify(r.payload.subarray(0, 40).toString('latin1'))}`)
        else if (verdict === 'back') problems.push(`ID ${r.id} was removed (acknowledged) but is present`)
        else if (verdict === 'foreign') {
          problems.push(`ID ${r.id} was never acknowledged and is not a whole payload of this run (tag ${String(checkPayload(r.payload))})`)
        }
      }
      for (const id of model.missing(seen)) problems.push(`acknowledged ID ${id} is missing`)
      if (problems.length > 0) {
        t.fail(`${where}: ${problems.length} problem(s): ${problems.slice(0, 20).join('; ')}`)
        return
      }
      model.settle(seen)

      const stats = await evaq.wal.stats()
      t.is(stats.count, records.length, `${where}: stats().count`)
      t.is(stats.bytes, bytes, `${where}: stats().bytes`)
      t.is(stats.firstId, records[0]?.id, `${where}: stats().firstId`)
      t.is(stats.lastId, records.at(-1)?.id, `${where}: stats().lastId`)
      t.true(stats.nextId > model.maxId, `${where}: stats().nextId ${stats.nextId} is not above ${model.maxId}`)

      // Remove a random share of what is left, so that later cycles see partly removed segments.
      const victims = [...live.keys()].filter(() => random() < 0.25)
      if (victims.length > 0) {
        await evaq.removeWal(victims)
        for (const id of victims) { live.delete(id); removed.add(id) }
      }

      const payload = payloadFor(`p${cycle}`, 0, 0)
      const id = await evaq.pushWal(payload)
      t.true(id > model.maxId, `${where}: the next push got ID ${id}, not above ${model.maxId}`)
      live.set(id, digest(payload))
      model.maxId = id
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
