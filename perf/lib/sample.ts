/**
 * What every system of the comparison shares (lib/systems.ts, lib/disk.ts, lib/lmdb.ts): the
 * context one case runs in, the sample it returns, and the timed drain with its backlog sizing.
 */
import { performance } from 'node:perf_hooks'
import type { Config, LatencySample, ThroughputSample } from './common.js'
import { resourceMeter, type Resources } from './io.js'
import type { RedisServer } from './redis-server.js'

export type WorkloadId = 'push-256' | 'push-256-none' | 'seq' | 'many-1000' | 'drain'
export type SystemId = 'evaq' | 'fs-overwrite' | 'fs' | 'level-put' | 'level-batch' | 'level-segment' | 'sqlite' | 'lmdb' | 'bullmq'

/** Records per `pushWalMany` call, per transaction and per `addBulk` in `many-1000`; records per batch in the drains. */
export const MANY = 1000

export interface Context {
  readonly dir: string
  readonly config: Config
  readonly size: number
  readonly payload: () => Buffer
  /**
   * Records per synced write for the group baselines: evaq's mean segment size measured in the
   * same workload, payload size and round (1 before it is known).
   */
  readonly group: number
  /** Records per second this case drained in the previous round (sizes the drain backlog). */
  readonly drainEstimate: number | undefined
  readonly redis: RedisServer | undefined
}

export interface Sample {
  readonly kind: 'throughput' | 'latency'
  /** Messages per second; for latency samples 10^6 / mean µs (one caller). */
  readonly msgsPerSec: number
  readonly messages: number
  readonly elapsedMs: number
  readonly latency?: LatencySample
  /** Records per synced write (group baselines), per batch or per transaction. */
  readonly group?: number
  /** evaq: records pushed / segments written (LevelDB entries under the wal sublevel), warm-up included. */
  readonly segmentRecords?: number
  readonly segments?: number
  /** Drains: records in the backlog built before draining, and the time it took. */
  readonly backlogRecords?: number
  readonly buildMs?: number
  /** Drains: the backlog ran out before the deadline. */
  readonly exhausted?: boolean
  /** CPU time and bytes written over the measured interval (warm-up, setup and close excluded); see lib/io.ts. */
  readonly resources?: Resources
}

export const fromThroughput = (s: ThroughputSample, extra: Partial<Sample> = {}): Sample =>
  ({ kind: 'throughput', msgsPerSec: s.msgsPerSec, messages: s.messages, elapsedMs: s.elapsedMs, resources: s.resources, ...extra })

export const fromLatency = (s: LatencySample): Sample => {
  const { resources, ...latency } = s
  return { kind: 'latency', msgsPerSec: 1e6 / s.meanUs, messages: s.count, elapsedMs: s.count * s.meanUs / 1000, latency, resources }
}

/** Bytes written to storage per payload byte pushed (or drained) in the measured interval; NaN where unknown. */
export function writeAmplification (s: Sample, size: number): number {
  const written = s.resources?.writeBytes
  return written === undefined || s.messages === 0 ? NaN : written / (s.messages * size)
}

/** Records per CPU-second of this process (and the tracked servers: redis-server) over the measured interval; NaN where unknown. */
export function recordsPerCpuSecond (s: Sample): number {
  const r = s.resources
  if (r === undefined) return NaN
  const us = r.cpuUs + r.serverCpuUs
  return us === 0 ? NaN : s.messages / (us / 1e6)
}

export const sleepUntil = (t: number): Promise<void> => new Promise(resolve => setTimeout(resolve, Math.max(0, t - performance.now())))

// ---------------------------------------------------------------------------------------------
// Drains

/** Records per second guessed for the first round, at 1 KiB; later rounds use the last measurement. */
const DRAIN_GUESS: Record<string, number> = { evaq: 150_000, 'level-batch': 250_000, sqlite: 150_000, lmdb: 150_000, bullmq: 5_000 }
const MAX_BACKLOG_BYTES = 2 ** 30

/** Enough records for the warm-up and the measurement at the expected rate, plus a quarter. */
export function backlogFor (ctx: Context, system: string): number {
  const guess = DRAIN_GUESS[system]! * Math.min(4, Math.max(0.1, 1024 / ctx.size) ** 0.6)
  const rate = ctx.drainEstimate ?? guess
  const records = Math.ceil(rate * (ctx.config.warmupMs + ctx.config.durationMs) / 1000 * 1.25 / MANY) * MANY
  return Math.max(MANY, Math.min(records, Math.floor(MAX_BACKLOG_BYTES / ctx.size / MANY) * MANY))
}

/** Drain untimed for the warm-up, then time `step` (one batch: fetch and delete/ack) until the deadline or the backlog's end. */
export async function timedDrain (config: Config, backlog: number, buildMs: number, step: () => Promise<number>): Promise<Sample> {
  const warmEnd = performance.now() + config.warmupMs
  let taken = 0
  while (performance.now() < warmEnd) {
    const n = await step()
    if (n === 0) break
    taken += n
  }
  const meter = resourceMeter()
  const start = performance.now()
  const deadline = start + config.durationMs
  let messages = 0
  let exhausted = false
  while (performance.now() < deadline) {
    const n = await step()
    if (n === 0) { exhausted = true; break }
    messages += n
  }
  const elapsedMs = performance.now() - start
  const resources = meter()
  if (taken + messages >= backlog) exhausted = true
  return {
    kind: 'throughput', msgsPerSec: messages / elapsedMs * 1000, messages, elapsedMs, backlogRecords: backlog, buildMs, exhausted, group: MANY, resources,
  }
}
