/**
 * The subscriber-core scenarios: draining a backlog (alone, and while 256 callers push), reading
 * the head of a log after a million acknowledged records, and the memory a growing backlog costs
 * (in a child process, see rss-child.ts). See perf/README.md for what each one measures.
 */
import { fork } from 'node:child_process'
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import {
  CALLERS, type Config, dirBytes, formatMet, formatRatio, gitRevision, int, type LatencySample, loadAverage, localDate,
  machineLine, markdownTable, median, nextPayload, PAYLOAD_BYTES, PAYLOAD_NOTE, PERF_DIR, RESULTS_DIR, summarize, textTable,
  tick, updateReadme,
} from './common.js'
import { type FoundationSample, loadRecord, loadSentence, type RunInfo } from './foundation.js'
import type { RssChildArgs, RssGrowResult, RssReopenResult, RssSplit } from './rss-child.js'

const README_START = '<!-- bench:core:start -->'
const README_END = '<!-- bench:core:end -->'

/** Records per `next()` in every drain loop. 1,000 × 1 KiB fits next()'s default 1 MiB maxBytes. */
const FETCH = 1000
/** The drain backlog is written in 256-record segments, the shape `evaq-push-256` writes. */
const BACKLOG_CHUNK = CALLERS
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

export type CoreRoundId = 'evaq-drain' | 'evaq-push-drain'
export type CoreOnceId = 'evaq-head-read' | 'evaq-rss-backlog'
export const CORE_IDS: readonly string[] = ['evaq-drain', 'evaq-push-drain', 'evaq-head-read', 'evaq-rss-backlog']

// ---------------------------------------------------------------------------------------------
// evaq-drain

export interface DrainSample {
  readonly kind: 'drain'
  /** The drain rate the backlog was sized with: the calibration's (first round) or the previous round's. */
  readonly rateEstimate: number
  /** Records pushed before the drain: rateEstimate × (warm-up + duration). */
  readonly backlogRecords: number
  readonly buildMs: number
  readonly buildMsgsPerSec: number
  /** Records drained during the warm-up (untimed), from the same backlog. */
  readonly warmupRecords: number
  /** Records drained in the timed part, and the time from its first next() to its last ack. */
  readonly messages: number
  readonly elapsedMs: number
  readonly msgsPerSec: number
  readonly batches: number
  /** Time spent awaiting next() and ack() in the timed part. */
  readonly nextMs: number
  readonly ackMs: number
  /** From the last ack's resolution until `stats().count` was 0 (undefined: not within the tries). */
  readonly countZeroMs: number | undefined
  readonly countZeroTries: number
  /** Most records acknowledged but not yet deleted by cleanup, sampled about once a second. */
  readonly cleanupLagMax: number
  readonly cleanupSamples: number
  /** Background compactions of deleted ranges during the scenario. */
  readonly compactions: number
  readonly loadAverage: readonly number[]
}

/** Records per second one subscriber drains; sizes the next backlog (set by the calibration, then by every round). */
let drainRateEstimate: number | undefined
/** The calibration's result, for the report. */
let drainCalibration: number | undefined

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

/**
 * A short drain of a small backlog, to size the first real one at about `durationMs` of draining.
 * Runs inside the first evaq-drain measurement (after its wait for a quiet machine), untimed.
 */
async function calibrateDrain (dir: string, config: Config): Promise<number> {
  await mkdir(dir)
  const q = await Evaq.open(dir)
  try {
    const sub = await q.wal.subscribe('drain')
    const records = config.mode === 'quick' ? 51_200 : 102_400
    await build(q, records, BACKLOG_CHUNK)
    const t0 = performance.now()
    for (let b = await sub.next({ maxCount: FETCH }); b !== undefined; b = await sub.next({ maxCount: FETCH })) await b.ack()
    return records / (performance.now() - t0) * 1000
  } finally {
    await q.close()
    await rm(dir, { recursive: true, force: true })
  }
}

