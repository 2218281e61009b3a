import { EvaqError, invalid } from './errors.js'
import { integer, isPlainObject, optionsObject, rejectUnknown } from './validate.js'
import { LOG_NAMES } from './schema.js'
import type { S3Options } from './store/s3-bucket.js'

/** What the `segmentCompression` option asks for (store/frame-codec.ts). */
export type SegmentCompression = 'none' | 'auto' | 'zstd' | 'deflate'
const SEGMENT_COMPRESSIONS: readonly SegmentCompression[] = ['none', 'auto', 'zstd', 'deflate']

/**
 * When a write is acknowledged.
 * - `'sync'`: after LevelDB's log was fsynced. Survives a process crash, an OS crash and power loss.
 * - `{ intervalMs }`: after the write reached the OS; a timer fsyncs at least every `intervalMs`.
 *   Survives a process crash; an OS crash or power loss can lose the last `intervalMs`.
 * - `'none'`: after the write reached the OS, never fsynced by evaq. Survives a process crash only.
 */
export type Durability = 'sync' | 'none' | { readonly intervalMs: number }

/** A source of time, injectable so that tests advance time instead of sleeping. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() })

export interface EvaqOptions {
  /** When a push is acknowledged. @defaultValue `'sync'` */
  durability?: Durability
  /** Soft upper bound on the payload bytes packed into one segment (one LevelDB entry). @defaultValue 4 MiB */
  maxBatchBytes?: number
  /** Upper bound on the records packed into one segment. @defaultValue 16384 */
  maxBatchCount?: number
  /** How long a flush waits for more records before it starts, in ms. 0 flushes as soon as a worker is free. @defaultValue 0 */
  lingerMs?: number
  /** Flushes that may be in flight at once; LevelDB merges concurrent writers into one log write. @defaultValue 2 */
  flushWorkers?: number
  /** Payload bytes that may be buffered or in flight before pushes wait. @defaultValue 64 MiB */
  maxBufferedBytes?: number
  /** Largest payload accepted; larger ones are rejected with `EVAQ_TOO_LARGE`. @defaultValue 8 MiB */
  maxPayloadBytes?: number
  /** LevelDB memtable size in bytes. Larger means fewer, larger table files. @defaultValue 16 MiB */
  writeBufferSize?: number
  /** LevelDB block cache in bytes. @defaultValue 8 MiB */
  cacheSize?: number
  /** Snappy compression of LevelDB blocks. @defaultValue true */
  compression?: boolean
  /** Payload bytes of recently read or written segments kept decoded in memory. @defaultValue 32 MiB */
  segmentCacheBytes?: number
  /**
   * Size of the WAL's segment files, where pushed payloads are written (the first file after an
   * open is 1 MiB, and each next one twice the last, up to this; at most a sixteenth of
   * `maxDiskBytes`). A file whose records are all gone is kept (two at most) and reused, so that
   * a commit overwrites space the file system already allocated. @defaultValue 64 MiB
   */
  segmentFileBytes?: number
  /**
   * Compression of each segment written to the WAL's segment files (independent of `compression`,
   * which is LevelDB's): `'zstd'` (Node >= 22.15 / 23.8; on an older Node `EVAQ_INVALID_ARGUMENT`
   * at open), `'deflate'` (a fast zlib level), `'auto'` (zstd where the running Node has it, else
   * deflate) or `'none'`. A segment that would not shrink by at least an eighth (random or already
   * compressed payloads) is stored as it is. Segments are read back whatever this is set to now,
   * except zstd ones on a Node without zstd (`EVAQ_UNSUPPORTED_FORMAT`). @defaultValue `'none'`
   */
  segmentCompression?: SegmentCompression
  /**
   * When a subscriber's acknowledgement is durable: `'sync'` resolves `ack()` after an fsync
   * (nothing acknowledged is delivered again after a crash); `{ intervalMs }` writes progress at
   * least that often (a crash may redeliver what was acknowledged in the last interval).
   * @defaultValue `'sync'`
   */
  ackDurability?: 'sync' | { readonly intervalMs: number }
  /** Drop subscribers that neither fetched nor acknowledged for this long (counted, reported). @defaultValue undefined: never */
  subscriberTtlMs?: number
  /** Upper bound on the size of the data directory in bytes. @defaultValue undefined: none */
  maxDiskBytes?: number
  /**
   * Refuse pushes while the filesystem has less free space than this, so acks, removals and
   * LevelDB's own flushes still fit. 0, or at least twice `writeBufferSize`. @defaultValue 64 MiB
   */
  minFreeDiskBytes?: number
  /** What a push does when a disk budget is exhausted. @defaultValue `'backpressure'` */
  onFull?: FullPolicy
  /**
   * A tier on S3-compatible object storage below the WAL's segment files (docs/tier.md): with
   * `onFull: 'offload'` and `maxDiskBytes`, the oldest sealed segment files move to the bucket
   * as the directory nears its budget, and are fetched back for reads. A directory that has
   * files in the bucket opens only with its tier. @defaultValue none
   */
  tier?: TierOptions
  /**
   * Retention per log: records older than `maxAgeMs` are dropped, and `maxBytes` caps the log's
   * live payload bytes under an `onFull` policy of its own (drops are counted and reported).
   * @defaultValue none
   */
  retention?: RetentionOptions
  /** How often budgets, retention and subscriber TTLs are checked, in ms. @defaultValue 1000 */
  maintenanceIntervalMs?: number
  /** The clock used for record timestamps, leases, retention and TTLs. @defaultValue `Date.now` */
  clock?: Clock
}

