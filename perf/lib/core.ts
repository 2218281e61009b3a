/**
 * The subscriber-core scenarios that run once: reading the head of a log after a million
 * acknowledged records, and the memory a growing backlog costs (in a child process, see
 * rss-child.ts). Draining and pushing while draining are part of the comparison (systems.ts,
 * push-drain.ts). See perf/README.md for what each one measures.
 */
import { fork } from 'node:child_process'
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import type { Log } from '../../src/log/log.js'
import {
  CALLERS, type Config, loadRecord, loadSentence, type RunInfo, dirBytes, formatMet, formatRatio, gitRevision, int, type LatencySample, loadAverage, localDate,
  machineLine, markdownTable, nextPayload, PAYLOAD_BYTES, PAYLOAD_NOTE, PERF_DIR, RESULTS_DIR, summarize, textTable,
  tick, updateReadme,
} from './common.js'
import type { RssChildArgs, RssGrowResult, RssReopenResult, RssSplit } from './rss-child.js'

const README_START = '<!-- bench:core:start -->'
const README_END = '<!-- bench:core:end -->'

/** Records per `next()` in every drain loop. 1,000 × 1 KiB fits next()'s default 1 MiB maxBytes. */
const FETCH = 1000
/** `evaq-head-read` builds its history with pushWalMany calls of this many records. */
const HEAD_CHUNK = 1000
/** Untimed head-read iterations before the first timed phase (JIT). */
const HEAD_WARMUP = 200
/** How far `stats().count` is polled for 0 (each try yields once to the event loop). */
const COUNT_ZERO_TRIES = 100_000
/** Targets. */
const HEAD_P99_TARGET_US = 2000
const RSS_TARGET_BYTES = 200e6
const RSS_FLAT_TARGET = 1.25
const RSS_FRACTIONS = [0.1, 0.25, 0.5, 0.75, 1] as const

export type CoreOnceId = 'evaq-head-read' | 'evaq-rss-backlog'
export const CORE_IDS: readonly string[] = ['evaq-head-read', 'evaq-rss-backlog']

// ---------------------------------------------------------------------------------------------
// Helpers

/** Push `total` records with sequential pushWalMany calls of `chunk` records (one segment each). */
async function build (q: Evaq, total: number, chunk: number): Promise<{ ms: number, msgsPerSec: number }> {
  const t0 = performance.now()
  for (let done = 0; done < total; done += chunk) {
    await q.pushWalMany(Array.from({ length: Math.min(chunk, total - done) }, nextPayload))
  }
  const ms = performance.now() - t0
  return { ms, msgsPerSec: total / ms * 1000 }
}

/** Poll `stats().count` until 0: the time cleanup needed after `since` (undefined if it never got there). */
async function countZero (q: Evaq, since: number): Promise<{ ms: number | undefined, tries: number }> {
  for (let tries = 0; tries < COUNT_ZERO_TRIES; tries++) {
    if ((await q.wal.stats()).count === 0) return { ms: performance.now() - since, tries }
    await tick()
  }
  return { ms: undefined, tries: COUNT_ZERO_TRIES }
}

// ---------------------------------------------------------------------------------------------
// evaq-head-read

type HeadPhaseName = 'fresh' | 'after-acks' | 'after-compact'

export interface HeadPhase {
  readonly phase: HeadPhaseName
  /** `q.wal.read({ maxCount: 1 })` right after a push of one record. */
  readonly read: LatencySample
  /** `sub.next({ maxCount: 1 })` of that record (then acked, untimed). */
  readonly next: LatencySample
  /**
   * Reads that returned an older record: acknowledged, but its cleanup (asynchronous, after the
   * ack) had not deleted it yet. Still the head of the log, so timed like any other read.
   */
  readonly staleReads: number
  /** Reads or nexts that returned nothing, or not the expected record (should be 0). */
  readonly anomalies: number
  readonly compactions: number
  readonly dirBytes: number
}

export interface HeadVariant {
  readonly variant: 'defaults' | 'uncached'
  readonly options: EvaqOptions
  readonly records: number
  readonly buildMs: number
  readonly buildMsgsPerSec: number
  readonly ackMs: number
  readonly ackMsgsPerSec: number
  readonly countZeroMs: number | undefined
  readonly phases: readonly HeadPhase[]
}

