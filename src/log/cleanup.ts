import { EvaqError, fromLevel } from '../errors.js'
import { decodeKey, decodeSummary, encodeKey, type SegmentSummary } from '../store/codec.js'
import type { LogCounters } from '../store/store.js'
import { crashPoint } from '../crash-points.js'
import { CommitLater } from '../write/group-commit.js'
import { levelCorruption, type SegmentTable } from './segment-table.js'
import type { DropReason } from './types.js'

/** Start compacting a deleted range once this much payload or this many segments were deleted. */
const COMPACT_BYTES = 32 * 1024 * 1024
const COMPACT_SEGMENTS = 4096
/** Segments looked at by one cleanup, retention or drop pass. */
const DELETE_PASS = 4096

/** Where the subscribers of a log stand: what cleanup may delete (see Subscriber.floor and start). */
export type SubscriberBounds = ReadonlyMap<string, { readonly floor: number, readonly start: number }>

/**
 * Deletion of whole segments, oldest first: the cleanup of what every subscriber acknowledged,
 * retention (records older than maxAgeMs), drop-oldest (the disk budget), and the compaction of the
 * deleted ranges. Counters, the head and drop counts change in the batch that deletes.
 */
export class Cleanup {
  private cleanupQueued = false
  /** The release of segment files queued in the serial lane, if any. */
  private releasing: Promise<void> | undefined
  private compactFrom = Infinity
  private compactTo = 0
  private compactBytes = 0
  private compactSegments = 0
  private compaction: Promise<void> | undefined
  /** Compactions run, for stats and tests. */
  compactions = 0

  constructor (private readonly t: SegmentTable, private readonly subscribers: () => SubscriberBounds) {}

  /** The compaction under way, if any. */
  get compacting (): Promise<void> | undefined {
    return this.compaction
  }

  /**
   * Delete the oldest segments, in ID order, while `take` accepts them (at most one pass).
   * Counters, the head and drop counts change in the same batch. Returns what was deleted.
   */
  private async deleteOldest (
    take: (s: SegmentSummary, liveCount: number, liveBytes: number) => boolean,
    dropped: DropReason | undefined
  ): Promise<{ records: number, bytes: number, segments: number }> {
    const floor = this.t.counters.floor
    const watermark = this.t.watermark
    if (floor > watermark) return { records: 0, bytes: 0, segments: 0 }
    const entries = await this.t.index.iterator({ gte: encodeKey(floor), lte: encodeKey(watermark), limit: DELETE_PASS }).all()
    const batch = this.t.ctx.store.db.batch()
    let records = 0
    let bytes = 0
    let newFloor = floor
    const deleted: number[] = []
    for (const [key, value] of entries) {
      const summary = decodeSummary(decodeKey(key), value)
      if (summary.firstId + summary.count - 1 > watermark) break
      const set = await this.t.removedSet(summary.firstId, summary.count)
      const liveCount = summary.count - (set?.removed ?? 0)
      const liveBytes = summary.payloadBytes - (set?.removedBytes ?? 0)
      if (!take(summary, liveCount, liveBytes)) break
      this.t.deleteSegmentKeys(batch, summary.firstId, summary.count)
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
    await this.t.write(batch, { [this.t.name]: delta }, false, `Deleting ${deleted.length} segment(s) of ${this.t.name} failed`)
    crashPoint('cleanup:after')
    for (const first of deleted) this.t.forget(first)
    this.noteDeleted(deleted[0]!, newFloor, bytes, deleted.length)
    if (dropped !== undefined && records > 0) {
      this.t.ctx.dropped({ log: this.t.name, reason: dropped, records, bytes, firstId: deleted[0]!, lastId: newFloor - 1 })
    }
    return { records, bytes, segments: deleted.length }
  }

  /** Remember a deleted range and compact it once enough piled up, so LevelDB frees the disk. */
  noteDeleted (from: number, to: number, bytes: number, segments: number): void {
    void this.releaseFiles()
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
  async compact (): Promise<void> {
    await this.releaseFiles()
    if (this.compaction !== undefined) return this.compaction
    if (this.compactTo === 0) return Promise.resolve()
    const from = this.compactFrom
    const to = this.compactTo
    this.compactFrom = Infinity
    this.compactTo = 0
    this.compactBytes = 0
    this.compactSegments = 0
    const db = this.t.ctx.store.db
    this.compaction = (async () => {
      try {
        await this.t.untilReopened()
        for (const keys of [this.t.segKeys, this.t.indexKeys, this.t.removalKeys]) {
          await db.compactRange(keys.id(from), keys.id(to))
        }
        this.compactions++
      } catch (err) {
        // The compaction met a block LevelDB cannot read: the repair takes it out and reports it.
        if (levelCorruption(err) && this.t.ctx.damaged(fromLevel(err, `Compacting ${this.t.name} failed`)) !== undefined) return
        this.t.ctx.error(new EvaqError('EVAQ_IO', `Compacting ${this.t.name} failed`, { cause: err }))
      } finally {
        this.compaction = undefined
      }
    })()
    return this.compaction
  }

  /**
   * Release the segment files the floor passed (SegmentTable.releaseFiles), in the serial lane, at
   * most one round queued at a time.
   */
  releaseFiles (): Promise<void> {
    if (this.t.files === undefined) return Promise.resolve()
    this.releasing ??= this.t.serial(async () => {
      this.releasing = undefined
      await this.t.releaseFiles()
    }).catch(err => {
      this.releasing = undefined
      if (!(err instanceof CommitLater)) this.t.ctx.error(err)
    })
    return this.releasing
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
    return this.t.serial(async () => {
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
    const maxAgeMs = this.t.ctx.maxAgeMs
    if (maxAgeMs === undefined) return Promise.resolve()
    return this.t.serial(async () => {
      const before = this.t.ctx.options.clock.now() - maxAgeMs
      for (;;) {
        // Older than maxAgeMs: strictly, like subscriberTtlMs.
        const { segments } = await this.deleteOldest(s => s.pushedAt < before, 'retention')
        if (segments < DELETE_PASS) return
      }
    })
  }

  /** Queue a cleanup of what every subscriber acknowledged (coalesced). */
  scheduleCleanup (): void {
    if (this.cleanupQueued || this.subscribers().size === 0 || !this.t.ctx.isOpen()) return
    this.cleanupQueued = true
    void this.t.serial(async () => {
      this.cleanupQueued = false
      // A record goes once every subscriber acknowledged it. Records below every subscriber's
      // start were never anyone's to acknowledge: like records of a log without subscribers,
      // they stay until removed (or dropped by a counted retention rule).
      let limit = Infinity
      let start = Infinity
      for (const sub of this.subscribers().values()) {
        limit = Math.min(limit, sub.floor)
        start = Math.min(start, sub.start)
      }
      if (start <= this.t.counters.floor && limit > this.t.counters.floor) await this.cleanupBelow(limit)
    }).catch(err => this.t.ctx.error(err))
  }
}