/**
 * - `'backpressure'`: the push waits until space is freed (subscribers catch up, records are
 *   removed); its `signal` aborts the wait.
 * - `'reject'`: the push fails with `EVAQ_AT_CAPACITY`.
 * - `'drop-oldest'`: the oldest whole segments of the log pushed to are dropped (counted, reported
 *   with a `dropped` event) to make room. Only for data that may be lost.
 * - `'offload'`: the oldest sealed segment files of the WAL move to the `tier`'s bucket from
 *   three quarters of `maxDiskBytes` on; a push that finds no room waits as under
 *   `'backpressure'` (while the bucket fails, for instance). Needs `tier` and `maxDiskBytes`.
 */
export type FullPolicy = 'backpressure' | 'reject' | 'drop-oldest' | 'offload'

/** Where the tier keeps segment files, and how much of the directory reads of them may use. */
export interface TierOptions {
  readonly s3: S3Options
  /**
   * Bytes of segment files fetched back from the bucket kept in the data directory (counted in
   * `maxDiskBytes`) for reads. @defaultValue two segment files
   */
  readonly cacheBytes?: number
}

export interface Retention {
  /** Records older than this are dropped, in ms. @defaultValue none */
  readonly maxAgeMs?: number
  /**
   * Upper bound on the log's live payload bytes (plus those pushed and not yet committed). A push
   * that would pass it waits, fails with `EVAQ_AT_CAPACITY` or drops the log's oldest segments,
   * per `onFull`. @defaultValue none
   */
  readonly maxBytes?: number
  /** What a push does at `maxBytes`. @defaultValue the queue's `onFull` */
  readonly onFull?: FullPolicy
}

/** Retention of each log: the WAL, the DLQ and the parked records. */
export interface RetentionOptions {
  readonly wal?: Retention
  readonly dlq?: Retention
  readonly parked?: Retention
}

/** The logs of a queue. */
export type LogName = keyof RetentionOptions

