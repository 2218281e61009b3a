/**
 * The benchmarks, in one run:
 *
 * - foundation (lib/foundation.ts): evaq's durable push against the ways one would write the same
 *   messages to classic-level by hand;
 * - subscriber core (lib/core.ts): draining a backlog (paired with evaq-push-256 of the same
 *   round), push and drain together, reading the head after many acknowledged records, and RSS
 *   with a growing backlog (in child processes, lib/rss-child.ts).
 *
 * See perf/README.md for what each scenario measures.
 *
 *   npm run bench            full run (~10 s per measurement, 3 rounds); writes perf/results/ and README.md
 *   npm run bench:quick      quick run (~3 s per measurement, smaller sizes); writes quick-*.json
 *   tsx perf/bench.ts --only evaq-drain --rounds 1     some scenarios, stdout only (for profiling)
 */
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { type Config, cpuMeter, type CpuShare, formatCpu, loadAverage, machine, machineLine, PAYLOAD_BYTES, type QuietWait, waitForQuiet } from './lib/common.js'
import {
  CORE_IDS, CORE_ROUND_SCENARIOS, type CoreRoundId, type CoreRoundSample, coreRows,
  type DrainSample, formatCoreRoundSample, type HeadReadResult, printCore, type PushDrainSample, runHeadRead,
  runRss, type RssResult, writeCore,
} from './lib/core.js'
import {
  compareFoundation, FOUNDATION_SCENARIOS, type FoundationId, type FoundationSample, formatFoundationSample,
  printFoundation, writeFoundation,
} from './lib/foundation.js'

type RoundScenario =
  | { readonly group: 'foundation', readonly id: FoundationId, run (dir: string, config: Config): Promise<FoundationSample> }
  | { readonly group: 'core', readonly id: CoreRoundId, run (dir: string, config: Config): Promise<CoreRoundSample> }

const ROUND_SCENARIOS: readonly RoundScenario[] = [
  ...FOUNDATION_SCENARIOS.map(s => ({ group: 'foundation' as const, id: s.id, run: s.run })),
  ...CORE_ROUND_SCENARIOS.map(s => ({ group: 'core' as const, id: s.id, run: s.run })),
]

const MiB = 2 ** 20

function parseConfig (): Config {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      only: { type: 'string', multiple: true },
      'head-records': { type: 'string' },
      'head-iterations': { type: 'string' },
      'backlog-mib': { type: 'string' },
      'quiet-wait': { type: 'string' },
    },
    strict: true,
  })
  const quick = values.quick === true
  const base = quick
    ? { durationMs: 3_000, warmupMs: 500, rounds: 3, headRecords: 100_000, headIterations: 500, backlogBytes: 200 * MiB, quietWaitMs: 0 }
    : { durationMs: 10_000, warmupMs: 1_000, rounds: 3, headRecords: 1_000_000, headIterations: 2_000, backlogBytes: 2048 * MiB, quietWaitMs: 180_000 }
  const number = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`)
    return n
  }
  const nonNegative = (name: string, raw: string): number => {
    const n = Number(raw)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${raw}`)
    return n
  }
  const known = new Set<string>([...ROUND_SCENARIOS.map(s => s.id), ...CORE_IDS])
  const only = values.only?.flatMap(v => v.split(',')).map(v => {
    if (!known.has(v)) throw new Error(`Unknown scenario ${v}; expected one of ${[...known].join(', ')}`)
    return v
  })
  const custom = values.rounds !== undefined || values.seconds !== undefined || only !== undefined ||
    values['head-records'] !== undefined || values['head-iterations'] !== undefined || values['backlog-mib'] !== undefined
  const durationMs = number('seconds', values.seconds, base.durationMs / 1000) * 1000
  return {
    mode: custom ? 'custom' : quick ? 'quick' : 'full',
    durationMs,
    warmupMs: Math.min(base.warmupMs, durationMs / 4),
    rounds: Math.round(number('rounds', values.rounds, base.rounds)),
    only,
    headRecords: Math.round(number('head-records', values['head-records'], base.headRecords)),
    headIterations: Math.round(number('head-iterations', values['head-iterations'], base.headIterations)),
    backlogBytes: Math.round(number('backlog-mib', values['backlog-mib'], base.backlogBytes / MiB) * MiB),
    // Custom runs (profiling) do not wait unless asked to.
    quietWaitMs: values['quiet-wait'] !== undefined ? nonNegative('quiet-wait', values['quiet-wait']) * 1000 : custom ? 0 : base.quietWaitMs,
  }
}

