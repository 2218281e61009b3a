/**
 * The comparison's report: the targets (lib/targets.ts), the markdown tables (perf/results/compare.md and the
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
import { amplificationTable, caseKey, comparisonTable, cpuTable, formatAmp, type MatrixState, type RatioResult, sizeName } from './compare.js'
import type { PushDrainResult } from './push-drain.js'
import { SYSTEM_NAMES, type SystemId, WORKLOADS } from './systems.js'
import { missedLine, type Target, targets } from './targets.js'

const README_START = '<!-- bench:compare:start -->'
const README_END = '<!-- bench:compare:end -->'
const CHART = 'throughput.svg'

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

const TARGET_HEADER = ['target', 'measured', 'ratio', 'goal', 'met?']

const AMP_CAPTION = 'Write amplification: bytes this process wrote to storage during the measurement (`write_bytes` of /proc/self/io; ' +
  "BullMQ's: redis-server's) per payload byte pushed (`drain`: drained); medians over rounds, see perf/README.md"
const CPU_CAPTION = '`push-256`: records per CPU-second of the process (user + system, all threads; BullMQ: plus redis-server), medians over rounds'

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
    formatAmp(p.writeAmplification),
  ]]
}
const PUSH_DRAIN_HEADER = [
  'push-drain', 'push', 'drain', 'push latency p50 / p99 / p99.9', 'RSS max', 'bytes on disk max', 'lag max (records)', 'write amplification',
]

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
  const amp = amplificationTable(r.state)
  if (amp.rows.length > 0) {
    console.log()
    console.log(`${AMP_CAPTION}:`)
    console.log(textTable(amp.header, amp.rows.map(row => row.map(c => c.replace(/`/g, '')))))
  }
  const cpu = cpuTable(r.state)
  if (cpu.rows.length > 0) {
    console.log()
    console.log(`${CPU_CAPTION}:`)
    console.log(textTable(cpu.header, cpu.rows.map(row => row.map(c => c.replace(/`/g, '')))))
  }
  const ts = targets(r)
  if (ts.length > 0) {
    console.log()
    console.log(textTable(TARGET_HEADER, targetRows(ts)))
    for (const t of ts) {
      if (t.perRound !== undefined && t.perRound.length > 1) {
        console.log(`${t.id.padEnd(26)} per-round ratios: ${t.perRound.map(formatRatio).join(', ')}`)
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
        'lower is better for evaq). The disk limit overwrites space written and synced before the measurement; the plain file append ' +
        'grows its file. The grouped baselines (disk limit, plain file append, classic-level batch, LevelDB ceiling, better-sqlite3 in ' +
        '`push-256` and `push-256-none`) write evaq\'s mean segment size of the same round as one synced group, and at least the ' +
        '256 records the callers have in flight (evaq splits them into two flushes to keep two in flight); lmdb-js batches ' +
        'the puts of one event turn into one transaction by itself.',
      ''
    )
  }
  if (groups.length > 0) {
    const chart = config.mode === 'quick' ? `quick-${CHART}` : 'perf/results/' + CHART
    sections.push(`![Throughput per scenario, evaq against its baselines](${chart})`, '')
  }
  const amp = amplificationTable(r.state)
  if (amp.rows.length > 0) sections.push(`${AMP_CAPTION}:`, '', markdownTable(amp.header, amp.align, amp.rows), '')
  const cpu = cpuTable(r.state)
  if (cpu.rows.length > 0) sections.push(`${CPU_CAPTION}:`, '', markdownTable(cpu.header, cpu.align, cpu.rows), '')
  if (ts.length > 0) {
    sections.push(markdownTable(TARGET_HEADER, ['---', '---:', '---:', ':---:', ':---:'], targetRows(ts)), '')
    sections.push(missed.length === 0
      ? 'Every target was met in this run.'
      : `Missed in this run: ${missed.map(missedLine).join('; ')}. ` +
        'What limits evaq there: [perf/README.md](perf/README.md#what-limits-evaq).', '')
  }
  if (r.pushDrain !== undefined) {
    sections.push(markdownTable(PUSH_DRAIN_HEADER, ['---', ...PUSH_DRAIN_HEADER.slice(1).map(() => '---:')], pushDrainRows(r.pushDrain)), '')
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