export interface HeadReadResult {
  readonly iterations: number
  readonly variants: readonly HeadVariant[]
  readonly loadAverage: readonly number[]
}

async function headPhase (
  q: Evaq,
  sub: Awaited<ReturnType<Evaq['wal']['subscribe']>>,
  phase: HeadPhaseName,
  iterations: number,
  dir: string
): Promise<HeadPhase> {
  const reads: number[] = []
  const nexts: number[] = []
  let anomalies = 0
  let staleReads = 0
  for (let i = 0; i < iterations; i++) {
    const id = await q.pushWal(nextPayload())
    const t0 = performance.now()
    const records = await q.wal.read({ maxCount: 1 })
    const t1 = performance.now()
    const batch = await sub.next({ maxCount: 1 })
    const t2 = performance.now()
    reads.push((t1 - t0) * 1000)
    nexts.push((t2 - t1) * 1000)
    const head = records[0]?.id
    if (head !== undefined && head < id) staleReads++
    else if (head !== id) anomalies++
    if (batch?.records[0]?.id !== id) anomalies++
    await batch?.ack()
  }
  return { phase, read: summarize(reads), next: summarize(nexts), staleReads, anomalies, compactions: q.wal.compactions, dirBytes: await dirBytes(dir) }
}

async function headVariant (root: string, config: Config, variant: HeadVariant['variant']): Promise<HeadVariant> {
  const dir = path.join(root, `head-read-${variant}`)
  await mkdir(dir)
  // The periodic maintenance would compact the last deleted range within a second; it is pushed
  // out so that "after-acks" measures the head before that compaction. (Compactions that evaq
  // starts by itself every 32 MiB deleted still run, as with the defaults.)
  const options: EvaqOptions = variant === 'defaults'
    ? { maintenanceIntervalMs: 3_600_000 }
    : { maintenanceIntervalMs: 3_600_000, segmentCacheBytes: 0 }
  const q = await Evaq.open(dir, options)
  try {
    const sub = await q.wal.subscribe('head')
    await headPhase(q, sub, 'fresh', HEAD_WARMUP, dir)
    const phases: HeadPhase[] = [await headPhase(q, sub, 'fresh', config.headIterations, dir)]
    const built = await build(q, config.headRecords, HEAD_CHUNK)
    const t0 = performance.now()
    let acked = 0
    for (let b = await sub.next({ maxCount: FETCH }); b !== undefined; b = await sub.next({ maxCount: FETCH })) {
      await b.ack()
      acked += b.records.length
    }
    const ackMs = performance.now() - t0
    const zero = await countZero(q, performance.now())
    phases.push(await headPhase(q, sub, 'after-acks', config.headIterations, dir))
    const wal = q.wal as Log // the log behind the QueueLog surface: compact() is not part of it
    await wal.compact() // joins a compaction in flight, if any ...
    await wal.compact() // ... then compacts what was deleted since
    phases.push(await headPhase(q, sub, 'after-compact', config.headIterations, dir))
    return {
      variant, options, records: config.headRecords, buildMs: built.ms, buildMsgsPerSec: built.msgsPerSec,
      ackMs, ackMsgsPerSec: acked / ackMs * 1000, countZeroMs: zero.ms, phases,
    }
  } finally {
    await q.close()
    await rm(dir, { recursive: true, force: true })
  }
}

export async function runHeadRead (root: string, config: Config): Promise<HeadReadResult> {
  const load = loadAverage()
  const variants: HeadVariant[] = []
  for (const variant of ['defaults', 'uncached'] as const) {
    const v = await headVariant(root, config, variant)
    variants.push(v)
    console.log(`evaq-head-read ${variant.padEnd(8)} ${int(v.records)} records built at ${int(v.buildMsgsPerSec)}/s, acked at ${int(v.ackMsgsPerSec)}/s`)
    for (const p of v.phases) {
      console.log(`  ${p.phase.padEnd(13)} read p50 ${int(p.read.p50Us)} µs p99 ${int(p.read.p99Us)} µs max ${int(p.read.maxUs)} µs | ` +
        `next p50 ${int(p.next.p50Us)} µs p99 ${int(p.next.p99Us)} µs max ${int(p.next.maxUs)} µs | compactions ${p.compactions}, ` +
        `dir ${(p.dirBytes / 1e6).toFixed(0)} MB, ${p.staleReads} stale reads${p.anomalies > 0 ? `, ${p.anomalies} ANOMALIES` : ''}`)
    }
  }
  return { iterations: config.headIterations, variants, loadAverage: load }
}