export interface ResolvedOptions {
  readonly durability: Durability
  readonly maxBatchBytes: number
  readonly maxBatchCount: number
  readonly lingerMs: number
  readonly flushWorkers: number
  readonly maxBufferedBytes: number
  readonly maxPayloadBytes: number
  readonly writeBufferSize: number
  readonly cacheSize: number
  readonly compression: boolean
  readonly segmentCacheBytes: number
  readonly segmentFileBytes: number
  readonly segmentCompression: SegmentCompression
  readonly ackDurability: 'sync' | { readonly intervalMs: number }
  readonly subscriberTtlMs: number | undefined
  readonly maxDiskBytes: number | undefined
  readonly minFreeDiskBytes: number
  readonly onFull: FullPolicy
  readonly tier: TierOptions | undefined
  readonly retention: RetentionOptions
  readonly maintenanceIntervalMs: number
  readonly clock: Clock
}

const MiB = 1024 * 1024

/** The defaults of Evaq.open's options. */
export const EVAQ_DEFAULTS: ResolvedOptions = Object.freeze({
  durability: 'sync',
  maxBatchBytes: 4 * MiB, // 4 MiB
  maxBatchCount: 16384,
  lingerMs: 0,
  flushWorkers: 2,
  maxBufferedBytes: 64 * MiB, // 64 MiB
  maxPayloadBytes: 8 * MiB, // 8 MiB
  writeBufferSize: 16 * MiB, // 16 MiB
  cacheSize: 8 * MiB, // 8 MiB
  compression: true,
  segmentCacheBytes: 32 * MiB, // 32 MiB
  segmentFileBytes: 64 * MiB, // 64 MiB
  segmentCompression: 'none',
  ackDurability: 'sync',
  subscriberTtlMs: undefined,
  maxDiskBytes: undefined,
  minFreeDiskBytes: 64 * MiB, // 64 MiB
  onFull: 'backpressure',
  tier: undefined,
  retention: Object.freeze({}),
  maintenanceIntervalMs: 1000,
  clock: systemClock,
})

/** @deprecated The same object as EVAQ_DEFAULTS. */
export const DEFAULTS = EVAQ_DEFAULTS

const KNOWN = Object.keys(EVAQ_DEFAULTS)
const POLICIES: readonly FullPolicy[] = ['backpressure', 'reject', 'drop-oldest', 'offload']
/** The policies a log's own `retention.maxBytes` can take: offloading is the directory's. */
const CAP_POLICIES: readonly FullPolicy[] = ['backpressure', 'reject', 'drop-oldest']

