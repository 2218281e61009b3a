import { LRUCache } from 'lru-cache'
import { EvaqError, fromLevel, hasCode } from '../errors.js'
import { logSublevels, SYNC_KEY } from '../schema.js'
import { decodeKey, decodeRemovalSet, encodeKey, type RemovalSet } from '../store/codec.js'
import { decodeLocator, LOCATOR_BYTES, type Locator } from '../store/frame.js'
import type { SegmentFiles } from '../store/segment-files.js'
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
  /** Removal sets by segment: false for none, GONE for a deleted segment. */
  readonly removedSets: LRUCache<number, RemovalSet | false | typeof GONE>
  /** The log's segment files (format 2; the WAL), where its pushes' payload bytes are. */
  readonly files: SegmentFiles | undefined
  /** `<log>-files`: segment file number -> the ID after the last record in it (see releaseFiles). */
  readonly fileKeys: Keyspace
  readonly fileLevel: Sublevel
  /** The same, in memory (loaded by loadFiles). */
  readonly fileEnds = new Map<number, number>()
  /** The floor as of the last synced write: deletions below it are durable. */
  private durableFloor = 0
  readonly sync: boolean
  readonly ackSync: boolean
  private lane: Promise<unknown> = Promise.resolve()
  /** The synced writes waiting for the segment files' sync, in call order (see write). */
  private syncedWrites: Promise<unknown> = Promise.resolve()
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
    this.files = store.files.get(name)
    this.fileLevel = store.sublevel(names.files)
    this.fileKeys = new Keyspace(this.fileLevel)
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
    if (sync && this.ctx.options.durability !== 'sync') {
      // Frames first: a synced batch makes every locator written before it durable (any log's),
      // and a durable locator must not point to a frame that is not (appends under durability
      // 'none' or an interval are not synced; under 'sync' every append is). In call order: a
      // flush's `<log>-files` end must not be written after a later flush's larger one.
      const synced = this.syncedWrites.then(async () => {
        for (const files of store.files.values()) await files.sync()
      })
      this.syncedWrites = synced.catch(() => {})
      try {
        await synced
      } catch (err) {
        const error = err instanceof EvaqError ? err : new EvaqError('EVAQ_IO', what, { cause: err })
        this.ctx.ioFailed(error)
        throw error
      }
    }
    const { journal } = store
    const floorBefore = this.counters.floor
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
    // A synced write makes every batch completed before it durable, deletions included.
    else this.durableFloor = Math.max(this.durableFloor, floorBefore, delta[this.name]?.floor ?? 0)
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

  /**
   * Segment `first` was deleted: forget its cached bytes, and remember that it is gone, so that a
   * read that took the segment before the deletion and asks for its removal set after it (the
   * set was deleted with it) skips its records instead of taking them for live.
   */
  forget (first: number): void {
    this.removedSets.set(first, GONE)
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
    try {
      return await this.resolve(first, value)
    } catch (err) {
      if (await this.deletedUnder(first, err)) return undefined
      throw err
    }
  }

  /**
   * Whether `err`, met reading segment `first` from a segment file, is only that the segment was
   * deleted meanwhile and its file released (see releaseFiles): the segment is then gone, not
   * damaged.
   */
  private async deletedUnder (first: number, err: unknown): Promise<boolean> {
    if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION' || (err.cause as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') return false
    return await this.segs.get(encodeKey(first)) === undefined
  }

  /**
   * The segment a LevelDB value stands for: the value itself (inline), or the frame its locator
   * points to, read from the segment file and checked (EVAQ_CORRUPTION naming the segment when
   * the frame is damaged or its file is missing).
   */
  async resolve (first: number, value: Buffer): Promise<Segment> {
    if (value.byteLength !== LOCATOR_BYTES) return new Segment(first, value)
    return new Segment(first, await this.files$(first).read(decodeLocator(first, value), first))
  }

  /**
   * resolve() for the entries of one iterator page, reading runs of adjacent frames together
   * (sequential reads for a reader far behind). A segment that cannot be resolved is its error;
   * one deleted since the iterator saw it (its file released) is undefined.
   */
  async resolveAll (entries: ReadonlyArray<readonly [number, Buffer]>): Promise<Array<Segment | EvaqError | undefined>> {
    const out = new Array<Segment | EvaqError | undefined>(entries.length)
    const run: Array<{ at: number, loc: Locator, firstId: number }> = []
    const flush = async (): Promise<void> => {
      if (run.length === 0) return
      const bodies = await this.files$(run[0]!.firstId).readEach(run)
      for (let i = 0; i < run.length; i++) {
        const { at, firstId } = run[i]!
        const body = bodies[i]!
        // An error: damaged, or (undefined) deleted since the iterator saw it.
        out[at] = body instanceof EvaqError ? (await this.deletedUnder(firstId, body) ? undefined : body) : new Segment(firstId, body)
      }
      run.length = 0
    }
    for (let i = 0; i < entries.length; i++) {
      const [first, value] = entries[i]!
      const cached = this.ctx.segments.get(this.cacheKey(first))
      if (cached !== undefined) out[i] = cached
      else if (value.byteLength !== LOCATOR_BYTES) out[i] = new Segment(first, value)
      else {
        try {
          run.push({ at: i, loc: decodeLocator(first, value), firstId: first })
        } catch (err) {
          out[i] = err as EvaqError
        }
        continue
      }
      await flush()
    }
    await flush()
    return out
  }

  private files$ (first: number): SegmentFiles {
    if (this.files === undefined) {
      throw new EvaqError('EVAQ_CORRUPTION', `Segment ${first} of ${this.name} is a locator, and ${this.name} has no segment files`, { ids: [first] })
    }
    return this.files
  }

  /**
   * Load where each segment file's records end (see releaseFiles), and tidy the files LevelDB
   * does not know: one prepared ahead and never written is released (kept as a spare), one with
   * frames is kept until the floor passes every ID issued so far. Returns the keys read.
   */
  async loadFiles (): Promise<number> {
    let read = 0
    for await (const [key, value] of this.fileLevel.iterator()) {
      read++
      this.fileEnds.set(decodeKey(key), decodeKey(value))
    }
    const files = this.files
    if (files === undefined) return read
    const batch = this.store.db.batch()
    let changed = false
    for (const f of [...this.fileEnds.keys()]) {
      if (files.files.includes(f)) continue
      // Released, and the crash came before the key went.
      this.fileEnds.delete(f)
      this.fileKeys.del(batch, f)
      changed = true
    }
    for (const f of [...files.files]) {
      if (this.fileEnds.has(f)) continue
      const kind = await files.classify(f).catch(() => 'damaged' as const)
      if (kind === 'empty') {
        await files.release(f)
      } else if (kind === 'frames') {
        this.fileEnds.set(f, this.counters.next)
        this.fileKeys.put(batch, f, encodeKey(this.counters.next))
        changed = true
      }
    }
    // A file's recorded end can be lower than its true one: two flushes into the same file may
    // reach LevelDB in either order, and the later write of the lower end wins. Frames are in ID
    // order across files, so the next file's first frame bounds this one's records from above
    // (the counters' next, for the last file): take the higher of the two, never release early.
    const numbers = files.files.filter(f => this.fileEnds.has(f))
    let bound = this.counters.next
    for (let i = numbers.length - 1; i >= 0; i--) {
      const f = numbers[i]!
      this.fileEnds.set(f, Math.max(this.fileEnds.get(f)!, bound))
      bound = await files.firstId(f).catch(() => undefined) ?? bound
    }
    if (changed) await batch.write({ sync: false })
    else await batch.close()
    return read
  }

  /**
   * Release the segment files whose records all lie below the floor, once the deletions that put
   * them there are durable (a synced write first, if needed): a crash must not bring back a
   * locator into a file that is gone. The file being written is kept, and nothing is released
   * while a backup has the files pinned (its snapshot may still locate frames in them): the
   * next round after it releases them.
   */
  async releaseFiles (): Promise<number> {
    const files = this.files
    if (files === undefined || this.fileEnds.size === 0 || files.pinned) return 0
    await this.catchUpFloor()
    const floor = this.counters.floor
    // Everything in the file being written is gone too: write the next frames to a new file.
    const end = (f: number): number => Math.max(this.fileEnds.get(f) ?? Infinity, files.placedEnd(f))
    const current = files.position?.file
    if (current !== undefined && end(current) <= floor) await files.seal()
    const writing = files.position?.file
    const due = [...this.fileEnds.keys()].filter(f => end(f) <= floor && f !== writing).map(f => [f, end(f)] as const)
    if (due.length === 0) return 0
    if (due.some(([, end]) => end > this.durableFloor)) {
      const sync = this.store.db.batch().put(SYNC_KEY, SYNC_KEY)
      await this.write(sync, {}, true, `Syncing ${this.name} before releasing segment files`)
    }
    const batch = this.store.db.batch()
    let released = 0
    for (const [f, end] of due) {
      // A backup pinned the files during the sync above: nothing is released until it ends.
      if (files.pinned) break
      if (end > this.durableFloor) continue
      try {
        await files.release(f)
      } catch (err) {
        // An offloaded file whose object the bucket would not delete now: released next round
        // (the tier counts and reports the failure).
        if (files.isRemote(f)) continue
        throw err
      }
      this.fileEnds.delete(f)
      this.fileKeys.del(batch, f)
      released++
    }
    if (released > 0) await this.write(batch, {}, false, `Forgetting released segment files of ${this.name}`)
    return released
  }

  /**
   * Move the floor up to the first live segment. A deletion moves the floor past the segment it
   * deletes only when that segment is the first one: when records are removed out of order (acks
   * come back in any order), a later segment deleted first leaves the floor below it, and the
   * floor then stops at the gap it left. Segment files are released by the floor, so they would
   * stay on disk for good. One seek of the summaries from the floor finds the first live one (or
   * none up to the watermark, above which segments may still be being committed).
   */
  private async catchUpFloor (): Promise<void> {
    const floor = this.counters.floor
    // Every ID up to the watermark is committed (cleanup.ts reads up to it, inclusive).
    const watermark = this.watermark
    if (floor > watermark) return
    const first = await this.index.keys({ gte: encodeKey(floor), lte: encodeKey(watermark), limit: 1 }).all()
    const live = first.length === 0 ? watermark + 1 : decodeKey(first[0]!)
    if (live <= floor || this.counters.floor !== floor) return
    // Not synced, like a deletion: a crash may lose it, and the next round moves the floor again.
    await this.write(this.store.db.batch(), { [this.name]: { floor: live } }, false, `Moving the floor of ${this.name}`)
  }

  /**
   * Offload the oldest file that can go to the tier (SegmentFiles.offloadable) whose records'
   * end is known. Returns the bytes freed locally (0: nothing could go); EVAQ_IO when the bucket
   * fails (the file stays local).
   */
  async offloadOldest (): Promise<number> {
    const files = this.files
    if (files?.tier === undefined) return 0
    for (const f of files.offloadable()) {
      const end = this.fileEnds.get(f)
      // Unknown, or every record in it is gone already: released, not uploaded.
      if (end === undefined || end <= this.counters.floor) continue
      const before = files.tier.remoteBytes
      await files.offload(f, Math.max(end, files.placedEnd(f)))
      return files.tier.remoteBytes - before
    }
    return 0
  }

  /** Which records of segment `first` were removed: every one, once the segment was deleted (see forget). */
  async removedSet (first: number, count: number): Promise<RemovalSet | undefined> {
    const cached = this.removedSets.get(first)
    if (cached === false) return undefined
    if (cached === GONE) return allRemoved(count)
    if (cached !== undefined) return cached
    const value = await this.removals.get(encodeKey(first))
    // Deleted while this read waited: its removal set went with it.
    if (this.removedSets.get(first) === GONE) return allRemoved(count)
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

/** A deleted segment, in the removal-set cache. */
const GONE = 'gone'

/** A removal set naming every record of a segment of `count` records. */
function allRemoved (count: number): RemovalSet {
  return { bits: new Uint8Array((count + 7) >>> 3).fill(0xff), removed: count, removedBytes: 0 }
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
