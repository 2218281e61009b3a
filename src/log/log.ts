import { LRUCache } from 'lru-cache'
import { EvaqError, fromLevel, hasCode, invalid } from '../errors.js'
import { rejectUnknown, type Durability, type ResolvedOptions } from '../options.js'
import { logSublevels } from '../schema.js'
import {
  copyRemovalSet, decodeHeader, decodeKey, decodeRemovalSet, decodeSummary, encodeKey, encodeRemovalSet,
  encodeSummary, isRemoved, markRemoved, payloadAt, type RemovalSet, type SegmentHeader, type SegmentSummary,
} from '../store/codec.js'
import { Keyspace, type ChainedBatch, type Delta, type LogCounters, type Store, type Sublevel } from '../store/store.js'
import { crashPoint } from '../crash-points.js'
import { CommitLater, GroupCommit, type PendingSegment } from '../write/group-commit.js'
import {
  checkSubscribeOptions, checkSubscriberName, Subscriber, type Progress, type SubscribeOptions,
  type SubscriberHost, type SubscriberInfo,
} from './subscriber.js'

/** A record as reads return it. */
export interface QueueRecord {
  /** The record's ID: strictly increasing per log, never reused. */
  readonly id: number
  /** The payload, a copy the caller owns. */
  readonly payload: Buffer
  /** When the record's segment was written, ms since the epoch. */
  readonly pushedAt: number
  /** What the record was stored with, if anything (the DLQ stores the error that sent it there). */
  readonly error?: RecordError
}

export interface RecordError {
  readonly code?: string
  readonly message: string
  /** Where the record came from, when evaq moved it (for example after too many deliveries). */
  readonly source?: { readonly log: string, readonly id: number }
  /** The subscriber that could not process it, and how often it was delivered. */
  readonly subscriber?: string
  readonly deliveries?: number
}

export interface ReadOptions {
  /** Lowest ID to return; earlier IDs are skipped. @defaultValue the first live record */
  from?: number
  /** Upper bound on the payload bytes returned; at least one record is returned when one exists. @defaultValue 1 MiB */
  maxBytes?: number
  /** Upper bound on the records returned. @defaultValue 10000 */
  maxCount?: number
}

export interface PushOptions {
  /** Aborts a push that is waiting for buffer space, with `EVAQ_ABORTED`. */
  signal?: AbortSignal
}

export interface LogStats {
  /** Live records: committed and not removed. */
  readonly count: number
  /** Payload bytes of the live records. */
  readonly bytes: number
  /** Lowest live ID, if any. */
  readonly firstId: number | undefined
  /** When the record `firstId` was pushed (ms since the epoch, the queue's clock), if any. */
  readonly firstPushedAt: number | undefined
  /** Highest live ID, if any. */
  readonly lastId: number | undefined
  /** The ID the next push will get. */
  readonly nextId: number
  /** Records and payload bytes dropped by retention or drop-oldest since the log was created. */
  readonly dropped: { readonly records: number, readonly bytes: number }
  /** Subscribers dropped for inactivity since the log was created. */
  readonly expiredSubscribers: number
  /**
   * Records taken out for damage: their stored bytes failed a checksum (kept in
   * `<log>-quarantine`), or LevelDB could not read or recover them. Each was named by a `dropped`
   * event with reason 'corruption' (or, at open, in `openReport.dropped`).
   */
  readonly quarantined: number
  readonly subscribers: readonly SubscriberInfo[]
}

/** Why records left a log without being removed or acknowledged. */
export type DropReason = 'drop-oldest' | 'retention' | 'corruption'

/** One flush of the write buffer: one LevelDB batch (and one fsync under durability 'sync'). */
export interface FlushEvent {
  readonly log: string
  /** Records written by this flush. */
  readonly records: number
  /** Segments written (one per pushMany group or buffer fill). */
  readonly segments: number
  /** Payload bytes written. */
  readonly bytes: number
  /** Time the LevelDB write took, fsync included when `synced`, in ms. */
  readonly durationMs: number
  /** Whether the write was fsynced (durability 'sync'). */
  readonly synced: boolean
}

export interface DropEvent {
  readonly log: string
  readonly reason: DropReason | 'subscriber-ttl'
  /** Records and payload bytes dropped (0 for a subscriber). */
  readonly records: number
  readonly bytes: number
  /** The ID range dropped, or the subscriber. */
  readonly firstId?: number
  readonly lastId?: number
  readonly subscriber?: string
}

export const MAX_ID = Number.MAX_SAFE_INTEGER
const DEFAULT_READ_BYTES = 1024 * 1024
const DEFAULT_READ_COUNT = 10_000
/** Iterators read ahead this many bytes: the 16 KiB default measured 2.7× slower on segments. */
const ITERATOR_BYTES = 1024 * 1024
/** The least a read asks its iterator to fetch ahead. */
const MIN_ITERATOR_BYTES = 16 * 1024

/** A segment value with its header decoded on first use (a fresh write may never need it). */
export class Segment {
  private decoded: SegmentHeader | undefined

  constructor (readonly firstId: number, readonly value: Buffer) {}

  get header (): SegmentHeader {
    return (this.decoded ??= decodeHeader(this.firstId, this.value))
  }
}

/** Pushes are admitted through this; a disk budget makes pushes wait, fail or drop old data. */
export interface Admission {
  admit (log: Log, bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined
}

export interface LogContext {
  readonly store: Store
  readonly options: ResolvedOptions
  readonly segments: LRUCache<string, Segment>
  /** Whether this log keeps a per-record extra (the DLQ keeps the error). */
  readonly extras: boolean
  /** Records older than this many ms are dropped (and counted). */
  readonly maxAgeMs: number | undefined
  readonly admission: Admission
  /** Throws EVAQ_CLOSED once the owner closes. Reads work while the queue is degraded. */
  assertOpen (): void
  /** Like assertOpen, and throws EVAQ_IO while the queue is degraded (writes would fail). */
  assertWritable (): void
  isOpen (): boolean
  /**
   * The reopen under way (a recovery from a failed write, or a repair), if any: the database is
   * briefly closed, and nothing is written until it is open again.
   */
  reopening (): Promise<void> | undefined
  /**
   * LevelDB met damage in its own files (a block it cannot read). Starts a repair while the
   * queue stays open, or joins the one under way, and returns what writes wait for; undefined
   * when the queue cannot repair now (it degrades instead, see Evaq).
   */
  damaged (err: EvaqError): Promise<void> | undefined
  /** A write failed: LevelDB refuses further writes until it is reopened. */
  ioFailed (err: EvaqError): void
  /** Called after a write that was not fsynced (interval durability). */
  markDirty (): void
  /** Move a record a subscriber could not process to the dead-letter queue; undefined: keep redelivering. */
  readonly deadLetter: ((log: Log, sub: Subscriber, record: QueueRecord, deliveries: number) => Promise<void>) | undefined
  dropped (event: DropEvent): void
  /** A flush completed (for metrics). */
  flushed? (event: FlushEvent): void
  error (err: unknown): void
}

/**
 * A batch another log built (a push to it) and hands to this log's removal lane: the removal is
 * staged into it and the lane writes it, so that both commit together or not at all.
 */
export interface Carrier {
  readonly batch: ChainedBatch
  readonly delta: Delta
}

/** Commits a carried segment (see GroupCommit's `carrier`) in place of the log's own write. */
export type CarryFn = (batch: ChainedBatch, delta: Delta) => Promise<void>

interface RemoveRequest {
  readonly ids: number[]
  /** Taking damaged records out: counted as quarantined, their bytes kept aside. */
  readonly quarantine?: boolean
  /** The batch of a push this removal commits with (one carried request per group). */
  readonly carrier?: Carrier
  /** Stages what goes with this request alone (only if it is accepted). */
  readonly stage?: (batch: ChainedBatch) => void
  /** Rejected already (an unknown ID), so not to be run again after a reopen. */
  settled?: boolean
  resolve (highest: number | undefined): void
  reject (err: unknown): void
}

/** Working state of one segment during a removal group. */
interface Touched {
  readonly header: SegmentHeader
  /** A private copy of the removal set; `before` is what it held when the group started. */
  readonly set: RemovalSet
  readonly before: { readonly removed: number, readonly removedBytes: number }
  dirty: boolean
}

/** Start compacting a deleted range once this much payload or this many segments were deleted. */
const COMPACT_BYTES = 32 * 1024 * 1024
const COMPACT_SEGMENTS = 4096
/** Segments looked at by one cleanup, retention or drop pass. */
const DELETE_PASS = 4096

/**
 * One named, ID-ordered log of segments: the WAL, the DLQ, or any other. Pushes go through the
 * group-commit buffer. Everything that deletes (explicit removal, cleanup of acknowledged records,
 * retention, drop-oldest) goes through one serial lane, so removal sets (read-modify-write
 * values) and the head never race; concurrent removals are merged into one batch.
 */
export class Log {
  readonly name: string
  private readonly segs: Sublevel
  private readonly removals: Sublevel
  private readonly index: Sublevel
  private readonly subsLevel: Sublevel
  private readonly extraLevel: Sublevel | undefined
  private readonly segKeys: Keyspace
  private readonly removalKeys: Keyspace
  private readonly indexKeys: Keyspace
  private readonly extraKeys: Keyspace | undefined
  private readonly quarantineKeys: Keyspace
  private readonly writer: GroupCommit
  private readonly removedSets: LRUCache<number, RemovalSet | false>
  private readonly removeQueue: RemoveRequest[] = []
  private removalQueued = false
  private cleanupQueued = false
  private lane: Promise<unknown> = Promise.resolve()
  private readonly sync: boolean
  private readonly ackSync: boolean
  private readonly committedListeners = new Set<() => void>()
  private readonly subs = new Map<string, Subscriber>()
  private readonly dirtyProgress = new Map<string, Subscriber | null>()
  private progressWrite: Promise<void> | undefined
  private progressNext: Promise<void> | undefined
  private compactFrom = Infinity
  private compactTo = 0
  private compactBytes = 0
  private compactSegments = 0
  private compaction: Promise<void> | undefined
  private pendingExpired = 0
  private readonly host: SubscriberHost
  /** Compactions run, for stats and tests. */
  compactions = 0

