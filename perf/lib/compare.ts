/**
 * The comparison: every workload of systems.ts at its payload sizes, evaq first and then its
 * baselines, in alternating rounds; ratios of evaq to each baseline (median of the per-round
 * ratios) and the throughput chart. See perf/README.md ("Comparison").
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import {
  type Config, type CpuShare, formatRatio, gitRevision, int, loadRecord, localDate, median, payloadSource, type QuietWait,
  RESULTS_DIR, type RunInfo,
} from './common.js'
import { recordsPerCpuSecond, writeAmplification } from './sample.js'
import { type Sample, SYSTEM_NAMES, type SystemId, type SystemSpec, WORKLOADS, type WorkloadId, type WorkloadSpec } from './systems.js'

export interface Case {
  readonly workload: WorkloadSpec
  readonly system: SystemSpec
  readonly size: number
}

export const caseKey = (workload: WorkloadId, system: SystemId, size: number): string => `${workload}/${system}@${size}`
export const sizeName = (size: number): string => size >= 1024 ? `${size / 1024} KiB` : `${size} B`

export type Metered = <T>(id: string, run: () => Promise<T>) => Promise<[T, CpuShare]>

export interface MatrixState {
  /** Samples per case key, one per round (NaN-free; a failed or skipped case has none). */
  readonly samples: Map<string, Sample[]>
  readonly cpu: Map<string, Array<CpuShare & { readonly before: QuietWait }>>
  /** Why a baseline did not run (redis-server missing), per system. */
  readonly skipped: Map<SystemId, string>
}

export function newMatrixState (): MatrixState {
  return { samples: new Map(), cpu: new Map(), skipped: new Map() }
}

/** The cases of a run: the full run's sizes, or 1 KiB only for the quick one; `only` filters by workload or case key prefix. */
export function selectedWorkloads (config: Config): Array<{ workload: WorkloadSpec, sizes: number[] }> {
  const out: Array<{ workload: WorkloadSpec, sizes: number[] }> = []
  for (const w of WORKLOADS) {
    if (config.only !== undefined && !config.only.some(o => o === w.id || o === 'compare')) continue
    const sizes = config.mode === 'quick' ? w.sizes.filter(s => s === 1024) : [...w.sizes]
    if (sizes.length > 0) out.push({ workload: w, sizes })
  }
  return out
}

/**
 * One round: workloads in order (reversed in odd rounds), each size, evaq first (the grouped
 * baselines need its segment size), then the baselines (reversed in odd rounds).
 */
export async function runMatrixRound (
  round: number, config: Config, state: MatrixState, metered: Metered,
  makeDir: (name: string) => Promise<string>, removeDir: (dir: string) => Promise<void>,
  redis: Parameters<SystemSpec['run']>[0]['redis']
): Promise<void> {
  const workloads = selectedWorkloads(config)
  const order = round % 2 === 0 ? workloads : [...workloads].reverse()
  for (const { workload, sizes } of order) {
    for (const size of sizes) {
      const [evaq, ...baselines] = workload.systems
      const systems = [evaq!, ...(round % 2 === 0 ? baselines : [...baselines].reverse())]
        .filter(s => s.id === 'evaq' || workload.baselineSizes.includes(size))
      let group = 1
      for (const system of systems) {
        const key = caseKey(workload.id, system.id, size)
        if (system.needsRedis === true && redis === undefined) continue
        const list = state.samples.get(key) ?? []
        const dir = await makeDir(`${workload.id}-${system.id}-${size}-${round}`)
        const previous = list[list.length - 1]
        const ctx = { dir, config, size, payload: payloadSource(size), group, drainEstimate: previous?.msgsPerSec, redis }
        const [sample, share] = await metered(key, () => system.run(ctx))
        await removeDir(dir)
        list.push(sample)
        state.samples.set(key, list)
        const cpuList = state.cpu.get(key) ?? []
        cpuList.push(share as CpuShare & { before: QuietWait })
        state.cpu.set(key, cpuList)
        if (system.id === 'evaq' && sample.segmentRecords !== undefined) group = Math.max(1, workload.concurrent ?? 1, Math.round(sample.segmentRecords))
        console.log(`round ${round + 1}/${config.rounds}  ${key.padEnd(30)} ${formatSample(sample, size)} ${formatCpuShort(share)}`)
      }
    }
  }
}

