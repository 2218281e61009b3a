/**
 * The foundation scenarios: evaq's durable push against the ways one would write the same
 * messages to classic-level by hand. See perf/README.md for what each scenario measures.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { ClassicLevel } from 'classic-level'
import { Evaq } from '../../src/index.js'
import {
  CALLERS, type Config, type CpuShare, formatMet, type QuietWait, formatRatio, gitRevision, int, type LatencySample, localDate, type Machine,
  machineLine, markdownTable, measureLatency, measureThroughput, median, nextPayload, PAYLOAD_BYTES, PAYLOAD_NOTE, RESULTS_DIR,
  textTable, type ThroughputSample, updateReadme,
} from './common.js'

const BATCH_SIZE = 1000
/** Records per segment in `raw-segment-256`: what one flush holds with 256 callers in a closed loop. */
const SEGMENT_RECORDS = CALLERS
/** evaq's segment framing: a 20-byte header and an 8-byte index entry per record. */
const SEGMENT_BYTES = 20 + SEGMENT_RECORDS * (PAYLOAD_BYTES + 8)
/** About the size of evaq's commit snapshot (JSON counters), written with every segment. */
const SNAPSHOT_BYTES = 150

const README_START = '<!-- bench:foundation:start -->'
const README_END = '<!-- bench:foundation:end -->'

export type FoundationId = 'evaq-push-256' | 'raw-put-256' | 'raw-batch-1000' | 'raw-segment-256' | 'evaq-push-latency' | 'raw-put-latency'

export type FoundationSample = ThroughputSample | LatencySample

export interface FoundationScenario {
  readonly id: FoundationId
  readonly title: string
  run (dir: string, config: Config): Promise<FoundationSample>
}

/** One segment's worth of incompressible bytes and a snapshot-sized value, for `raw-segment-256`. */
const segmentValue = randomBytes(SEGMENT_BYTES)
const snapshotValue = randomBytes(SNAPSHOT_BYTES)

export const FOUNDATION_SCENARIOS: readonly FoundationScenario[] = [
  {
    id: 'evaq-push-256',
    title: `evaq pushWal, ${CALLERS} concurrent callers (durability 'sync')`,
    run: (dir, config) => withEvaq(dir, evaq =>
      measureThroughput(config, CALLERS, 1, () => evaq.pushWal(nextPayload()))),
  },
  {
    id: 'raw-put-256',
    title: `raw db.put({ sync: true }), ${CALLERS} concurrent callers`,
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureThroughput(config, CALLERS, 1, () => db.put(nextKey(), nextPayload(), { sync: true }))),
  },
  {
    id: 'raw-batch-1000',
    title: `raw chained batch of ${BATCH_SIZE.toLocaleString('en-US')} puts, write({ sync: true }), 1 caller`,
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureThroughput(config, 1, BATCH_SIZE, () => {
        const batch = db.batch()
        for (let i = 0; i < BATCH_SIZE; i++) batch.put(nextKey(), nextPayload())
        return batch.write({ sync: true })
      })),
  },
  {
    id: 'raw-segment-256',
    title: `raw chained batch of one ${SEGMENT_RECORDS}-record segment value + one ${SNAPSHOT_BYTES} B key, write({ sync: true }), 1 caller`,
    // evaq's write pattern without evaq: the LevelDB ceiling for flushes of 256 records.
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureThroughput(config, 1, SEGMENT_RECORDS, () => {
        const batch = db.batch()
        batch.put(nextKey(), segmentValue)
        batch.put(nextKey(), snapshotValue)
        return batch.write({ sync: true })
      })),
  },
  {
    id: 'evaq-push-latency',
    title: "evaq pushWal, 1 sequential caller (durability 'sync')",
    run: (dir, config) => withEvaq(dir, evaq => measureLatency(config, () => evaq.pushWal(nextPayload()))),
  },
  {
    id: 'raw-put-latency',
    title: 'raw db.put({ sync: true }), 1 sequential caller',
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureLatency(config, () => db.put(nextKey(), nextPayload(), { sync: true }))),
  },
]