export function resolveOptions (options: EvaqOptions | undefined): ResolvedOptions {
  if (options === undefined) return EVAQ_DEFAULTS
  const given = optionsObject(options)
  rejectUnknown(given, KNOWN)
  const o = { ...EVAQ_DEFAULTS }
  const pick = <K extends keyof ResolvedOptions>(key: K): ResolvedOptions[K] =>
    (given[key] === undefined ? EVAQ_DEFAULTS[key] : given[key]) as ResolvedOptions[K]

  o.durability = checkDurability(pick('durability'), 'durability')
  o.maxBatchBytes = integer('maxBatchBytes', pick('maxBatchBytes'), 1)
  o.maxBatchCount = integer('maxBatchCount', pick('maxBatchCount'), 1, 1 << 24)
  o.lingerMs = integer('lingerMs', pick('lingerMs'), 0, 60_000)
  o.flushWorkers = integer('flushWorkers', pick('flushWorkers'), 1, 64)
  o.maxBufferedBytes = integer('maxBufferedBytes', pick('maxBufferedBytes'), 1)
  o.maxPayloadBytes = integer('maxPayloadBytes', pick('maxPayloadBytes'), 0, 2 ** 31 - 1)
  o.writeBufferSize = integer('writeBufferSize', pick('writeBufferSize'), 64 * 1024)
  o.cacheSize = integer('cacheSize', pick('cacheSize'), 0)
  o.segmentCacheBytes = integer('segmentCacheBytes', pick('segmentCacheBytes'), 0)
  o.segmentFileBytes = integer('segmentFileBytes', pick('segmentFileBytes'), 64 * 1024, 2 ** 32 - 1)
  const compression = pick('compression')
  if (typeof compression !== 'boolean') throw invalid('compression', 'a boolean', compression)
  o.compression = compression
  const segmentCompression = pick('segmentCompression')
  if (!SEGMENT_COMPRESSIONS.includes(segmentCompression)) throw invalid('segmentCompression', "'none', 'auto', 'zstd' or 'deflate'", segmentCompression)
  o.segmentCompression = segmentCompression
  const ack = pick('ackDurability')
  const ackDurability = checkDurability(ack, 'ackDurability')
  if (ackDurability === 'none') throw invalid('ackDurability', "'sync' or { intervalMs }", ack)
  o.ackDurability = ackDurability
  const ttl = pick('subscriberTtlMs')
  o.subscriberTtlMs = ttl === undefined ? undefined : integer('subscriberTtlMs', ttl, 1)
  const maxDisk = pick('maxDiskBytes')
  o.maxDiskBytes = maxDisk === undefined ? undefined : integer('maxDiskBytes', maxDisk, 1024 * 1024)
  o.minFreeDiskBytes = integer('minFreeDiskBytes', pick('minFreeDiskBytes'), 0)
  const onFull = pick('onFull')
  if (!POLICIES.includes(onFull)) throw invalid('onFull', "'backpressure', 'reject', 'drop-oldest' or 'offload'", onFull)
  o.onFull = onFull
  const tier = pick('tier')
  o.tier = tier === undefined ? undefined : checkTier(tier)
  if (onFull === 'offload' && (o.tier === undefined || o.maxDiskBytes === undefined)) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', "`onFull: 'offload'` needs `tier` (where to offload to) and `maxDiskBytes` (when to)")
  }
  o.retention = checkRetention(pick('retention'))
  o.maintenanceIntervalMs = integer('maintenanceIntervalMs', pick('maintenanceIntervalMs'), 10, 3_600_000)
  const clock = pick('clock')
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function') throw invalid('clock', 'an object with a now() method', clock)
  o.clock = clock
  if (o.minFreeDiskBytes > 0 && o.minFreeDiskBytes < 2 * o.writeBufferSize) {
    // LevelDB needs room of its own: flushing a memtable writes a table the size of its log, and
    // a database whose log cannot be converted cannot even reopen.
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      `Expected \`minFreeDiskBytes\` to be 0 or at least twice \`writeBufferSize\` (${2 * o.writeBufferSize}), got ${o.minFreeDiskBytes}`)
  }
  if (o.maxPayloadBytes > o.maxBufferedBytes) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      `Expected \`maxPayloadBytes\` (${o.maxPayloadBytes}) to be at most \`maxBufferedBytes\` (${o.maxBufferedBytes})`)
  }
  return Object.freeze(o)
}

function checkRetention (value: unknown): ResolvedOptions['retention'] {
  if (!isPlainObject(value)) throw invalid('retention', 'an object like { wal: { maxAgeMs } }', value)
  const out: { -readonly [K in LogName]?: Retention } = {}
  rejectUnknown(value, LOG_NAMES, ' in `retention` (a log name)')
  for (const [log, r] of Object.entries(value)) {
    if (!isPlainObject(r)) throw invalid(`retention.${log}`, 'an object like { maxAgeMs, maxBytes }', r)
    rejectUnknown(r, ['maxAgeMs', 'maxBytes', 'onFull'], ` in \`retention.${log}\``)
    const { maxAgeMs, maxBytes, onFull } = r
    if (onFull !== undefined && !CAP_POLICIES.includes(onFull as FullPolicy)) {
      throw invalid(`retention.${log}.onFull`, "'backpressure', 'reject' or 'drop-oldest'", onFull)
    }
    out[log as LogName] = Object.freeze({
      ...(maxAgeMs === undefined ? {} : { maxAgeMs: integer(`retention.${log}.maxAgeMs`, maxAgeMs, 1) }),
      ...(maxBytes === undefined ? {} : { maxBytes: integer(`retention.${log}.maxBytes`, maxBytes, 1) }),
      ...(onFull === undefined ? {} : { onFull: onFull as FullPolicy }),
    })
  }
  return Object.freeze(out)
}

