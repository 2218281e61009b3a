/**
 * The comparison's report: the targets, the markdown tables (perf/results/compare.md and the
 * block in perf/README.md between `<!-- bench:compare:start -->` and `<!-- bench:compare:end -->`), the SVG
 * chart and the JSON of the once-only scenarios. Everything here is generated from the results.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { BacklogResult } from './backlog.js'
import { throughputSvg } from './chart.js'
import {
  formatMet, formatRatio, gitRevision, int, loadRecord, loadSentence, localDate, machineLine, markdownTable, median, RESULTS_DIR,
  type RunInfo, textTable, updateReadme,
} from './common.js'
import { caseKey, comparisonTable, drainVsPush, type MatrixState, type RatioResult, sizeName } from './compare.js'
import type { PushDrainResult } from './push-drain.js'
import { SYSTEM_NAMES, type SystemId, WORKLOADS } from './systems.js'

const README_START = '<!-- bench:compare:start -->'
const README_END = '<!-- bench:compare:end -->'
const CHART = 'throughput.svg'

export interface Target {
  readonly id: string
  readonly text: string
  /** What was measured, with the ratio's two sides. */
  readonly measured: string
  readonly ratio: number | undefined
  readonly perRound?: readonly number[]
  readonly target: string
  readonly met: boolean | undefined
  /** Why it could not be judged. */
  readonly note?: string
}

export interface Results {
  readonly state: MatrixState
  readonly ratios: readonly RatioResult[]
  readonly pushDrain: PushDrainResult | undefined
  readonly backlog: BacklogResult | undefined
  /** One line per scenario that did not run (HTTP pending, redis-server missing). */
  readonly pending: readonly string[]
  readonly versions: object
}

const k = (n: number): string => `${int(n)} msg/s`

export function targets (r: Results): Target[] {
  const out: Target[] = []
  const ratio = (baseline: SystemId): RatioResult | undefined => r.ratios.find(x => x.workload === 'push-256' && x.size === 1024 && x.baseline === baseline)
  const push = (id: string, baseline: SystemId, min: number, what: string): void => {
    const x = ratio(baseline)
    const skipped = r.state.skipped.get(baseline)
    if (x === undefined && r.state.samples.get(caseKey('push-256', 'evaq', 1024)) === undefined) return
    out.push({
      id, text: `durable push, 256 callers, 1 KiB: evaq vs ${what}`,
      measured: x === undefined ? 'not run' : `${k(x.evaq)} vs ${k(x.base)}${x.group === undefined ? '' : ` (groups of ${int(x.group)})`}`,
      ratio: x?.ratio, perRound: x?.ratiosPerRound, target: `≥ ${min}×`, met: x === undefined ? undefined : x.ratio >= min,
      ...(x === undefined && skipped !== undefined ? { note: skipped } : {}),
    })
  }
  push('push-vs-disk', 'fs', 0.35, 'the disk limit at the same group size')
  push('push-vs-level-put', 'level-put', 20, 'raw classic-level put with sync')
  push('push-vs-sqlite', 'sqlite', 2, 'better-sqlite3 FULL with the same batching')
  push('push-vs-bullmq', 'bullmq', 5, 'BullMQ with appendfsync always')
  const seq = r.ratios.find(x => x.workload === 'seq' && x.size === 1024 && x.baseline === 'fs')
  if (seq !== undefined) {
    out.push({
      id: 'seq-p50-vs-fdatasync', text: 'one caller, sequential durable push, 1 KiB: p50 vs one write + fdatasync of the same bytes',
      measured: `${int(seq.evaq)} µs vs ${int(seq.base)} µs`, ratio: seq.ratio, perRound: seq.ratiosPerRound, target: '≤ 1.3×', met: seq.ratio <= 1.3,
    })
  }
  const drain = drainVsPush(r.state, 1024)
  if (drain !== undefined) {
    out.push({
      id: 'drain-vs-push', text: 'drain (next + ack + cleanup) vs durable push with 256 callers, 1 KiB, same round',
      measured: `${int(drain.drain)} rec/s vs ${k(drain.push)}`, ratio: drain.ratio, perRound: drain.ratiosPerRound, target: '≥ 1.0×', met: drain.ratio >= 1,
    })
  }
  if (r.pushDrain !== undefined) {
    const p99 = r.pushDrain.pushLatency.p99Us
    out.push({
      id: 'push-drain-p99', text: `steady state (push 256 callers + drain, ${(r.pushDrain.durationMs / 1000).toFixed(0)} s, 1 KiB): push p99`,
      measured: `${(p99 / 1000).toFixed(2)} ms ` +
        `(p50 ${(r.pushDrain.pushLatency.p50Us / 1000).toFixed(2)} ms, p99.9 ${(r.pushDrain.pushLatency.p999Us / 1000).toFixed(2)} ms)`,
      ratio: p99 / 5000, target: '≤ 5 ms', met: p99 <= 5000,
    })
  }
  const points = r.backlog?.points ?? []
  const lo = points[0]
  const hi = points[points.length - 1]
  if (lo !== undefined && hi !== undefined && hi !== lo) {
    const scaled = hi.records < 1e7 ? ` (largest backlog measured: ${int(hi.records)})` : ''
    out.push({
      id: 'open-time',
      text: `open time, ${int(hi.records)} vs ${int(lo.records)} records (${r.backlog!.payloadBytes} B payloads), ` +
        `first open after the writer closed${scaled}`,
      measured: `${hi.first.openMs.toFixed(0)} ms vs ${lo.first.openMs.toFixed(0)} ms ` +
        `(second open: ${hi.second.openMs.toFixed(0)} ms vs ${lo.second.openMs.toFixed(0)} ms)`,
      ratio: hi.first.openMs / lo.first.openMs, target: '≤ 2×', met: hi.first.openMs / lo.first.openMs <= 2,
    })
    out.push({
      id: 'open-rss', text: `RSS after opening ${int(hi.records)} records and reading one batch${scaled}`,
      measured: `${(hi.first.rssAfterRead / 1e6).toFixed(0)} MB (before open ${(hi.first.rssBefore / 1e6).toFixed(0)} MB)`,
      ratio: hi.first.rssAfterRead / 200e6, target: '< 200 MB', met: hi.first.rssAfterRead < 200e6,
    })
  }
  return out
}