// ---------------------------------------------------------------------------------------------
// evaq-rss-backlog (in child processes)

export interface RssResult {
  /** The backlog asked for and the one measured (smaller when the disk had too little room). */
  readonly requestedBytes: number
  readonly backlogBytes: number
  readonly freeBytesBefore: number
  readonly note: string | undefined
  readonly grow: RssGrowResult | undefined
  readonly reopen: RssReopenResult | undefined
  readonly loadAverage: readonly number[]
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rss-child.ts')

/** Run rss-child.ts in a fresh Node process (only tsx's loader, no flags of ours) and return its result. */
function runChild<T> (args: RssChildArgs): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const child = fork(CHILD, [JSON.stringify(args)], {
      execArgv: ['--import', import.meta.resolve('tsx')],
      cwd: path.join(PERF_DIR, '..'),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let result: T | undefined
    child.on('message', m => { result = m as T })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (result !== undefined && code === 0) resolve(result)
      else reject(new Error(`rss-child ${args.phase} exited with ${signal ?? code} and ${result === undefined ? 'no' : 'a'} result`))
    })
  })
}

export async function runRss (root: string, config: Config): Promise<RssResult> {
  const load = loadAverage()
  const fs = await statfs(root)
  const free = fs.bavail * fs.bsize
  const requested = config.backlogBytes
  let backlog = requested
  let note: string | undefined
  // LevelDB writes compacted tables before it deletes the old ones: ask for twice the backlog.
  if (free < 2 * requested) {
    backlog = Math.floor(free / 2 / 2 ** 20) * 2 ** 20
    note = `Only ${(free / 2 ** 30).toFixed(1)} GiB free in ${root}: the backlog was scaled down from ` +
      `${(requested / 2 ** 20).toFixed(0)} MiB to ${(backlog / 2 ** 20).toFixed(0)} MiB (2× the backlog must be free).`
    console.log(`evaq-rss-backlog: ${note}`)
  }
  if (backlog < 16 * 2 ** 20) {
    return {
      requestedBytes: requested,
      backlogBytes: 0,
      freeBytesBefore: free,
      note: `${note ?? ''} Skipped: less than 16 MiB of backlog fits.`.trim(),
      grow: undefined,
      reopen: undefined,
      loadAverage: load,
    }
  }
  const dir = path.join(root, 'rss-backlog')
  await mkdir(dir)
  try {
    const grow = await runChild<RssGrowResult>({ phase: 'grow', dir, backlogBytes: backlog })
    let prev = { pushed: 0, elapsedMs: 0 }
    for (const s of grow.samples) {
      const rate = (s.pushed - prev.pushed) / (s.elapsedMs - prev.elapsedMs) * 1000
      prev = s
      console.log(`evaq-rss-backlog ${String(Math.round(s.fraction * 100)).padStart(3)}%  ` +
        `backlog ${(s.backlogBytes / 2 ** 20).toFixed(0)} MiB at ${(s.elapsedMs / 1000).toFixed(1)} s ` +
        `(${int(rate)} msg/s since the last sample): RSS ${memText(s.rss, s.split)}; heap ${mb(s.heapUsed)}, external ${mb(s.external)}`)
    }
    console.log(`evaq-rss-backlog peak RSS ${mb(grow.peakRss)} at ${(grow.peakAtMs / 1000).toFixed(1)} s ` +
      `(peak anon ${mb(grow.peakRssAnon ?? NaN)}, peak file ${mb(grow.peakRssFile ?? NaN)}); ` +
      `pushed at ${int(grow.pushMsgsPerSec)} msg/s; dir ${mb(grow.dirBytes)}; ` +
      `before open ${mb(grow.rssBaseline)}, open ${memText(grow.rssOpen, grow.splitOpen)}`)
    const reopen = await runChild<RssReopenResult>({ phase: 'reopen', dir, backlogBytes: backlog })
    console.log(`evaq-rss-backlog reopen: ${reopen.openMs.toFixed(0)} ms, keysRead ${reopen.keysRead}, RSS ${memText(reopen.rssOpen, reopen.splitOpen)} ` +
      `(before open ${mb(reopen.rssBaseline)}), ` +
      `after the first batch ${memText(reopen.rssAfterNext, reopen.splitAfterNext)} (next ${reopen.firstNextMs.toFixed(1)} ms)`)
    return { requestedBytes: requested, backlogBytes: backlog, freeBytesBefore: free, note, grow, reopen, loadAverage: load }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// The table

export interface CoreRow {
  readonly id: string
  readonly scenario: string
  readonly value: number
  readonly valueText: string
  readonly baseline: number | undefined
  readonly baselineText: string
  readonly ratio: number | undefined
  /** Per-round ratios, for round scenarios. */
  readonly ratiosPerRound?: readonly number[]
  readonly target: string
  readonly met: boolean | undefined
}

export interface CoreInputs {
  readonly head: HeadReadResult | undefined
  readonly rss: RssResult | undefined
}

const mb = (bytes: number): string => Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(0)} MB` : 'n/a'
/** RSS with its anonymous and file-backed parts, where the platform tells them apart. */
const memText = (rss: number, split: RssSplit | undefined): string =>
  split === undefined ? mb(rss) : `${mb(rss)} (anon ${mb(split.rssAnon)}, file ${mb(split.rssFile)})`
const us = (v: number): string => `${int(v)} µs`

export function coreRows (x: CoreInputs): CoreRow[] {
  const rows: CoreRow[] = []
  if (x.head !== undefined) {
    for (const v of x.head.variants) {
      const fresh = v.phases.find(p => p.phase === 'fresh')!
      for (const phase of ['after-acks', 'after-compact'] as const) {
        const p = v.phases.find(q => q.phase === phase)
        if (p === undefined) continue
        for (const op of ['read', 'next'] as const) {
          const s = p[op]
          const base = fresh[op]
          const call = op === 'read' ? '`wal.read({ maxCount: 1 })`' : '`sub.next({ maxCount: 1 })`'
          const cache = v.variant === 'defaults' ? 'segment cache on' : 'segmentCacheBytes 0'
          const when = phase === 'after-acks' ? `after ${int(v.records)} acks` : 'after compact()'
          rows.push({
            id: `head-${v.variant}-${phase}-${op}`,
            scenario: `\`evaq-head-read\` (${cache}), ${when}: ${call} p99 (p50) vs a fresh queue`,
            value: s.p99Us, valueText: `${us(s.p99Us)} (${us(s.p50Us)})`,
            baseline: base.p99Us, baselineText: `${us(base.p99Us)} (${us(base.p50Us)})`,
            ratio: s.p99Us / base.p99Us, target: 'p99 < 2 ms', met: s.p99Us < HEAD_P99_TARGET_US,
          })
        }
      }
    }
  }

  const g = x.rss?.grow
  if (g !== undefined) {
    const size = (b: number): string => b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`
    for (const s of g.samples) {
      rows.push({
        id: `rss-${Math.round(s.fraction * 100)}`,
        scenario: `\`evaq-rss-backlog\`: RSS at ${Math.round(s.fraction * 100)}% of the backlog (${size(s.backlogBytes)}) vs the empty queue`,
        value: s.rss, valueText: memText(s.rss, s.split), baseline: g.rssOpen, baselineText: memText(g.rssOpen, g.splitOpen),
        ratio: s.rss / g.rssOpen, target: '< 200 MB', met: s.rss < RSS_TARGET_BYTES,
      })
    }
    const first = g.samples[0]
    const last = g.samples[g.samples.length - 1]
    if (first !== undefined && last !== undefined && last !== first) {
      rows.push({
        id: 'rss-flat',
        scenario: '`evaq-rss-backlog`: RSS at 100% vs at 10% of the backlog (flat?)',
        value: last.rss, valueText: memText(last.rss, last.split), baseline: first.rss, baselineText: memText(first.rss, first.split),
        ratio: last.rss / first.rss, target: `≤ ${RSS_FLAT_TARGET}×`, met: last.rss / first.rss <= RSS_FLAT_TARGET,
      })
      if (first.split !== undefined && last.split !== undefined) {
        rows.push({
          id: 'rss-anon-flat',
          scenario: '`evaq-rss-backlog`: anonymous RSS (RssAnon: heaps, buffers, LevelDB memory) at 100% vs at 10%',
          value: last.split.rssAnon, valueText: mb(last.split.rssAnon), baseline: first.split.rssAnon, baselineText: mb(first.split.rssAnon),
          ratio: last.split.rssAnon / first.split.rssAnon, target: '—', met: undefined,
        })
      }
      const rateOf = (a: { pushed: number, elapsedMs: number }, b: { pushed: number, elapsedMs: number }): number =>
        (b.pushed - a.pushed) / (b.elapsedMs - a.elapsedMs) * 1000
      const before = g.samples[g.samples.length - 2]!
      const firstRate = rateOf({ pushed: 0, elapsedMs: 0 }, first)
      const lastRate = rateOf(before, last)
      rows.push({
        id: 'rss-push-rate',
        scenario: `\`evaq-rss-backlog\`: push rate (${CALLERS} callers) over the last quarter of the backlog vs its first 10%`,
        value: lastRate, valueText: `${int(lastRate)} msg/s`, baseline: firstRate, baselineText: `${int(firstRate)} msg/s`,
        ratio: lastRate / firstRate, target: '—', met: undefined,
      })
    }
    rows.push({
      id: 'rss-peak',
      scenario: '`evaq-rss-backlog`: peak RSS while the backlog grew (sampled every 100 ms; anon and file peaks on their own)',
      value: g.peakRss, valueText: `${mb(g.peakRss)}${g.peakRssAnon === undefined ? '' : ` (anon ${mb(g.peakRssAnon)}, file ${mb(g.peakRssFile ?? NaN)})`}`,
      baseline: g.rssOpen, baselineText: memText(g.rssOpen, g.splitOpen),
      ratio: g.peakRss / g.rssOpen, target: '< 200 MB', met: g.peakRss < RSS_TARGET_BYTES,
    })
  }
  const r = x.rss?.reopen
  if (r !== undefined) {
    rows.push({
      id: 'rss-reopen',
      scenario: `\`evaq-rss-backlog\`: RSS after reopening the ${(x.rss!.backlogBytes / 2 ** 30).toFixed(2)} GiB backlog and reading one batch vs before open`,
      value: r.rssAfterNext, valueText: memText(r.rssAfterNext, r.splitAfterNext), baseline: r.rssBaseline, baselineText: mb(r.rssBaseline),
      ratio: r.rssAfterNext / r.rssBaseline, target: '< 200 MB', met: r.rssAfterNext < RSS_TARGET_BYTES,
    })
    rows.push({
      id: 'rss-reopen-time',
      scenario: '`evaq-rss-backlog`: reopen wall time (Evaq.open) vs opening the empty directory',
      value: r.openMs, valueText: `${r.openMs.toFixed(0)} ms`,
      baseline: g?.openMs, baselineText: g === undefined ? '—' : `${g.openMs.toFixed(0)} ms`,
      ratio: g === undefined ? undefined : r.openMs / g.openMs, target: '—', met: undefined,
    })
    rows.push({
      id: 'rss-reopen-keys',
      scenario: '`evaq-rss-backlog`: `openReport.keysRead` at reopen vs at the first open',
      value: r.keysRead, valueText: `${r.keysRead}`,
      baseline: g?.keysRead, baselineText: g === undefined ? '—' : `${g.keysRead}`,
      ratio: undefined, target: '—', met: undefined,
    })
  }
  return rows
}