function checkTier (value: unknown): TierOptions {
  if (!isPlainObject(value)) throw invalid('tier', 'an object like { s3: { region, bucket } }', value)
  rejectUnknown(value, ['s3', 'cacheBytes'], ' in `tier`')
  const cacheBytes = value.cacheBytes === undefined ? undefined : integer('tier.cacheBytes', value.cacheBytes, 64 * 1024)
  return Object.freeze({ s3: checkS3(value.s3, 'tier.s3'), ...(cacheBytes === undefined ? {} : { cacheBytes }) })
}

/** S3Options (store/s3-bucket.ts), checked: `name` is where they were given (e.g. `tier.s3`). */
export function checkS3 (value: unknown, name: string): S3Options {
  if (!isPlainObject(value)) throw invalid(name, 'an object like { region, bucket }', value)
  rejectUnknown(value, ['endpoint', 'region', 'bucket', 'prefix', 'forcePathStyle', 'credentials', 'requestTimeoutMs', 'maxAttempts'], ` in \`${name}\``)
  const text = (key: string, pattern: RegExp, what: string): string | undefined => {
    const v = value[key]
    if (v === undefined) return undefined
    if (typeof v !== 'string' || !pattern.test(v)) throw invalid(`${name}.${key}`, what, v)
    return v
  }
  const region = text('region', /^[a-z0-9-]{1,64}$/, 'a region such as us-east-1')
  if (region === undefined) throw invalid(`${name}.region`, 'a region such as us-east-1', undefined)
  const bucket = text('bucket', /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a bucket name (3 to 63 of a-z, 0-9, dots and dashes)')
  if (bucket === undefined) throw invalid(`${name}.bucket`, 'a bucket name', undefined)
  const endpoint = text('endpoint', /^https?:\/\/[^\s]+$/, 'an http:// or https:// URL')
  const prefix = text('prefix', /^[^\\]{0,512}$/, 'a key prefix of at most 512 characters')
  const { forcePathStyle, credentials } = value
  if (forcePathStyle !== undefined && typeof forcePathStyle !== 'boolean') throw invalid(`${name}.forcePathStyle`, 'a boolean', forcePathStyle)
  if (credentials !== undefined) {
    const c = credentials as Record<string, unknown>
    if (!isPlainObject(c) || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string' ||
      (c.sessionToken !== undefined && typeof c.sessionToken !== 'string')) {
      throw invalid(`${name}.credentials`, 'an object like { accessKeyId, secretAccessKey, sessionToken? }', '(hidden)')
    }
    rejectUnknown(c, ['accessKeyId', 'secretAccessKey', 'sessionToken'], ` in \`${name}.credentials\``)
  }
  const requestTimeoutMs = value.requestTimeoutMs === undefined ? undefined : integer(`${name}.requestTimeoutMs`, value.requestTimeoutMs, 100, 3_600_000)
  const maxAttempts = value.maxAttempts === undefined ? undefined : integer(`${name}.maxAttempts`, value.maxAttempts, 1, 10)
  return Object.freeze({
    region,
    bucket,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(prefix === undefined ? {} : { prefix }),
    ...(forcePathStyle === undefined ? {} : { forcePathStyle }),
    ...(credentials === undefined ? {} : { credentials: credentials as S3Options['credentials'] }),
    ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
  })
}

export function checkDurability (value: unknown, name: string): Durability {
  if (value === 'sync' || value === 'none') return value
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value)
    if (keys.length === 1 && keys[0] === 'intervalMs') {
      integer(`${name}.intervalMs`, (value as { intervalMs: unknown }).intervalMs, 1, 3_600_000)
      return Object.freeze({ intervalMs: (value as { intervalMs: number }).intervalMs })
    }
  }
  throw invalid(name, "'sync', 'none' or { intervalMs }", value)
}
