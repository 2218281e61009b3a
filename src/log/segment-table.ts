import { LRUCache } from 'lru-cache'
import { EvaqError, fromLevel, hasCode } from '../errors.js'
import { logSublevels } from '../schema.js'
import { decodeKey, decodeRemovalSet, encodeKey, type RemovalSet } from '../store/codec.js'
import { Keyspace, type Delta, type LogCounters, type Store, type Sublevel } from '../store/store.js'
import { CommitLater, GroupCommit, type CommitFn } from '../write/group-commit.js'
import type { LogContext } from './context.js'
import { logOwnKeys, type OwnKeys, type OwnKeysKind } from './own-keys.js'
import { Segment } from './segment.js'
import type { LogSidecar } from './types.js'

/**
 * The state every part of one log shares: where its segments are (the sublevels, the segment and
 * removal-set caches), its counters, the write buffer, the serial lane everything that deletes
 * goes through, and the one way to write a batch (with its commit snapshot, behind the reopen
 * gate). The removal lane, the cleanup, the reads and the subscriptions are built on it (see Log).
 */
export class SegmentTable {
  readonly name: string
  readonly segs: Sublevel
  readonly removals: Sublevel
  readonly index: Sublevel
  readonly subsLevel: Sublevel
  readonly extraLevel: Sublevel | undefined
  readonly segKeys: Keyspace
  readonly removalKeys: Keyspace
  readonly indexKeys: Keyspace
  readonly extraKeys: Keyspace | undefined
  readonly quarantineKeys: Keyspace
  readonly writer: GroupCommit
  readonly removedSets: LRUCache<number, RemovalSet | false>
  readonly sync: boolean
  readonly ackSync: boolean
  private lane: Promise<unknown> = Promise.resolve()
  private readonly committedListeners = new Set<() => void>()

  /** `commit` writes a flush of the write buffer (see Log.commit). */
  constructor (name: string, readonly ctx: LogContext, readonly sidecar: LogSidecar | undefined, commit: CommitFn) {
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
    this.writer = new GroupCommit(options, Math.max(store.journal.counters(name).next, store.ids.floor(name)), commit, () => {
      for (const listener of this.committedListeners) listener()
    })
  }

  get store (): Store {
    return this.ctx.store
  }

  get counters (): LogCounters {
    return this.ctx.store.journal.counters(this.name)
  }

  /** Highest ID below which every record is committed; readers never look past it. */
  get watermark (): number {
    return this.writer.watermark
  }

  /** Be told whenever the watermark may have moved. Returns an unsubscribe function. */
  onCommitted (listener: () => void): () => void {
    this.committedListeners.add(listener)
    return () => this.committedListeners.delete(listener)
  }

  /** What the serial lane holds now: settles once everything queued in it so far has. */
  get laneSettled (): Promise<unknown> {
    return this.lane
  }

  /** A handle on one of this log's sublevels for a sidecar's own keys (the DLQ's retry states). */
  ownKeys (kind: OwnKeysKind): OwnKeys {
    return logOwnKeys(this.ctx.store, this.name, kind)
  }

  /** After a reopen: what the caches hold may differ from disk where a write failed. */
  forgetCaches (): void {
    this.removedSets.clear()
    this.ctx.segments.clear()
  }

  /** Wait while the database is being reopened (see LogContext.reopening). */
  async untilReopened (): Promise<void> {
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
  later (err: unknown, reopens: number): unknown {
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
  async write (
    batch: ReturnType<Store['db']['batch']>, delta: Delta, sync: boolean, what: string, last?: (batch: ReturnType<Store['db']['batch']>) => void
  ): Promise<void> {
    const store = this.ctx.store
    if (store.failed !== undefined) {
      throw new EvaqError('EVAQ_IO', `${what}: the database failed an earlier write and is not written to until it is reopened`, { cause: store.failed })
    }
    const reopening = this.ctx.reopening()
    if (reopening !== undefined) throw new CommitLater(reopening, `${what}: not written while the database is reopened`)
    const { journal } = store
    // Staging throws LEVEL_BATCH_NOT_OPEN for a batch built before a reopen (see later()).
    const seq = journal.stage(batch, delta)
    // `last` stages the large values after the snapshot: LevelDB's write batch is one buffer that
    // grows by doubling, and each growth copies everything staged before it.
    if (last !== undefined) {
      try {
        last(batch)
      } catch (err) {
        journal.settle(seq, false)
        throw err
      }
    }
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

  cacheKey (firstId: number): string {
    return `${this.name}/${firstId}`
  }

  /** Run `task` in the serial lane, after everything queued before it. */
  serial<T> (task: () => Promise<T>): Promise<T> {
    const run = this.lane.then(async () => {
      await this.untilReopened()
      return task()
    })
    this.lane = run.then(() => {}, () => {})
    return run
  }

  forget (first: number): void {
    this.removedSets.delete(first)
    this.ctx.segments.delete(this.cacheKey(first))
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
  async segmentStart (id: number): Promise<number | undefined> {
    const exact = await this.index.keys({ gte: encodeKey(id), lte: encodeKey(id), limit: 1 }).all()
    if (exact.length > 0) return id
    const floor = this.counters.floor
    if (floor >= id) return undefined
    const lowest = await this.index.keys({ gte: encodeKey(floor), lte: encodeKey(id), limit: 1 }).all()
    if (lowest.length === 0) return undefined
    const keys = await this.index.keys({ lte: encodeKey(id), gte: lowest[0]!, reverse: true, limit: 1 }).all()
    return keys.length === 0 ? undefined : decodeKey(keys[0]!)
  }

  async segment (first: number): Promise<Segment | undefined> {
    const cached = this.ctx.segments.get(this.cacheKey(first))
    if (cached !== undefined) return cached
    const value = await this.segs.get(encodeKey(first))
    if (value === undefined) return undefined
    return new Segment(first, value)
  }

  async removedSet (first: number, count: number): Promise<RemovalSet | undefined> {
    const cached = this.removedSets.get(first)
    if (cached === false) return undefined
    if (cached !== undefined) return cached
    const value = await this.removals.get(encodeKey(first))
    const set = value === undefined ? undefined : decodeRemovalSet(first, count, value)
    this.removedSets.set(first, set ?? false)
    return set
  }

  /** Stage the deletion of the whole segment [first, first + count): its keys, and what the sidecar keeps for it. */
  deleteSegmentKeys (batch: ReturnType<Store['db']['batch']>, first: number, count: number): void {
    this.segKeys.del(batch, first)
    this.indexKeys.del(batch, first)
    this.removalKeys.del(batch, first)
    if (this.extraKeys !== undefined) for (let id = first; id < first + count; id++) this.extraKeys.del(batch, id)
    this.sidecar?.stageSegmentDeletion?.(batch, first, count)
  }
}

export function levelIoError (err: unknown): boolean {
  return hasCode(err, 'LEVEL_IO_ERROR')
}

export function levelCorruption (err: unknown): boolean {
  return hasCode(err, 'LEVEL_CORRUPTION')
}

/** Whether `err` comes from a database, batch or iterator that was closed (see SegmentTable.later). */
function closedUnder (err: unknown): boolean {
  return ['LEVEL_BATCH_NOT_OPEN', 'LEVEL_DATABASE_NOT_OPEN', 'LEVEL_ITERATOR_NOT_OPEN'].some(code => hasCode(err, code))
}
