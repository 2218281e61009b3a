/**
 * `evaq-rss-backlog`, run by core.ts in a fresh process per phase so that the RSS is evaq's alone:
 *
 * - grow: one subscriber reading one batch a second while 256 callers push until the backlog
 *   (pushed, not acknowledged) reaches `backlogBytes`; RSS at 10/25/50/75/100% of it.
 * - reopen: open the directory the grow phase left, read one batch; RSS and open time.
 *
 * The result goes to the parent over IPC. Usage: node --import tsx rss-child.ts '<RssChildArgs JSON>'
 */
import { performance } from 'node:perf_hooks'
import { Evaq } from '../../src/index.js'
import { CALLERS, dirBytes, loadAverage, nextPayload, PAYLOAD_BYTES, rssSplit, type RssSplit } from './common.js'

export type { RssSplit }

export interface RssChildArgs {
  readonly phase: 'grow' | 'reopen'
  readonly dir: string
  readonly backlogBytes: number
}

export interface MemorySample {
  /** Share of the backlog reached. */
  readonly fraction: number
  readonly backlogRecords: number
  readonly backlogBytes: number
  /** Since the pushers started. */
  readonly elapsedMs: number
  readonly pushed: number
  readonly acked: number
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly arrayBuffers: number
  readonly split: RssSplit | undefined
}

export interface RssGrowResult {
  /** Node, tsx and evaq loaded, nothing opened. */
  readonly rssBaseline: number
  /** The empty queue open with its subscriber. */
  readonly rssOpen: number
  readonly openMs: number
  readonly keysRead: number
  readonly samples: readonly MemorySample[]
  readonly splitOpen: RssSplit | undefined
  /** Highest RSS seen by a 100 ms sampler while the backlog grew, and when. */
  readonly peakRss: number
  readonly peakAtMs: number
  /** Highest anonymous and file-backed RSS seen by the same sampler (each on its own). */
  readonly peakRssAnon: number | undefined
  readonly peakRssFile: number | undefined
  readonly pushed: number
  readonly acked: number
  readonly batchesRead: number
  readonly elapsedMs: number
  readonly pushMsgsPerSec: number
  /** Live records and payload bytes when the pushers stopped. */
  readonly count: number
  readonly bytes: number
  readonly dirBytes: number
  readonly closeMs: number
  readonly loadAverage: readonly number[]
}

export interface RssReopenResult {
  readonly rssBaseline: number
  readonly openMs: number
  readonly keysRead: number
  readonly rssOpen: number
  readonly splitOpen: RssSplit | undefined
  /** The subscriber's first next({ maxCount: 1000 }) after the reopen: at the head of the backlog. */
  readonly firstNextMs: number
  readonly firstBatchRecords: number
  readonly rssAfterNext: number
  readonly splitAfterNext: RssSplit | undefined
  readonly memoryAfterNext: NodeJS.MemoryUsage
  readonly count: number
  readonly bytes: number
  readonly closeMs: number
}

const FRACTIONS = [0.1, 0.25, 0.5, 0.75, 1]
const FETCH = 1000
const READ_EVERY_MS = 1000

async function grow (dir: string, backlogBytes: number): Promise<RssGrowResult> {
  const load = loadAverage()
  const rssBaseline = process.memoryUsage.rss()
  let t = performance.now()
  const q = await Evaq.open(dir)
  const openMs = performance.now() - t
  const keysRead = q.openReport.keysRead
  const sub = await q.wal.subscribe('slow')
  const rssOpen = process.memoryUsage.rss()
  const splitOpen = rssSplit()

  const targetRecords = Math.floor(backlogBytes / PAYLOAD_BYTES)
  const thresholds = FRACTIONS.map(f => Math.ceil(f * targetRecords))
  const samples: MemorySample[] = []
  let pushed = 0
  let acked = 0
  let batchesRead = 0
  let stop = false
  const start = performance.now()
  let peakRss = rssOpen
  let peakAtMs = 0
  let peakRssAnon = splitOpen?.rssAnon
  let peakRssFile = splitOpen?.rssFile
  const peaks = (rss: number, split: RssSplit | undefined): void => {
    if (rss > peakRss) { peakRss = rss; peakAtMs = performance.now() - start }
    if (split !== undefined) {
      peakRssAnon = Math.max(peakRssAnon ?? 0, split.rssAnon)
      peakRssFile = Math.max(peakRssFile ?? 0, split.rssFile)
    }
  }
  const sampler = setInterval(() => peaks(process.memoryUsage.rss(), rssSplit()), 100)

  const pusher = async (): Promise<void> => {
    while (!stop) {
      await q.pushWal(nextPayload())
      pushed++
      const backlog = pushed - acked
      if (samples.length < thresholds.length && backlog >= thresholds[samples.length]!) {
        const m = process.memoryUsage()
        const split = rssSplit()
        samples.push({
          fraction: FRACTIONS[samples.length]!, backlogRecords: backlog, backlogBytes: backlog * PAYLOAD_BYTES,
          elapsedMs: performance.now() - start, pushed, acked,
          rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, split,
        })
        peaks(m.rss, split)
        if (samples.length === thresholds.length) stop = true
      }
    }
  }
  let wake: (() => void) | undefined
  const reader = async (): Promise<void> => {
    // eslint-disable-next-line no-unmodified-loop-condition -- the pusher sets it while this loop awaits
    while (!stop) {
      const b = await sub.next({ maxCount: FETCH })
      if (b !== undefined) {
        await b.ack()
        acked += b.records.length
        batchesRead++
      }
      await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, READ_EVERY_MS) })
    }
  }
  const reading = reader()
  await Promise.all(Array.from({ length: CALLERS }, pusher))
  const elapsedMs = performance.now() - start
  clearInterval(sampler)
  wake?.()
  await reading
  const { count, bytes } = await q.wal.stats()
  t = performance.now()
  await q.close()
  const closeMs = performance.now() - t
  return {
    rssBaseline, rssOpen, openMs, keysRead, samples, splitOpen, peakRss, peakAtMs, peakRssAnon, peakRssFile, pushed, acked, batchesRead, elapsedMs,
    pushMsgsPerSec: pushed / elapsedMs * 1000, count, bytes, dirBytes: await dirBytes(dir), closeMs, loadAverage: load,
  }
}

async function reopen (dir: string): Promise<RssReopenResult> {
  const rssBaseline = process.memoryUsage.rss()
  let t = performance.now()
  const q = await Evaq.open(dir)
  const openMs = performance.now() - t
  const rssOpen = process.memoryUsage.rss()
  const splitOpen = rssSplit()
  const sub = await q.wal.subscribe('slow')
  t = performance.now()
  const b = await sub.next({ maxCount: FETCH })
  const firstNextMs = performance.now() - t
  await b?.ack()
  const memoryAfterNext = process.memoryUsage()
  const splitAfterNext = rssSplit()
  const { count, bytes } = await q.wal.stats()
  t = performance.now()
  await q.close()
  return {
    rssBaseline, openMs, keysRead: q.openReport.keysRead, rssOpen, splitOpen, firstNextMs, firstBatchRecords: b?.records.length ?? 0,
    rssAfterNext: memoryAfterNext.rss, splitAfterNext, memoryAfterNext, count, bytes, closeMs: performance.now() - t,
  }
}

const args = JSON.parse(process.argv[2] ?? '{}') as RssChildArgs
const result = args.phase === 'grow' ? await grow(args.dir, args.backlogBytes) : await reopen(args.dir)
process.send!(result, () => process.exit(0))