async function runDrain (dir: string, config: Config): Promise<DrainSample> {
  const load = loadAverage()
  if (drainRateEstimate === undefined) {
    drainRateEstimate = drainCalibration = await calibrateDrain(`${dir}-calibration`, config)
    console.log(`  evaq-drain calibration: ${int(drainCalibration)} rec/s`)
  }
  const rate = drainRateEstimate
  const backlogRecords = Math.ceil(rate * (config.warmupMs + config.durationMs) / 1000 / BACKLOG_CHUNK) * BACKLOG_CHUNK
  const q = await Evaq.open(dir)
  try {
    const sub = await q.wal.subscribe('drain')
    const built = await build(q, backlogRecords, BACKLOG_CHUNK)

    // Warm-up: drain the first part of the same backlog, untimed (at most half of it).
    let warmupRecords = 0
    const warmEnd = performance.now() + config.warmupMs
    while (performance.now() < warmEnd && warmupRecords < backlogRecords / 2) {
      const b = await sub.next({ maxCount: FETCH })
      if (b === undefined) break
      await b.ack()
      warmupRecords += b.records.length
    }

    let messages = 0
    let batches = 0
    let nextMs = 0
    let ackMs = 0
    let cleanupLagMax = 0
    let cleanupSamples = 0
    let sampling: Promise<void> | undefined
    let nextSampleAt = performance.now() + 1000
    const t0 = performance.now()
    let lastAckAt = t0
    for (;;) {
      const a = performance.now()
      const b = await sub.next({ maxCount: FETCH })
      const c = performance.now()
      nextMs += c - a
      if (b === undefined) break
      await b.ack()
      lastAckAt = performance.now()
      ackMs += lastAckAt - c
      messages += b.records.length
      batches++
      if (lastAckAt >= nextSampleAt && sampling === undefined) {
        // Acknowledged but not yet deleted: live records minus those the subscriber has not
        // acknowledged. stats() reads its counters before its first await, so both are read now.
        nextSampleAt = lastAckAt + 1000
        const lag = q.wal.subscribers()[0]!.lagRecords
        sampling = q.wal.stats().then(s => {
          cleanupLagMax = Math.max(cleanupLagMax, s.count - lag)
          cleanupSamples++
        }).finally(() => { sampling = undefined })
      }
    }
    const elapsedMs = lastAckAt - t0
    drainRateEstimate = messages / elapsedMs * 1000
    const zero = await countZero(q, lastAckAt)
    await sampling
    return {
      kind: 'drain',
      rateEstimate: rate,
      backlogRecords,
      buildMs: built.ms,
      buildMsgsPerSec: built.msgsPerSec,
      warmupRecords,
      messages,
      elapsedMs,
      msgsPerSec: messages / elapsedMs * 1000,
      batches,
      nextMs,
      ackMs,
      countZeroMs: zero.ms,
      countZeroTries: zero.tries,
      cleanupLagMax,
      cleanupSamples,
      compactions: q.wal.compactions,
      loadAverage: load,
    }
  } finally {
    await q.close()
  }
}

// ---------------------------------------------------------------------------------------------
// evaq-push-drain

export interface PushDrainSample {
  readonly kind: 'push-drain'
  readonly elapsedMs: number
  readonly pushMessages: number
  readonly pushMsgsPerSec: number
  readonly drainMessages: number
  readonly drainMsgsPerSec: number
  /** Records committed and not acknowledged by the subscriber, sampled every 100 ms. */
  readonly lagStart: number
  readonly lagEnd: number
  readonly lagMax: number
  readonly lagMean: number
  /** Least-squares trend of the lag over the measurement, records per second. */
  readonly lagTrendPerSec: number
  /** lagTrendPerSec × the measurement's length: how much the lag grew along its trend. */
  readonly lagTrendGrowth: number
  /** The trend grew by less than 1% of the records pushed. */
  readonly bounded: boolean
  readonly lagSamples: number
  /** The lag about every second: [ms since the measurement started, records]. */
  readonly lagSeries: ReadonlyArray<readonly [number, number]>
  readonly loadAverage: readonly number[]
}