const TARGET_HEADER = ['target', 'measured', 'ratio', 'goal', 'met?']

function targetRows (ts: readonly Target[]): string[][] {
  return ts.map(t => [
    t.text,
    t.measured + (t.note === undefined ? '' : ` (${t.note})`),
    t.ratio === undefined ? '—' : formatRatio(t.ratio),
    t.target,
    formatMet(t.met),
  ])
}

function pushDrainRows (p: PushDrainResult): string[][] {
  const l = p.pushLatency
  return [[
    `${(p.elapsedMs / 1000).toFixed(0)} s, 256 callers + 1 subscriber, ${sizeName(p.payloadBytes)}`,
    k(p.pushMsgsPerSec), `${int(p.drainMsgsPerSec)} rec/s`,
    `${(l.p50Us / 1000).toFixed(2)} / ${(l.p99Us / 1000).toFixed(2)} / ${(l.p999Us / 1000).toFixed(2)} ms`,
    `${(p.rssMax / 1e6).toFixed(0)} MB`, `${(p.dirBytesMax / 1e6).toFixed(0)} MB (end ${(p.dirBytesEnd / 1e6).toFixed(0)} MB)`, int(p.lagMax),
  ]]
}
const PUSH_DRAIN_HEADER = ['push-drain', 'push', 'drain', 'push latency p50 / p99 / p99.9', 'RSS max', 'bytes on disk max', 'lag max (records)']

function backlogRows (b: BacklogResult): string[][] {
  return b.points.map(p => [
    int(p.records), `${(p.dirBytes / 1e6).toFixed(0)} MB`, `${p.first.openMs.toFixed(0)} ms`, `${p.second.openMs.toFixed(0)} ms`,
    `${(p.first.rssAfterRead / 1e6).toFixed(0)} MB`, `${p.first.firstReadMs.toFixed(1)} ms`, String(p.first.keysRead), `${p.writerCloseMs.toFixed(0)} ms`,
  ])
}
const BACKLOG_HEADER = [
  'backlog (records)', 'on disk', 'first open', 'second open',
  'RSS after open + one read', 'first read (1,000)', 'keys read at open', "writer's close",
]

