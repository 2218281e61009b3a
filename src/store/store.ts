import type { AbstractSublevel } from 'abstract-level'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { EvaqError, fromLevel } from '../errors.js'
import { FORMAT_KEY, FORMAT_VERSION, META_SUBLEVEL, READABLE_FORMATS, RECOUNT_FILE, SENTINEL_HIGH, SENTINEL_LOW, SNAPSHOT_SUBLEVEL } from '../schema.js'
import type { ResolvedOptions } from '../options.js'
import { decodeKey, encodeKey } from './codec.js'
import { claimDir, dataDirKind, type DirClaim } from './dir-claim.js'
import { openSegmentFiles, type FileRecovery } from './file-recovery.js'
import { IdFloor } from './id-floor.js'
import type { SegmentFiles } from './segment-files.js'
import { writeCodec } from './frame-codec.js'
import { Bucket, joinKey } from './s3-bucket.js'
import { SegmentTier, type TierEvents } from './segment-tier.js'

/** The only module that opens classic-level. One database per data directory. */

export type Bytes = Buffer
export type Db = ClassicLevel<Bytes, Bytes>
export type Sublevel = AbstractSublevel<Db, string | Buffer | Uint8Array, Bytes, Bytes>
export type ChainedBatch = ReturnType<Db['batch']>

const ENC = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

import { Keyspace } from './keyspace.js'

export { Keyspace }

/** Per-log counters persisted in every commit. */
export interface LogCounters {
  /** The next ID to issue; never decreases, so IDs are never reused. */
  next: number
  /** Live records and their payload bytes. */
  count: number
  bytes: number
  /**
   * The first ID of the first segment that may still exist: no live record lies below it, and
   * seeks start here instead of at the start of the keyspace, over the tombstones of the head.
   */
  floor: number
  /** Records and payload bytes dropped by a retention rule or drop-oldest (never silently). */
  droppedCount: number
  droppedBytes: number
  /**
   * Where the frames indexed so far end, in a log with segment files: the file and the offset
   * after the last frame whose locator was written. Open indexes the frames after it that LevelDB
   * lost (file-recovery.ts). Both 0 before the first.
   */
  tailFile: number
  tailOffset: number
  /**
   * In a log with segment files: an ID below which every frame a locator names was synced when
   * its batch was written (SegmentFiles.syncedBelow; the largest one written counts). An open
   * checks the frames of the locators from it on: they may not have reached the disk before a
   * power cut (store/unsynced-frames.ts). Snapshots written before it existed read as `next`.
   */
  syncedBelow: number
  /** Subscribers dropped for inactivity (`subscriberTtlMs`). */
  expiredSubscribers: number
  /** Records taken out of the log because their stored bytes failed a checksum. */
  quarantinedCount: number
}

/** What one batch changes: `next`, `floor`, the tail and `syncedBelow` are maxima, the other counters are added. */
export type Delta = Record<string, Partial<LogCounters>>

interface SnapshotValue {
  seq: number
  logs: Record<string, LogCounters>
  /** Batches written before this one whose outcome was unknown when it was built. */
  pending: Array<{ seq: number, delta: Delta }>
}

/**
 * Counters are written with every batch, but batches may reach LevelDB in any order when several
 * flushes are in flight. So each batch writes its own snapshot key `snap/<seq>` holding the state
 * every *completed* batch produced, plus its own change, plus the changes of the batches still in
 * flight when it was built. On open the highest snapshot is taken and each of its pending batches
 * counts if and only if its own snapshot key is on disk (a batch is atomic). A snapshot key is
 * deleted by the first batch built after its batch completed, so only a handful exist at a time
 * and open reads a bounded number of keys, never the records.
 */
export class Journal {
  /** Obsolete snapshot keys are deleted in bulk, once this many have piled up. */
  static readonly DELETE_EVERY = 32
  /** Keys read by load(): a few dozen at most, whatever the number of records. */
  loadedKeys = 0
  private readonly keys: Keyspace
  private seq: number
  private readonly durable: Record<string, LogCounters>
  private readonly pending = new Map<number, Delta>()
  /** Completed batches whose snapshot keys the next batch deletes. */
  private obsolete: number[] = []

  constructor (snaps: Sublevel, seq: number, logs: Record<string, LogCounters>, obsolete: number[]) {
    this.keys = new Keyspace(snaps)
    this.seq = seq
    this.durable = logs
    this.obsolete = obsolete
  }

