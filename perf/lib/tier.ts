/**
 * `tier`: the tier on object storage (docs/tier.md) against a local S3-compatible server (s3rver on
 * 127.0.0.1, lib/s3-server.ts; not AWS). Per payload size and round, side by side:
 *
 * - push: 256 callers push `factor` × `maxDiskBytes` of payloads into a queue with that budget and
 *   `onFull: 'offload'`, and the same into a queue without a budget (same segment file size, same
 *   small segment cache); push MB/s of both, and the offload MB/s (stats().tier.uploadedBytes
 *   sampled over time);
 * - read-back: a subscriber from the start drains each queue (`next({ maxBytes })` + `ack()`);
 *   MB/s and records/s of both, the tier's fetched bytes;
 * - the bucket alone: `Bucket.putFile` / `getFile` of objects the size of the tier's, one at a
 *   time (the tier uploads one file at a time and fetches one ahead), so that the tier's rates
 *   read as a share of what the server allows.
 *
 * See perf/README.md ("Tier on object storage").
 */
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { Bucket, digestFile } from '../../src/store/s3-bucket.js'
import { CALLERS, cpuMeter, type CpuShare, median, payloadSource } from './common.js'
import type { S3Server } from './s3-server.js'

const MiB = 2 ** 20
/** Small, so that reads go to the segment files (and through the tier), not to segments kept decoded in memory. */
export const TIER_SEGMENT_CACHE = 64 * 1024
/** Each `next()` of the drains: at most this many payload bytes (the default); the count never binds first. */
export const DRAIN_MAX_BYTES = MiB
const DRAIN_MAX_COUNT = 100_000
const SAMPLE_MS = 100
/** After the pushes, offloading has settled once uploadedBytes did not move for this long. */
const SETTLE_MS = 2000
const BUCKET_OBJECTS = 16

export interface TierConfig {
  readonly budgetBytes: number
  /** Payload bytes pushed, as a multiple of the budget. */
  readonly factor: number
  readonly sizes: readonly number[]
  readonly rounds: number
}

export function tierConfig (quick: boolean, rounds: number | undefined): TierConfig {
  return quick
    ? { budgetBytes: 32 * MiB, factor: 2, sizes: [1024], rounds: rounds ?? 1 }
    : { budgetBytes: 64 * MiB, factor: 4, sizes: [1024, 16384], rounds: rounds ?? 2 }
}

/** The segment file size a queue with this budget uses (store.ts: at most a sixteenth of the budget, 4 KiB aligned). */
export function fileBytesFor (budgetBytes: number): number {
  return Math.min(64 * MiB, Math.max(64 * 1024, Math.floor(budgetBytes / 16 / 4096) * 4096))
}

export interface PushPhase {
  readonly records: number
  readonly payloadBytes: number
  readonly ms: number
  readonly mbPerSec: number
  readonly recordsPerSec: number
  readonly cpu: CpuShare
}

export interface OffloadPhase {
  readonly uploads: number
  readonly uploadedBytes: number
  /** From the last sample with nothing uploaded to the first with every upload done (after the pushes too). */
  readonly windowMs: number
  readonly mbPerSec: number
  /** Payload MB/s pushed from the start of that window to the end of the pushes. */
  readonly pushMbPerSecWhileOffloading: number
  /** Offloading went on this long after the last push resolved (down to the low water mark). */
  readonly afterPushesMs: number
  /** Highest stats().disk.usedBytes seen. */
  readonly peakUsedBytes: number
  readonly errors: number
}

export interface DrainPhase {
  readonly records: number
  readonly ms: number
  readonly mbPerSec: number
  readonly recordsPerSec: number
  readonly batches: number
  /** Tier only: files and bytes fetched from the bucket during the drain, and their MB/s over the drain. */
  readonly downloads?: number
  readonly downloadedBytes?: number
  readonly fetchMbPerSec?: number
  readonly cpu: CpuShare
}

export interface BucketProbe {
  readonly objectBytes: number
  readonly objects: number
  /** `putFile` (PUT, then HEAD to verify, as the tier does), one at a time. */
  readonly putMbPerSec: number
  /** `getFile` into a new file (with its CRC32 and MD5, as the tier does), one at a time. */
  readonly getMbPerSec: number
  readonly cpu: CpuShare
}