async function main (): Promise<void> {
  const config = parseConfig()
  const selected = (id: string): boolean => config.only === undefined || config.only.includes(id)
  const scenarios = ROUND_SCENARIOS.filter(s => selected(s.id))
  const facts = machine()
  const startedAt = new Date()
  const loadBefore = loadAverage()

  console.log(`evaq benchmark (${config.mode}): ${PAYLOAD_BYTES} B payloads, ` +
    `${config.durationMs / 1000} s per measurement after ${config.warmupMs / 1000} s warm-up, ${config.rounds} round(s)`)
  console.log(machineLine(facts))
  console.log(`load average ${loadBefore.join(', ')}`)
  const perCpu = loadBefore[0]! / facts.cpuCount
  if (perCpu > 0.75) console.log(`WARNING: the 1-minute load average is ${loadBefore[0]} on ${facts.cpuCount} CPUs; the numbers will be noisy`)
  console.log()

  const root = await mkdtemp(path.join(os.tmpdir(), 'evaq-bench-'))
  const onSignal = (): void => {
    rmSync(root, { recursive: true, force: true })
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const loadDuring: Array<[number, number]> = [[0, loadBefore[0]!]]
  const loadTimer = setInterval(() => loadDuring.push([Math.round((Date.now() - startedAt.getTime()) / 1000), loadAverage()[0]!]), 10_000)
  loadTimer.unref()
  const cpu: Record<string, Array<CpuShare & { readonly before: QuietWait }>> = {}
  /** Wait for a quiet machine (see --quiet-wait), then run and record the CPU use. */
  const metered = async <T>(id: string, run: () => Promise<T>): Promise<[T, CpuShare]> => {
    const before = await waitForQuiet(config.quietWaitMs)
    const stop = cpuMeter()
    const result = await run()
    const share = stop()
    const list = cpu[id] ??= []
    list.push({ ...share, before })
    return [result, share]
  }

  const foundationRuns = new Map<FoundationId, FoundationSample[]>()
  const drain: DrainSample[] = []
  const pushDrain: PushDrainSample[] = []
  let head: HeadReadResult | undefined
  let rss: RssResult | undefined
  try {
    for (let round = 0; round < config.rounds; round++) {
      const order = round % 2 === 0 ? scenarios : [...scenarios].reverse()
      for (const scenario of order) {
        const dir = path.join(root, `${scenario.id}-${round}`)
        await mkdir(dir)
        let line: string
        let share: CpuShare
        if (scenario.group === 'foundation') {
          let sample: FoundationSample
          [sample, share] = await metered(scenario.id, () => scenario.run(dir, config))
          const list = foundationRuns.get(scenario.id) ?? []
          list.push(sample)
          foundationRuns.set(scenario.id, list)
          line = formatFoundationSample(sample)
        } else {
          let sample: CoreRoundSample
          [sample, share] = await metered(scenario.id, () => scenario.run(dir, config))
          if (sample.kind === 'drain') drain.push(sample)
          else pushDrain.push(sample)
          line = formatCoreRoundSample(sample)
        }
        await rm(dir, { recursive: true, force: true })
        console.log(`round ${round + 1}/${config.rounds}  ${scenario.id.padEnd(18)} ${line} ${formatCpu(share)}`)
      }
    }
    if (selected('evaq-head-read')) {
      let share: CpuShare
      [head, share] = await metered('evaq-head-read', () => runHeadRead(root, config))
      console.log(`evaq-head-read ${formatCpu(share)}`)
    }
    if (selected('evaq-rss-backlog')) {
      let share: CpuShare
      [rss, share] = await metered('evaq-rss-backlog', () => runRss(root, config))
      console.log(`evaq-rss-backlog ${formatCpu(share)} (own includes the child processes)`)
    }
  } finally {
    clearInterval(loadTimer)
    await rm(root, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  const foundationResults = compareFoundation(foundationRuns)
  printFoundation(foundationResults)
  const coreInputs = { drain, pushDrain, push256: foundationRuns.get('evaq-push-256') ?? [], head, rss }
  const rows = coreRows(coreInputs)
  printCore(rows)
  console.log()

  const info = { config, machine: facts, startedAt, finishedAt: new Date(), loadBefore, loadAfter: loadAverage(), loadDuring, cpu }
  const foundationScenarios = FOUNDATION_SCENARIOS.filter(s => selected(s.id))
  await writeFoundation(info, foundationScenarios, foundationRuns, foundationResults)
  await writeCore(info, coreInputs, rows)
}

await main()