  constructor (name: string, private readonly ctx: LogContext) {
    this.name = name
    const { store, options } = ctx
    const names = logSublevels(name)
    this.segs = store.sublevel(names.segments)
    this.removals = store.sublevel(names.removed)
    this.index = store.sublevel(names.index)
    this.subsLevel = store.sublevel(names.subscribers)
    this.extraLevel = ctx.extras ? store.sublevel(names.extra) : undefined
    this.segKeys = new Keyspace(this.segs)
    this.removalKeys = new Keyspace(this.removals)
    this.indexKeys = new Keyspace(this.index)
    this.extraKeys = this.extraLevel === undefined ? undefined : new Keyspace(this.extraLevel)
    this.quarantineKeys = new Keyspace(store.sublevel(names.quarantine))
    this.sync = options.durability === 'sync'
    this.ackSync = options.ackDurability === 'sync'
    this.removedSets = new LRUCache({ max: 4096 })
    this.host = this.makeHost()
    this.writer = new GroupCommit(options, Math.max(store.journal.counters(name).next, store.ids.floor(name)), segments => this.commit(segments), () => {
      for (const listener of this.committedListeners) listener()
    })
  }

  /** Load the subscribers' progress: one small entry per subscriber, never the records. Returns the keys read. */
  async load (): Promise<number> {
    let read = 0
    for await (const [key, value] of this.subsLevel.iterator()) {
      read++
      const name = key.toString('utf8')
      let progress: Progress
      try {
        progress = JSON.parse(value.toString('utf8')) as Progress
      } catch (cause) {
        throw new EvaqError('EVAQ_CORRUPTION', `The progress of subscriber ${name} of ${this.name} cannot be decoded`, { cause })
      }
      const sub = new Subscriber(this.host, name, { ...progress, start: progress.start ?? progress.floor })
      // The inactivity clock starts at open: time the queue was closed is not inactivity.
      sub.touch(this.ctx.options.clock.now())
      this.subs.set(name, sub)
    }
    return read
  }

  /** Highest ID below which every record is committed; readers never look past it. */
  get watermark (): number {
    return this.writer.watermark
  }

  /** The ID the next push gets. */
  get nextId (): number {
    return this.writer.next
  }

  /** Be told whenever the watermark may have moved. Returns an unsubscribe function. */
  onCommitted (listener: () => void): () => void {
    this.committedListeners.add(listener)
    return () => this.committedListeners.delete(listener)
  }

  private get counters (): LogCounters {
    return this.ctx.store.journal.counters(this.name)
  }

  /** Live payload bytes (committed, not removed): what budgets count. */
  get liveBytes (): number {
    return this.counters.bytes
  }

