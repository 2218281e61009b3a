/**
 * The foundation benchmark: evaq's durable push against the ways one would write the same
 * messages to classic-level by hand. See perf/README.md for what each scenario measures.
 *
 *   npm run bench            full run (~10 s per measurement, 3 rounds); writes perf/results/
 *   npm run bench:quick      quick run (~3 s per measurement, 3 rounds); writes quick-foundation.json
 *   tsx perf/bench.ts --only evaq-push-256 --rounds 1     one scenario, stdout only (for profiling)
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ClassicLevel } from 'classic-level'
import { Evaq } from '../src/index.js'

// ---------------------------------------------------------------------------------------------
// Configuration

const PAYLOAD_BYTES = 1024
const CALLERS = 256
const BATCH_SIZE = 1000
/** Records per segment in `raw-segment-256`: what one flush holds with 256 callers in a closed loop. */
const SEGMENT_RECORDS = CALLERS
/** evaq's segment framing: a 20-byte header and an 8-byte index entry per record. */
const SEGMENT_BYTES = 20 + SEGMENT_RECORDS * (PAYLOAD_BYTES + 8)
/** About the size of evaq's commit snapshot (JSON counters), written with every segment. */
const SNAPSHOT_BYTES = 150

interface Config {
  readonly mode: 'full' | 'quick' | 'custom'
  /** Length of one measurement, after its warm-up. */
  readonly durationMs: number
  /** Same workload on the same database before measuring: JIT, LevelDB's log and memtable. */
  readonly warmupMs: number
  /** Every scenario runs once per round; odd rounds run them in reverse order. */
  readonly rounds: number
  readonly only: readonly ScenarioId[] | undefined
}

const PERF_DIR = path.dirname(fileURLToPath(import.meta.url))
const RESULTS_DIR = path.join(PERF_DIR, 'results')
const README = path.join(PERF_DIR, '..', 'README.md')
const README_START = '<!-- bench:foundation:start -->'
const README_END = '<!-- bench:foundation:end -->'

// ---------------------------------------------------------------------------------------------
// Scenarios

type ScenarioId = 'evaq-push-256' | 'raw-put-256' | 'raw-batch-1000' | 'raw-segment-256' | 'evaq-push-latency' | 'raw-put-latency'

interface ThroughputSample {
  readonly kind: 'throughput'
  readonly messages: number
  readonly elapsedMs: number
  readonly msgsPerSec: number
}

interface LatencySample {
  readonly kind: 'latency'
  readonly count: number
  readonly meanUs: number
  readonly p50Us: number
  readonly p90Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly maxUs: number
}

type Sample = ThroughputSample | LatencySample

interface Scenario {
  readonly id: ScenarioId
  readonly title: string
  readonly kind: Sample['kind']
  run (dir: string, config: Config): Promise<Sample>
}

/** The one payload every scenario writes: incompressible, so Snappy gives no one an edge. */
const payload = randomBytes(PAYLOAD_BYTES)
/** One segment's worth of incompressible bytes and a snapshot-sized value, for `raw-segment-256`. */
const segmentValue = randomBytes(SEGMENT_BYTES)
const snapshotValue = randomBytes(SNAPSHOT_BYTES)