  static async load (snaps: Sublevel): Promise<Journal> {
    const keys: number[] = []
    for await (const key of snaps.keys()) keys.push(decodeKey(key))
    if (keys.length === 0) return new Journal(snaps, 0, {}, [])
    const read = keys.length + 1
    const top = keys[keys.length - 1]!
    const value = await snaps.get(encodeKey(top))
    if (value === undefined) throw new EvaqError('EVAQ_CORRUPTION', `Commit snapshot ${top} vanished during open`)
    let snap: SnapshotValue
    try {
      snap = JSON.parse(value.toString('utf8')) as SnapshotValue
    } catch (cause) {
      throw new EvaqError('EVAQ_CORRUPTION', `Commit snapshot ${top} cannot be decoded`, { cause })
    }
    // Snapshots written before a counter existed (format 1 has no tail) read as its default.
    const logs: Record<string, LogCounters> = {}
    for (const [name, c] of Object.entries(snap.logs)) logs[name] = { ...emptyCounters(), ...c, syncedBelow: c.syncedBelow ?? c.next ?? 1 }
    const present = new Set(keys)
    for (const p of snap.pending) {
      if (present.has(p.seq)) apply(logs, p.delta)
    }
    const journal = new Journal(snaps, top, logs, keys)
    journal.loadedKeys = read
    return journal
  }

  counters (log: string): LogCounters {
    return (this.durable[log] ??= emptyCounters())
  }

  /** Add this batch's snapshot to `batch`; returns the sequence to pass to `settle`. */
  stage (batch: ChainedBatch, delta: Delta): number {
    const seq = ++this.seq
    const logs: Record<string, LogCounters> = {}
    for (const [name, c] of Object.entries(this.durable)) logs[name] = { ...c }
    apply(logs, delta)
    const value: SnapshotValue = {
      seq,
      logs,
      pending: [...this.pending].map(([s, d]) => ({ seq: s, delta: d })),
    }
    this.keys.put(batch, seq, Buffer.from(JSON.stringify(value)))
    if (this.obsolete.length >= Journal.DELETE_EVERY) {
      for (const s of this.obsolete) this.keys.del(batch, s)
      this.obsolete = []
    }
    this.pending.set(seq, delta)
    return seq
  }

  /**
   * Record the outcome of a staged batch. A failed write may still have reached the disk (an
   * fsync error does not undo the write), so its delta stays pending: every later snapshot lists
   * it, and the next open counts it exactly when its snapshot key is on disk.
   */
  settle (seq: number, ok: boolean): void {
    if (!ok) return
    const delta = this.pending.get(seq)
    if (delta === undefined) return
    this.pending.delete(seq)
    apply(this.durable, delta)
    this.obsolete.push(seq)
  }
}

function emptyCounters (): LogCounters {
  return {
    next: 1, count: 0, bytes: 0, floor: 1, tailFile: 0, tailOffset: 0, syncedBelow: 1,
    droppedCount: 0, droppedBytes: 0, expiredSubscribers: 0, quarantinedCount: 0,
  }
}

const ADDED = ['count', 'bytes', 'droppedCount', 'droppedBytes', 'expiredSubscribers', 'quarantinedCount'] as const

function apply (logs: Record<string, LogCounters>, delta: Delta): void {
  for (const [name, d] of Object.entries(delta)) {
    const c = (logs[name] ??= emptyCounters())
    for (const k of ADDED) c[k] ??= 0
    if (d.next !== undefined && d.next > c.next) c.next = d.next
    if (d.floor !== undefined && d.floor > c.floor) c.floor = d.floor
    if (d.syncedBelow !== undefined && d.syncedBelow > (c.syncedBelow ?? 0)) c.syncedBelow = d.syncedBelow
    c.tailFile ??= 0
    c.tailOffset ??= 0
    if (d.tailFile !== undefined && (d.tailFile > c.tailFile || (d.tailFile === c.tailFile && (d.tailOffset ?? 0) > c.tailOffset))) {
      c.tailFile = d.tailFile
      c.tailOffset = d.tailOffset ?? 0
    }
    for (const k of ADDED) if (d[k] !== undefined) c[k] += d[k]
  }
}

export interface Store {
  readonly db: Db
  /** This process's claim on the directory (see dir-claim.ts), held until close(). */
  readonly claim: DirClaim
  /** Replaced by reopen(). */
  journal: Journal
  /** What LevelDB reported as corruption while it opened (see engineCorruption). */
  corruption: readonly string[]
  /** IDs reserved ahead, outside LevelDB (see IdFloor). */
  readonly ids: IdFloor
  /** The segment files of the logs that have them (schema.ts FILE_LOGS), by log. */
  readonly files: ReadonlyMap<string, SegmentFiles>
  /** The tier's bucket, when the queue has one (options.tier). */
  readonly bucket: Bucket | undefined
  /** What opening them indexed again (see file-recovery.ts). */
  readonly fileRecovery: FileRecovery
  /**
   * The first write that failed since the database was opened. Nothing more is written until
   * reopen(): after a failed write(2) LevelDB's log is no longer safe to append to.
   */
  failed: Error | undefined
  /** How many times reopen() has started: a read the database closed under can tell. */
  reopens: number
  sublevel (name: string): Sublevel
  /**
   * Close and open the database again, and reload the counters from disk. LevelDB's write errors
   * are sticky (after a failed fsync every later write fails until the database is reopened).
   * `whileClosed` runs between the close and the open (a repair).
   */
  reopen (whileClosed?: () => Promise<void>): Promise<void>
  /** Close the database and release the directory (also when closing fails). */
  close (): Promise<void>
}

