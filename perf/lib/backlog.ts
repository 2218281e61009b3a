/**
 * `backlog`: open time and RSS against the size of the backlog. One directory grows through
 * 10^4, 10^5, … records (pushed with `pushWalMany`, one subscriber that never reads, so nothing is
 * cleaned up); at each size the writer closes and a fresh child process (backlog-child.ts) opens
 * the directory twice in turn. See perf/README.md.
 */
import { fork } from 'node:child_process'
import { statfs } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import type { OpenResult } from './backlog-child.js'
import { type Config, dirBytes, int, payloadSource, PERF_DIR } from './common.js'

/** Small records: 10^7 of them fit the disk and the time of a run (10^7 × 1 KiB would be 10 GiB). */
export const BACKLOG_PAYLOAD = 100
const CHUNK = 1000

export interface BacklogPoint {
  readonly records: number
  readonly buildMs: number
  readonly buildMsgsPerSec: number
  /** Time the writer's close took (LevelDB waits for its compaction). */
  readonly writerCloseMs: number
  readonly dirBytes: number
  /** The first open after the writer closed (LevelDB replays its log), then a second one. */
  readonly first: OpenResult
  readonly second: OpenResult
}

export interface BacklogResult {
  readonly payloadBytes: number
  readonly requested: readonly number[]
  readonly sizes: readonly number[]
  readonly note: string | undefined
  readonly points: readonly BacklogPoint[]
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'backlog-child.ts')

function openInChild (dir: string): Promise<OpenResult> {
  return new Promise<OpenResult>((resolve, reject) => {
    const child = fork(CHILD, [dir], {
      execArgv: ['--import', import.meta.resolve('tsx')],
      cwd: path.join(PERF_DIR, '..'),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let result: OpenResult | undefined
    child.on('message', m => { result = m as OpenResult })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (result !== undefined && code === 0) resolve(result)
      else reject(new Error(`backlog-child exited with ${signal ?? code} and ${result === undefined ? 'no' : 'a'} result`))
    })
  })
}

export function backlogSizes (config: Config): number[] {
  return config.mode === 'quick' ? [1e4, 1e5] : [1e4, 1e5, 1e6, 1e7]
}

export async function runBacklog (dir: string, config: Config): Promise<BacklogResult> {
  const requested = backlogSizes(config)
  const payload = payloadSource(BACKLOG_PAYLOAD)
  // LevelDB rewrites tables as it compacts them: ask for three times the payload bytes.
  const fs = await statfs(path.dirname(dir))
  const free = fs.bavail * fs.bsize
  const sizes = requested.filter(n => n * BACKLOG_PAYLOAD * 3 < free)
  const note = sizes.length === requested.length
    ? undefined
    : `Only ${(free / 2 ** 30).toFixed(1)} GiB free: ` +
      `stopped at ${int(sizes[sizes.length - 1] ?? 0)} records instead of ${int(requested[requested.length - 1]!)}.`
  if (note !== undefined) console.log(`backlog: ${note}`)
  const points: BacklogPoint[] = []
  let records = 0
  for (const target of sizes) {
    const q = await Evaq.open(dir)
    const t0 = performance.now()
    let buildMs: number
    let writerCloseMs: number
    try {
      // A subscriber that never reads: the backlog is what it has not acknowledged.
      await q.wal.subscribe('reader')
      while (records < target) {
        const n = Math.min(CHUNK, target - records)
        await q.pushWalMany(Array.from({ length: n }, payload))
        records += n
      }
    } finally {
      buildMs = performance.now() - t0
      const t1 = performance.now()
      await q.close()
      writerCloseMs = performance.now() - t1
    }
    const first = await openInChild(dir)
    const second = await openInChild(dir)
    const point: BacklogPoint = {
      records, buildMs, buildMsgsPerSec: (records - (points[points.length - 1]?.records ?? 0)) / buildMs * 1000,
      writerCloseMs, dirBytes: await dirBytes(dir), first, second,
    }
    points.push(point)
    console.log(`backlog ${int(records).padStart(10)} records (${(point.dirBytes / 1e6).toFixed(0)} MB on disk, ` +
      `built at ${int(point.buildMsgsPerSec)}/s, close ${writerCloseMs.toFixed(0)} ms): ` +
      `open ${first.openMs.toFixed(0)} ms then ${second.openMs.toFixed(0)} ms; ` +
      `RSS after open + one read ${(first.rssAfterRead / 1e6).toFixed(0)} MB, ${(second.rssAfterRead / 1e6).toFixed(0)} MB`)
  }
  return { payloadBytes: BACKLOG_PAYLOAD, requested, sizes, note, points }
}