const SCENARIOS: readonly Scenario[] = [
  {
    id: 'evaq-push-256',
    title: `evaq pushWal, ${CALLERS} concurrent callers (durability 'sync')`,
    kind: 'throughput',
    run: (dir, config) => withEvaq(dir, evaq =>
      measureThroughput(config, CALLERS, 1, () => evaq.pushWal(payload))),
  },
  {
    id: 'raw-put-256',
    title: `raw db.put({ sync: true }), ${CALLERS} concurrent callers`,
    kind: 'throughput',
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureThroughput(config, CALLERS, 1, () => db.put(nextKey(), payload, { sync: true }))),
  },
  {
    id: 'raw-batch-1000',
    title: `raw chained batch of ${BATCH_SIZE.toLocaleString('en-US')} puts, write({ sync: true }), 1 caller`,
    kind: 'throughput',
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureThroughput(config, 1, BATCH_SIZE, () => {
        const batch = db.batch()
        for (let i = 0; i < BATCH_SIZE; i++) batch.put(nextKey(), payload)
        return batch.write({ sync: true })
      })),
  },
  {
    id: 'raw-segment-256',
    title: `raw chained batch of one ${SEGMENT_RECORDS}-record segment value + one ${SNAPSHOT_BYTES} B key, write({ sync: true }), 1 caller`,
    kind: 'throughput',
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
    kind: 'latency',
    run: (dir, config) => withEvaq(dir, evaq => measureLatency(config, () => evaq.pushWal(payload))),
  },
  {
    id: 'raw-put-latency',
    title: 'raw db.put({ sync: true }), 1 sequential caller',
    kind: 'latency',
    run: (dir, config) => withLevel(dir, (db, nextKey) =>
      measureLatency(config, () => db.put(nextKey(), payload, { sync: true }))),
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
// Measurement

/**
 * `callers` loops, each awaiting `op` until the deadline; every completed op counts `perOp`
 * messages. Ops started before the deadline finish and count; the elapsed time includes them.
 */
async function closedLoop (callers: number, durationMs: number, perOp: number, op: () => Promise<unknown>): Promise<ThroughputSample> {
  let messages = 0
  const start = performance.now()
  const deadline = start + durationMs
  const caller = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await op()
      messages += perOp
    }
  }
  await Promise.all(Array.from({ length: callers }, caller))
  const elapsedMs = performance.now() - start
  return { kind: 'throughput', messages, elapsedMs, msgsPerSec: messages / elapsedMs * 1000 }
}

async function measureThroughput (config: Config, callers: number, perOp: number, op: () => Promise<unknown>): Promise<ThroughputSample> {
  await closedLoop(callers, config.warmupMs, perOp, op)
  return closedLoop(callers, config.durationMs, perOp, op)
}

async function measureLatency (config: Config, op: () => Promise<unknown>): Promise<LatencySample> {
  const warmupEnd = performance.now() + config.warmupMs
  while (performance.now() < warmupEnd) await op()
  const samples: number[] = []
  const deadline = performance.now() + config.durationMs
  for (;;) {
    const t0 = performance.now()
    if (t0 >= deadline) break
    await op()
    samples.push((performance.now() - t0) * 1000)
  }
  return summarize(samples)
}

function summarize (samplesUs: number[]): LatencySample {
  const sorted = Float64Array.from(samplesUs).sort()
  let sum = 0
  for (const s of sorted) sum += s
  return {
    kind: 'latency',
    count: sorted.length,
    meanUs: sorted.length === 0 ? NaN : sum / sorted.length,
    p50Us: percentile(sorted, 50),
    p90Us: percentile(sorted, 90),
    p99Us: percentile(sorted, 99),
    p999Us: percentile(sorted, 99.9),
    maxUs: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
  }
}