export interface TierCase {
  readonly round: number
  readonly payloadBytes: number
  readonly order: 'local first' | 'tier first'
  readonly local: { readonly push: PushPhase, readonly drain: DrainPhase }
  readonly tier: { readonly push: PushPhase, readonly offload: OffloadPhase, readonly drain: DrainPhase }
  readonly bucket: BucketProbe
  readonly ratios: {
    /** Push MB/s with offloading / without a budget. */
    readonly push: number
    /** Drain MB/s from the tier / from the local queue. */
    readonly drain: number
    /** Offload MB/s / the bucket's PUT MB/s. */
    readonly offloadOfPut: number
    /** Fetch MB/s during the tier's drain / the bucket's GET MB/s. */
    readonly fetchOfGet: number
  }
}

export interface TierResult {
  readonly config: TierConfig & {
    readonly callers: number
    readonly segmentCacheBytes: number
    readonly segmentFileBytes: number
    readonly drainMaxBytes: number
    readonly bucketObjects: number
  }
  readonly server: { readonly name: 's3rver', readonly version: string | undefined, readonly note: string }
  readonly cases: readonly TierCase[]
}

export const SERVER_NOTE = 's3rver, a single-process JavaScript S3-compatible server on 127.0.0.1, storing its objects on the same disk as evaq: ' +
  'not AWS (no network, no AWS latency, a much slower server)'

const mb = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000)

/** 256 callers push `records` payloads of `size` bytes; `progress.done` counts the pushes resolved. */
async function push (q: Evaq, records: number, size: number, progress = { done: 0 }): Promise<PushPhase> {
  const payload = payloadSource(size)
  let started = 0
  const stop = cpuMeter()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (started < records) {
      started++
      await q.pushWal(payload())
      progress.done++
    }
  }))
  const ms = performance.now() - t0
  return { records, payloadBytes: records * size, ms, mbPerSec: mb(records * size, ms), recordsPerSec: records / ms * 1000, cpu: stop() }
}

/** A new subscriber from the oldest record drains the queue: `next({ maxBytes })`, `ack()`, until nothing is left. */
async function drain (q: Evaq, expected: number): Promise<DrainPhase> {
  const before = (await q.stats()).tier
  const sub = await q.wal.subscribe('drain', { start: 'earliest' })
  let records = 0
  let bytes = 0
  let batches = 0
  let last = 0
  const stop = cpuMeter()
  const t0 = performance.now()
  for (let b = await sub.next({ maxBytes: DRAIN_MAX_BYTES, maxCount: DRAIN_MAX_COUNT }); b !== undefined;
    b = await sub.next({ maxBytes: DRAIN_MAX_BYTES, maxCount: DRAIN_MAX_COUNT })) {
    for (const r of b.records) {
      if (r.id <= last) throw new Error(`drain: record ${r.id} delivered after ${last}`)
      last = r.id
      bytes += r.payload.byteLength
    }
    records += b.records.length
    batches++
    await b.ack()
  }
  const ms = performance.now() - t0
  const cpu = stop()
  if (records !== expected) throw new Error(`drain: ${records} records delivered, ${expected} were pushed`)
  const after = (await q.stats()).tier
  const fetched = before === undefined || after === undefined
    ? {}
    : {
        downloads: after.downloads - before.downloads,
        downloadedBytes: after.downloadedBytes - before.downloadedBytes,
        fetchMbPerSec: mb(after.downloadedBytes - before.downloadedBytes, ms),
      }
  return { records, ms, mbPerSec: mb(bytes, ms), recordsPerSec: records / ms * 1000, batches, ...fetched, cpu }
}