/** Throughput groups for the chart: every msg/s workload at every size evaq ran. */
function chartGroups (state: MatrixState): Array<{ label: string, bars: Array<{ system: SystemId, value: number }> }> {
  const groups: Array<{ label: string, bars: Array<{ system: SystemId, value: number }> }> = []
  for (const w of WORKLOADS) {
    if (w.metric !== 'msgsPerSec') continue
    for (const size of w.sizes) {
      const bars = w.systems.map(s => {
        const samples = state.samples.get(caseKey(w.id, s.id, size))
        return samples === undefined ? undefined : { system: s.id, value: median(samples.map(x => x.msgsPerSec)) }
      }).filter(b => b !== undefined)
      if (bars.length > 1) groups.push({ label: `${w.id}, ${sizeName(size)}`, bars })
    }
  }
  return groups
}

export function printReport (r: Results): void {
  const table = comparisonTable(r.state, r.ratios)
  if (table.rows.length > 0) {
    console.log()
    console.log('evaq / baseline (median of per-round ratios; for `seq` the ratio of p50 latencies, lower is better), baseline value in parentheses:')
    console.log(textTable(table.header, table.rows.map(row => row.map(c => c.replace(/`/g, '')))))
  }
  const ts = targets(r)
  if (ts.length > 0) {
    console.log()
    console.log(textTable(TARGET_HEADER, targetRows(ts)))
    for (const t of ts) {
      if (t.perRound !== undefined && t.perRound.length > 1) {
        console.log(`${t.id.padEnd(22)} per-round ratios: ${t.perRound.map(formatRatio).join(', ')}`)
      }
    }
  }
  if (r.pushDrain !== undefined) {
    console.log()
    console.log(textTable(PUSH_DRAIN_HEADER, pushDrainRows(r.pushDrain)))
  }
  if (r.backlog !== undefined && r.backlog.points.length > 0) {
    console.log()
    console.log(textTable(BACKLOG_HEADER, backlogRows(r.backlog)))
    if (r.backlog.note !== undefined) console.log(r.backlog.note)
  }
  for (const line of r.pending) console.log(line)
}

/** Full run: compare.md, the chart, push-drain and backlog JSON, the block in perf/README.md. Quick run: the same under quick-* names, no README. */
export async function writeReport (info: RunInfo, r: Results): Promise<void> {
  const { config, machine: facts, startedAt } = info
  if (config.mode === 'custom') return
  await mkdir(RESULTS_DIR, { recursive: true })
  const date = localDate(startedAt)
  const prefix = config.mode === 'quick' ? 'quick' : date
  const written: string[] = []
  const once = {
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    finishedAt: info.finishedAt.toISOString(),
    git: gitRevision(),
    machine: facts,
    versions: r.versions,
    loadAverage: loadRecord(info),
  }
  if (r.pushDrain !== undefined) {
    const file = path.join(RESULTS_DIR, `${prefix}-push-drain.json`)
    await writeFile(file, JSON.stringify({ benchmark: 'push-drain', ...once, cpu: info.cpu['push-drain'] ?? [], result: r.pushDrain }, null, 2) + '\n')
    written.push(file)
  }
  if (r.backlog !== undefined) {
    const file = path.join(RESULTS_DIR, `${prefix}-backlog.json`)
    await writeFile(file, JSON.stringify({ benchmark: 'backlog', ...once, cpu: info.cpu.backlog ?? [], result: r.backlog }, null, 2) + '\n')
    written.push(file)
  }

  const groups = chartGroups(r.state)
  const chartFile = path.join(RESULTS_DIR, config.mode === 'quick' ? `quick-${CHART}` : CHART)
  if (groups.length > 0) {
    const subtitle = `${date}, ${facts.cpuCount} × ${facts.cpuModel}, ${facts.tmpdirFilesystem?.type ?? 'unknown fs'}, Node ${facts.node}; ` +
      `medians of ${config.rounds} round(s) of ${config.durationMs / 1000} s`
    await writeFile(chartFile, throughputSvg('evaq against its baselines: throughput per scenario (same run)', subtitle, groups, SYSTEM_NAMES))
    written.push(chartFile)
  }

  const table = comparisonTable(r.state, r.ratios)
  const ts = targets(r)
  const missed = ts.filter(t => t.met === false)
  const sections: string[] = []
  if (table.rows.length > 0) {
    sections.push(
      markdownTable(table.header, table.align, table.rows),
      '',
      'Each cell: evaq / baseline (the median of the per-round ratios), the baseline\'s median in parentheses. Throughput in ' +
        'messages per second, higher is better for evaq; for `seq` the cells compare p50 latencies of one call (evaq / baseline: ' +
        'lower is better for evaq). The grouped baselines (disk limit, classic-level batch, LevelDB ceiling, better-sqlite3 in ' +
        '`push-256` and `push-256-none`) write evaq\'s mean segment size of the same round as one synced group.',
      ''
    )
  }
  if (groups.length > 0) {
    const chart = config.mode === 'quick' ? `quick-${CHART}` : 'perf/results/' + CHART
    sections.push(`![Throughput per scenario, evaq against its baselines](${chart})`, '')
  }
  if (ts.length > 0) {
    sections.push(markdownTable(TARGET_HEADER, ['---', '---:', '---:', ':---:', ':---:'], targetRows(ts)), '')
    sections.push(missed.length === 0
      ? 'Every target was met in this run.'
      : `Missed in this run: ${missed.map(t => `${t.text} (${t.ratio === undefined ? t.measured : formatRatio(t.ratio)} against ${t.target})`).join('; ')}. ` +
        'What limits evaq there: [perf/README.md](perf/README.md#what-limits-evaq).', '')
  }
  if (r.pushDrain !== undefined) {
    sections.push(markdownTable(PUSH_DRAIN_HEADER, ['---', '---:', '---:', '---:', '---:', '---:', '---:'], pushDrainRows(r.pushDrain)), '')
  }
  if (r.backlog !== undefined && r.backlog.points.length > 0) {
    sections.push(markdownTable(BACKLOG_HEADER, ['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:'], backlogRows(r.backlog)), '')
    const backlogNote = r.backlog.note === undefined ? '' : ` ${r.backlog.note}`
    sections.push(`Backlog of ${r.backlog.payloadBytes} B records (10^7 × 1 KiB would not fit the run's time); each open in a fresh process.${backlogNote}`, '')
  }
  for (const line of r.pending) sections.push(`${line}  `)
  const caption = `Measured ${date} on ${machineLine(facts)}${facts.disk === undefined ? '' : `, disk ${facts.disk}`}; ` +
    `${config.rounds} alternating round(s) of ${config.durationMs / 1000} s after ${config.warmupMs / 1000} s of warm-up. ${loadSentence(info)} ` +
    'Ratios measured side by side are what to compare across machines; see [perf/README.md](perf/README.md).'
  const body = [...sections, '', caption].join('\n').replace(/\n{3,}/g, '\n\n')

  const mdFile = path.join(RESULTS_DIR, config.mode === 'quick' ? 'quick-compare.md' : 'compare.md')
  await writeFile(mdFile, [
    '# evaq against the disk\'s limit and its peers',
    '',
    '<!-- generated by perf/bench.ts; do not edit -->',
    '',
    body.replace(/\(perf\/results\//g, '(./').replace(/\(perf\/README\.md/g, '(../README.md'),
    '',
  ].join('\n'))
  written.push(mdFile)
  console.log(`wrote ${written.map(f => path.relative(process.cwd(), f)).join(', ')}`)
  // perf/README.md sits beside results/: its links drop the perf/ prefix.
  const readmeBody = body.replace(/\(perf\/results\//g, '(results/').replace(/\(perf\/README\.md/g, '(README.md')
  if (config.mode === 'full' && await updateReadme(README_START, README_END, readmeBody)) console.log('updated perf/README.md (compare block)')
}