function formatCpuShort (c: CpuShare): string {
  return c.otherCpus === undefined ? '' : `[CPUs own ${c.ownCpus.toFixed(2)}, others ${c.otherCpus.toFixed(2)}]`
}

const short = (n: number): string => {
  if (!Number.isFinite(n)) return 'n/a'
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`
  return `${Math.round(n)}`
}

/** Write amplification: bytes written per payload byte. */
export const formatAmp = (a: number): string => Number.isFinite(a) ? `${a.toFixed(2)}×` : 'n/a'

export function formatSample (s: Sample, size?: number): string {
  const parts: string[] = []
  if (s.kind === 'latency' && s.latency !== undefined) {
    parts.push(`p50 ${int(s.latency.p50Us)} µs, p99 ${int(s.latency.p99Us)} µs (n=${int(s.latency.count)})`)
  } else {
    parts.push(`${int(s.msgsPerSec)} msg/s (${int(s.messages)} in ${(s.elapsedMs / 1000).toFixed(2)} s)`)
  }
  if (s.segmentRecords !== undefined) parts.push(`segments of ${s.segmentRecords.toFixed(1)} records`)
  else if (s.group !== undefined && s.backlogRecords === undefined) parts.push(`groups of ${s.group}`)
  if (s.backlogRecords !== undefined) parts.push(`backlog ${int(s.backlogRecords)}${s.exhausted === true ? ', ran out' : ''}`)
  if (size !== undefined && s.resources !== undefined) {
    parts.push(`write amp ${formatAmp(writeAmplification(s, size))}, ${short(recordsPerCpuSecond(s))} rec/CPU-s`)
  }
  return parts.join('; ')
}

// ---------------------------------------------------------------------------------------------
// Ratios

export interface RatioResult {
  readonly workload: WorkloadId
  readonly size: number
  readonly baseline: SystemId
  readonly metric: WorkloadSpec['metric']
  /** Medians over rounds. */
  readonly evaq: number
  readonly base: number
  /** evaq / baseline: median of the per-round ratios. */
  readonly ratio: number
  readonly ratiosPerRound: readonly number[]
  /** Records per synced write the baseline used (median over rounds), if grouped. */
  readonly group: number | undefined
}

const metricOf = (s: Sample, metric: WorkloadSpec['metric']): number =>
  metric === 'msgsPerSec' ? s.msgsPerSec : s.latency?.p50Us ?? NaN

/** Per-round ratios of evaq to the baseline, over the rounds both have. */
function perRound (a: readonly Sample[], b: readonly Sample[], metric: WorkloadSpec['metric']): number[] {
  const n = Math.min(a.length, b.length)
  return Array.from({ length: n }, (_, i) => metricOf(a[i]!, metric) / metricOf(b[i]!, metric))
}

export function matrixRatios (state: MatrixState): RatioResult[] {
  const out: RatioResult[] = []
  for (const w of WORKLOADS) {
    for (const size of w.sizes) {
      const evaq = state.samples.get(caseKey(w.id, 'evaq', size))
      if (evaq === undefined) continue
      for (const system of w.systems.slice(1)) {
        const base = state.samples.get(caseKey(w.id, system.id, size))
        if (base === undefined) continue
        const ratios = perRound(evaq, base, w.metric)
        const groups = base.map(s => s.group).filter((g): g is number => g !== undefined)
        out.push({
          workload: w.id, size, baseline: system.id, metric: w.metric,
          evaq: median(evaq.map(s => metricOf(s, w.metric))), base: median(base.map(s => metricOf(s, w.metric))),
          ratio: median(ratios), ratiosPerRound: ratios, group: groups.length === 0 ? undefined : median(groups),
        })
      }
    }
  }
  return out
}

/** evaq's drain against evaq's push-256 of the same round and size. */
export function drainVsPush (state: MatrixState, size: number): { drain: number, push: number, ratio: number, ratiosPerRound: number[] } | undefined {
  const drain = state.samples.get(caseKey('drain', 'evaq', size))
  const push = state.samples.get(caseKey('push-256', 'evaq', size))
  if (drain === undefined || push === undefined) return undefined
  const ratios = perRound(drain, push, 'msgsPerSec')
  return { drain: median(drain.map(s => s.msgsPerSec)), push: median(push.map(s => s.msgsPerSec)), ratio: median(ratios), ratiosPerRound: ratios }
}

// ---------------------------------------------------------------------------------------------
// The table: one row per workload and size, the ratio to each baseline in its own column

/** Baseline columns, in order. */
export const COLUMNS: readonly SystemId[] = ['fs-overwrite', 'fs', 'level-put', 'level-batch', 'level-segment', 'sqlite', 'lmdb', 'bullmq']

const COLUMN_TITLES: Record<SystemId, string> = {
  evaq: 'evaq',
  'fs-overwrite': 'vs disk limit (overwrite + fdatasync)',
  fs: 'vs plain file append',
  'level-put': 'vs classic-level put',
  'level-batch': 'vs classic-level batch',
  'level-segment': 'vs LevelDB ceiling',
  sqlite: 'vs better-sqlite3',
  lmdb: 'vs lmdb-js',
  bullmq: 'vs BullMQ',
}

export function comparisonTable (state: MatrixState, ratios: readonly RatioResult[]): { header: string[], align: string[], rows: string[][] } {
  const header = ['scenario', 'payload', 'evaq', ...COLUMNS.map(c => COLUMN_TITLES[c])]
  const align = ['---', '---:', '---:', ...COLUMNS.map(() => '---:')]
  const rows: string[][] = []
  for (const w of WORKLOADS) {
    for (const size of w.sizes) {
      const evaq = state.samples.get(caseKey(w.id, 'evaq', size))
      if (evaq === undefined) continue
      const value = median(evaq.map(s => metricOf(s, w.metric)))
      const seg = median(evaq.map(s => s.segmentRecords ?? NaN))
      const evaqText = w.metric === 'msgsPerSec' ? `${short(value)} msg/s` : `p50 ${int(value)} µs`
      const cells = COLUMNS.map(c => {
        if (!w.systems.some(s => s.id === c)) return ''
        const r = ratios.find(x => x.workload === w.id && x.size === size && x.baseline === c)
        if (r === undefined) {
          const why = c === 'bullmq' ? 'not run (no redis-server)' : 'not run'
          return w.baselineSizes.includes(size) ? why : ''
        }
        const base = w.metric === 'msgsPerSec' ? short(r.base) : `${int(r.base)} µs`
        return `${formatRatio(r.ratio)} (${base})`
      })
      const name = w.id === 'drain' ? `${w.title}` : w.title
      const segments = Number.isFinite(seg) && w.id !== 'seq' ? `; evaq segments of ${seg.toFixed(0)}` : ''
      rows.push([`\`${w.id}\`: ${name}${segments}`, sizeName(size), evaqText, ...cells])
    }
  }
  return { header, align, rows }
}

