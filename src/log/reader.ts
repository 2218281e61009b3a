import { EvaqError, fromLevel } from '../errors.js'
import { decodeKey, decodeSummary, encodeKey, isRemoved, payloadAt, type SegmentHeader } from '../store/codec.js'
import { LOCATOR_BYTES } from '../store/frame.js'
import { READ_CHUNK_BYTES } from '../store/frame-reader.js'
import { CommitLater } from '../write/group-commit.js'
import type { RemovalLane } from './removal.js'
import { Segment } from './segment.js'
import { levelCorruption, levelIoError, type SegmentTable } from './segment-table.js'
import type { QueueRecord, ReadOptions, RecordError } from './types.js'
import { resolveReadOptions, decodeError } from './validate.js'

/** Iterators read ahead this many bytes: the 16 KiB default measured 2.7× slower on segments. */
const ITERATOR_BYTES = 1024 * 1024
/** The least a read asks its iterator to fetch ahead. */
const MIN_ITERATOR_BYTES = 16 * 1024

/**
 * Reads of one log: whole records in ID order up to the watermark, from the segment cache or an
 * iterator, with the damage LevelDB may hide met on the way (a block it skips, a block it cannot
 * read, a segment whose checksum fails): such records are quarantined and the read fails once
 * with EVAQ_CORRUPTION naming them, so that the next read gets past them.
 */
export class Reader {
  constructor (private readonly t: SegmentTable, private readonly removal: RemovalLane) {}

  /** Whole records in ID order from `from`, up to `maxBytes` of payload (at least one record). */
  async read (options: ReadOptions = {}): Promise<QueueRecord[]> {
    this.t.ctx.assertOpen()
    const { from, maxBytes, maxCount } = resolveReadOptions(options)
    return this.readSafely(from, maxBytes, maxCount)
  }

  /**
   * readRange, with LevelDB's errors as EvaqErrors. While degraded, evaq briefly closes the
   * database to reopen it: a read that meets the reopen waits for it and tries once more.
   */
  async readSafely (from: number, maxBytes: number, maxCount: number): Promise<QueueRecord[]> {
    for (let attempt = 0; ; attempt++) {
      await this.t.untilReopened()
      const reopens = this.t.ctx.store.reopens
      try {
        return await this.readRange(from, maxBytes, maxCount)
      } catch (err) {
        const error = fromLevel(err, `Reading ${this.t.name} failed`)
        // The database closed under the read because it is being (or was just) reopened.
        if (error.code !== 'EVAQ_CLOSED' || (this.t.ctx.store.reopens === reopens && this.t.ctx.reopening() === undefined)) throw error
        if (attempt >= 1) throw new EvaqError('EVAQ_IO', `Reading ${this.t.name} failed while the queue recovers`, { cause: err })
      }
    }
  }