  /**
   * `carry`: commit the record through another log's removal lane, in one batch with a removal
   * there (a move; see removeCarried). The push then rejects with that removal's EVAQ_NOT_FOUND
   * when the source record is gone, and nothing is written.
   */
  push (payload: unknown, options?: PushOptions, extra?: Buffer, carry?: CarryFn): Promise<number> {
    try {
      this.ctx.assertWritable()
      const buf = this.toPayload(payload, 'payload')
      const signal = checkPushOptions(options)
      const wait = this.ctx.admission.admit(this, buf.byteLength, signal)
      const extras = extra === undefined ? undefined : [extra]
      if (wait === undefined) return this.writer.push([buf], buf.byteLength, extras, signal, carry)
      return wait.then(() => { this.ctx.assertWritable(); return this.writer.push([buf], buf.byteLength, extras, signal, carry) })
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * Push `payloads` (validated by the caller's read: records of another log) as one carried
   * segment: one batch with the removal `carry` stages (a move of a page of records; see push).
   * Resolves with the first ID, the others following in order; rejects like push with `carry`.
   */
  async pushCarried (payloads: readonly Uint8Array[], carry: CarryFn): Promise<number> {
    this.ctx.assertWritable()
    const bufs = payloads.map((p, i) => this.toPayload(p, `payloads[${i}]`))
    if (bufs.length === 0) throw invalid('payloads', 'at least one payload', payloads)
    const bytes = bufs.reduce((n, b) => n + b.byteLength, 0)
    const wait = this.ctx.admission.admit(this, bytes, undefined)
    if (wait !== undefined) { await wait; this.ctx.assertWritable() }
    return this.writer.push(bufs, bytes, undefined, undefined, carry)
  }

  async pushMany (payloads: unknown, options?: PushOptions): Promise<number[]> {
    this.ctx.assertWritable()
    if (!Array.isArray(payloads)) throw invalid('payloads', 'an array of payloads', payloads)
    const signal = checkPushOptions(options)
    const bufs = new Array<Uint8Array>(payloads.length)
    let bytes = 0
    for (let i = 0; i < payloads.length; i++) {
      bufs[i] = this.toPayload(payloads[i], `payloads[${i}]`)
      bytes += bufs[i]!.byteLength
    }
    if (bufs.length === 0) return []
    const wait = this.ctx.admission.admit(this, bytes, signal)
    if (wait !== undefined) { await wait; this.ctx.assertWritable() }
    const first = await this.writer.push(bufs, bytes, undefined, signal)
    return Array.from({ length: bufs.length }, (_, i) => first + i)
  }

  /** Validate a payload. No copy: the write buffer copies it before push returns. */
  private toPayload (value: unknown, name: string): Uint8Array {
    let buf: Uint8Array
    if (value instanceof Uint8Array) buf = value
    else if (typeof value === 'string') buf = Buffer.from(value, 'utf8')
    else throw invalid(name, 'a Buffer, Uint8Array or string', value)
    if (buf.byteLength > this.ctx.options.maxPayloadBytes) {
      throw new EvaqError('EVAQ_TOO_LARGE', `Expected \`${name}\` to be at most ${this.ctx.options.maxPayloadBytes} bytes (maxPayloadBytes), got ${buf.byteLength}`)
    }
    return buf
  }

  /** Write one flush: its segments, their summaries and extras, and the counters, in one batch. */
  private async commit (segments: readonly PendingSegment[]): Promise<void> {
    await this.untilReopened()
    const reopens = this.ctx.store.reopens
    try {
      await this.writeSegments(segments)
    } catch (err) {
      throw this.later(err, reopens)
    }
  }

  private async writeSegments (segments: readonly PendingSegment[]): Promise<void> {
    const { store, options } = this.ctx
    const batch = store.db.batch()
    const now = options.clock.now()
    let count = 0
    let bytes = 0
    const written: Segment[] = []
    for (const s of segments) {
      const { builder } = s
      const value = builder.finish(now)
      this.segKeys.put(batch, builder.firstId, value)
      this.indexKeys.put(batch, builder.firstId, encodeSummary(builder.count, builder.payloadBytes, now))
      if (this.extraKeys !== undefined) {
        for (const [id, x] of s.extras) this.extraKeys.put(batch, id, x)
      }
      this.stageCommit(batch, s, now)
      count += builder.count
      bytes += builder.payloadBytes
      written.push(new Segment(builder.firstId, value))
    }
    const last = segments[segments.length - 1]!.builder
    const next = last.firstId + last.count
    if (!store.ids.covers(this.name, next)) {
      try {
        await store.ids.reserve(this.name, next)
      } catch (cause) {
        const err = new EvaqError('EVAQ_IO', `Reserving IDs for ${this.name} failed; ${count} record(s) were not written`, { cause })
        this.ctx.ioFailed(err)
        throw err
      }
    }
    const delta: Delta = { [this.name]: { next, count, bytes } }
    crashPoint('segment-write:before')
    const t0 = performance.now()
    const carry = segments[0]!.carrier as CarryFn | undefined
    if (carry !== undefined) await carry(batch, delta)
    else await this.write(batch, delta, this.sync, `Writing ${count} record(s) to ${this.name} failed; they may or may not be stored`)
    crashPoint('segment-write:after')
    this.ctx.flushed?.({ log: this.name, records: count, segments: segments.length, bytes, durationMs: performance.now() - t0, synced: this.sync })
    for (const s of written) {
      this.removedSets.set(s.firstId, false)
      if (options.segmentCacheBytes > 0) this.ctx.segments.set(this.cacheKey(s.firstId), s)
    }
  }

  /** Wait while the database is being reopened (see LogContext.reopening). */
  private async untilReopened (): Promise<void> {
    for (let r = this.ctx.reopening(); r !== undefined; r = this.ctx.reopening()) await r.catch(() => {})
  }

  /**
   * `err` as CommitLater when the database was reopened under the work that failed: closing the
   * database closes its batches and iterators, so that work wrote nothing and runs again after the
   * reopen. That is so when reopen() started since the work noted `reopens`, or when the work
   * met a closed batch (evaq never adds to a batch it wrote, so a batch is closed only by the
   * database closing: a move's batch may be built before a reopen and used after it). Other
   * errors are left as they are.
   */
  private later (err: unknown, reopens: number): unknown {
    if (err instanceof CommitLater) return err
    const reopened = this.ctx.store.reopens !== reopens || this.ctx.reopening() !== undefined
    if (!(reopened ? closedUnder(err) : hasCode(err, 'LEVEL_BATCH_NOT_OPEN'))) return err
    return new CommitLater(this.ctx.reopening() ?? Promise.resolve(), 'Not written: the database was reopened under it', err)
  }

  /**
   * Write a batch with its commit snapshot; an error leaves the outcome unknown (see Journal),
   * except CommitLater: nothing was written, and the caller builds the batch again after the
   * repair (a batch built before it may describe records the repair took out).
   */
  private async write (batch: ReturnType<Store['db']['batch']>, delta: Delta, sync: boolean, what: string): Promise<void> {
    const store = this.ctx.store
    if (store.failed !== undefined) throw new EvaqError('EVAQ_IO', `${what}: the database failed an earlier write and is not written to until it is reopened`, { cause: store.failed })
    const reopening = this.ctx.reopening()
    if (reopening !== undefined) throw new CommitLater(reopening, `${what}: not written while the database is reopened`)
    const { journal } = store
    // Staging throws LEVEL_BATCH_NOT_OPEN for a batch built before a reopen (see later()).
    const seq = journal.stage(batch, delta)
    try {
      await batch.write({ sync })
    } catch (err) {
      journal.settle(seq, false)
      // LevelDB answers a write with Corruption only when it refused it before writing anything:
      // a compaction met a block it cannot read, and LevelDB refuses every write until it is
      // reopened. evaq repairs the table while the queue stays open, and the batch is built and
      // written again after that (see Evaq.repairDamage).
      if (levelCorruption(err)) {
        const until = this.ctx.damaged(fromLevel(err, what))
        if (until !== undefined) throw new CommitLater(until, `${what}: LevelDB refused it while damaged; it is written again after the repair`, err)
      }
      const error = new EvaqError('EVAQ_IO', what, { cause: err })
      store.failed ??= error
      this.ctx.ioFailed(error)
      throw error
    }
    if (store.failed !== undefined) {
      // This batch finished after another one failed. LevelDB's log writer goes on after a failed
      // write(2) at a position that no longer matches the file, so a batch written after it can
      // be dropped as corrupt when the database reopens: it is not acknowledged. (Writes finish
      // in LevelDB's order, so a batch completing before the failure is reported was written
      // before it.)
      journal.settle(seq, false)
      throw new EvaqError('EVAQ_IO', `${what}: written after an earlier write failed; it may or may not be stored`, { cause: store.failed })
    }
    journal.settle(seq, true)
    if (!sync) this.ctx.markDirty()
  }

  private cacheKey (firstId: number): string {
    return `${this.name}/${firstId}`
  }

  /** Run `task` in the serial lane, after everything queued before it. */
  private serial<T> (task: () => Promise<T>): Promise<T> {
    const run = this.lane.then(async () => {
      await this.untilReopened()
      return task()
    })
    this.lane = run.then(() => {}, () => {})
    return run
  }

  // ---- explicit removal -------------------------------------------------------------------

  /**
   * Remove records by ID, atomically: if any ID is unknown (never committed, or removed already)
   * the call rejects with EVAQ_NOT_FOUND naming them, and nothing is removed. Resolves with the
   * highest ID removed (undefined for an empty list).
   */
  async remove (ids: unknown, name = 'ids'): Promise<number | undefined> {
    this.ctx.assertWritable()
    const list = checkIds(ids, name)
    if (list.length === 0) return undefined
    const promise = new Promise<number | undefined>((resolve, reject) => this.removeQueue.push({ ids: list, resolve, reject }))
    this.scheduleRemovals()
    return promise
  }

  /**
   * Remove `ids` in the batch `carrier` of another log, written by this log's removal lane: both
   * commit together, or neither (EVAQ_NOT_FOUND when an ID is gone, and nothing is written).
   */
  removeCarried (ids: readonly number[], carrier: Carrier): Promise<void> {
    try {
      // Not assertWritable: the push this removal commits with was admitted, and it may be
      // flushed while the queue closes (a move close() lets finish) from another async context.
      const list = checkIds(ids, 'ids')
      return this.enqueueRemoval({ ids: list, carrier }).then(() => {})
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Remove `ids` like remove(), and stage `stage` into the same batch if the removal happens. */
  protected removeStaged (ids: readonly number[], stage: (batch: ChainedBatch) => void): Promise<number | undefined> {
    try {
      this.ctx.assertWritable()
      return this.enqueueRemoval({ ids: checkIds(ids, 'ids'), stage })
    } catch (err) {
      return Promise.reject(err)
    }
  }

  private enqueueRemoval (request: Omit<RemoveRequest, 'resolve' | 'reject'>): Promise<number | undefined> {
    const promise = new Promise<number | undefined>((resolve, reject) => this.removeQueue.push({ ...request, resolve, reject }))
    this.scheduleRemovals()
    return promise
  }

  private scheduleRemovals (): void {
    if (this.removalQueued) return
    this.removalQueued = true
    void this.serial(async () => {
      this.removalQueued = false
      const reopens = this.ctx.store.reopens
      // One carried batch per group: later carried requests wait for the next group. In a group,
      // plain removals go first: where one meets a move of the same ID, the removal wins and the
      // move finds the record gone (nothing is moved).
      const group = this.removeQueue.filter(r => r.carrier === undefined)
      const carried = this.removeQueue.find(r => r.carrier !== undefined)
      if (carried !== undefined) group.push(carried)
      this.removeQueue.splice(0, this.removeQueue.length, ...this.removeQueue.filter(r => r.carrier !== undefined && r !== carried))
      if (this.removeQueue.length > 0) queueMicrotask(() => this.scheduleRemovals())
      try {
        await this.removeGroup(group)
      } catch (err) {
        const later = this.later(err, reopens)
        if (!(later instanceof CommitLater)) {
          for (const r of group) r.reject(err)
          return
        }
        // Not written because the database was reopened under the removal (a repair): the
        // removals run again after it, against what is on disk then. A move's removal fails
        // with CommitLater, and the move builds its batch again.
        this.removeQueue.unshift(...group.filter(r => !r.settled && r.carrier === undefined))
        for (const r of group) if (r.carrier !== undefined) r.reject(later)
        void later.until.catch(() => {}).then(() => { if (this.removeQueue.length > 0) this.scheduleRemovals() })
      }
    })
  }

  private async removeGroup (group: RemoveRequest[]): Promise<void> {
    const working = new Map<number, Touched | null>()
    const accepted: RemoveRequest[] = []
    for (const req of group) {
      const hits: Array<[Touched, number]> = []
      const missing: number[] = []
      let seg: Touched | null = null
      for (const id of req.ids) {
        // Not the watermark: a push acknowledged while an older flush is still in flight lies
        // above it, and its ID is the caller's to remove.
        if (id >= this.writer.next || id < this.counters.floor || this.writer.isPending(id)) { missing.push(id); continue }
        if (seg === null || id < seg.header.firstId || id >= seg.header.firstId + seg.header.count) {
          seg = await this.locate(id, working)
        }
        const index = seg === null ? -1 : id - seg.header.firstId
        if (seg === null || index >= seg.header.count || isRemoved(seg.set, index) || hits.some(([s, i]) => s === seg && i === index)) {
          missing.push(id)
          continue
        }
        hits.push([seg, index])
      }
      if (missing.length > 0) {
        req.settled = true
        req.reject(new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ` and ${missing.length - 10} more` : ''} in ${this.name}; nothing was removed`, { ids: missing }))
        continue
      }
      for (const [s, index] of hits) {
        markRemoved(s.set, index, s.header.lengths[index]!)
        s.dirty = true
      }
      accepted.push(req)
    }
    if (accepted.length === 0) return

    const carrier = accepted.find(r => r.carrier !== undefined)?.carrier
    const batch = carrier?.batch ?? this.ctx.store.db.batch()
    for (const req of accepted) req.stage?.(batch)
    let count = 0
    let bytes = 0
    let floor = this.counters.floor
    const deleted: number[] = []
    const updated: Array<[number, RemovalSet]> = []
    const touched = [...working.values()].filter((t): t is Touched => t !== null && t.dirty)
      .sort((a, b) => a.header.firstId - b.header.firstId)
    for (const t of touched) {
      const first = t.header.firstId
      count -= t.set.removed - t.before.removed
      bytes -= t.set.removedBytes - t.before.removedBytes
      if (t.set.removed === t.header.count) {
        this.deleteSegmentKeys(batch, first, t.header.count)
        deleted.push(first)
        if (first <= floor) floor = first + t.header.count
      } else {
        this.removalKeys.put(batch, first, encodeRemovalSet(t.set))
        updated.push([first, t.set])
      }
      crashPoint('removal:staged')
    }
    if (this.extraKeys !== undefined) {
      for (const req of accepted) for (const id of req.ids) this.extraKeys.del(batch, id)
    }
    await this.stageRemoval(batch, accepted.flatMap(req => req.ids))
    let quarantined = 0
    for (const req of accepted) {
      if (req.quarantine !== true) continue
      quarantined += req.ids.length
      for (const id of req.ids) {
        const t = [...working.values()].find(w => w !== null && id >= w.header.firstId && id < w.header.firstId + w.header.count)
        const segment = t === undefined ? undefined : await this.segment(t!.header.firstId)
        if (segment !== undefined) {
          const h = segment.header
          const start = h.offsets[id - h.firstId]!
          this.quarantineKeys.put(batch, id, Buffer.from(segment.value.subarray(start, start + h.lengths[id - h.firstId]!)))
        }
      }
    }
    const delta: Delta = { ...carrier?.delta, [this.name]: { count, bytes, floor, quarantinedCount: quarantined } }
    crashPoint('removal:before')
    if (carrier !== undefined) crashPoint('move:before')
    await this.write(batch, delta, this.sync, `Removing records from ${this.name} failed; they may or may not be removed`)
    if (carrier !== undefined) crashPoint('move:after')
    crashPoint('removal:after')
    for (const first of deleted) this.forget(first)
    if (deleted.length > 0) {
      const last = touched.filter(t => t.set.removed === t.header.count).at(-1)!.header
      this.noteDeleted(deleted[0]!, last.firstId + last.count, -bytes, deleted.length)
    }
    for (const [first, set] of updated) this.removedSets.set(first, set)
    for (const sub of this.subs.values()) {
      // Persisted with the next progress write (or at close): the removal itself is durable.
      for (const req of accepted) if (sub.forget(req.ids)) this.dirtyProgress.set(sub.name, sub)
    }
    for (const req of accepted) req.resolve(req.ids[req.ids.length - 1])
    // The head may have moved past records no subscriber covers: what they acked may go now.
    if (deleted.length > 0) this.scheduleCleanup()
  }

  private deleteSegmentKeys (batch: ReturnType<Store['db']['batch']>, first: number, count: number): void {
    this.segKeys.del(batch, first)
    this.indexKeys.del(batch, first)
    this.removalKeys.del(batch, first)
    if (this.extraKeys !== undefined) for (let id = first; id < first + count; id++) this.extraKeys.del(batch, id)
    this.stageSegmentDeletion(batch, first, count)
  }

  // ---- hooks for logs that keep more per record (the DLQ's retry state) ---------------------

  /** Add what belongs to the records of `segment` to the batch that commits it. */
  protected stageCommit (_batch: ChainedBatch, _segment: PendingSegment, _pushedAt: number): void {}

  /** Add what goes with the removal of `ids` (explicitly removed or quarantined) to its batch. */
  protected async stageRemoval (_batch: ChainedBatch, _ids: readonly number[]): Promise<void> {}

  /** Add what goes with the deletion of the whole segment [first, first + count) to its batch. */
  protected stageSegmentDeletion (_batch: ChainedBatch, _first: number, _count: number): void {}

  /**
   * Write a batch of a subclass's own keys, with a commit snapshot and this log's durability, so
   * that a failure degrades the queue like any other write.
   */
  protected async writeOwn (batch: ChainedBatch, what: string): Promise<void> {
    this.ctx.assertWritable()
    await this.untilReopened()
    await this.write(batch, {}, this.sync, what)
  }

  /** Payload bytes pushed and not yet committed (buffered or being written). */
  get bufferedBytes (): number {
    return this.writer.bufferedBytes
  }

  private forget (first: number): void {
    this.removedSets.delete(first)
    this.ctx.segments.delete(this.cacheKey(first))
  }

  /** The live segment holding `id`, with a private copy of its removal set, or null. */
  private async locate (id: number, working: Map<number, Touched | null>): Promise<Touched | null> {
    const first = await this.segmentStart(id)
    if (first === undefined) return null
    const known = working.get(first)
    if (known !== undefined) return known
    const segment = await this.segment(first)
    if (segment === undefined) { working.set(first, null); return null }
    const current = await this.removedSet(first, segment.header.count)
    const touched: Touched = {
      header: segment.header,
      set: copyRemovalSet(segment.header.count, current),
      before: { removed: current?.removed ?? 0, removedBytes: current?.removedBytes ?? 0 },
      dirty: false,
    }
    working.set(first, touched)
    return touched
  }

  /**
   * First ID of the live segment holding `id`, or of the last live one below it, or undefined.
   *
   * Found through the summaries (one per segment, written and deleted with it in the same
   * batches), not the segments, and never by a reverse seek into deleted keys: LevelDB skips
   * deleted entries inside the seek, past any bound, so a reverse seek from `id` with nothing live
   * below it walks back over every tombstone of the log's head and into the segments' keyspace
   * (slow, and failing outright where a data block there cannot be read). A forward seek from the
   * head first finds the lowest live summary; the reverse seek then stops at or above it.
   */
  private async segmentStart (id: number): Promise<number | undefined> {
    const exact = await this.index.keys({ gte: encodeKey(id), lte: encodeKey(id), limit: 1 }).all()
    if (exact.length > 0) return id
    const floor = this.counters.floor
    if (floor >= id) return undefined
    const lowest = await this.index.keys({ gte: encodeKey(floor), lte: encodeKey(id), limit: 1 }).all()
    if (lowest.length === 0) return undefined
    const keys = await this.index.keys({ lte: encodeKey(id), gte: lowest[0]!, reverse: true, limit: 1 }).all()
    return keys.length === 0 ? undefined : decodeKey(keys[0]!)
  }

  private async segment (first: number): Promise<Segment | undefined> {
    const cached = this.ctx.segments.get(this.cacheKey(first))
    if (cached !== undefined) return cached
    const value = await this.segs.get(encodeKey(first))
    if (value === undefined) return undefined
    return new Segment(first, value)
  }

  private async removedSet (first: number, count: number): Promise<RemovalSet | undefined> {
    const cached = this.removedSets.get(first)
    if (cached === false) return undefined
    if (cached !== undefined) return cached
    const value = await this.removals.get(encodeKey(first))
    const set = value === undefined ? undefined : decodeRemovalSet(first, count, value)
    this.removedSets.set(first, set ?? false)
    return set
  }

  // ---- deletion of whole segments: cleanup, retention, drop-oldest ---------------------------

  /**
   * Delete the oldest segments, in ID order, while `take` accepts them (at most one pass).
   * Counters, the head and drop counts change in the same batch. Returns what was deleted.
   */
  private async deleteOldest (take: (s: SegmentSummary, liveCount: number, liveBytes: number) => boolean, dropped: DropReason | undefined): Promise<{ records: number, bytes: number, segments: number }> {
    const floor = this.counters.floor
    const watermark = this.watermark
    if (floor > watermark) return { records: 0, bytes: 0, segments: 0 }
    const entries = await this.index.iterator({ gte: encodeKey(floor), lte: encodeKey(watermark), limit: DELETE_PASS }).all()
    const batch = this.ctx.store.db.batch()
    let records = 0
    let bytes = 0
    let newFloor = floor
    const deleted: number[] = []
    for (const [key, value] of entries) {
      const summary = decodeSummary(decodeKey(key), value)
      if (summary.firstId + summary.count - 1 > watermark) break
      const set = await this.removedSet(summary.firstId, summary.count)
      const liveCount = summary.count - (set?.removed ?? 0)
      const liveBytes = summary.payloadBytes - (set?.removedBytes ?? 0)
      if (!take(summary, liveCount, liveBytes)) break
      this.deleteSegmentKeys(batch, summary.firstId, summary.count)
      deleted.push(summary.firstId)
      records += liveCount
      bytes += liveBytes
      newFloor = summary.firstId + summary.count
    }
    if (deleted.length === 0) return { records: 0, bytes: 0, segments: 0 }
    const delta: Partial<LogCounters> = { count: -records, bytes: -bytes, floor: newFloor }
    if (dropped !== undefined) { delta.droppedCount = records; delta.droppedBytes = bytes }
    // Not synced: if a crash loses this batch the records come back and are deleted again.
    crashPoint('cleanup:before')
    await this.write(batch, { [this.name]: delta }, false, `Deleting ${deleted.length} segment(s) of ${this.name} failed`)
    crashPoint('cleanup:after')
    for (const first of deleted) this.forget(first)
    this.noteDeleted(deleted[0]!, newFloor, bytes, deleted.length)
    if (dropped !== undefined && records > 0) {
      this.ctx.dropped({ log: this.name, reason: dropped, records, bytes, firstId: deleted[0]!, lastId: newFloor - 1 })
    }
    return { records, bytes, segments: deleted.length }
  }

  /** Remember a deleted range and compact it once enough piled up, so LevelDB frees the disk. */
  private noteDeleted (from: number, to: number, bytes: number, segments: number): void {
    this.compactFrom = Math.min(this.compactFrom, from)
    this.compactTo = Math.max(this.compactTo, to)
    this.compactBytes += bytes
    this.compactSegments += segments
    if (this.compactBytes >= COMPACT_BYTES || this.compactSegments >= COMPACT_SEGMENTS) void this.compact()
  }

  /**
   * Compact the deleted range now (if any): LevelDB keeps deleted values on disk until a
   * compaction drops them, and tombstones at the head slow iterators that start below them.
   */
  compact (): Promise<void> {
    if (this.compaction !== undefined) return this.compaction
    if (this.compactTo === 0) return Promise.resolve()
    const from = this.compactFrom
    const to = this.compactTo
    this.compactFrom = Infinity
    this.compactTo = 0
    this.compactBytes = 0
    this.compactSegments = 0
    const db = this.ctx.store.db
    this.compaction = (async () => {
      try {
        await this.untilReopened()
        for (const keys of [this.segKeys, this.indexKeys, this.removalKeys]) {
          await db.compactRange(keys.id(from), keys.id(to))
        }
        this.compactions++
      } catch (err) {
        // The compaction met a block LevelDB cannot read: the repair takes it out and reports it.
        if (levelCorruption(err) && this.ctx.damaged(fromLevel(err, `Compacting ${this.name} failed`)) !== undefined) return
        this.ctx.error(new EvaqError('EVAQ_IO', `Compacting ${this.name} failed`, { cause: err }))
      } finally {
        this.compaction = undefined
      }
    })()
    return this.compaction
  }

  /** Delete every segment whose records all lie below `limit` (acknowledged by every subscriber). */
  private async cleanupBelow (limit: number): Promise<void> {
    for (;;) {
      const { segments } = await this.deleteOldest(s => s.firstId + s.count <= limit, undefined)
      if (segments < DELETE_PASS) return
    }
  }

  /** Drop the oldest segments until at least `bytes` of live payload went (at least one segment). */
  dropOldest (bytes: number): Promise<{ records: number, bytes: number }> {
    return this.serial(async () => {
      let dropped = 0
      let droppedBytes = 0
      const r = await this.deleteOldest((_, __, liveBytes) => {
        if (dropped > 0 && droppedBytes >= bytes) return false
        dropped++
        droppedBytes += liveBytes
        return true
      }, 'drop-oldest')
      return { records: r.records, bytes: r.bytes }
    })
  }

  /** Drop segments older than `maxAgeMs` (retention). */
  expire (): Promise<void> {
    const maxAgeMs = this.ctx.maxAgeMs
    if (maxAgeMs === undefined) return Promise.resolve()
    return this.serial(async () => {
      const before = this.ctx.options.clock.now() - maxAgeMs
      for (;;) {
        // Older than maxAgeMs: strictly, like subscriberTtlMs.
        const { segments } = await this.deleteOldest(s => s.pushedAt < before, 'retention')
        if (segments < DELETE_PASS) return
      }
    })
  }

  /** Queue a cleanup of what every subscriber acknowledged (coalesced). */
  private scheduleCleanup (): void {
    if (this.cleanupQueued || this.subs.size === 0 || !this.ctx.isOpen()) return
    this.cleanupQueued = true
    void this.serial(async () => {
      this.cleanupQueued = false
      // A record goes once every subscriber acknowledged it. Records below every subscriber's
      // start were never anyone's to acknowledge: like records of a log without subscribers,
      // they stay until removed (or dropped by a counted retention rule).
      let limit = Infinity
      let start = Infinity
      for (const sub of this.subs.values()) {
        limit = Math.min(limit, sub.floor)
        start = Math.min(start, sub.start)
      }
      if (start <= this.counters.floor && limit > this.counters.floor) await this.cleanupBelow(limit)
    }).catch(err => this.ctx.error(err))
  }

  // ---- subscribers ----------------------------------------------------------------------------

  private makeHost (): SubscriberHost {
    return {
      logName: this.name,
      now: () => this.ctx.options.clock.now(),
      assertOpen: () => this.ctx.assertOpen(),
      head: () => this.counters.floor,
      watermark: () => this.watermark,
      read: (from, maxBytes, maxCount) => this.readSafely(from, maxBytes, maxCount),
      onCommitted: listener => this.onCommitted(listener),
      persist: sub => { this.ctx.assertWritable(); return this.persistProgress(sub) },
      deadLetter: async (sub, record, deliveries) => {
        if (this.ctx.deadLetter === undefined) return false
        await this.ctx.deadLetter(this, sub, record, deliveries)
        return true
      },
      meanRecordBytes: () => this.counters.count === 0 ? 0 : this.counters.bytes / this.counters.count,
    }
  }

  /**
   * A named, persistent subscriber: subscribing again with the same name resumes where it left
   * off (its `start` is then ignored, its lease and delivery limits updated).
   */
  async subscribe (name: string, options?: SubscribeOptions): Promise<Subscriber> {
    this.ctx.assertWritable()
    checkSubscriberName(name)
    const o = checkSubscribeOptions(options)
    const existing = this.subs.get(name)
    const now = this.ctx.options.clock.now()
    if (existing !== undefined) {
      existing.touch(now)
      if (existing.leaseMs !== o.leaseMs || existing.maxDeliveries !== o.maxDeliveries) {
        // New limits apply from now on, to this same handle and its records in flight.
        existing.leaseMs = o.leaseMs
        existing.maxDeliveries = o.maxDeliveries
        await this.persistProgress(existing, true)
      }
      return existing
    }
    const floor = o.start === 'earliest' ? this.counters.floor : o.start === 'latest' ? this.writer.next : Math.max(o.start, 1)
    const sub = new Subscriber(this.host, name, { v: 1, start: floor, floor, acked: [], leaseMs: o.leaseMs, maxDeliveries: o.maxDeliveries, createdAt: now, lastActiveAt: now })
    this.subs.set(name, sub)
    await this.persistProgress(sub, true)
    return sub
  }

  /** Forget a subscriber and its progress; what only it held back can be cleaned up. */
  async unsubscribe (name: string): Promise<boolean> {
    this.ctx.assertWritable()
    checkSubscriberName(name)
    const sub = this.subs.get(name)
    if (sub === undefined) return false
    await this.dropSubscriber(sub, false)
    return true
  }

  private async dropSubscriber (sub: Subscriber, expired: boolean): Promise<void> {
    this.subs.delete(sub.name)
    this.dirtyProgress.set(sub.name, null)
    if (expired) this.pendingExpired++
    sub.detach()
    await this.flushProgress(true)
    this.scheduleCleanup()
  }

  /** Drop subscribers inactive for `ttlMs`, counted and reported; persist others' activity. */
  async expireSubscribers (ttlMs: number): Promise<void> {
    const now = this.ctx.options.clock.now()
    for (const sub of [...this.subs.values()]) {
      if (now - sub.lastActiveAt >= ttlMs) {
        await this.dropSubscriber(sub, true)
        this.ctx.dropped({ log: this.name, reason: 'subscriber-ttl', records: 0, bytes: 0, subscriber: sub.name })
      } else if (sub.activityUnpersistedFor(ttlMs / 4)) {
        this.dirtyProgress.set(sub.name, sub)
      }
    }
    if (this.dirtyProgress.size > 0) await this.flushProgress(true)
  }

  subscribers (): SubscriberInfo[] {
    const mean = this.host.meanRecordBytes()
    return [...this.subs.values()].map(s => s.info(mean, undefined, this.counters.count))
  }

  /** Persist a subscriber's progress: merged with others' into one write (group commit). */
  private persistProgress (sub: Subscriber, force = false): Promise<void> {
    this.dirtyProgress.set(sub.name, sub)
    const sync = force || this.ackSync
    const written = this.flushProgress(sync)
    this.scheduleCleanup()
    return sync ? written : Promise.resolve()
  }

  private flushProgress (sync: boolean): Promise<void> {
    // Interval ack durability: the owner's periodic timer writes it.
    if (!sync) return Promise.resolve()
    if (this.progressWrite === undefined) {
      this.progressWrite = this.writeDirtyProgress().finally(() => { this.progressWrite = undefined })
      return this.progressWrite
    }
    // A write is in flight: everything dirty now goes into the next one.
    this.progressNext ??= this.progressWrite.catch(() => {}).then(() => {
      this.progressNext = undefined
      return this.flushProgress(true)
    })
    return this.progressNext
  }

  /**
   * Write every dirty subscriber's progress (interval ack durability calls this on a timer).
   * Through the one progress lane: LevelDB may apply two batches written at once in either order
   * (classic-level writes on a thread pool), and an older progress applied last would bring back
   * acknowledged records, or an unsubscribed subscriber, after a restart.
   */
  writeProgress (): Promise<void> {
    return this.flushProgress(true)
  }

  private async writeDirtyProgress (): Promise<void> {
    for (;;) {
      await this.untilReopened()
      const reopens = this.ctx.store.reopens
      try {
        await this.writeDirtyProgressOnce()
        return
      } catch (err) {
        if (!(this.later(err, reopens) instanceof CommitLater)) throw err
      }
    }
  }

  private async writeDirtyProgressOnce (): Promise<void> {
    if (this.dirtyProgress.size === 0 && this.pendingExpired === 0) return
    const dirty = [...this.dirtyProgress]
    const expired = this.pendingExpired
    this.dirtyProgress.clear()
    this.pendingExpired = 0
    const batch = this.ctx.store.db.batch()
    for (const [name, sub] of dirty) {
      const key = Buffer.from(name, 'utf8')
      if (sub === null) batch.del(key, { sublevel: this.subsLevel })
      else batch.put(key, Buffer.from(JSON.stringify(sub.progress())), { sublevel: this.subsLevel })
    }
    try {
      crashPoint('progress-write:before')
      await this.write(batch, { [this.name]: expired > 0 ? { expiredSubscribers: expired } : {} }, this.ackSync, `Persisting the progress of ${dirty.length} subscriber(s) of ${this.name} failed`)
      crashPoint('progress-write:after')
    } catch (err) {
      for (const [name, sub] of dirty) if (!this.dirtyProgress.has(name)) this.dirtyProgress.set(name, sub)
      this.pendingExpired += expired
      throw err
    }
  }

  /**
   * Acknowledge leased record `id` for `sub` in the batch `carrier` of another log (the push that
   * moves the record to the dead-letter queue), and write it: through the progress lane, so that
   * no older progress of `sub` is applied after it. Both commit together, or neither.
   */
  async ackCarried (sub: Subscriber, id: number, carrier: Carrier): Promise<void> {
    for (let busy = this.progressNext ?? this.progressWrite; busy !== undefined; busy = this.progressNext ?? this.progressWrite) {
      await busy.catch(() => {})
    }
    const run = (async () => {
      const { batch } = carrier
      batch.put(Buffer.from(sub.name, 'utf8'), Buffer.from(JSON.stringify(sub.progressAcking(id))), { sublevel: this.subsLevel })
      crashPoint('move:before')
      await this.write(batch, carrier.delta, this.sync, `Moving record ${id} of ${this.name} to the dead-letter queue failed; it may or may not be moved`)
      crashPoint('move:after')
      sub.ackMoved(id)
    })()
    const written: Promise<void> = run.finally(() => { if (this.progressWrite === written) this.progressWrite = undefined })
    written.catch(() => {})
    this.progressWrite = written
    await run
  }

  /** Whether progress is waiting for the interval timer. */
  get progressDirty (): boolean {
    return this.dirtyProgress.size > 0
  }

  // ---- reads -------------------------------------------------------------------------------------

  /** Whole records in ID order from `from`, up to `maxBytes` of payload (at least one record). */
  async read (options: ReadOptions = {}): Promise<QueueRecord[]> {
    this.ctx.assertOpen()
    const { from, maxBytes, maxCount } = checkReadOptions(options)
    return this.readSafely(from, maxBytes, maxCount)
  }

  /**
   * readRange, with LevelDB's errors as EvaqErrors. While degraded, evaq briefly closes the
   * database to reopen it: a read that meets the reopen waits for it and tries once more.
   */
  private async readSafely (from: number, maxBytes: number, maxCount: number): Promise<QueueRecord[]> {
    for (let attempt = 0; ; attempt++) {
      await this.untilReopened()
      const reopens = this.ctx.store.reopens
      try {
        return await this.readRange(from, maxBytes, maxCount)
      } catch (err) {
        const error = fromLevel(err, `Reading ${this.name} failed`)
        // The database closed under the read because it is being (or was just) reopened.
        if (error.code !== 'EVAQ_CLOSED' || (this.ctx.store.reopens === reopens && this.ctx.reopening() === undefined)) throw error
        if (attempt >= 1) throw new EvaqError('EVAQ_IO', `Reading ${this.name} failed while the queue recovers`, { cause: err })
      }
    }
  }

  private async readRange (from: number, maxBytes: number, maxCount: number): Promise<QueueRecord[]> {
    const watermark = this.watermark
    let start = Math.max(from, this.counters.floor)
    if (start > watermark) return []
    const out: Array<{ id: number, payload: Buffer, pushedAt: number, error?: RecordError }> = []
    let bytes = 0
    /** Take the records of `segment` from `start` on; false once a bound is reached. */
    const take = async (segment: Segment): Promise<boolean> => {
      const { firstId } = segment
      let header: SegmentHeader
      try {
        header = segment.header
      } catch (err) {
        await this.quarantineSegment(firstId, segment.value)
        throw err
      }
      const set = await this.removedSet(firstId, header.count)
      for (let i = Math.max(0, start - firstId); i < header.count; i++) {
        if (isRemoved(set, i)) continue
        const length = header.lengths[i]!
        if (out.length > 0 && bytes + length > maxBytes) return false
        let payload: Buffer
        try {
          payload = payloadAt(header, segment.value, i)
        } catch (err) {
          await this.quarantineRecord(firstId + i)
          throw err
        }
        out.push({ id: firstId + i, payload: Buffer.from(payload), pushedAt: header.pushedAt })
        bytes += length
        if (out.length >= maxCount) return false
      }
      start = firstId + header.count
      return true
    }
    // A reader that keeps up asks for the segment right after the one it read last: serve it,
    // and the ones after it, from the cache of recently written segments without LevelDB.
    for (let cached = this.ctx.segments.get(this.cacheKey(start)); cached !== undefined && start <= watermark;) {
      if (!await take(cached)) return this.withExtras(out)
      cached = this.ctx.segments.get(this.cacheKey(start))
    }
    if (start > watermark) return this.withExtras(out)
    const first = await this.segmentStart(start)
    const iterFrom = first ?? start
    // Read ahead about what this call can still take (from the log's mean record size), not a
    // fixed 1 MiB: a consumer of small records asking for 1,000 would otherwise fetch ten times
    // what it returns. Too little only costs another nextv().
    const { count: liveCount, bytes: liveBytes } = this.counters
    const left = maxCount - out.length
    const want = Math.min(maxBytes - bytes, left * ((liveCount === 0 ? 0 : liveBytes / liveCount) + 8))
    const readAhead = Math.max(MIN_ITERATOR_BYTES, Math.min(ITERATOR_BYTES, Math.ceil(want * 1.25)))
    const it = this.segs.iterator({ gte: encodeKey(iterFrom), lte: encodeKey(watermark), highWaterMarkBytes: readAhead } as { gte: Buffer, lte: Buffer })
    const seen: number[] = []
    let covered = watermark
    let unreadable = false
    /** Where the next segment starts if no ID is missing between the segments read. */
    let expected = iterFrom
    let contiguous = true
    try {
      outer: for (;;) {
        let entries: Array<[Buffer, Buffer]>
        try {
          entries = await it.nextv(Math.min(256, left))
        } catch (err) {
          if (!levelCorruption(err) && !levelIoError(err)) throw err
          unreadable = true
          break
        }
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          const segFirst = decodeKey(key)
          seen.push(segFirst)
          if (segFirst !== expected) contiguous = false
          const segment = this.ctx.segments.get(this.cacheKey(segFirst)) ?? new Segment(segFirst, value)
          if (!await take(segment)) {
            covered = segFirst
            break outer
          }
          expected = segFirst + segment.header.count
        }
      }
    } finally {
      await it.close().catch(() => {})
    }
    if (unreadable) {
      await this.readAround(start, watermark, take)
    } else if (!contiguous || (covered === watermark && expected <= watermark)) {
      // Segments that follow each other without a gap up to where the read stopped leave no room
      // for one LevelDB skipped: only a gap (removed segments, an ID jump, or a skip) needs the
      // summaries.
      const skipped = await this.skippedSegment(iterFrom, covered, seen)
      if (skipped !== undefined) {
        // The iterator passed over a segment it could not read, and maybe over readable ones
        // after it (it may stop at the block without reporting it): from the first segment it
        // skipped, read segment by segment.
        while (out.length > 0 && out[out.length - 1]!.id >= skipped) bytes -= out.pop()!.payload.byteLength
        start = skipped
        await this.readAround(start, watermark, take)
      }
    }
    return this.withExtras(out)
  }

  /**
   * LevelDB could not read a data block in the range: an iterator fails whenever it reaches that
   * block, and it stays in its table until a repair or a compaction that cannot happen (the
   * compaction would have to read it). So read this range segment by segment instead, led by the
   * summaries, which live in other blocks: a point read of a segment touches only its own block.
   * Segments that cannot be read are quarantined, and the read fails with EVAQ_CORRUPTION naming
   * them; the next read skips them, so a consumer gets past the damage.
   */
  private async readAround (start: number, watermark: number, take: (segment: Segment) => Promise<boolean>): Promise<void> {
    const bad: number[] = []
    let from = await this.segmentStart(start) ?? start
    outer: while (from <= watermark) {
      const keys = await this.index.keys({ gte: encodeKey(from), lte: encodeKey(watermark), limit: 64 }).all()
      if (keys.length === 0) break
      for (const key of keys) {
        const id = decodeKey(key)
        from = id + 1
        let segment = this.ctx.segments.get(this.cacheKey(id))
        if (segment === undefined) {
          let value: Buffer | undefined
          try {
            value = await this.segs.get(encodeKey(id))
          } catch (err) {
            if (!levelCorruption(err) && !levelIoError(err)) throw err
          }
          if (value === undefined) {
            bad.push(id)
            continue
          }
          segment = new Segment(id, value)
        }
        if (!await take(segment)) break outer
      }
    }
    if (bad.length === 0) return
    for (const id of bad) await this.quarantineSegment(id, undefined)
    throw new EvaqError('EVAQ_CORRUPTION', `LevelDB could not read ${bad.length} segment(s) of ${this.name} starting at ${bad.slice(0, 5).join(', ')}; they were quarantined`, { ids: bad })
  }

  /**
   * LevelDB skips a data block it cannot read and reports it only when an iterator runs to its
   * end, if at all (an iterator stopped by its bound never does): compare the segments the
   * iterator returned with the summaries of the same range, which live in other blocks. Returns
   * the first segment a summary names that the iterator did not return, if any.
   */
  private async skippedSegment (from: number, to: number, seen: readonly number[]): Promise<number | undefined> {
    const summaries = await this.index.keys({ gte: encodeKey(from), lte: encodeKey(to) }).all()
    const returned = new Set(seen)
    for (const key of summaries) {
      const id = decodeKey(key)
      if (!returned.has(id)) return id
    }
    return undefined
  }

  /**
   * Take one damaged record out of the log: it is marked removed, counted as quarantined and its
   * stored bytes kept in `<log>-quarantine`, so that the next read goes past it instead of
   * failing on it forever. The read that found it fails with EVAQ_CORRUPTION.
   */
  private quarantineRecord (id: number): Promise<void> {
    return new Promise<boolean>((resolve) => {
      // Rejected when another read quarantined it first: nothing more to do then.
      this.removeQueue.push({ ids: [id], quarantine: true, resolve: () => resolve(true), reject: () => resolve(false) })
      this.scheduleRemovals()
    }).then(done => {
      if (done) this.ctx.dropped({ log: this.name, reason: 'corruption', records: 1, bytes: 0, firstId: id, lastId: id })
    })
  }

  /** Take a segment whose header or index is damaged out of the log, whole. */
  private quarantineSegment (first: number, value: Buffer | undefined): Promise<void> {
    return this.serial(async () => {
      const summary = await this.index.get(encodeKey(first)).catch(() => undefined)
      let count = 0
      let bytes = 0
      let ids = 1
      if (summary !== undefined) {
        try {
          const s = decodeSummary(first, summary)
          const set = await this.removedSet(first, s.count).catch(() => undefined)
          ids = s.count
          count = s.count - (set?.removed ?? 0)
          bytes = s.payloadBytes - (set?.removedBytes ?? 0)
        } catch { /* the summary is damaged too: the counters stay as they are */ }
      }
      const batch = this.ctx.store.db.batch()
      if (value !== undefined) this.quarantineKeys.put(batch, first, value)
      this.deleteSegmentKeys(batch, first, ids)
      const floor = first <= this.counters.floor ? first + ids : undefined
      await this.write(batch, { [this.name]: { count: -count, bytes: -bytes, quarantinedCount: count, ...(floor === undefined ? {} : { floor }) } }, this.sync, `Quarantining segment ${first} of ${this.name} failed`)
      this.forget(first)
      this.ctx.dropped({ log: this.name, reason: 'corruption', records: count, bytes, firstId: first, lastId: first + ids - 1 })
    }).catch(err => {
      // Not written: the database was being reopened (the next read meets the segment again), or
      // LevelDB refused the write for damage, and the repair that follows names what it takes out.
      if (!(err instanceof CommitLater)) this.ctx.error(err)
    })
  }

  private async withExtras (out: Array<{ id: number, payload: Buffer, pushedAt: number, error?: RecordError }>): Promise<QueueRecord[]> {
    if (this.extraLevel !== undefined && out.length > 0) {
      const extras = await this.extraLevel.getMany(out.map(r => encodeKey(r.id)))
      for (let i = 0; i < out.length; i++) {
        const x = extras[i]
        if (x !== undefined) out[i]!.error = decodeError(out[i]!.id, x)
      }
    }
    return out
  }

  /**
   * The first live record at or after `from`, for stats: damage met on the way is quarantined
   * (and reported by the `dropped` event) rather than failing the call.
   */
  private async firstFrom (from: number): Promise<QueueRecord | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const [record] = await this.readSafely(from, 0, 1)
        return record
      } catch (err) {
        if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION' || attempt >= 3) throw err
      }
    }
  }

  async stats (): Promise<LogStats> {
    this.ctx.assertOpen()
    const { count, bytes, floor, droppedCount, droppedBytes, expiredSubscribers, quarantinedCount } = this.counters
    const nextId = this.writer.next
    let firstId: number | undefined
    let lastId: number | undefined
    let head: QueueRecord | undefined
    if (count > 0) {
      head = await this.firstFrom(floor)
      firstId = head?.id
      const segFirst = await this.segmentStart(this.watermark).catch(err => { throw fromLevel(err, `Reading ${this.name} failed`) })
      if (segFirst !== undefined) {
        const segment = await this.segment(segFirst).catch(() => undefined)
        if (segment !== undefined) {
          const set = await this.removedSet(segFirst, segment.header.count)
          for (let i = segment.header.count - 1; i >= 0; i--) {
            if (!isRemoved(set, i)) { lastId = segFirst + i; break }
          }
        }
      }
    }
    const mean = count === 0 ? 0 : bytes / count
    const subscribers: SubscriberInfo[] = []
    for (const sub of this.subs.values()) {
      const oldest = sub.floor <= this.watermark ? await this.firstFrom(sub.floor) : undefined
      subscribers.push(sub.info(mean, oldest?.pushedAt, count))
    }
    return {
      count,
      bytes,
      firstId,
      firstPushedAt: head?.pushedAt,
      lastId,
      nextId,
      dropped: { records: droppedCount, bytes: droppedBytes },
      expiredSubscribers,
      quarantined: quarantinedCount,
      subscribers,
    }
  }

  /** Resolves once every push, removal, deletion and progress write made so far has settled. */
  async drain (): Promise<void> {
    await this.writer.drain()
    await this.lane
    if (this.dirtyProgress.size > 0) await this.writeProgress().catch(err => this.ctx.error(err))
    while (this.progressWrite !== undefined || this.progressNext !== undefined) await (this.progressNext ?? this.progressWrite)?.catch(() => {})
    await this.lane
    await this.compaction
  }

  /** After a reopen: what the caches hold may differ from disk where a write failed. */
  forgetCaches (): void {
    this.removedSets.clear()
    this.ctx.segments.clear()
  }

  /** Used by close(): pushes still waiting for buffer space are rejected. */
  rejectWaiters (err: EvaqError): void {
    this.writer.rejectWaiters(err)
  }

  /** Used by close(): waiting `next()` calls wake up (and see the queue closing). */
  wakeSubscribers (): void {
    for (const sub of this.subs.values()) sub.wakeAll()
  }
}

export function encodeError (error: unknown): Buffer | undefined {
  if (error === undefined) return undefined
  let value: RecordError
  if (typeof error === 'string') value = { message: error }
  else if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    value = typeof code === 'string' ? { code, message: error.message } : { message: error.message }
  } else if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    const { code, message } = error as { code?: unknown, message: string }
    value = typeof code === 'string' ? { code, message } : { message }
  } else {
    throw invalid('error', 'an Error, a string or { code?, message }', error)
  }
  return Buffer.from(JSON.stringify(value))
}

function decodeError (id: number, value: Buffer): RecordError {
  try {
    return JSON.parse(value.toString('utf8')) as RecordError
  } catch (cause) {
    throw new EvaqError('EVAQ_CORRUPTION', `The stored error of record ${id} cannot be decoded`, { cause, ids: [id] })
  }
}

function levelIoError (err: unknown): boolean {
  return hasCode(err, 'LEVEL_IO_ERROR')
}

function levelCorruption (err: unknown): boolean {
  return hasCode(err, 'LEVEL_CORRUPTION')
}

/** Whether `err` comes from a database, batch or iterator that was closed (see Log.later). */
function closedUnder (err: unknown): boolean {
  return ['LEVEL_BATCH_NOT_OPEN', 'LEVEL_DATABASE_NOT_OPEN', 'LEVEL_ITERATOR_NOT_OPEN'].some(code => hasCode(err, code))
}

export function checkId (value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(name, 'an integer ID from 1 to 2^53-1', value)
  }
  return value
}

/** Validate an ID or a list of IDs; returns them sorted and without duplicates. */
export function checkIds (value: unknown, name: string): number[] {
  if (typeof value === 'number') return [checkId(value, name)]
  if (!Array.isArray(value)) throw invalid(name, 'an ID or an array of IDs', value)
  const ids = value.map((v, i) => checkId(v, `${name}[${i}]`))
  ids.sort((a, b) => a - b)
  return ids.filter((id, i) => i === 0 || ids[i - 1] !== id)
}

function checkReadOptions (options: unknown): { from: number, maxBytes: number, maxCount: number } {
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  const { from = 0, maxBytes = DEFAULT_READ_BYTES, maxCount = DEFAULT_READ_COUNT, ...rest } = options as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Unknown read option \`${unknown[0]}\`; expected from, maxBytes or maxCount`)
  if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 0) throw invalid('from', 'an integer ID from 0 to 2^53-1', from)
  if (typeof maxBytes !== 'number' || Number.isNaN(maxBytes) || maxBytes < 0 || (!Number.isInteger(maxBytes) && maxBytes !== Infinity)) throw invalid('maxBytes', 'an integer >= 0 or Infinity', maxBytes)
  if (typeof maxCount !== 'number' || Number.isNaN(maxCount) || maxCount < 1 || (!Number.isInteger(maxCount) && maxCount !== Infinity)) throw invalid('maxCount', 'an integer >= 1 or Infinity', maxCount)
  return { from, maxBytes, maxCount }
}

/** The signal of a push's options; a push whose signal is already aborted stores nothing. */
function checkPushOptions (options: unknown): AbortSignal | undefined {
  if (options === undefined) return undefined
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  rejectUnknown(options, ['signal'], ' of a push')
  const { signal } = options as { signal?: unknown }
  if (signal === undefined) return undefined
  if (!(signal instanceof AbortSignal)) throw invalid('signal', 'an AbortSignal', signal)
  if (signal.aborted) throw new EvaqError('EVAQ_ABORTED', 'The push was aborted before it was stored', { cause: signal.reason })
  return signal
}

export type { Durability }
