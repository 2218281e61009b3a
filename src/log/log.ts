import { EvaqError, fromLevel, invalid } from '../errors.js'
import type { Durability } from '../options.js'
import { encodeKey, encodeSummary, isRemoved } from '../store/codec.js'
import { encodeLocator, frameSpan, JOINS_NEXT, JOINS_PREVIOUS, SELF_COMMITTED, type Locator } from '../store/frame.js'
import type { FrameInput, SegmentFiles } from '../store/segment-files.js'
import type { ChainedBatch, Delta, LogCounters } from '../store/store.js'
import { crashPoint } from '../crash-points.js'
import type { PendingSegment } from '../write/group-commit.js'
import { Cleanup } from './cleanup.js'
import type { LogContext } from './context.js'
import { Reader } from './reader.js'
import { RemovalLane } from './removal.js'
import { Segment } from './segment.js'
import type { OwnKeys, OwnKeysKind } from './own-keys.js'
import { SegmentTable } from './segment-table.js'
import type { Subscriber, SubscribeOptions, SubscriberInfo } from './subscriber.js'
import { Subscriptions } from './subscriptions.js'
import type { LogView } from './queue-log.js'
import type { Carrier, CarryFn, LogSidecar, LogStats, PushOptions, QueueRecord, ReadOptions } from './types.js'
import { resolvePushOptions } from './validate.js'

export type {
  QueueRecord, RecordError, ReadOptions, PushOptions, LogStats, DropReason, FlushEvent, DropEvent, Admission, AdmittedLog,
  Carrier, CarryFn, LogSidecar,
} from './types.js'
export { MAX_ID } from './types.js'
export type { LogContext, DeadLetterSource } from './context.js'
export { Segment } from './segment.js'
export type { QueueLog, LogView } from './queue-log.js'
export { checkId, checkIds, encodeError } from './validate.js'
export { OwnKeys, logOwnKeys, type OwnKeysKind } from './own-keys.js'
export type { Durability }

/**
 * Locators are written with a sync at least once per this many bytes of frames, so that an open
 * after a power cut scans at most about this much of the segment files (store/file-recovery.ts).
 */
const SYNC_LOCATORS_BYTES = 16 * 1024 * 1024
/**
 * And at least once per this many segments: an open after a power cut checks the frames of the
 * locators written since (store/unsynced-frames.ts), and each is a key read and a frame read.
 */
const SYNC_LOCATORS_SEGMENTS = 4096

/**
 * One named, ID-ordered log of segments: the WAL, the DLQ, or any other. Pushes go through the
 * group-commit buffer. Everything that deletes (explicit removal, cleanup of acknowledged records,
 * retention, drop-oldest) goes through one serial lane, so removal sets (read-modify-write
 * values) and the head never race; concurrent removals are merged into one batch.
 *
 * This class composes the parts that share the segment table: the removal lane, the cleanup,
 * the reads and the subscriptions. A log that keeps more per record (the DLQ) hands it a sidecar.
 */
export class Log implements LogView {
  readonly name: string
  /** Frame bytes appended since locators were last written with a sync (see writeFrames). */
  private framesSinceSync = 0
  private segmentsSinceSync = 0
  private readonly t: SegmentTable
  private readonly removal: RemovalLane
  private readonly cleanup: Cleanup
  private readonly reader: Reader
  private readonly subscriptions: Subscriptions

  constructor (name: string, private readonly ctx: LogContext, sidecar?: LogSidecar) {
    this.name = name
    this.t = new SegmentTable(name, ctx, sidecar, segments => this.commit(segments))
    this.cleanup = new Cleanup(this.t, () => this.subscriptions.subs)
    this.removal = new RemovalLane(this.t, {
      deleted: (from, to, bytes, segments) => this.cleanup.noteDeleted(from, to, bytes, segments),
      removed: requests => this.subscriptions.removed(requests),
      headMoved: () => this.cleanup.scheduleCleanup(),
    })
    this.reader = new Reader(this.t, this.removal)
    this.subscriptions = new Subscriptions(this.t, this.reader, this.cleanup, this)
  }

  /**
   * Load the subscribers' progress (one small entry per subscriber, never the records) and where
   * the segment files end. Returns the keys read.
   */
  async load (): Promise<number> {
    return await this.subscriptions.load() + await this.t.loadFiles()
  }