async function runPushDrain (dir: string, config: Config): Promise<PushDrainSample> {
  const load = loadAverage()
  const q = await Evaq.open(dir)
  try {
    const sub = await q.wal.subscribe('drain')
    let pushed = 0
    let acked = 0
    let stopConsumer = false
    const start = performance.now()
    const warmEnd = start + config.warmupMs
    const deadline = warmEnd + config.durationMs
    let t0: number | undefined
    let pushed0 = 0
    let acked0 = 0
    const lags: Array<[number, number]> = []
    const lag = (): number => q.wal.subscribers()[0]!.lagRecords
    const sampler = setInterval(() => {
      const now = performance.now()
      if (t0 === undefined && now >= warmEnd) { t0 = now; pushed0 = pushed; acked0 = acked }
      if (t0 !== undefined && now < deadline) lags.push([now - t0, lag()])
    }, 100)
    const pusher = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await q.pushWal(nextPayload())
        pushed++
      }
    }
    const consumer = async (): Promise<void> => {
      while (!stopConsumer) {
        const b = await sub.next({ maxCount: FETCH, waitMs: 100 })
        if (b === undefined) continue
        await b.ack()
        acked += b.records.length
      }
    }
    const consuming = consumer()
    await Promise.all(Array.from({ length: CALLERS }, pusher))
    const end = performance.now()
    const lagEnd = lag()
    const pushedEnd = pushed
    const ackedEnd = acked
    clearInterval(sampler)
    stopConsumer = true
    await consuming
    if (t0 === undefined) throw new Error('evaq-push-drain: the sampler never ran after the warm-up')
    const elapsedMs = end - t0
    lags.push([elapsedMs, lagEnd])
    const pushMessages = pushedEnd - pushed0
    const drainMessages = ackedEnd - acked0
    const trend = slope(lags)
    const lagTrendGrowth = trend * elapsedMs / 1000
    let max = 0
    let sum = 0
    for (const [, l] of lags) { max = Math.max(max, l); sum += l }
    const series: Array<[number, number]> = []
    for (const [t, l] of lags) if (series.length === 0 || t - series[series.length - 1]![0] >= 1000) series.push([Math.round(t), l])
    return {
      kind: 'push-drain',
      elapsedMs,
      pushMessages,
      pushMsgsPerSec: pushMessages / elapsedMs * 1000,
      drainMessages,
      drainMsgsPerSec: drainMessages / elapsedMs * 1000,
      lagStart: lags[0]![1],
      lagEnd,
      lagMax: max,
      lagMean: sum / lags.length,
      lagTrendPerSec: trend,
      lagTrendGrowth,
      bounded: lagTrendGrowth < 0.01 * pushMessages,
      lagSamples: lags.length,
      lagSeries: series,
      loadAverage: load,
    }
  } finally {
    await q.close()
  }
}

/** Least-squares slope of [ms, value] points, in value per second. */
function slope (points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  let sx = 0; let sy = 0; let sxx = 0; let sxy = 0
  for (const [ms, y] of points) { const x = ms / 1000; sx += x; sy += y; sxx += x * x; sxy += x * y }
  const d = n * sxx - sx * sx
  return d === 0 ? 0 : (n * sxy - sx * sy) / d
}

export type CoreRoundSample = DrainSample | PushDrainSample

export interface CoreRoundScenario {
  readonly id: CoreRoundId
  readonly title: string
  run (dir: string, config: Config): Promise<CoreRoundSample>
}

export const CORE_ROUND_SCENARIOS: readonly CoreRoundScenario[] = [
  {
    id: 'evaq-drain',
    title: `one subscriber drains a backlog of 256-record segments: next({ maxCount: ${FETCH} }) + ack() until empty (ackDurability 'sync')`,
    run: runDrain,
  },
  {
    id: 'evaq-push-drain',
    title: `${CALLERS} callers pushWal (durability 'sync') while one subscriber drains: next({ maxCount: ${FETCH}, waitMs: 100 }) + ack()`,
    run: runPushDrain,
  },
]

