/**
 * `push-drain`: 256 callers push (durability 'sync') while one subscriber drains, for a minute
 * (full run): throughput, every push's latency, RSS and bytes on disk. See perf/README.md.
 */
import { performance } from 'node:perf_hooks'
import { Evaq } from '../../src/index.js'
import { CALLERS, type Config, dirBytes, int, type LatencySample, payloadSource, summarize } from './common.js'
import { resourceMeter, type Resources } from './io.js'

export const PUSH_DRAIN_SIZE = 1024
const FETCH = 1000

export interface PushDrainResult {
  readonly payloadBytes: number
  readonly durationMs: number
  readonly warmupMs: number
  readonly elapsedMs: number
  readonly pushed: number
  readonly pushMsgsPerSec: number
  readonly drained: number
  readonly drainMsgsPerSec: number
  /** Every push of the measured part (warm-up excluded), µs. */
  readonly pushLatency: LatencySample
  /** Push latency per 10 s window: [s since the start, p50 µs, p99 µs]. */
  readonly latencyWindows: ReadonlyArray<readonly [number, number, number]>
  /** Records committed and not yet acknowledged, sampled every 100 ms. */
  readonly lagMax: number
  readonly lagEnd: number
  /** process RSS (evaq, Node and the harness; nothing else is open), every 100 ms. */
  readonly rssMax: number
  readonly rssEnd: number
  /** Bytes of the data directory, every second. */
  readonly dirBytesMax: number
  readonly dirBytesEnd: number
  readonly liveRecordsEnd: number
  /**
   * CPU time and bytes written (lib/io.ts) from the end of the warm-up (at the sampler's tick that
   * also takes `pushed0`) to the end of the pushes: LevelDB's compactions in that interval count,
   * those after it do not.
   */
  readonly resources: Resources | undefined
  /** `resources.writeBytes` / payload bytes pushed in the measured interval. */
  readonly writeAmplification: number
}

export async function runPushDrain (dir: string, config: Config, durationMs: number): Promise<PushDrainResult> {
  const payload = payloadSource(PUSH_DRAIN_SIZE)
  const q = await Evaq.open(dir)
  try {
    const sub = await q.wal.subscribe('drain')
    let stop = false
    let pushed = 0
    let drained = 0
    const start = performance.now()
    const warmEnd = start + config.warmupMs
    const deadline = warmEnd + durationMs
    // Latencies of the measured part, in µs, with the time they ended.
    let lat = new Float64Array(1 << 20)
    let at = new Float64Array(1 << 20)
    let n = 0
    let pushed0 = 0
    let drained0 = 0
    let measuring = false
    let meter: (() => Resources) | undefined
    let lagMax = 0
    let rssMax = 0
    let dirMax = 0
    const sampler = setInterval(() => {
      const now = performance.now()
      if (!measuring && now >= warmEnd) { measuring = true; pushed0 = pushed; drained0 = drained; meter = resourceMeter() }
      if (!measuring) return
      lagMax = Math.max(lagMax, q.wal.subscribers()[0]!.lagRecords)
      rssMax = Math.max(rssMax, process.memoryUsage.rss())
    }, 100)
    let sizing: Promise<void> | undefined
    const sizer = setInterval(() => {
      sizing ??= dirBytes(dir).then(b => { dirMax = Math.max(dirMax, b) }, () => {}).finally(() => { sizing = undefined })
    }, 1000)
    const pusher = async (): Promise<void> => {
      for (;;) {
        const t0 = performance.now()
        if (t0 >= deadline) return
        await q.pushWal(payload())
        const t1 = performance.now()
        pushed++
        if (t0 >= warmEnd) {
          if (n === lat.length) {
            const grow = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => { const b = new Float64Array(a.length * 2); b.set(a); return b }
            lat = grow(lat)
            at = grow(at)
          }
          lat[n] = (t1 - t0) * 1000
          at[n] = t1 - warmEnd
          n++
        }
      }
    }
    const consumer = async (): Promise<void> => {
      // eslint-disable-next-line no-unmodified-loop-condition -- set once the measurement ends, while this loop awaits
      while (!stop) {
        const b = await sub.next({ maxCount: FETCH, waitMs: 100 })
        if (b === undefined) continue
        await b.ack()
        drained += b.records.length
      }
    }
    const consuming = consumer()
    await Promise.all(Array.from({ length: CALLERS }, pusher))
    const end = performance.now()
    const resources = meter?.()
    const pushedEnd = pushed
    const drainedEnd = drained
    const lagEnd = q.wal.subscribers()[0]!.lagRecords
    clearInterval(sampler)
    clearInterval(sizer)
    stop = true
    await consuming
    await sizing
    const rssEnd = process.memoryUsage.rss()
    const dirEnd = await dirBytes(dir)
    const elapsedMs = end - warmEnd
    const samples = lat.subarray(0, n)
    const windows: Array<[number, number, number]> = []
    const windowMs = 10_000
    for (let w = 0; w * windowMs < elapsedMs; w++) {
      const inWindow: number[] = []
      for (let i = 0; i < n; i++) if (at[i]! >= w * windowMs && at[i]! < (w + 1) * windowMs) inWindow.push(samples[i]!)
      if (inWindow.length === 0) continue
      const s = summarize(inWindow)
      windows.push([w * windowMs / 1000, Math.round(s.p50Us), Math.round(s.p99Us)])
    }
    return {
      payloadBytes: PUSH_DRAIN_SIZE,
      durationMs,
      warmupMs: config.warmupMs,
      elapsedMs,
      pushed: pushedEnd - pushed0,
      pushMsgsPerSec: (pushedEnd - pushed0) / elapsedMs * 1000,
      drained: drainedEnd - drained0,
      drainMsgsPerSec: (drainedEnd - drained0) / elapsedMs * 1000,
      pushLatency: summarize(Array.from(samples)),
      latencyWindows: windows,
      lagMax: Math.max(lagMax, lagEnd),
      lagEnd,
      rssMax: Math.max(rssMax, rssEnd),
      rssEnd,
      dirBytesMax: Math.max(dirMax, dirEnd),
      dirBytesEnd: dirEnd,
      liveRecordsEnd: (await q.wal.stats()).count,
      resources,
      writeAmplification: resources?.writeBytes === undefined ? NaN : resources.writeBytes / ((pushedEnd - pushed0) * PUSH_DRAIN_SIZE),
    }
  } finally {
    await q.close()
  }
}

export function formatPushDrain (r: PushDrainResult): string {
  const l = r.pushLatency
  return `push ${int(r.pushMsgsPerSec)} msg/s, drain ${int(r.drainMsgsPerSec)} rec/s over ${(r.elapsedMs / 1000).toFixed(0)} s; ` +
    `push latency p50 ${int(l.p50Us)} µs, p99 ${int(l.p99Us)} µs, p99.9 ${int(l.p999Us)} µs, max ${int(l.maxUs)} µs; ` +
    `lag max ${int(r.lagMax)}; write amplification ${r.writeAmplification.toFixed(2)}×; ` +
    `RSS max ${(r.rssMax / 1e6).toFixed(0)} MB; disk max ${(r.dirBytesMax / 1e6).toFixed(0)} MB`
}