  /** Highest ID below which every record is committed; readers never look past it. */
  get watermark (): number {
    return this.t.watermark
  }

  /** The ID the next push gets. */
  get nextId (): number {
    return this.t.writer.next
  }

  /** Be told whenever the watermark may have moved. Returns an unsubscribe function. */
  onCommitted (listener: () => void): () => void {
    return this.t.onCommitted(listener)
  }

  private get counters (): LogCounters {
    return this.t.counters
  }

  /** Live payload bytes (committed, not removed): what budgets count. */
  get liveBytes (): number {
    return this.counters.bytes
  }

  /**
  /**
   * `carry`: commit the record through another log's removal lane, in one batch with a removal
   * there (a move; see removeCarried). The push then rejects with that removal's EVAQ_NOT_FOUND
   * when the source record is gone, and nothing is written.
   */
  push (payload: unknown, options?: PushOptions, extra?: Buffer, carry?: CarryFn): Promise<number> {
    try {
      this.ctx.assertWritable()
      const buf = this.toPayload(payload, 'payload')
      const signal = resolvePushOptions(options)
      const wait = this.ctx.admission.admit(this, buf.byteLength, signal)
      const extras = extra === undefined ? undefined : [extra]
      if (wait === undefined) return this.t.writer.push([buf], buf.byteLength, extras, signal, carry)
      // The caller may reuse its buffer once push returned: a push that waits for room keeps a copy.
      const kept = Buffer.from(buf)
      return wait.then(() => { this.ctx.assertWritable(); return this.t.writer.push([kept], kept.byteLength, extras, signal, carry) })
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
    return this.t.writer.push(bufs, bytes, undefined, undefined, carry)
  }

  async pushMany (payloads: unknown, options?: PushOptions): Promise<number[]> {
    this.ctx.assertWritable()
    if (!Array.isArray(payloads)) throw invalid('payloads', 'an array of payloads', payloads)
    const signal = resolvePushOptions(options)
    const bufs = new Array<Uint8Array>(payloads.length)
    let bytes = 0
    for (let i = 0; i < payloads.length; i++) {
      bufs[i] = this.toPayload(payloads[i], `payloads[${i}]`)
      bytes += bufs[i]!.byteLength
    }
    if (bufs.length === 0) return []
    const wait = this.ctx.admission.admit(this, bytes, signal)
    if (wait !== undefined) {
      // As in push: the caller may reuse its buffers once pushMany returned.
      for (let i = 0; i < bufs.length; i++) bufs[i] = Buffer.from(bufs[i]!)
      await wait
      this.ctx.assertWritable()
    }
    const first = await this.t.writer.push(bufs, bytes, undefined, signal)
    return Array.from({ length: bufs.length }, (_, i) => first + i)
  }

  /** Validate a payload. No copy: the write buffer copies it before push returns (push copies it itself when it waits for room). */
  private toPayload (value: unknown, name: string): Uint8Array {
    let buf: Uint8Array
    if (value instanceof Uint8Array) buf = value
    else if (typeof value === 'string') buf = Buffer.from(value, 'utf8')
    else throw invalid(name, 'a Buffer, Uint8Array or string', value)
    if (buf.byteLength > this.ctx.options.maxPayloadBytes) {
      const max = this.ctx.options.maxPayloadBytes
      throw new EvaqError('EVAQ_TOO_LARGE', `Expected \`${name}\` to be at most ${max} bytes (maxPayloadBytes), got ${buf.byteLength}`)
    }
    return buf
  }

  /** Write one flush: its segments, their summaries and extras, and the counters, in one batch. */
  private async commit (segments: readonly PendingSegment[]): Promise<void> {
    await this.t.untilReopened()
    const reopens = this.ctx.store.reopens
    try {
      await this.writeSegments(segments)
    } catch (err) {
      throw this.t.later(err, reopens)
    }
  }

  private async writeSegments (segments: readonly PendingSegment[]): Promise<void> {
    const files = this.t.files
    // A move commits with its removal from the other log, in one synced batch: inline.
    if (files !== undefined && segments[0]!.carrier === undefined) return this.writeFrames(files, segments)
    const { store, options } = this.ctx
    const batch = store.db.batch()
    const now = options.clock.now()
    let count = 0
    let bytes = 0
    const written: Segment[] = []
    for (const s of segments) {
      const { builder } = s
      const value = builder.finish(now)
      this.t.indexKeys.put(batch, builder.firstId, encodeSummary(builder.count, builder.payloadBytes, now))
      if (this.t.extraKeys !== undefined) {
        for (const [id, x] of s.extras) this.t.extraKeys.put(batch, id, x)
      }
      this.t.sidecar?.stageCommit?.(batch, s, now)
      count += builder.count
      bytes += builder.payloadBytes
      written.push(new Segment(builder.firstId, value))
    }
    const next = await this.reserveIds(segments, count)
    const delta: Delta = { [this.name]: { next, count, bytes } }
    // The segments go into the batch last (see SegmentTable.write): it is one buffer that doubles
    // as it grows, so a segment staged before the small entries would be copied once more.
    const putSegments = (b: ChainedBatch): void => { for (const s of written) this.t.segKeys.put(b, s.firstId, s.value) }
    crashPoint('segment-write:before')
    const t0 = performance.now()
    const carry = segments[0]!.carrier as CarryFn | undefined
    if (carry !== undefined) {
      putSegments(batch)
      await carry(batch, delta)
    } else {
      await this.t.write(batch, delta, this.t.sync, `Writing ${count} record(s) to ${this.name} failed; they may or may not be stored`, putSegments)
    }
    crashPoint('segment-write:after')
    this.ctx.flushed?.({ log: this.name, records: count, segments: segments.length, bytes, durationMs: performance.now() - t0, synced: this.t.sync })
    this.cacheWritten(written)
  }

  /**
   * Write one flush to the log's segment files (format 2): its frames are appended and synced,
   * which commits them; then their locators, summaries and the counters are written to LevelDB
   * without a sync (an open indexes again the frames whose locators LevelDB lost; see
   * store/file-recovery.ts). The first locators into a new file, and those after every
   * SYNC_LOCATORS_BYTES of frames, are synced, so that such an open reads at most that much.
   */
  private async writeFrames (files: SegmentFiles, segments: readonly PendingSegment[]): Promise<void> {
    const { store, options } = this.ctx
    const now = options.clock.now()
    const frames: FrameInput[] = []
    const written: Segment[] = []
    let count = 0
    let bytes = 0
    for (let i = 0; i < segments.length; i++) {
      const { builder, joinNext } = segments[i]!
      const body = builder.finish(now)
      const joinsPrevious = i > 0 && segments[i - 1]!.joinNext
      const flags = SELF_COMMITTED | (joinNext ? JOINS_NEXT : 0) | (joinsPrevious ? JOINS_PREVIOUS : 0)
      frames.push({ firstId: builder.firstId, end: builder.firstId + builder.count, body, flags })
      written.push(new Segment(builder.firstId, body))
      count += builder.count
      bytes += builder.payloadBytes
    }
    const next = await this.reserveIds(segments, count)
    crashPoint('segment-write:before')
    const t0 = performance.now()
    let locators: Locator[]
    try {
      locators = await files.append(frames, this.t.sync)
    } catch (cause) {
      const err = cause instanceof EvaqError && cause.code === 'EVAQ_IO'
        ? cause
        : new EvaqError('EVAQ_IO', `Writing ${count} record(s) to ${this.name} failed; they may or may not be stored`, { cause })
      store.failed ??= err
      this.ctx.ioFailed(err)
      throw err
    }
    const batch = store.db.batch()
    const ends = new Map<number, number>()
    for (let i = 0; i < segments.length; i++) {
      const { builder } = segments[i]!
      const loc = locators[i]!
      this.t.segKeys.put(batch, builder.firstId, encodeLocator(loc))
      this.t.indexKeys.put(batch, builder.firstId, encodeSummary(builder.count, builder.payloadBytes, now))
      ends.set(loc.file, Math.max(ends.get(loc.file) ?? 0, builder.firstId + builder.count))
    }
    let newFile = false
    for (const [file, end] of ends) {
      const known = this.t.fileEnds.get(file)
      if (known === undefined) newFile = true
      if (known === undefined || end > known) this.t.fileKeys.put(batch, file, encodeKey(end))
    }
    const last = locators[locators.length - 1]!
    const tail = { tailFile: last.file, tailOffset: last.offset + frameSpan(last.length) }
    const delta: Delta = { [this.name]: { next, count, bytes, ...tail, syncedBelow: files.syncedBelow } }
    // Synced at a new file and every SYNC_LOCATORS_BYTES: what an open scans after a power cut.
    for (const loc of locators) this.framesSinceSync += frameSpan(loc.length)
    this.segmentsSinceSync += locators.length
    const sync = newFile || this.framesSinceSync >= SYNC_LOCATORS_BYTES || this.segmentsSinceSync >= SYNC_LOCATORS_SEGMENTS
    if (sync) this.framesSinceSync = this.segmentsSinceSync = 0
    await this.t.write(batch, delta, sync, `Indexing ${count} record(s) of ${this.name} failed; they are stored, and indexed again at the next open`)
    for (const [file, end] of ends) this.t.fileEnds.set(file, Math.max(this.t.fileEnds.get(file) ?? 0, end))
    crashPoint('segment-write:after')
    this.ctx.flushed?.({ log: this.name, records: count, segments: segments.length, bytes, durationMs: performance.now() - t0, synced: this.t.sync })
    this.cacheWritten(written)
  }

  /** Reserve IDs ahead (store/id-floor.ts) up to the end of `segments`; returns that end. */
  private async reserveIds (segments: readonly PendingSegment[], count: number): Promise<number> {
    const store = this.ctx.store
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
    return next
  }

  private cacheWritten (written: readonly Segment[]): void {
    for (const s of written) {
      this.t.removedSets.set(s.firstId, false)
      if (this.ctx.options.segmentCacheBytes > 0) this.ctx.segments.set(this.t.cacheKey(s.firstId), s)
    }
  }

  // ---- removal ---------------------------------------------------------------------------------

  /**
   * Remove records by ID, atomically: if any ID is unknown (never committed, or removed already)
   * the call rejects with EVAQ_NOT_FOUND naming them, and nothing is removed. Resolves with the
   * highest ID removed (undefined for an empty list).
   */
  remove (ids: unknown, name = 'ids'): Promise<number | undefined> {
    return this.removal.remove(ids, name)
  }

  /**
   * Remove `ids` in the batch `carrier` of another log, written by this log's removal lane: both
   * commit together, or neither (EVAQ_NOT_FOUND when an ID is gone, and nothing is written).
   */
  removeCarried (ids: readonly number[], carrier: Carrier): Promise<void> {
    return this.removal.removeCarried(ids, carrier)
  }

  /** Remove `ids` like remove(), and stage `stage` into the same batch if the removal happens. */
  removeStaged (ids: readonly number[], stage: (batch: ChainedBatch) => void): Promise<number | undefined> {
    return this.removal.removeStaged(ids, stage)
  }

  /** A handle on one of this log's sublevels, for its sidecar's own keys (see OwnKeys). */
  ownKeys (kind: OwnKeysKind): OwnKeys {
    return this.t.ownKeys(kind)
  }

  /**
   * Write a batch of a sidecar's own keys, with a commit snapshot and this log's durability, so
   * that a failure degrades the queue like any other write.
   */
  async writeOwn (batch: ChainedBatch, what: string): Promise<void> {
    this.ctx.assertWritable()
    await this.t.untilReopened()
    await this.t.write(batch, {}, this.t.sync, what)
  }

  /** Payload bytes pushed and not yet committed (buffered or being written). */
  get bufferedBytes (): number {
    return this.t.writer.bufferedBytes
  }

  // ---- deletion of whole segments ----------------------------------------------------------------

  /** Compactions run, for stats and tests. */
  get compactions (): number {
    return this.cleanup.compactions
  }

  /** Compact the deleted range now (if any); see Cleanup.compact. */
  compact (): Promise<void> {
    return this.cleanup.compact()
  }

  /** Drop the oldest segments until at least `bytes` of live payload went (at least one segment). */
  dropOldest (bytes: number): Promise<{ records: number, bytes: number }> {
    return this.cleanup.dropOldest(bytes)
  }

  /** Move the oldest sealed segment file to the tier; the bytes freed locally (SegmentTable.offloadOldest). */
  offloadOldest (): Promise<number> {
    return this.t.offloadOldest()
  }

  /** Drop segments older than `maxAgeMs` (retention). */
  expire (): Promise<void> {
    return this.cleanup.expire()
  }

  // ---- subscribers -------------------------------------------------------------------------------

  /**
   * A named, persistent subscriber: subscribing again with the same name resumes where it left
   * off (its `start` is then ignored, its lease and delivery limits updated).
   */
  subscribe (name: string, options?: SubscribeOptions): Promise<Subscriber> {
    return this.subscriptions.subscribe(name, options)
  }

  /** Forget a subscriber and its progress; what only it held back can be cleaned up. */
  unsubscribe (name: string): Promise<boolean> {
    return this.subscriptions.unsubscribe(name)
  }

  /** Drop subscribers inactive for `ttlMs`, counted and reported; persist others' activity. */
  expireSubscribers (ttlMs: number): Promise<void> {
    return this.subscriptions.expireSubscribers(ttlMs)
  }

  subscribers (): SubscriberInfo[] {
    return this.subscriptions.subscribers()
  }

  /** Write every dirty subscriber's progress (see Subscriptions.writeProgress). */
  writeProgress (): Promise<void> {
    return this.subscriptions.writeProgress()
  }

  /**
   * Acknowledge leased record `id` for `sub` in the batch `carrier` of another log (the push that
   * moves the record to the dead-letter queue), and write it: both commit together, or neither.
   */
  ackCarried (sub: Subscriber, id: number, carrier: Carrier): Promise<void> {
    return this.subscriptions.ackCarried(sub, id, carrier)
  }

  /** Whether progress is waiting for the interval timer. */
  get progressDirty (): boolean {
    return this.subscriptions.progressDirty
  }

  // ---- reads and stats -----------------------------------------------------------------------------

  /** Whole records in ID order from `from`, up to `maxBytes` of payload (at least one record). */
  read (options: ReadOptions = {}): Promise<QueueRecord[]> {
    return this.reader.read(options)
  }

  async stats (): Promise<LogStats> {
    this.ctx.assertOpen()
    const { count, bytes, floor, droppedCount, droppedBytes, expiredSubscribers, quarantinedCount } = this.t.counters
    const nextId = this.t.writer.next
    let firstId: number | undefined
    let lastId: number | undefined
    let head: { id: number, pushedAt: number } | undefined
    if (count > 0) {
      head = await this.reader.headFrom(floor)
      firstId = head?.id
      const segFirst = await this.t.segmentStart(this.t.watermark).catch(err => { throw fromLevel(err, `Reading ${this.name} failed`) })
      if (segFirst !== undefined) {
        const segment = await this.t.segment(segFirst).catch(() => undefined)
        if (segment !== undefined) {
          const set = await this.t.removedSet(segFirst, segment.header.count)
          for (let i = segment.header.count - 1; i >= 0; i--) {
            if (!isRemoved(set, i)) { lastId = segFirst + i; break }
          }
        }
      }
    }
    const mean = count === 0 ? 0 : bytes / count
    const subscribers: SubscriberInfo[] = []
    for (const sub of this.subscriptions.subs.values()) {
      const oldest = sub.floor <= this.t.watermark ? await this.reader.headFrom(sub.floor) : undefined
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
    await this.t.writer.drain()
    await this.t.laneSettled
    await this.subscriptions.settle()
    await this.t.laneSettled
    await this.cleanup.compacting
  }

  /** After a reopen: what the caches hold may differ from disk where a write failed. */
  forgetCaches (): void {
    this.t.forgetCaches()
  }

  /**
   * Used by close(), after the last flush: sync the segment files and record that every frame is
   * synced (the counters' syncedBelow), so that the next open has no frame to check.
   */
  async syncFrames (): Promise<void> {
    const files = this.ctx.store.files.get(this.name)
    if (files === undefined) return
    await files.sync()
    if (files.syncedBelow <= this.t.counters.syncedBelow) return
    const delta: Delta = { [this.name]: { syncedBelow: files.syncedBelow } }
    await this.t.write(this.ctx.store.db.batch(), delta, true, `Recording that the frames of ${this.name} are synced failed`)
  }

  /** Used by close(): pushes still waiting for buffer space are rejected. */
  rejectWaiters (err: EvaqError): void {
    this.t.writer.rejectWaiters(err)
  }

  /** Used by close(): waiting `next()` calls wake up (and see the queue closing). */
  wakeSubscribers (): void {
    this.subscriptions.wakeAll()
  }
}