const TABLE_HEADER = ['scenario', 'value', 'baseline', 'ratio', 'target', 'met?'] as const

function tableRows (rows: readonly CoreRow[]): string[][] {
  return rows.map(r => [r.scenario, r.valueText, r.baselineText, r.ratio === undefined ? '—' : formatRatio(r.ratio), r.target, formatMet(r.met)])
}

export function printCore (rows: readonly CoreRow[]): void {
  if (rows.length === 0) return
  console.log()
  console.log(textTable(TABLE_HEADER, tableRows(rows).map(r => [r[0]!.replace(/`/g, ''), ...r.slice(1)])))
  for (const r of rows) {
    if (r.ratiosPerRound !== undefined && r.ratiosPerRound.length > 0) {
      console.log(`${r.id.padEnd(20)} per-round ratios: ${r.ratiosPerRound.map(formatRatio).join(', ')}`)
    }
  }
}

/** Write the core report (quick: only quick-core.json; full: JSON, core.md, the block in perf/README.md). */
export async function writeCore (info: RunInfo, inputs: CoreInputs, rows: readonly CoreRow[]): Promise<void> {
  const { config, machine: facts, startedAt } = info
  if (config.mode === 'custom' || rows.length === 0) return
  const report = {
    benchmark: 'core',
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    finishedAt: info.finishedAt.toISOString(),
    git: gitRevision(),
    machine: facts,
    loadAverage: loadRecord(info),
    config: {
      payloadBytes: PAYLOAD_BYTES,
      payload: PAYLOAD_NOTE,
      evaqOptions: "defaults (durability 'sync', ackDurability 'sync'), " +
        'except evaq-head-read: maintenanceIntervalMs 3,600,000 (both variants) and segmentCacheBytes 0 (the uncached variant)',
      callers: CALLERS,
      fetch: FETCH,
      durationMs: config.durationMs,
      warmupMs: config.warmupMs,
      rounds: config.rounds,
      quietWaitMs: config.quietWaitMs,
      headRead: { records: config.headRecords, chunk: HEAD_CHUNK, iterations: config.headIterations, warmupIterations: HEAD_WARMUP },
      rssBacklog: {
        requestedBytes: config.backlogBytes,
        fractions: RSS_FRACTIONS,
        subscriber: `next({ maxCount: ${FETCH} }) + ack() once a second`,
        pushers: CALLERS,
      },
      targets: { headP99Us: HEAD_P99_TARGET_US, rssBytes: RSS_TARGET_BYTES, rssFlat: `RSS at 100% ≤ ${RSS_FLAT_TARGET}× RSS at 10%` },
    },
    scenarios: {
      'evaq-head-read': { ...inputs.head, cpu: info.cpu['evaq-head-read'] ?? [] },
      'evaq-rss-backlog': { ...inputs.rss, cpu: info.cpu['evaq-rss-backlog'] ?? [] },
    },
    rows,
  }
  await mkdir(RESULTS_DIR, { recursive: true })
  const json = JSON.stringify(report, null, 2) + '\n'
  if (config.mode === 'quick') {
    const file = path.join(RESULTS_DIR, 'quick-core.json')
    await writeFile(file, json)
    console.log(`wrote ${path.relative(process.cwd(), file)}`)
    return
  }
  const date = localDate(startedAt)
  const jsonFile = path.join(RESULTS_DIR, `${date}-core.json`)
  await writeFile(jsonFile, json)
  const table = markdownTable(TABLE_HEADER, ['---', '---:', '---:', '---:', ':---:', ':---:'], tableRows(rows))
  const backlog = inputs.rss === undefined
    ? ''
    : ` The RSS backlog was ${(inputs.rss.backlogBytes / 2 ** 30).toFixed(2)} GiB${inputs.rss.note === undefined ? '' : ` (${inputs.rss.note})`}.`
  const caption = `Measured ${date} on ${machineLine(facts)}. ${loadSentence(info)} ` +
    `${PAYLOAD_BYTES} B payloads, durable defaults.${backlog} See perf/README.md.`
  const md = [
    '# Subscriber-core benchmark',
    '',
    `<!-- generated by perf/bench.ts from ${path.basename(jsonFile)}; do not edit -->`,
    '',
    `Date: ${date}  `,
    `Machine: ${machineLine(facts)}  `,
    loadSentence(info),
    '',
    table,
    '',
    '`evaq-head-read` and `evaq-rss-backlog` ran once; latencies are nearest-rank ' +
      `percentiles of ${int(config.headIterations)} calls per phase. RSS in MB of 10^6 bytes, measured in child processes.${backlog} ` +
      `Raw numbers: [${path.basename(jsonFile)}](./${path.basename(jsonFile)}).`,
    '',
  ].join('\n')
  const mdFile = path.join(RESULTS_DIR, 'core.md')
  await writeFile(mdFile, md)
  console.log(`wrote ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), mdFile)}`)
  if (await updateReadme(README_START, README_END, `${table}\n\n${caption}`)) console.log('updated perf/README.md (core block)')
}