/** Nearest-rank percentile of an ascending array. */
function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil(p / 100 * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

function median (values: readonly number[]): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/** `subject / baseline`; the subject is evaq's scenario except in raw-vs-raw comparisons. */
interface Comparison {
  readonly id: string
  readonly title: string
  readonly subject: ScenarioId
  readonly baseline: ScenarioId
  readonly metric: 'msgsPerSec' | 'p50Us' | 'p99Us'
  /** The ratio subject / baseline must be at least `min` or at most `max`; neither means informational. */
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

interface ComparisonResult {
  readonly id: string
  readonly title: string
  readonly metric: Comparison['metric']
  readonly subjectScenario: ScenarioId
  readonly baselineScenario: ScenarioId
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

function metricOf (sample: Sample, metric: Comparison['metric']): number {
  if (metric === 'msgsPerSec') return sample.kind === 'throughput' ? sample.msgsPerSec : NaN
  return sample.kind === 'latency' ? sample[metric] : NaN
}

function compare (runs: ReadonlyMap<ScenarioId, Sample[]>): ComparisonResult[] {
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
// Machine facts

interface Machine {
  readonly cpuModel: string
  readonly cpuCount: number
  readonly totalMemoryBytes: number
  readonly platform: string
  readonly arch: string
  readonly kernel: string
  readonly node: string
  readonly tmpdir: string
  readonly tmpdirFilesystem: { readonly type: string, readonly mountedOn: string } | undefined
  /** classic-level runs every operation on libuv's pool; its size caps concurrent raw puts. */
  readonly uvThreadpoolSize: number
}

function machine (): Machine {
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    platform: os.platform(),
    arch: os.arch(),
    kernel: os.release(),
    node: process.version,
    tmpdir: os.tmpdir(),
    tmpdirFilesystem: filesystemOf(os.tmpdir()),
    uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
  }
}

/** The filesystem type of `dir` from `df -PT` (POSIX output: one line per filesystem). */
function filesystemOf (dir: string): Machine['tmpdirFilesystem'] {
  try {
    const lines = execFileSync('df', ['-PT', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')
    const fields = lines[lines.length - 1]?.split(/\s+/) ?? []
    if (fields.length < 7) return undefined
    return { type: fields[1]!, mountedOn: fields.slice(6).join(' ') }
  } catch {
    return undefined
  }
}

function gitRevision (): { commit: string, dirty: boolean } | undefined {
  try {
    const run = (...args: string[]): string =>
      execFileSync('git', args, { cwd: PERF_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return { commit: run('rev-parse', 'HEAD'), dirty: run('status', '--porcelain', '--', '../src').length > 0 }
  } catch {
    return undefined
  }
}

function machineLine (m: Machine): string {
  const fs = m.tmpdirFilesystem === undefined ? 'unknown fs' : `${m.tmpdirFilesystem.type} (${m.tmpdirFilesystem.mountedOn})`
  return `${m.cpuCount} × ${m.cpuModel}, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ` +
    `${m.platform} ${m.kernel} ${m.arch}, Node ${m.node}, tmpdir on ${fs}` +
    (m.uvThreadpoolSize === 4 ? '' : `, UV_THREADPOOL_SIZE=${m.uvThreadpoolSize}`)
}

// ---------------------------------------------------------------------------------------------
// Formatting

const int = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'

function formatMetric (value: number, metric: Comparison['metric']): string {
  return metric === 'msgsPerSec' ? `${int(value)} msg/s` : `${int(value)} µs`
}

function formatRatio (r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(r >= 10 ? 1 : 2)}×` : 'n/a'
}

function formatMet (met: boolean | undefined): string {
  return met === undefined ? '—' : met ? 'yes' : 'NO'
}

function formatSample (s: Sample): string {
  return s.kind === 'throughput'
    ? `${int(s.msgsPerSec)} msg/s (${int(s.messages)} in ${(s.elapsedMs / 1000).toFixed(2)} s)`
    : `p50 ${int(s.p50Us)} µs, p99 ${int(s.p99Us)} µs, mean ${int(s.meanUs)} µs, max ${int(s.maxUs)} µs (n=${int(s.count)})`
}

function textTable (header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

const TABLE_HEADER = ['comparison (A vs B)', 'A', 'B', 'A / B', 'target', 'met?'] as const

function tableRows (results: readonly ComparisonResult[]): string[][] {
  return results.map(r => [r.title, formatMetric(r.subject, r.metric), formatMetric(r.baseline, r.metric), formatRatio(r.ratio), r.target, formatMet(r.met)])
}

function markdownTable (results: readonly ComparisonResult[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|')
  return [
    `| ${TABLE_HEADER.join(' | ')} |`,
    '| --- | ---: | ---: | ---: | :---: | :---: |',
    ...tableRows(results).map(r => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

function localDate (d: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

// ---------------------------------------------------------------------------------------------
// Main

function parseConfig (): Config {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      only: { type: 'string', multiple: true },
    },
    strict: true,
  })
  const base = values.quick === true
    ? { durationMs: 3_000, warmupMs: 500, rounds: 3 }
    : { durationMs: 10_000, warmupMs: 1_000, rounds: 3 }
  const number = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`)
    return n
  }
  const known = new Set<string>(SCENARIOS.map(s => s.id))
  const only = values.only?.flatMap(v => v.split(',')).map(v => {
    if (!known.has(v)) throw new Error(`Unknown scenario ${v}; expected one of ${[...known].join(', ')}`)
    return v as ScenarioId
  })
  const custom = values.rounds !== undefined || values.seconds !== undefined || only !== undefined
  const durationMs = number('seconds', values.seconds, base.durationMs / 1000) * 1000
  return {
    mode: custom ? 'custom' : values.quick === true ? 'quick' : 'full',
    durationMs,
    warmupMs: Math.min(base.warmupMs, durationMs / 4),
    rounds: Math.round(number('rounds', values.rounds, base.rounds)),
    only,
  }
}

async function main (): Promise<void> {
  const config = parseConfig()
  const scenarios = SCENARIOS.filter(s => config.only === undefined || config.only.includes(s.id))
  const facts = machine()
  const startedAt = new Date()
  const loadBefore = os.loadavg()

  console.log(`evaq foundation benchmark (${config.mode}): ${PAYLOAD_BYTES} B payloads, ` +
    `${config.durationMs / 1000} s per measurement after ${config.warmupMs / 1000} s warm-up, ${config.rounds} round(s)`)
  console.log(machineLine(facts))
  console.log()

  const root = await mkdtemp(path.join(os.tmpdir(), 'evaq-bench-'))
  const onSignal = (): void => {
    rmSync(root, { recursive: true, force: true })
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const runs = new Map<ScenarioId, Sample[]>()
  try {
    for (let round = 0; round < config.rounds; round++) {
      const order = round % 2 === 0 ? scenarios : [...scenarios].reverse()
      for (const scenario of order) {
        const dir = path.join(root, `${scenario.id}-${round}`)
        await mkdir(dir)
        const sample = await scenario.run(dir, config)
        await rm(dir, { recursive: true, force: true })
        const list = runs.get(scenario.id) ?? []
        list.push(sample)
        runs.set(scenario.id, list)
        console.log(`round ${round + 1}/${config.rounds}  ${scenario.id.padEnd(18)} ${formatSample(sample)}`)
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  const results = compare(runs)
  if (results.length > 0) {
    console.log()
    console.log(textTable(TABLE_HEADER, tableRows(results)))
    console.log()
  }
  for (const r of results) {
    console.log(`${r.id.padEnd(26)} per-round ratios: ${r.ratiosPerRound.map(formatRatio).join(', ')}`)
  }

  const finishedAt = new Date()
  const report = {
    benchmark: 'foundation',
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    git: gitRevision(),
    machine: facts,
    loadAverage: { before: loadBefore, after: os.loadavg() },
    config: {
      payloadBytes: PAYLOAD_BYTES,
      payload: 'random (incompressible), the same buffer for every write',
      callers: CALLERS,
      batchSize: BATCH_SIZE,
      segment: { records: SEGMENT_RECORDS, valueBytes: SEGMENT_BYTES, snapshotBytes: SNAPSHOT_BYTES },
      durationMs: config.durationMs,
      warmupMs: config.warmupMs,
      rounds: config.rounds,
      roundOrder: 'scenario order in even rounds, reversed in odd rounds',
      evaqOptions: 'defaults',
      rawLevelOptions: "classic-level defaults, keyEncoding/valueEncoding 'buffer', 8-byte big-endian sequence keys",
    },
    scenarios: Object.fromEntries(scenarios.map(s => [s.id, { title: s.title, rounds: runs.get(s.id) ?? [] }])),
    comparisons: results,
  }

  if (config.mode === 'custom') return
  await mkdir(RESULTS_DIR, { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  if (config.mode === 'quick') {
    const file = path.join(RESULTS_DIR, 'quick-foundation.json')
    await writeFile(file, json)
    console.log(`\nwrote ${path.relative(process.cwd(), file)}`)
    return
  }

  const date = localDate(startedAt)
  const jsonFile = path.join(RESULTS_DIR, `${date}-foundation.json`)
  await writeFile(jsonFile, json)
  const caption = `Measured ${date} on ${machineLine(facts)}; medians of ${config.rounds} alternating rounds of ` +
    `${config.durationMs / 1000} s, ${PAYLOAD_BYTES} B payloads. Ratios are what to compare across machines; see perf/README.md.`
  const table = markdownTable(results)
  const md = [
    '# Foundation benchmark',
    '',
    `<!-- generated by perf/bench.ts from ${path.basename(jsonFile)}; do not edit -->`,
    '',
    `Date: ${date}  `,
    `Machine: ${machineLine(facts)}`,
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
  console.log(`\nwrote ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), mdFile)}`)
  if (await updateReadme(`${table}\n\n${caption}`)) console.log(`updated ${path.relative(process.cwd(), README)}`)
}

/** Replace the text between the README markers, if the README has them. */
async function updateReadme (content: string): Promise<boolean> {
  if (!existsSync(README)) return false
  const text = await readFile(README, 'utf8')
  const start = text.indexOf(README_START)
  const end = text.indexOf(README_END, start + README_START.length)
  if (start < 0 || end < 0) return false
  const next = `${text.slice(0, start + README_START.length)}\n${content}\n${text.slice(end)}`
  if (next === text) return false
  await writeFile(README, next)
  return true
}

await main()