/** The push into the offloading queue, with stats().tier sampled every 100 ms until offloading settles. */
async function pushOffloading (q: Evaq, records: number, size: number): Promise<{ push: PushPhase, offload: OffloadPhase }> {
  const samples: Array<{ t: number, pushed: number, uploaded: number, uploads: number, used: number, errors: number }> = []
  const progress = { done: 0 }
  let sampling: Promise<void> | undefined
  const t0 = performance.now()
  // Time and push count when the sample is asked for; the tier's counters when stats() answers
  // (a millisecond or so later, against windows of seconds).
  const sample = (): Promise<void> => (sampling ??= ((t: number, pushed: number) => q.stats().then(s => {
    const tier = s.tier!
    samples.push({ t, pushed, uploaded: tier.uploadedBytes, uploads: tier.uploads, used: s.disk.usedBytes, errors: tier.errors })
  }))(performance.now() - t0, progress.done).finally(() => { sampling = undefined }))
  await sample()
  const timer = setInterval(() => { void sample() }, SAMPLE_MS)
  let result: PushPhase
  try {
    result = await push(q, records, size, progress)
  } finally {
    clearInterval(timer)
  }
  const pushEnd = performance.now() - t0
  await sampling
  await sample()
  // Offloading goes on until the directory is below the low water mark: wait for it to settle.
  for (;;) {
    const last = samples[samples.length - 1]!
    const moved = samples.findLast(s => s.uploaded !== last.uploaded)
    if (last.t - (moved?.t ?? 0) >= SETTLE_MS || last.t - pushEnd > 120_000) break
    await new Promise(resolve => setTimeout(resolve, SAMPLE_MS))
    await sample()
  }
  const final = samples[samples.length - 1]!
  const start = samples.findLast(s => s.uploaded === 0) ?? samples[0]!
  const done = samples.find(s => s.uploaded === final.uploaded)!
  const windowMs = done.t - start.t
  return {
    push: result,
    offload: {
      uploads: final.uploads,
      uploadedBytes: final.uploaded,
      windowMs,
      mbPerSec: mb(final.uploaded, windowMs),
      pushMbPerSecWhileOffloading: start.t < pushEnd ? mb((records - start.pushed) * size, pushEnd - start.t) : NaN,
      afterPushesMs: Math.max(0, done.t - pushEnd),
      peakUsedBytes: Math.max(...samples.map(s => s.used)),
      errors: final.errors,
    },
  }
}

/**
 * The bucket alone: `objects` uploads of one file of `objectBytes` random bytes with `putFile`
 * (PUT, then HEAD), then as many `getFile` downloads, one call at a time; the objects are deleted.
 */
async function probeBucket (bucket: Bucket, dir: string, objectBytes: number, objects: number): Promise<BucketProbe> {
  await mkdir(dir, { recursive: true })
  const source = path.join(dir, 'object')
  await writeFile(source, randomBytes(objectBytes))
  const digest = await digestFile(source, objectBytes)
  const keys = Array.from({ length: objects }, (_, i) => bucket.key(`probe-${i}.seg`))
  const stop = cpuMeter()
  const t0 = performance.now()
  for (const key of keys) await bucket.putFile(key, source, digest)
  const t1 = performance.now()
  for (const [i, key] of keys.entries()) {
    const got = await bucket.getFile(key, path.join(dir, `got-${i}`))
    if (got?.crc32 !== digest.crc32) throw new Error(`bucket probe: ${key} came back different`)
  }
  const t2 = performance.now()
  const cpu = stop()
  await bucket.delete(keys)
  await rm(dir, { recursive: true, force: true })
  return { objectBytes, objects, putMbPerSec: mb(objectBytes * objects, t1 - t0), getMbPerSec: mb(objectBytes * objects, t2 - t1), cpu }
}

export type Metered = <T>(id: string, run: () => Promise<T>) => Promise<[T, CpuShare]>