  private async readRange (from: number, maxBytes: number, maxCount: number): Promise<QueueRecord[]> {
    const watermark = this.t.watermark
    let start = Math.max(from, this.t.counters.floor)
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
      const set = await this.t.removedSet(firstId, header.count)
      for (let i = Math.max(0, start - firstId); i < header.count; i++) {
        if (isRemoved(set, i)) continue
        const length = header.lengths[i]!
        if (out.length > 0 && bytes + length > maxBytes) return false
        let payload: Buffer
        try {
          payload = payloadAt(header, segment.value, i)
        } catch (err) {
          await this.removal.quarantineRecord(firstId + i)
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
    for (;;) {
      // take() moves `start` past each segment it took.
      const cached = start <= watermark ? this.t.ctx.segments.get(this.t.cacheKey(start)) : undefined
      if (cached === undefined) break
      if (!await take(cached)) return this.withExtras(out)
    }
    if (start > watermark) return this.withExtras(out)
    const first = await this.t.segmentStart(start)
    const iterFrom = first ?? start
    // Read ahead about what this call can still take (from the log's mean record size), not a
    // fixed 1 MiB: a consumer of small records asking for 1,000 would otherwise fetch ten times
    // what it returns. Too little only costs another nextv().
    const { count: liveCount, bytes: liveBytes } = this.t.counters
    const left = maxCount - out.length
    const meanRecord = (liveCount === 0 ? 0 : liveBytes / liveCount) + 8
    const want = Math.min(maxBytes - bytes, left * meanRecord)
    const readAhead = Math.max(MIN_ITERATOR_BYTES, Math.min(ITERATOR_BYTES, Math.ceil(want * 1.25)))
    const it = this.t.segs.iterator({ gte: encodeKey(iterFrom), lte: encodeKey(watermark), highWaterMarkBytes: readAhead } as { gte: Buffer, lte: Buffer })
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
        for (let from = 0; from < entries.length;) {
          // Segments in segment files are read here, adjacent frames together, a slice at a time
          // of about what this call can still take (at most READ_CHUNK_BYTES): a locator is 16
          // bytes, so one nextv() names up to 256 segments, which may hold far more than that.
          const still = Math.min(maxBytes - bytes, (maxCount - out.length) * meanRecord) * 1.25
          const to = sliceEnd(entries, from, Math.min(READ_CHUNK_BYTES, still))
          const slice = entries.slice(from, to)
          const segments = await this.t.resolveAll(slice.map(([key, value]) => [decodeKey(key), value] as const))
          for (let e = 0; e < slice.length; e++) {
            const segFirst = decodeKey(slice[e]![0])
            seen.push(segFirst)
            if (segFirst !== expected) contiguous = false
            const segment = segments[e]
            // Deleted since the iterator saw it.
            if (segment === undefined) continue
            if (segment instanceof EvaqError) {
              // A damaged frame or a missing file: the segment is taken out and named, like a
              // segment whose header is damaged.
              await this.quarantineSegment(segFirst, slice[e]![1])
              throw segment
            }
            if (!await take(segment)) {
              covered = segFirst
              break outer
            }
            expected = segFirst + segment.header.count
          }
          from = to
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
    let from = await this.t.segmentStart(start) ?? start
    outer: while (from <= watermark) {
      const keys = await this.t.index.keys({ gte: encodeKey(from), lte: encodeKey(watermark), limit: 64 }).all()
      if (keys.length === 0) break
      for (const key of keys) {
        const id = decodeKey(key)
        from = id + 1
        let segment = this.t.ctx.segments.get(this.t.cacheKey(id))
        if (segment === undefined) {
          let value: Buffer | undefined
          try {
            value = await this.t.segs.get(encodeKey(id))
            if (value !== undefined) segment = await this.t.segment(id)
          } catch (err) {
            if (!levelCorruption(err) && !levelIoError(err) && !(err instanceof EvaqError && err.code === 'EVAQ_CORRUPTION')) throw err
          }
          if (segment === undefined) {
            // Deleted meanwhile (a segment file released under the read), or unreadable.
            if (value === undefined || await this.t.segs.get(encodeKey(id)) !== undefined) bad.push(id)
            continue
          }
        }
        if (!await take(segment)) break outer
      }
    }
    if (bad.length === 0) return
    for (const id of bad) await this.quarantineSegment(id, undefined)
    const what = `LevelDB could not read ${bad.length} segment(s) of ${this.t.name} starting at ${bad.slice(0, 5).join(', ')}`
    throw new EvaqError('EVAQ_CORRUPTION', `${what}; they were quarantined`, { ids: bad })
  }

  /**
   * LevelDB skips a data block it cannot read and reports it only when an iterator runs to its
   * end, if at all (an iterator stopped by its bound never does): compare the segments the
   * iterator returned with the summaries of the same range, which live in other blocks. Returns
   * the first segment a summary names that the iterator did not return, if any.
   */
  private async skippedSegment (from: number, to: number, seen: readonly number[]): Promise<number | undefined> {
    const summaries = await this.t.index.keys({ gte: encodeKey(from), lte: encodeKey(to) }).all()
    const returned = new Set(seen)
    for (const key of summaries) {
      const id = decodeKey(key)
      if (!returned.has(id)) return id
    }
    return undefined
  }

  /** Take a segment whose header or index is damaged out of the log, whole. */
  private quarantineSegment (first: number, value: Buffer | undefined): Promise<void> {
    return this.t.serial(async () => {
      const summary = await this.t.index.get(encodeKey(first)).catch(() => undefined)
      let count = 0
      let bytes = 0
      let ids = 1
      if (summary !== undefined) {
        try {
          const s = decodeSummary(first, summary)
          const set = await this.t.removedSet(first, s.count).catch(() => undefined)
          ids = s.count
          count = s.count - (set?.removed ?? 0)
          bytes = s.payloadBytes - (set?.removedBytes ?? 0)
        } catch { /* the summary is damaged too: the counters stay as they are */ }
      }
      const batch = this.t.ctx.store.db.batch()
      if (value !== undefined) this.t.quarantineKeys.put(batch, first, value)
      this.t.deleteSegmentKeys(batch, first, ids)
      const floor = first <= this.t.counters.floor ? first + ids : undefined
      const delta = { count: -count, bytes: -bytes, quarantinedCount: count, ...(floor === undefined ? {} : { floor }) }
      await this.t.write(batch, { [this.t.name]: delta }, this.t.sync, `Quarantining segment ${first} of ${this.t.name} failed`)
      this.t.forget(first)
      this.t.ctx.dropped({ log: this.t.name, reason: 'corruption', records: count, bytes, firstId: first, lastId: first + ids - 1 })
    }).catch(err => {
      // Not written: the database was being reopened (the next read meets the segment again), or
      // LevelDB refused the write for damage, and the repair that follows names what it takes out.
      if (!(err instanceof CommitLater)) this.t.ctx.error(err)
    })
  }

  private async withExtras (out: Array<{ id: number, payload: Buffer, pushedAt: number, error?: RecordError }>): Promise<QueueRecord[]> {
    if (this.t.extraLevel !== undefined && out.length > 0) {
      const extras = await this.t.extraLevel.getMany(out.map(r => encodeKey(r.id)))
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
  /**
   * The ID and push time of the first live record from `from` on, from the segments' summaries
   * and removal sets, without reading a segment: stats() asks for it often, and the head of a
   * long backlog may be in a file offloaded to the tier. Looks at most 64 segments, then reads.
   */
  async headFrom (from: number): Promise<{ id: number, pushedAt: number } | undefined> {
    const watermark = this.t.watermark
    if (from > watermark) return undefined
    const start = await this.t.segmentStart(from).catch(err => { throw fromLevel(err, `Reading ${this.t.name} failed`) }) ?? from
    let entries: Array<[Buffer, Buffer]>
    try {
      entries = await this.t.index.iterator({ gte: encodeKey(start), lte: encodeKey(watermark), limit: 64 }).all()
    } catch (err) {
      throw fromLevel(err, `Reading ${this.t.name} failed`)
    }
    for (const [key, value] of entries) {
      const s = decodeSummary(decodeKey(key), value)
      const set = await this.t.removedSet(s.firstId, s.count)
      for (let i = Math.max(0, from - s.firstId); i < s.count && s.firstId + i <= watermark; i++) {
        if (!isRemoved(set, i)) return { id: s.firstId + i, pushedAt: s.pushedAt }
      }
    }
    if (entries.length < 64) return undefined
    const record = await this.firstFrom(from)
    return record === undefined ? undefined : { id: record.id, pushedAt: record.pushedAt }
  }

  async firstFrom (from: number): Promise<QueueRecord | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const [record] = await this.readSafely(from, 0, 1)
        return record
      } catch (err) {
        if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION' || attempt >= 3) throw err
      }
    }
  }
}

/**
 * The end of the slice of `entries` from `from` whose stored segments add up to about `budget`
 * bytes (at least one): a locator's length is its frame's, an inline value is the segment.
 */
function sliceEnd (entries: ReadonlyArray<[Buffer, Buffer]>, from: number, budget: number): number {
  let bytes = 0
  let i = from
  do {
    const value = entries[i]![1]
    bytes += value.byteLength === LOCATOR_BYTES ? value.readUInt32BE(12) : value.byteLength
    i++
  } while (i < entries.length && bytes < budget)
  return i
}
