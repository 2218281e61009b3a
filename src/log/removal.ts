import { EvaqError } from '../errors.js'
import { copyRemovalSet, encodeRemovalSet, isRemoved, markRemoved, type RemovalSet, type SegmentHeader } from '../store/codec.js'
import type { ChainedBatch, Delta } from '../store/store.js'
import { crashPoint } from '../crash-points.js'
import { CommitLater } from '../write/group-commit.js'
import type { SegmentTable } from './segment-table.js'
import type { Carrier } from './types.js'
import { checkIds } from './validate.js'

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

/** What follows a removal, outside the lane (see Log): subscribers, compaction, cleanup. */
export interface RemovalEffects {
  /** Segments [from, to) were deleted whole, with `bytes` of live payload. */
  deleted (from: number, to: number, bytes: number, segments: number): void
  /** Records were removed, one list of IDs per request (leases on them end). */
  removed (requests: ReadonlyArray<readonly number[]>): void
  /** The head may have moved: what every subscriber acknowledged may go now. */
  headMoved (): void
}

/**
 * The removal lane of one log: explicit removals by ID, removals carried in another log's batch
 * (moves), and the quarantine of damaged records. Requests that arrive while a group is written
 * are merged into the next group, one batch, through the table's serial lane; removal sets are
 * read-modify-write values, and the lane is what keeps two groups from racing on them.
 */
export class RemovalLane {
  private readonly removeQueue: RemoveRequest[] = []
  private removalQueued = false

  constructor (private readonly t: SegmentTable, private readonly after: RemovalEffects) {}

  /**
   * Remove records by ID, atomically: if any ID is unknown (never committed, or removed already)
   * the call rejects with EVAQ_NOT_FOUND naming them, and nothing is removed. Resolves with the
   * highest ID removed (undefined for an empty list).
   */
  async remove (ids: unknown, name = 'ids'): Promise<number | undefined> {
    this.t.ctx.assertWritable()
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
  removeStaged (ids: readonly number[], stage: (batch: ChainedBatch) => void): Promise<number | undefined> {
    try {
      this.t.ctx.assertWritable()
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
    void this.t.serial(async () => {
      this.removalQueued = false
      const reopens = this.t.ctx.store.reopens
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
        const later = this.t.later(err, reopens)
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
        if (id >= this.t.writer.next || id < this.t.counters.floor || this.t.writer.isPending(id)) { missing.push(id); continue }
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
        const more = missing.length > 10 ? ` and ${missing.length - 10} more` : ''
        const named = `${missing.slice(0, 10).join(', ')}${more}`
        req.reject(new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${named} in ${this.t.name}; nothing was removed`, { ids: missing }))
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
    const batch = carrier?.batch ?? this.t.ctx.store.db.batch()
    for (const req of accepted) req.stage?.(batch)
    let count = 0
    let bytes = 0
    let floor = this.t.counters.floor
    const deleted: number[] = []
    const updated: Array<[number, RemovalSet]> = []
    const touched = [...working.values()].filter((t): t is Touched => t !== null && t.dirty)
      .sort((a, b) => a.header.firstId - b.header.firstId)
    for (const t of touched) {
      const first = t.header.firstId
      count -= t.set.removed - t.before.removed
      bytes -= t.set.removedBytes - t.before.removedBytes
      if (t.set.removed === t.header.count) {
        this.t.deleteSegmentKeys(batch, first, t.header.count)
        deleted.push(first)
        if (first <= floor) floor = first + t.header.count
      } else {
        this.t.removalKeys.put(batch, first, encodeRemovalSet(t.set))
        updated.push([first, t.set])
      }
      crashPoint('removal:staged')
    }
    if (this.t.extraKeys !== undefined) {
      for (const req of accepted) for (const id of req.ids) this.t.extraKeys.del(batch, id)
    }
    await this.t.sidecar?.stageRemoval?.(batch, accepted.flatMap(req => req.ids))
    let quarantined = 0
    for (const req of accepted) {
      if (req.quarantine !== true) continue
      quarantined += req.ids.length
      for (const id of req.ids) {
        const t = [...working.values()].find(w => w !== null && id >= w.header.firstId && id < w.header.firstId + w.header.count)
        const segment = t === undefined ? undefined : await this.t.segment(t!.header.firstId)
        if (segment !== undefined) {
          const h = segment.header
          const start = h.offsets[id - h.firstId]!
          this.t.quarantineKeys.put(batch, id, Buffer.from(segment.value.subarray(start, start + h.lengths[id - h.firstId]!)))
        }
      }
    }
    const delta: Delta = { ...carrier?.delta, [this.t.name]: { count, bytes, floor, quarantinedCount: quarantined } }
    crashPoint('removal:before')
    if (carrier !== undefined) crashPoint('move:before')
    await this.t.write(batch, delta, this.t.sync, `Removing records from ${this.t.name} failed; they may or may not be removed`)
    if (carrier !== undefined) crashPoint('move:after')
    crashPoint('removal:after')
    for (const first of deleted) this.t.forget(first)
    if (deleted.length > 0) {
      const last = touched.filter(t => t.set.removed === t.header.count).at(-1)!.header
      this.after.deleted(deleted[0]!, last.firstId + last.count, -bytes, deleted.length)
    }
    for (const [first, set] of updated) this.t.removedSets.set(first, set)
    this.after.removed(accepted.map(req => req.ids))
    for (const req of accepted) req.resolve(req.ids[req.ids.length - 1])
    // The head may have moved past records no subscriber covers: what they acked may go now.
    if (deleted.length > 0) this.after.headMoved()
  }

  /** The live segment holding `id`, with a private copy of its removal set, or null. */
  private async locate (id: number, working: Map<number, Touched | null>): Promise<Touched | null> {
    const first = await this.t.segmentStart(id)
    if (first === undefined) return null
    const known = working.get(first)
    if (known !== undefined) return known
    const segment = await this.t.segment(first)
    if (segment === undefined) { working.set(first, null); return null }
    const current = await this.t.removedSet(first, segment.header.count)
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
   * Take one damaged record out of the log: it is marked removed, counted as quarantined and its
   * stored bytes kept in `<log>-quarantine`, so that the next read goes past it instead of
   * failing on it forever. The read that found it fails with EVAQ_CORRUPTION.
   */
  quarantineRecord (id: number): Promise<void> {
    return new Promise<boolean>((resolve) => {
      // Rejected when another read quarantined it first: nothing more to do then.
      this.removeQueue.push({ ids: [id], quarantine: true, resolve: () => resolve(true), reject: () => resolve(false) })
      this.scheduleRemovals()
    }).then(done => {
      if (done) this.t.ctx.dropped({ log: this.t.name, reason: 'corruption', records: 1, bytes: 0, firstId: id, lastId: id })
    })
  }
}