/** One payload size in one round: both pushes, both drains (order alternating by round), then the bucket alone. */
async function runCase (root: string, server: S3Server, tc: TierConfig, size: number, round: number): Promise<TierCase> {
  const records = Math.ceil(tc.factor * tc.budgetBytes / size)
  const base: EvaqOptions = { segmentCacheBytes: TIER_SEGMENT_CACHE, segmentFileBytes: fileBytesFor(tc.budgetBytes) }
  const prefix = `r${round}-${size}`
  const localDir = path.join(root, `tier-local-${prefix}`)
  const tierDir = path.join(root, `tier-offload-${prefix}`)
  const local = await Evaq.open(localDir, base)
  const tier = await Evaq.open(tierDir, { ...base, maxDiskBytes: tc.budgetBytes, onFull: 'offload', tier: { s3: server.options(prefix) } })
  const tierFirst = round % 2 === 1
  let localPush: PushPhase | undefined
  let tierPush: { push: PushPhase, offload: OffloadPhase } | undefined
  let localDrain: DrainPhase | undefined
  let tierDrain: DrainPhase | undefined
  try {
    for (const which of tierFirst ? ['tier', 'local'] : ['local', 'tier']) {
      if (which === 'tier') tierPush = await pushOffloading(tier, records, size)
      else localPush = await push(local, records, size)
    }
    for (const which of tierFirst ? ['tier', 'local'] : ['local', 'tier']) {
      if (which === 'tier') tierDrain = await drain(tier, records)
      else localDrain = await drain(local, records)
    }
  } finally {
    await local.close()
    await tier.close()
  }
  await rm(localDir, { recursive: true, force: true })
  await rm(tierDir, { recursive: true, force: true })
  const offload = tierPush!.offload
  // Objects the size of the tier's: its files are sealed full, but the first ones after an open are smaller.
  const objectBytes = Math.max(4096, Math.round(offload.uploadedBytes / Math.max(1, offload.uploads) / 4096) * 4096)
  const bucket = await Bucket.open(server.options(`probe-${prefix}`))
  let probe: BucketProbe
  try {
    probe = await probeBucket(bucket, path.join(root, `tier-probe-${prefix}`), objectBytes, BUCKET_OBJECTS)
  } finally {
    bucket.close()
  }
  return {
    round,
    payloadBytes: size,
    order: tierFirst ? 'tier first' : 'local first',
    local: { push: localPush!, drain: localDrain! },
    tier: { push: tierPush!.push, offload, drain: tierDrain! },
    bucket: probe,
    ratios: {
      push: tierPush!.push.mbPerSec / localPush!.mbPerSec,
      drain: tierDrain!.mbPerSec / localDrain!.mbPerSec,
      offloadOfPut: offload.mbPerSec / probe.putMbPerSec,
      fetchOfGet: (tierDrain!.fetchMbPerSec ?? NaN) / probe.getMbPerSec,
    },
  }
}

/** Every round of every payload size (sizes in reverse order on odd rounds), each case measured after a quiet-wait. */
export async function runTier (root: string, server: S3Server, tc: TierConfig, metered: Metered, log: (line: string) => void): Promise<TierResult> {
  const cases: TierCase[] = []
  for (let round = 0; round < tc.rounds; round++) {
    for (const size of round % 2 === 1 ? [...tc.sizes].reverse() : tc.sizes) {
      const [c, share] = await metered('tier', () => runCase(root, server, tc, size, round))
      cases.push(c)
      log(`round ${round + 1}, ${sizeName(size)} (${c.order}): ${caseLine(c)} ${formatShare(share)}`)
    }
  }
  return {
    config: {
      ...tc,
      callers: CALLERS,
      segmentCacheBytes: TIER_SEGMENT_CACHE,
      segmentFileBytes: fileBytesFor(tc.budgetBytes),
      drainMaxBytes: DRAIN_MAX_BYTES,
      bucketObjects: BUCKET_OBJECTS,
    },
    server: { name: 's3rver', version: server.version, note: SERVER_NOTE },
    cases,
  }
}

export const sizeName = (bytes: number): string => bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`
const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : 'n/a'
const ratio = (r: number): string => Number.isFinite(r) ? `${r.toFixed(2)}×` : 'n/a'
const formatShare = (c: CpuShare): string => `[CPUs: own ${c.ownCpus.toFixed(2)}, others ${c.otherCpus?.toFixed(2) ?? '?'}; load ${c.load1}]`

function caseLine (c: TierCase): string {
  const o = c.tier.offload
  return `push ${f1(c.local.push.mbPerSec)} MB/s local, ${f1(c.tier.push.mbPerSec)} MB/s offloading (${ratio(c.ratios.push)}); ` +
    `offload ${f1(o.mbPerSec)} MB/s (${o.uploads} files); drain ${f1(c.local.drain.mbPerSec)} MB/s local, ` +
    `${f1(c.tier.drain.mbPerSec)} MB/s from the tier (${ratio(c.ratios.drain)}); bucket PUT ${f1(c.bucket.putMbPerSec)}, GET ${f1(c.bucket.getMbPerSec)} MB/s`
}

/** Medians over the rounds, per payload size. */
export function tierSummary (r: TierResult): Array<{ size: number, pick: (f: (c: TierCase) => number) => number, n: number }> {
  return r.config.sizes.map(size => {
    const cases = r.cases.filter(c => c.payloadBytes === size)
    return { size, n: cases.length, pick: (f: (c: TierCase) => number) => median(cases.map(f)) }
  })
}