// ---------------------------------------------------------------------------------------------
// What the measurements cost: write amplification and records per CPU-second (lib/io.ts)

type Table = { header: string[], align: string[], rows: string[][] }

/** One row per workload and size that evaq ran, one column per system: `metric` of the case, the median over rounds. */
function perSystemTable (
  state: MatrixState, workloads: readonly WorkloadSpec[], metric: (s: Sample, size: number) => number, format: (n: number) => string
): Table {
  const systems: SystemId[] = ['evaq', ...COLUMNS]
  const header = ['scenario', 'payload', ...systems.map(s => SYSTEM_NAMES[s])]
  const rows: string[][] = []
  for (const w of workloads) {
    for (const size of w.sizes) {
      if (state.samples.get(caseKey(w.id, 'evaq', size)) === undefined) continue
      rows.push([`\`${w.id}\``, sizeName(size), ...systems.map(id => {
        if (!w.systems.some(s => s.id === id)) return ''
        const samples = state.samples.get(caseKey(w.id, id, size))
        if (samples === undefined) return w.baselineSizes.includes(size) || id === 'evaq' ? 'not run' : ''
        return format(median(samples.map(x => metric(x, size)).filter(Number.isFinite)))
      })])
    }
  }
  return { header, align: ['---', '---:', ...systems.map(() => '---:')], rows }
}