export function formatCoreRoundSample (s: CoreRoundSample): string {
  if (s.kind === 'drain') {
    return `${int(s.msgsPerSec)} rec/s (${int(s.messages)} in ${(s.elapsedMs / 1000).toFixed(2)} s; next ${int(s.nextMs)} ms, ack ${int(s.ackMs)} ms; ` +
      `backlog ${int(s.backlogRecords)} built at ${int(s.buildMsgsPerSec)}/s; count 0 after ${s.countZeroMs === undefined ? 'never' : `${s.countZeroMs.toFixed(1)} ms`}; ` +
      `acked-not-deleted max ${int(s.cleanupLagMax)})`
  }
  return `push ${int(s.pushMsgsPerSec)} msg/s, drain ${int(s.drainMsgsPerSec)} rec/s; lag end ${int(s.lagEnd)}, max ${int(s.lagMax)}, ` +
    `trend ${int(s.lagTrendPerSec)}/s → ${s.bounded ? 'bounded' : 'GROWING'}`
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

async function headPhase (q: Evaq, sub: Awaited<ReturnType<Evaq['wal']['subscribe']>>, phase: HeadPhaseName, iterations: number, dir: string): Promise<HeadPhase> {
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
    await q.wal.compact() // joins a compaction in flight, if any ...
    await q.wal.compact() // ... then compacts what was deleted since
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
    return { requestedBytes: requested, backlogBytes: 0, freeBytesBefore: free, note: `${note ?? ''} Skipped: less than 16 MiB of backlog fits.`.trim(), grow: undefined, reopen: undefined, loadAverage: load }
  }
  const dir = path.join(root, 'rss-backlog')
  await mkdir(dir)
  try {
    const grow = await runChild<RssGrowResult>({ phase: 'grow', dir, backlogBytes: backlog })
    let prev = { pushed: 0, elapsedMs: 0 }
    for (const s of grow.samples) {
      const rate = (s.pushed - prev.pushed) / (s.elapsedMs - prev.elapsedMs) * 1000
      prev = s
      console.log(`evaq-rss-backlog ${String(Math.round(s.fraction * 100)).padStart(3)}%  backlog ${(s.backlogBytes / 2 ** 20).toFixed(0)} MiB at ${(s.elapsedMs / 1000).toFixed(1)} s ` +
        `(${int(rate)} msg/s since the last sample): RSS ${memText(s.rss, s.split)}; heap ${mb(s.heapUsed)}, external ${mb(s.external)}`)
    }
    console.log(`evaq-rss-backlog peak RSS ${mb(grow.peakRss)} at ${(grow.peakAtMs / 1000).toFixed(1)} s (peak anon ${mb(grow.peakRssAnon ?? NaN)}, peak file ${mb(grow.peakRssFile ?? NaN)}); ` +
      `pushed at ${int(grow.pushMsgsPerSec)} msg/s; dir ${mb(grow.dirBytes)}; before open ${mb(grow.rssBaseline)}, open ${memText(grow.rssOpen, grow.splitOpen)}`)
    const reopen = await runChild<RssReopenResult>({ phase: 'reopen', dir, backlogBytes: backlog })
    console.log(`evaq-rss-backlog reopen: ${reopen.openMs.toFixed(0)} ms, keysRead ${reopen.keysRead}, RSS ${memText(reopen.rssOpen, reopen.splitOpen)} ` +
      `(before open ${mb(reopen.rssBaseline)}), after the first batch ${memText(reopen.rssAfterNext, reopen.splitAfterNext)} (next ${reopen.firstNextMs.toFixed(1)} ms)`)
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
  readonly drain: readonly DrainSample[]
  readonly pushDrain: readonly PushDrainSample[]
  /** `evaq-push-256` of the same rounds, index for index. */
  readonly push256: readonly FoundationSample[]
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
  const push256 = x.push256.map(s => s.kind === 'throughput' ? s.msgsPerSec : NaN)

  if (x.drain.length > 0) {
    const drain = x.drain.map(s => s.msgsPerSec)
    const ratios = push256.length === drain.length ? drain.map((d, i) => d / push256[i]!) : []
    const ratio = ratios.length > 0 ? median(ratios) : undefined
    rows.push({
      id: 'drain-vs-push-256',
      scenario: '`evaq-drain`: one subscriber drains a backlog vs `evaq-push-256` (same round)',
      value: median(drain), valueText: `${int(median(drain))} rec/s`,
      baseline: median(push256), baselineText: push256.length > 0 ? `${int(median(push256))} msg/s` : '—',
      ratio, ratiosPerRound: ratios, target: '≥ 1.0×', met: ratio === undefined ? undefined : ratio >= 1,
    })
    const zeros = x.drain.map(s => s.countZeroMs ?? Infinity)
    const zero = median(zeros)
    rows.push({
      id: 'drain-count-zero',
      scenario: '`evaq-drain`: from the last ack until `stats().count` is 0',
      value: zero, valueText: Number.isFinite(zero) ? `${zero.toFixed(1)} ms` : 'never',
      baseline: undefined, baselineText: '—', ratio: undefined, target: '—', met: undefined,
    })
    const lagMax = median(x.drain.map(s => s.cleanupLagMax))
    rows.push({
      id: 'drain-cleanup-lag',
      scenario: '`evaq-drain`: records acknowledged but not yet deleted (max of ~1 s samples)',
      value: lagMax, valueText: `${int(lagMax)} records`,
      baseline: undefined, baselineText: '—', ratio: undefined, target: '—', met: undefined,
    })
  }

  if (x.pushDrain.length > 0) {
    const pushes = x.pushDrain.map(s => s.pushMsgsPerSec)
    const pushRatios = push256.length === pushes.length ? pushes.map((p, i) => p / push256[i]!) : []
    rows.push({
      id: 'push-drain-push',
      scenario: '`evaq-push-drain`: push rate while one subscriber drains vs `evaq-push-256` alone',
      value: median(pushes), valueText: `${int(median(pushes))} msg/s`,
      baseline: median(push256), baselineText: push256.length > 0 ? `${int(median(push256))} msg/s` : '—',
      ratio: pushRatios.length > 0 ? median(pushRatios) : undefined, ratiosPerRound: pushRatios, target: '—', met: undefined,
    })
    const drains = x.pushDrain.map(s => s.drainMsgsPerSec)
    const drainRatios = x.pushDrain.map(s => s.drainMsgsPerSec / s.pushMsgsPerSec)
    rows.push({
      id: 'push-drain-drain',
      scenario: '`evaq-push-drain`: drain rate vs push rate of the same run',
      value: median(drains), valueText: `${int(median(drains))} rec/s`,
      baseline: median(pushes), baselineText: `${int(median(pushes))} msg/s`,
      ratio: median(drainRatios), ratiosPerRound: drainRatios, target: '—', met: undefined,
    })
    const bounded = x.pushDrain.every(s => s.bounded)
    const end = median(x.pushDrain.map(s => s.lagEnd))
    const max = median(x.pushDrain.map(s => s.lagMax))
    rows.push({
      id: 'push-drain-lag',
      scenario: '`evaq-push-drain`: lag (records not acknowledged) at the end vs its max',
      value: end, valueText: `${int(end)} records`,
      baseline: max, baselineText: `${int(max)} records (max)`,
      ratio: max > 0 ? end / max : undefined, ratiosPerRound: x.pushDrain.map(s => s.lagMax > 0 ? s.lagEnd / s.lagMax : NaN),
      target: 'bounded in every round', met: bounded,
    })
  }

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
          rows.push({
            id: `head-${v.variant}-${phase}-${op}`,
            scenario: `\`evaq-head-read\` (${v.variant === 'defaults' ? 'segment cache on' : 'segmentCacheBytes 0'}), ${phase === 'after-acks' ? `after ${int(v.records)} acks` : 'after compact()'}: ${call} p99 (p50) vs a fresh queue`,
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
      const rateOf = (a: { pushed: number, elapsedMs: number }, b: { pushed: number, elapsedMs: number }): number => (b.pushed - a.pushed) / (b.elapsedMs - a.elapsedMs) * 1000
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

/** Write the core report (quick: only quick-core.json; full: JSON, core.md, README). */
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
      evaqOptions: "defaults (durability 'sync', ackDurability 'sync'), except evaq-head-read: maintenanceIntervalMs 3,600,000 (both variants) and segmentCacheBytes 0 (the uncached variant)",
      callers: CALLERS,
      fetch: FETCH,
      durationMs: config.durationMs,
      warmupMs: config.warmupMs,
      rounds: config.rounds,
      quietWaitMs: config.quietWaitMs,
      roundOrder: 'evaq-drain and evaq-push-drain run in the foundation rounds (order reversed every other round), so each is paired with evaq-push-256 of its round',
      drain: { backlogSegmentRecords: BACKLOG_CHUNK, calibratedRecordsPerSec: drainCalibration, backlog: 'drain rate × (warm-up + duration); the rate comes from a calibration drain of 102,400 records in round 1, then from the previous round' },
      headRead: { records: config.headRecords, chunk: HEAD_CHUNK, iterations: config.headIterations, warmupIterations: HEAD_WARMUP },
      rssBacklog: { requestedBytes: config.backlogBytes, fractions: RSS_FRACTIONS, subscriber: `next({ maxCount: ${FETCH} }) + ack() once a second`, pushers: CALLERS },
      targets: { drainVsPush: '≥ 1.0×', headP99Us: HEAD_P99_TARGET_US, rssBytes: RSS_TARGET_BYTES, rssFlat: `RSS at 100% ≤ ${RSS_FLAT_TARGET}× RSS at 10%`, lagBounded: 'lag trend growth < 1% of the records pushed, every round' },
    },
    scenarios: {
      'evaq-drain': { title: CORE_ROUND_SCENARIOS[0]!.title, rounds: inputs.drain, cpu: info.cpu['evaq-drain'] ?? [] },
      'evaq-push-drain': { title: CORE_ROUND_SCENARIOS[1]!.title, rounds: inputs.pushDrain, cpu: info.cpu['evaq-push-drain'] ?? [] },
      'evaq-push-256 (baseline, same rounds)': { rounds: inputs.push256, cpu: info.cpu['evaq-push-256'] ?? [] },
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
  const backlog = inputs.rss === undefined ? '' : ` The RSS backlog was ${(inputs.rss.backlogBytes / 2 ** 30).toFixed(2)} GiB${inputs.rss.note === undefined ? '' : ` (${inputs.rss.note})`}.`
  const caption = `Measured ${date} on ${machineLine(facts)}. ${loadSentence(info)} ` +
    `Round scenarios: medians of ${config.rounds} rounds of ${config.durationMs / 1000} s, ratios are medians of per-round ratios; ` +
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
    `Round scenarios (\`evaq-drain\`, \`evaq-push-drain\`) ran in the same ${config.rounds} rounds as \`evaq-push-256\` ` +
      `(${config.durationMs / 1000} s per measurement after ${config.warmupMs / 1000} s of warm-up); their value and baseline columns are medians ` +
      'and the ratio is the median of the per-round ratios. `evaq-head-read` and `evaq-rss-backlog` ran once; latencies are nearest-rank ' +
      `percentiles of ${int(config.headIterations)} calls per phase. RSS in MB of 10^6 bytes, measured in child processes.${backlog} ` +
      `Raw numbers: [${path.basename(jsonFile)}](./${path.basename(jsonFile)}).`,
    '',
  ].join('\n')
  const mdFile = path.join(RESULTS_DIR, 'core.md')
  await writeFile(mdFile, md)
  console.log(`wrote ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), mdFile)}`)
  if (await updateReadme(README_START, README_END, `${table}\n\n${caption}`)) console.log('updated README.md (core block)')
}
