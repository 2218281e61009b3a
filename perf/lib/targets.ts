/**
 * The storage-v2 targets (issue "Storage v2: payload bytes out of LevelDB's write path"), judged
 * on one run's results: each with its measured ratio and whether it was met. perf/README.md
 * ("Targets") says where each comes from.
 */
import { formatRatio, int } from './common.js'
import { caseKey, drainVsPush, type RatioResult, sizeName } from './compare.js'
import type { Results } from './report.js'
import { SYSTEM_NAMES, type SystemId, type WorkloadId } from './systems.js'

export interface Target {
  readonly id: string
  readonly text: string
  /** What was measured, with the ratio's two sides. */
  readonly measured: string
  readonly ratio: number | undefined
  readonly perRound?: readonly number[]
  /** The goal, e.g. `≥ 1.5×`; `—` where the ratio is reported without one. */
  readonly target: string
  readonly met: boolean | undefined
  /** Why it could not be judged. */
  readonly note?: string
}

const SIZES = [100, 1024, 16384] as const
const WRITE_AMP_GOAL = 1.2
const PUSH_DRAIN_P99_US = 5000

const k = (n: number): string => `${int(n)} msg/s`

type Goal = { readonly op: '≥' | '≤', readonly value: number } | undefined

export function targets (r: Results): Target[] {
  const out: Target[] = []
  const evaqRan = (workload: WorkloadId, size: number): boolean => r.state.samples.get(caseKey(workload, 'evaq', size)) !== undefined
  /** evaq vs one baseline in one workload and size, where evaq ran; "not run" (and why, if known) where the baseline did not. */
  const vs = (id: string, workload: WorkloadId, size: number, baseline: SystemId, goal: Goal, text: string): void => {
    if (!evaqRan(workload, size)) return
    const x: RatioResult | undefined = r.ratios.find(y => y.workload === workload && y.size === size && y.baseline === baseline)
    const skipped = r.state.skipped.get(baseline)
    const latency = workload === 'seq'
    const side = (n: number): string => latency ? `${int(n)} µs` : k(n)
    const groups = x?.group === undefined || latency ? '' : ` (${SYSTEM_NAMES[baseline]} in groups of ${int(x.group)})`
    out.push({
      id: `${id}@${size}`,
      text: `${text}, ${sizeName(size)}`,
      measured: x === undefined ? 'not run' : `${side(x.evaq)} vs ${side(x.base)}${groups}`,
      ratio: x?.ratio,
      perRound: x?.ratiosPerRound,
      target: goal === undefined ? '—' : `${goal.op} ${goal.value.toFixed(1)}×`,
      met: x === undefined || goal === undefined ? undefined : goal.op === '≥' ? x.ratio >= goal.value : x.ratio <= goal.value,
      ...(x === undefined && skipped !== undefined ? { note: skipped } : {}),
    })
  }

  for (const size of SIZES) {
    const peer = size === 100 ? 1 : 1.5
    vs('push-vs-sqlite', 'push-256', size, 'sqlite', { op: '≥', value: peer }, 'durable push, 256 callers: evaq vs better-sqlite3 FULL with the same batching')
    vs('push-vs-lmdb', 'push-256', size, 'lmdb', { op: '≥', value: peer }, 'durable push, 256 callers: evaq vs lmdb-js, each put awaited until synced')
    if (size !== 100) {
      vs('push-vs-append', 'push-256', size, 'fs', { op: '≥', value: 1 }, 'durable push, 256 callers: evaq vs a plain file append + fdatasync per group')
    }
    vs('push-vs-disk', 'push-256', size, 'fs-overwrite', undefined, 'durable push, 256 callers: evaq vs the disk limit (overwrite + fdatasync per group)')
  }
  vs('push-vs-bullmq', 'push-256', 1024, 'bullmq', { op: '≥', value: 5 }, 'durable push, 256 callers: evaq vs BullMQ with appendfsync always')
  for (const size of SIZES) {
    vs('seq-vs-append', 'seq', size, 'fs', { op: '≤', value: 1 }, 'one caller, sequential durable push: p50 vs a plain append + fdatasync of the same bytes')
    vs('seq-vs-sqlite', 'seq', size, 'sqlite', { op: '≤', value: 1 }, 'moonshot: one caller, sequential durable push: p50 vs better-sqlite3 autocommit')
  }
  vs('many-vs-append', 'many-1000', 1024, 'fs', { op: '≥', value: 1 }, 'durable push of batches of 1,000: evaq vs a plain file append + fdatasync per group')
  for (const size of SIZES) {
    const drain = drainVsPush(r.state, size)
    if (drain === undefined) continue
    out.push({
      id: `drain-vs-push@${size}`, text: `drain (next + ack + cleanup) vs durable push with 256 callers, same round, ${sizeName(size)}`,
      measured: `${int(drain.drain)} rec/s vs ${k(drain.push)}`, ratio: drain.ratio, perRound: drain.ratiosPerRound, target: '≥ 1.0×', met: drain.ratio >= 1,
    })
  }
  if (r.pushDrain !== undefined) {
    const p = r.pushDrain
    const p99 = p.pushLatency.p99Us
    const run = `push 256 callers + drain, ${(p.durationMs / 1000).toFixed(0)} s, ${sizeName(p.payloadBytes)}`
    out.push({
      id: 'push-drain-p99', text: `steady state (${run}): push p99`,
      measured: `${(p99 / 1000).toFixed(2)} ms (p50 ${(p.pushLatency.p50Us / 1000).toFixed(2)} ms, p99.9 ${(p.pushLatency.p999Us / 1000).toFixed(2)} ms)`,
      ratio: p99 / PUSH_DRAIN_P99_US, target: '≤ 5 ms', met: p99 <= PUSH_DRAIN_P99_US,
    })
    const written = p.resources?.writeBytes
    out.push({
      id: 'push-drain-write-amp', text: `steady state (${run}): bytes written to storage per payload byte pushed`,
      measured: written === undefined
        ? 'n/a (no /proc/self/io)'
        : `${(written / 1e6).toFixed(0)} MB written for ${(p.pushed * p.payloadBytes / 1e6).toFixed(0)} MB pushed`,
      ratio: Number.isFinite(p.writeAmplification) ? p.writeAmplification : undefined,
      target: `≤ ${WRITE_AMP_GOAL}×`,
      met: Number.isFinite(p.writeAmplification) ? p.writeAmplification <= WRITE_AMP_GOAL : undefined,
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

/** One line per missed target, for the report's summary. */
export const missedLine = (t: Target): string => `${t.text} (${t.ratio === undefined ? t.measured : formatRatio(t.ratio)} against ${t.target})`