/**
 * LevelDB drops a log record whose checksum fails while it recovers, and only says so in its
 * info log (`LOG`, rotated to `LOG.old` at every open): `… dropping N bytes; Corruption: …`. The
 * lost batch may have held acknowledged records, so evaq reads those lines right after open and
 * reports them (Evaq's openReport, `evaq check`).
 */
export async function engineCorruption (dir: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(join(dir, 'LOG'), 'utf8')
  } catch {
    return []
  }
  return text.split('\n').filter(line => line.includes('Corruption')).map(line => line.replace(/^\S+ \S+ /, ''))
}

/**
 * What an earlier process saw LevelDB drop, if it left a recount to do. LevelDB reports a dropped
 * log record only in the info log of the open that dropped it, and the counters need a recount
 * after it (see Evaq.open). A process that saw it but does not recount (`evaq check`) leaves
 * RECOUNT_FILE, so that the next open still does.
 */
export async function pendingRecount (dir: string): Promise<string[]> {
  try {
    return (await readFile(join(dir, RECOUNT_FILE), 'utf8')).split('\n').filter(line => line.length > 0)
  } catch {
    return []
  }
}

export async function markRecount (dir: string, lines: readonly string[]): Promise<void> {
  const earlier = await pendingRecount(dir)
  await writeFile(join(dir, RECOUNT_FILE), [...earlier, ...lines].join('\n') + '\n')
}

export async function clearRecount (dir: string): Promise<void> {
  await rm(join(dir, RECOUNT_FILE), { force: true })
}

/**
 * Refuse a directory whose CURRENT file is gone while LevelDB's files are there: opened with
 * createIfMissing, LevelDB would take it for a new database and delete the tables.
 */
export async function assertNotOrphaned (dir: string): Promise<void> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return
  }
  if (names.includes('CURRENT')) return
  const leveldb = names.filter(n => /^(MANIFEST-\d+|\d+\.(ldb|log|sst))$/.test(n))
  if (leveldb.length > 0) {
    throw new EvaqError('EVAQ_CORRUPTION', `${dir} holds LevelDB files (${leveldb.slice(0, 3).join(', ')}) but no CURRENT file; ` +
      'opening it would start an empty database over them. Run `evaq repair`.')
  }
}

/**
 * The size of segment files: `segmentFileBytes`, but at most a sixteenth of `maxDiskBytes`, so
 * that the file being written, the one prepared ahead and the spares leave the budget for records.
 */
export function segmentFileBytes (options: ResolvedOptions): number {
  const { maxDiskBytes } = options
  if (maxDiskBytes === undefined) return options.segmentFileBytes
  return Math.min(options.segmentFileBytes, Math.max(64 * 1024, Math.floor(maxDiskBytes / 16 / 4096) * 4096))
}

/** The key of the directory's name in the tier's bucket (meta sublevel): random, made on first use. */
const TIER_ID_KEY = Buffer.from('tier-id')

const NO_TIER_EVENTS: TierEvents = { offloaded () {}, fetched () {}, failed () {} }