/** Bytes written to storage (write_bytes) per payload byte pushed (for `drain`: drained), every case. */
export const amplificationTable = (state: MatrixState): Table => perSystemTable(state, WORKLOADS, writeAmplification, formatAmp)

/** Records per CPU-second (process user + system; BullMQ's includes redis-server), `push-256` at every size. */
export const cpuTable = (state: MatrixState): Table =>
  perSystemTable(state, WORKLOADS.filter(w => w.id === 'push-256'), s => recordsPerCpuSecond(s), short)

// ---------------------------------------------------------------------------------------------
// Reports: perf/results/<date>-<workload>.json (quick: quick-<workload>.json)

export async function writeMatrixJson (info: RunInfo, state: MatrixState, ratios: readonly RatioResult[], versions: object): Promise<string[]> {
  if (info.config.mode === 'custom') return []
  await mkdir(RESULTS_DIR, { recursive: true })
  const written: string[] = []
  const prefix = info.config.mode === 'quick' ? 'quick' : localDate(info.startedAt)
  for (const w of WORKLOADS) {
    const cases = w.systems.flatMap(system => w.sizes.map(size => {
      const key = caseKey(w.id, system.id, size)
      const rounds = state.samples.get(key)
      if (rounds === undefined) return undefined
      return {
        key, system: system.id, title: system.title, size,
        writeAmplification: median(rounds.map(r => writeAmplification(r, size)).filter(Number.isFinite)),
        recordsPerCpuSecond: median(rounds.map(recordsPerCpuSecond).filter(Number.isFinite)),
        rounds, cpu: state.cpu.get(key) ?? [],
      }
    })).filter(c => c !== undefined)
    if (cases.length === 0) continue
    const report = {
      benchmark: w.id,
      title: w.title,
      durability: w.durability,
      metric: w.metric === 'msgsPerSec' ? 'messages per second (higher is better)' : 'p50 latency of one call in µs (lower is better)',
      mode: info.config.mode,
      startedAt: info.startedAt.toISOString(),
      finishedAt: info.finishedAt.toISOString(),
      git: gitRevision(),
      machine: info.machine,
      versions,
      loadAverage: loadRecord(info),
      config: {
        durationMs: info.config.durationMs, warmupMs: info.config.warmupMs, rounds: info.config.rounds, quietWaitMs: info.config.quietWaitMs,
        payload: 'PAYLOAD_POOL (1,024) distinct buffers of random bytes per size, used in turn',
        roundOrder: 'workloads reversed every other round; within a workload and size evaq first, then the baselines (reversed every other round)',
        skipped: Object.fromEntries(state.skipped),
        resources: 'rounds[].resources: CPU µs (process.cpuUsage, plus redis-server from /proc/<pid>/stat) and write_bytes / wchar deltas of ' +
          '/proc/self/io (plus redis-server\'s /proc/<pid>/io) over the measured interval only; writeAmplification = write_bytes / ' +
          '(messages × payload size), the median over rounds; recordsPerCpuSecond = messages / CPU seconds, the median over rounds',
      },
      cases,
      ratios: ratios.filter(r => r.workload === w.id),
    }
    const file = path.join(RESULTS_DIR, `${prefix}-${w.id}.json`)
    await writeFile(file, JSON.stringify(report, null, 2) + '\n')
    written.push(file)
  }
  return written
}

export { SYSTEM_NAMES }