async function withEvaq<T> (dir: string, fn: (evaq: Evaq) => Promise<T>): Promise<T> {
  const evaq = await Evaq.open(dir)
  try {
    return await fn(evaq)
  } finally {
    await evaq.close()
  }
}

type RawDb = ClassicLevel<Buffer, Buffer>

/** The naive way: classic-level with its defaults, keys are 8-byte big-endian sequence numbers. */
async function withLevel<T> (dir: string, fn: (db: RawDb, nextKey: () => Buffer) => Promise<T>): Promise<T> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  let seq = 0
  const nextKey = (): Buffer => {
    const key = Buffer.allocUnsafe(8)
    key.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 0)
    key.writeUInt32BE(seq >>> 0, 4)
    seq++
    return key
  }
  try {
    return await fn(db, nextKey)
  } finally {
    await db.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/** `subject / baseline`; the subject is evaq's scenario except in raw-vs-raw comparisons. */
interface Comparison {
  readonly id: string
  readonly title: string
  readonly subject: FoundationId
  readonly baseline: FoundationId
  readonly metric: 'msgsPerSec' | 'p50Us' | 'p99Us'
  /** Ratio bounds; none for comparisons shown for information. */
  readonly target: { readonly min?: number, readonly max?: number }
}

const COMPARISONS: readonly Comparison[] = [
  {
    id: 'push-256-vs-put-256',
    title: `Durable writes, ${CALLERS} concurrent callers: pushWal vs put({ sync })`,
    subject: 'evaq-push-256',
    baseline: 'raw-put-256',
    metric: 'msgsPerSec',
    target: { min: 10 },
  },
  {
    id: 'push-256-vs-batch-1000',
    title: `Durable writes: pushWal (${CALLERS} callers) vs hand-made batches of ${BATCH_SIZE.toLocaleString('en-US')} (1 caller)`,
    subject: 'evaq-push-256',
    baseline: 'raw-batch-1000',
    metric: 'msgsPerSec',
    target: { min: 1.5 },
  },
  {
    id: 'push-256-vs-segment-256',
    title: `Share of the LevelDB ceiling for ${SEGMENT_RECORDS}-record segments: pushWal (${CALLERS} callers) vs raw segment writes (1 caller)`,
    subject: 'evaq-push-256',
    baseline: 'raw-segment-256',
    metric: 'msgsPerSec',
    target: {},
  },
  {
    id: 'segment-256-vs-batch-1000',
    title: `What packing alone buys over ${BATCH_SIZE.toLocaleString('en-US')}-entry batches: raw ${SEGMENT_RECORDS}-record segments vs raw batches of ${BATCH_SIZE.toLocaleString('en-US')}`,
    subject: 'raw-segment-256',
    baseline: 'raw-batch-1000',
    metric: 'msgsPerSec',
    target: {},
  },
  {
    id: 'latency-p50',
    title: 'Sequential durable write latency, p50: pushWal vs put({ sync })',
    subject: 'evaq-push-latency',
    baseline: 'raw-put-latency',
    metric: 'p50Us',
    target: { max: 1.3 },
  },
  {
    id: 'latency-p99',
    title: 'Sequential durable write latency, p99: pushWal vs put({ sync })',
    subject: 'evaq-push-latency',
    baseline: 'raw-put-latency',
    metric: 'p99Us',
    target: {},
  },
]

export interface ComparisonResult {
  readonly id: string
  readonly title: string
  readonly metric: Comparison['metric']
  readonly subjectScenario: FoundationId
  readonly baselineScenario: FoundationId
  /** Median over rounds. */
  readonly subject: number
  /** Median over rounds. */
  readonly baseline: number
  /**
   * Median of the per-round ratios. Each round measures the pair minutes apart at most, so a
   * ratio survives the drift of a shared disk better than the ratio of the medians.
   */
  readonly ratio: number
  /** subject / baseline within each round. */
  readonly ratiosPerRound: readonly number[]
  readonly target: string
  /** Undefined when the comparison has no target. */
  readonly met: boolean | undefined
}

function metricOf (sample: FoundationSample, metric: Comparison['metric']): number {
  if (metric === 'msgsPerSec') return sample.kind === 'throughput' ? sample.msgsPerSec : NaN
  return sample.kind === 'latency' ? sample[metric] : NaN
}

export function compareFoundation (runs: ReadonlyMap<FoundationId, FoundationSample[]>): ComparisonResult[] {
  const out: ComparisonResult[] = []
  for (const c of COMPARISONS) {
    const a = runs.get(c.subject)
    const b = runs.get(c.baseline)
    if (a === undefined || b === undefined) continue
    const subject = median(a.map(s => metricOf(s, c.metric)))
    const baseline = median(b.map(s => metricOf(s, c.metric)))
    const ratiosPerRound = a.map((s, i) => metricOf(s, c.metric) / metricOf(b[i]!, c.metric))
    const ratio = median(ratiosPerRound)
    const { min, max } = c.target
    const target = min !== undefined ? `≥ ${min}×` : max !== undefined ? `≤ ${max}×` : '—'
    const met = min !== undefined ? ratio >= min : max !== undefined ? ratio <= max : undefined
    out.push({
      id: c.id, title: c.title, metric: c.metric, subjectScenario: c.subject, baselineScenario: c.baseline,
      subject, baseline, ratio, ratiosPerRound, target, met,
    })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Formatting and the report

function formatMetric (value: number, metric: Comparison['metric']): string {
  return metric === 'msgsPerSec' ? `${int(value)} msg/s` : `${int(value)} µs`
}

export function formatFoundationSample (s: FoundationSample): string {
  return s.kind === 'throughput'
    ? `${int(s.msgsPerSec)} msg/s (${int(s.messages)} in ${(s.elapsedMs / 1000).toFixed(2)} s)`
    : `p50 ${int(s.p50Us)} µs, p99 ${int(s.p99Us)} µs, mean ${int(s.meanUs)} µs, max ${int(s.maxUs)} µs (n=${int(s.count)})`
}

const TABLE_HEADER = ['comparison (A vs B)', 'A', 'B', 'A / B', 'target', 'met?'] as const

function tableRows (results: readonly ComparisonResult[]): string[][] {
  return results.map(r => [r.title, formatMetric(r.subject, r.metric), formatMetric(r.baseline, r.metric), formatRatio(r.ratio), r.target, formatMet(r.met)])
}

export function printFoundation (results: readonly ComparisonResult[]): void {
  if (results.length === 0) return
  console.log()
  console.log(textTable(TABLE_HEADER, tableRows(results)))
  console.log()
  for (const r of results) {
    console.log(`${r.id.padEnd(26)} per-round ratios: ${r.ratiosPerRound.map(formatRatio).join(', ')}`)
  }
}

export interface RunInfo {
  readonly config: Config
  readonly machine: Machine
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly loadBefore: readonly number[]
  readonly loadAfter: readonly number[]
  /** The 1-minute load average every 10 s of the run: [s since the start, load]. */
  readonly loadDuring: ReadonlyArray<readonly [number, number]>
  /** CPU use per measurement (see CpuShare), by scenario, one per round (or one for once-only scenarios). */
  readonly cpu: Readonly<Record<string, ReadonlyArray<CpuShare & { readonly before?: QuietWait }>>>
}

/** One sentence on how busy the machine was, for the captions. */
export function loadSentence (info: RunInfo): string {
  const during = Math.max(...info.loadDuring.map(([, l]) => l))
  const all = Object.values(info.cpu).flat()
  const others = all.map(c => c.otherCpus).filter((c): c is number => c !== undefined)
  const waited = all.filter(c => c.before !== undefined && c.before.waitedMs > 2500).length
  const busy = all.filter(c => c.before?.quiet === false).length
  const wait = info.config.quietWaitMs <= 0
    ? ''
    : ` Before each measurement the run waited (up to ${info.config.quietWaitMs / 1000} s) for other processes to use < 0.25 CPUs: ` +
      `${waited} of ${all.length} measurements had to wait${busy > 0 ? `, ${busy} gave up waiting` : ''}.`
  return `Load average ${info.loadBefore[0]!.toFixed(2)} at the start, at most ${during.toFixed(2)} during the run (this benchmark alone adds 1 to 2)` +
    (others.length === 0 ? '.' : `; other processes used ${Math.min(...others).toFixed(2)} to ${Math.max(...others).toFixed(2)} CPUs during the measurements.`) + wait
}

/** The load record both reports carry. */
export function loadRecord (info: RunInfo): object {
  const during = info.loadDuring.map(([, l]) => l)
  return {
    before: info.loadBefore,
    after: info.loadAfter,
    max1mDuring: during.length === 0 ? undefined : Math.max(...during),
    during: info.loadDuring,
    note: 'the 1-minute load includes this benchmark (1 to 2 on its own); cpu[scenario].otherCpus is what other processes used during each measurement',
  }
}

/** Write the foundation report (quick: only quick-foundation.json; full: JSON, foundation.md, README). */
export async function writeFoundation (info: RunInfo, scenarios: readonly FoundationScenario[], runs: ReadonlyMap<FoundationId, FoundationSample[]>, results: readonly ComparisonResult[]): Promise<void> {
  const { config, machine: facts, startedAt } = info
  const report = {
    benchmark: 'foundation',
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    finishedAt: info.finishedAt.toISOString(),
    git: gitRevision(),
    machine: facts,
    loadAverage: loadRecord(info),
    config: {
      payloadBytes: PAYLOAD_BYTES,
      payload: PAYLOAD_NOTE,
      callers: CALLERS,
      batchSize: BATCH_SIZE,
      segment: { records: SEGMENT_RECORDS, valueBytes: SEGMENT_BYTES, snapshotBytes: SNAPSHOT_BYTES },
      durationMs: config.durationMs,
      warmupMs: config.warmupMs,
      rounds: config.rounds,
      quietWaitMs: config.quietWaitMs,
      roundOrder: 'scenario order in even rounds, reversed in odd rounds (the core round scenarios run in the same rounds)',
      evaqOptions: 'defaults',
      rawLevelOptions: "classic-level defaults, keyEncoding/valueEncoding 'buffer', 8-byte big-endian sequence keys",
    },
    scenarios: Object.fromEntries(scenarios.map(s => [s.id, { title: s.title, rounds: runs.get(s.id) ?? [], cpu: info.cpu[s.id] ?? [] }])),
    comparisons: results,
  }

  if (config.mode === 'custom' || scenarios.length === 0) return
  await mkdir(RESULTS_DIR, { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  if (config.mode === 'quick') {
    const file = path.join(RESULTS_DIR, 'quick-foundation.json')
    await writeFile(file, json)
    console.log(`wrote ${path.relative(process.cwd(), file)}`)
    return
  }

  const date = localDate(startedAt)
  const jsonFile = path.join(RESULTS_DIR, `${date}-foundation.json`)
  await writeFile(jsonFile, json)
  const caption = `Measured ${date} on ${machineLine(facts)}; medians of ${config.rounds} alternating rounds of ` +
    `${config.durationMs / 1000} s, ${PAYLOAD_BYTES} B payloads. ${loadSentence(info)} Ratios are what to compare across machines; see perf/README.md.`
  const table = markdownTable(TABLE_HEADER, ['---', '---:', '---:', '---:', ':---:', ':---:'], tableRows(results))
  const md = [
    '# Foundation benchmark',
    '',
    `<!-- generated by perf/bench.ts from ${path.basename(jsonFile)}; do not edit -->`,
    '',
    `Date: ${date}  `,
    `Machine: ${machineLine(facts)}  `,
    loadSentence(info),
    '',
    table,
    '',
    `A and B are medians of ${config.rounds} rounds (scenario order reversed every other round); ` +
      'A / B is the median of the per-round ratios, so it need not equal the ratio of the two columns. ' +
      `${config.durationMs / 1000} s per measurement ` +
      `after ${config.warmupMs / 1000} s of warm-up; ${PAYLOAD_BYTES} B incompressible payloads; fresh directories in ${facts.tmpdir}. ` +
      'Raw numbers per round: ' + `[${path.basename(jsonFile)}](./${path.basename(jsonFile)}).`,
    '',
  ].join('\n')
  const mdFile = path.join(RESULTS_DIR, 'foundation.md')
  await writeFile(mdFile, md)
  console.log(`wrote ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), mdFile)}`)
  if (await updateReadme(README_START, README_END, `${table}\n\n${caption}`)) console.log('updated README.md (foundation block)')
}