export async function openStore (dir: string, options: ResolvedOptions, tierEvents: TierEvents = NO_TIER_EVENTS): Promise<Store> {
  // 'zstd' on a Node without it: EVAQ_INVALID_ARGUMENT before anything is claimed or written.
  writeCodec(options.segmentCompression)
  // The tier's client first: without the AWS SDK installed, nothing is created or written.
  const bucket = options.tier === undefined ? undefined : await Bucket.open(options.tier.s3)
  let claim: DirClaim
  try {
    // A file, or a directory of something else: refused before anything is created or written.
    await dataDirKind(dir)
    claim = await claimDir(dir, true)
  } catch (err) {
    bucket?.close()
    throw err
  }
  let db: Db
  try {
    // Before the constructor: it opens the database by itself at the next microtask, and with
    // createIfMissing that open would start an empty database over a CURRENT-less directory
    // (and, while it creates a new one, show MANIFEST-000001 before CURRENT to this check).
    await assertNotOrphaned(dir)
    db = new ClassicLevel<Bytes, Bytes>(dir, {
      ...ENC,
      createIfMissing: true,
      writeBufferSize: options.writeBufferSize,
      cacheSize: options.cacheSize,
      compression: options.compression,
    })
    await db.open()
  } catch (err) {
    bucket?.close()
    claim.release()
    throw fromLevel(err, `Cannot open ${dir}`)
  }
  try {
    const meta = db.sublevel<Bytes, Bytes>(META_SUBLEVEL, ENC)
    const format = await meta.get(FORMAT_KEY)
    const formatValue = Buffer.from(JSON.stringify({ version: FORMAT_VERSION }))
    if (format === undefined) {
      await db.batch()
        .put(FORMAT_KEY, formatValue, { sublevel: meta })
        .put(SENTINEL_LOW, SENTINEL_LOW)
        .put(SENTINEL_HIGH, SENTINEL_HIGH)
        .write({ sync: true })
      // Flush them to a table at once, before any record, so they sit below every later flush.
      await db.compactRange(SENTINEL_LOW, SENTINEL_HIGH)
    } else {
      let version: unknown
      try { version = (JSON.parse(format.toString('utf8')) as { version?: unknown }).version } catch { version = undefined }
      if (typeof version !== 'number' || !READABLE_FORMATS.includes(version)) {
        const readable = READABLE_FORMATS.join(' and ')
        throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT', `${dir} holds evaq format ${String(version)}; this version reads formats ${readable}`)
      }
      // Format 1 is format 2 without segment files: mark it, so that an older evaq, which could
      // not read the segment files about to be written, refuses it.
      if (version !== FORMAT_VERSION) await db.batch().put(FORMAT_KEY, formatValue, { sublevel: meta }).write({ sync: true })
    }
    let tierId: string | undefined
    if (options.tier !== undefined) {
      tierId = (await meta.get(TIER_ID_KEY))?.toString('utf8')
      if (tierId === undefined) {
        tierId = randomBytes(8).toString('hex')
        await db.batch().put(TIER_ID_KEY, Buffer.from(tierId), { sublevel: meta }).write({ sync: true })
      }
    }
    const journal = await Journal.load(db.sublevel<Bytes, Bytes>(SNAPSHOT_SUBLEVEL, ENC))
    const ids = await IdFloor.load(dir)

    const snaps = db.sublevel<Bytes, Bytes>(SNAPSHOT_SUBLEVEL, ENC)
    // Closing a database closes its sublevels, and opening it again does not reopen them.
    const sublevels: Sublevel[] = [snaps]
    const files = new Map<string, SegmentFiles>()
    const store: Store = {
      db,
      claim,
      journal,
      corruption: await engineCorruption(dir),
      ids,
      files,
      bucket,
      fileRecovery: { segments: 0, records: 0, lines: [], unsynced: [] },
      failed: undefined,
      reopens: 0,
      sublevel: (name: string) => {
        const sub = db.sublevel<Bytes, Bytes>(name, ENC)
        sublevels.push(sub)
        return sub
      },
      reopen: async (whileClosed) => {
        store.reopens++
        await db.close()
        try {
          await whileClosed?.()
        } finally {
          await db.open()
        }
        await Promise.all(sublevels.map(sub => sub.open()))
        // A failed append may have left torn frames: the next frames go to a new file.
        for (const set of files.values()) await set.reset()
        store.journal = await Journal.load(snaps)
        store.corruption = [...store.corruption, ...await engineCorruption(dir)]
        store.failed = undefined
      },
      close: async () => {
        try {
          for (const set of files.values()) await set.close()
          bucket?.close()
          await db.close()
        } finally {
          if (db.status === 'closed') claim.release()
        }
      },
    }
    const fileBytes = segmentFileBytes(options)
    const tiers = bucket === undefined
      ? undefined
      : async (log: string, logDir: string): Promise<SegmentTier> => {
        return SegmentTier.load(log, logDir, bucket!, joinKey(bucket!.prefix, tierId!, log), tierCacheBytes(options), tierEvents)
      }
    const opened = await openSegmentFiles(dir, store, {
      fileBytes,
      preallocate: false,
      spares: 2,
      compression: options.segmentCompression,
    }, tiers)
    for (const [log, set] of opened.files) files.set(log, set)
    ;(store as { fileRecovery: FileRecovery }).fileRecovery = opened.recovery
    return store
  } catch (err) {
    bucket?.close()
    await db.close().catch(() => {})
    claim.release()
    throw fromLevel(err, `Cannot open ${dir}`)
  }
}

/** Bytes of offloaded files kept fetched in the directory: `tier.cacheBytes`, else two segment files. */
export function tierCacheBytes (options: ResolvedOptions): number {
  return options.tier?.cacheBytes ?? 2 * segmentFileBytes(options)
}
