import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import { startBackup, sinceBase, type BackupOptions, type BackupStream } from './backup/backup-stream.js'
import type { BackupLogMark } from './backup/manifest.js'
import { restoreArchives, type RestoreOptions, type RestoreResult } from './backup/restore.js'
import { DeadLetterLog, type DeadLetterRecord } from './dlq/dead-letter-log.js'
import { Moves } from './dlq/moves.js'
import { ParkedLog, type ParkedRecord } from './dlq/parked-log.js'
import type { RetryLog } from './dlq/retry-log.js'
import { EvaqError, fromLevel, invalid } from './errors.js'
import { DeadLetters, type RetryItemOptions } from './facade/dead-letters.js'
import { Health } from './facade/health.js'
import { DiskBudget, type FullEvent } from './log/budget.js'
import { Offloader } from './log/offloader.js'
import { TierReport, type TierErrorEvent, type TierEvent, type TierStats } from './facade/tier-stats.js'
import { ByteCap } from './log/byte-cap.js'
import {
  Log, type Admission, type DeadLetterSource, type DropEvent, type FlushEvent, type LogContext, type LogView, type LogStats,
  type PushOptions, type QueueRecord, type Segment,
} from './log/log.js'
import type { Subscriber } from './log/subscriber.js'
import { resolveOptions, type EvaqOptions, type LogName, type ResolvedOptions } from './options.js'
import { RetryDaemon, type RetryHandler } from './retry/retry-daemon.js'
import { resolveRetryOptions, type RetryOptions } from './retry/retry-options.js'
import { ID_FILE } from './schema.js'
import { recoverAtOpen } from './store/open-recovery.js'
import type { RepairFixes } from './store/repair.js'
import { takeSnapshot } from './store/snapshot.js'
import { openStore, type Store } from './store/store.js'
import { rejectUnknown } from './validate.js'

export type { TierErrorEvent, TierEvent, TierStats }

/**
 * `degraded`: a write failed (disk full, I/O error). Reads keep working, writes fail fast with
 * EVAQ_IO, and evaq reopens the database with backoff until it works again (`recovered`).
 */
export type EvaqStatus = 'opening' | 'open' | 'degraded' | 'closing' | 'closed'

export type { RetryItemOptions }

export interface EvaqStats {
  readonly wal: LogStats
  readonly dlq: LogStats
  readonly parked: LogStats
  readonly disk: {
    /**
     * Bytes the data directory occupies: under `maxDiskBytes` the budget's running figure (last
     * measurement plus what was admitted since), otherwise measured by this call.
     */
    readonly usedBytes: number
    readonly maxDiskBytes: number | undefined
    readonly full: boolean
  }
  /** The tier on object storage (options.tier), if the queue has one: see TierStats. */
  readonly tier?: TierStats
}

/**
 * Events:
 * - `full` (FullEvent): a disk budget was hit; pushes wait, fail or drop per `onFull`.
 * - `drain` (): the budget has room again.
 * - `dropped` (DropEvent): records left a log by retention or drop-oldest, or a subscriber expired.
 * - `flush` (FlushEvent): a flush of the write buffer completed: records, bytes, time, synced.
 * - `error` (EvaqError): a background task failed (compaction, periodic fsync, progress write).
 * - `degraded` (EvaqError): a write failed; writes fail fast until `recovered`.
 * - `recovered` (): the database was reopened and takes writes again.
 * - `offload` (TierEvent), `fetch` (TierEvent), `tier-error` (TierErrorEvent): the tier moved a
 *   segment file to its bucket, fetched one back, or a call to the bucket failed (docs/tier.md).
 * - `closing`, `closed`.
 */
export interface EvaqEvents {
  degraded: [EvaqError]
  recovered: []
  full: [FullEvent]
  drain: []
  dropped: [DropEvent]
  flush: [FlushEvent]
  error: [EvaqError]
  offload: [TierEvent]
  fetch: [TierEvent]
  'tier-error': [TierErrorEvent]
  closing: []
  closed: []
}

/**
 * Work the queue finishes while it closes (retry daemons stopping, a requeue or purge under way)
 * runs in this context: its writes are let through after `close()` turned the status to closing.
 */
const finishing = new AsyncLocalStorage<Evaq>()

/**
 * The evacuation queue: a write-ahead log (`wal`) of messages on their way to a downstream and a
 * dead-letter queue (`dlq`) of those that failed, in one LevelDB database per directory.
 */
/** What Evaq.open found (see Evaq.openReport). */
export interface OpenReport {
  keysRead: number
  corruption: readonly string[]
  dropped: readonly DropEvent[]
  indexed: { readonly segments: number, readonly records: number }
}

export class Evaq extends EventEmitter<EvaqEvents> {
  /** Messages persisted before they are handed to a downstream. */
  readonly wal: LogView
  /** Messages whose delivery failed, waiting to be retried; reads return their retry state. */
  readonly dlq: LogView<DeadLetterRecord>
  /** Messages the retry daemon gave up on, with their history; see `requeueParked` and `purgeParked`. */
  readonly parked: LogView<ParkedRecord>
  /** The same logs with their machinery, for the queue itself (and tests, through test/helpers/internals.ts). */
  private readonly walLog: Log
  private readonly dlqLog: DeadLetterLog
  private readonly parkedLog: ParkedLog
  readonly location: string
  readonly options: ResolvedOptions
  /**
   * What open found. `keysRead`: keys read besides LevelDB's own recovery (commit snapshots and
   * subscriber progress entries), which does not grow with the number of records or segments.
   * `corruption`: what LevelDB reported while recovering its log; a non-empty list means a batch
   * was dropped and acknowledged records may be gone (run `evaq check`). `dropped`: the records
   * open found gone (after LevelDB dropped part of its log), by ID range; each is also emitted as
   * a `dropped` event with reason 'corruption' right after open resolves. `indexed`: segments
   * whose frames were committed in a segment file but whose index entries LevelDB had not written
   * or lost (after a crash), indexed again (nothing was lost).
   */
  readonly openReport: OpenReport = { keysRead: 0, corruption: [], dropped: [], indexed: { segments: 0, records: 0 } }
  private _status: EvaqStatus = 'opening'
  private readonly store: Store
  private readonly budget: DiskBudget
  private readonly timers: NodeJS.Timeout[] = []
  private maintaining: Promise<void> | undefined
  private readonly health: Health
  private readonly deadLetters: DeadLetters
  private maintainNext: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private readonly moves: Moves
  private readonly caps = new Map<LogName, ByteCap>()
  private readonly daemons = new Set<RetryDaemon>()
  /** While close() lets daemons and parked-record work finish. */
  private finishingWork = false

  private constructor (location: string, store: Store, options: ResolvedOptions, private readonly tier: TierReport) {
    super()
    this.location = location
    this.store = store
    this.options = options
    const segments = new LRUCache<string, Segment>({
      maxSize: Math.max(1, options.segmentCacheBytes),
      sizeCalculation: s => Math.max(1, s.value.byteLength),
    })
    this.budget = new DiskBudget(location, options, () => this.logs, {
      full: e => this.emit('full', e),
      drain: () => this.emit('drain'),
    })
    if (options.onFull === 'offload') {
      this.budget.offloader = new Offloader(this.budget, () => [this.walLog], options.maxDiskBytes!, options.maintenanceIntervalMs, {
        failed: () => this.budget.tierFailed(),
      })
    }
    const admission = (name: LogName): Admission => {
      const retention = options.retention[name]
      if (retention?.maxBytes === undefined) return this.budget
      // Offloading is the directory's: a log's own cap under 'offload' holds pushes back.
      const onFull = retention.onFull ?? (options.onFull === 'offload' ? 'backpressure' : options.onFull)
      const cap = new ByteCap(() => this.log(name), retention.maxBytes, onFull, this.budget)
      this.caps.set(name, cap)
      return cap
    }
    const context = (name: LogName): LogContext => ({
      store,
      options,
      segments,
      // The DLQ and parked logs keep each record's error beside it.
      extras: name !== 'wal',
      maxAgeMs: options.retention[name]?.maxAgeMs,
      admission: admission(name),
      assertOpen: () => this.assertOpen(),
      assertWritable: () => this.assertWritable(),
      isOpen: () => this._status === 'open',
      reopening: () => this.health.reopening,
      damaged: err => this.health.repairDamage(err),
      ioFailed: err => this.health.degrade(err),
      markDirty: () => { this.health.dirty = true },
      // A WAL record its subscriber cannot process goes to the DLQ; the DLQ has nowhere further.
      deadLetter: name === 'wal' ? (log, sub, record, deliveries) => this.deadLetter(log, sub, record, deliveries) : undefined,
      dropped: e => this.emit('dropped', e),
      flushed: e => { if (this.listenerCount('flush') > 0) this.emit('flush', e) },
      error: err => this.reportError(err),
    })
    this.moves = new Moves(store)
    this.walLog = new Log('wal', context('wal'))
    this.dlqLog = new DeadLetterLog('dlq', context('dlq'), this.moves.intents)
    this.parkedLog = new ParkedLog('parked', context('parked'), this.moves.intents)
    this.wal = this.walLog
    this.dlq = this.dlqLog
    this.parked = this.parkedLog
    this.health = new Health({
      location,
      store,
      options,
      budget: this.budget,
      logs: this.logs,
      status: () => this._status,
      degraded: err => {
        this._status = 'degraded'
        this.emit('degraded', err)
      },
      recovered: () => {
        this._status = 'open'
        // A move that failed with the write may have left its intent: settle it now.
        this.moves.recover(this.retryLogs).catch(err => this.reportError(err))
        this.emit('recovered')
      },
      repaired: fixed => this.reopened(fixed),
      reportError: err => this.reportError(err),
    })
    this.deadLetters = new DeadLetters({
      wal: this.walLog,
      dlq: this.dlqLog,
      parked: this.parkedLog,
      moves: this.moves,
      options,
      assertOpen: () => this.assertOpen(),
      assertWritable: () => this.assertWritable(),
      recheck: async log => { await this.caps.get(log)?.recheck() },
      finishing: task => finishing.run(this, task),
    })
  }

  private log (name: LogName): Log {
    return name === 'wal' ? this.walLog : name === 'dlq' ? this.dlqLog.log : this.parkedLog.log
  }

  private get logs (): readonly Log[] {
    return [this.walLog, this.dlqLog.log, this.parkedLog.log]
  }

  private get retryLogs (): ReadonlyMap<string, RetryLog> {
    return new Map<string, RetryLog>([[this.dlqLog.name, this.dlqLog], [this.parkedLog.name, this.parkedLog]])
  }

  /** Open (creating if needed) the queue stored in directory `dir`. */
  static async open (dir: string, options?: EvaqOptions): Promise<Evaq> {
    if (typeof dir !== 'string' || dir.length === 0) throw invalid('dir', 'a non-empty directory path', dir)
    const resolved = resolveOptions(options)
    // The tier reports through the queue once it exists (nothing is offloaded before).
    const opened: { q?: Evaq } = {}
    const tier = new TierReport((name, e) => opened.q?.emit(name as 'offload', e as TierEvent))
    const store = await openStore(dir, resolved, tier.events)
    const evaq = opened.q = new Evaq(dir, store, resolved, tier)
    try {
      let keysRead = store.journal.loadedKeys
      for (const log of evaq.logs) keysRead += await log.load()
      evaq.openReport.keysRead = keysRead + await evaq.moves.load()
      const { corruption, fixed } = await recoverAtOpen(dir, store)
      evaq.openReport.corruption = [...corruption, ...store.fileRecovery.lines]
      evaq.openReport.indexed = { segments: store.fileRecovery.segments, records: store.fileRecovery.records }
      // Nobody listens yet: kept in openReport, and emitted once the caller got the queue.
      const unsynced: DropEvent[] = store.fileRecovery.unsynced.map(r => ({ ...r, reason: 'unsynced' }))
      evaq.openReport.dropped = [...unsynced, ...(fixed === undefined ? [] : evaq.repairEvents(fixed))]
    } catch (err) {
      await store.close().catch(() => {})
      throw fromLevel(err, `Cannot open ${dir}`)
    }
    evaq._status = 'open'
    try {
      // Moves between the DLQ and parked that a crash interrupted (one intent per move in flight).
      await evaq.moves.recover(evaq.retryLogs)
    } catch (err) {
      await evaq.close().catch(() => {})
      throw err
    }
    evaq.startTimers()
    await evaq.maintain()
    const dropped = evaq.openReport.dropped
    // After the caller's continuation, which attaches the listeners.
    if (dropped.length > 0) setImmediate(() => { for (const e of dropped) evaq.emit('dropped', e) })
    return evaq
  }

  private startTimers (): void {
    const { durability, ackDurability, maintenanceIntervalMs } = this.options
    const every = (ms: number, task: () => Promise<void>): void => {
      const timer = setInterval(() => { void task().catch(err => this.reportError(err)) }, ms)
      timer.unref()
      this.timers.push(timer)
    }
    if (typeof durability === 'object') every(durability.intervalMs, () => this.health.syncNow())
    if (typeof ackDurability === 'object') {
      every(ackDurability.intervalMs, async () => { await this.walLog.writeProgress(); await this.dlqLog.writeProgress() })
    }
    every(maintenanceIntervalMs, () => this.maintain())
  }

  /**
   * One round of upkeep: retention, subscriber TTLs, compaction of deleted ranges, and the disk
   * budget. Runs every `maintenanceIntervalMs`; exposed so that tests with an injected clock can
   * run it when they advance time.
   */
  maintain (): Promise<void> {
    if (this._status !== 'open') return Promise.resolve()
    if (this.maintaining !== undefined) {
      // A round is running and may have read the clock already: run one more after it.
      this.maintainNext ??= this.maintaining.catch(() => {}).then(() => {
        this.maintainNext = undefined
        return this.maintain()
      })
      return this.maintainNext
    }
    this.maintaining = (async () => {
      try {
        for (const log of this.logs) {
          await log.expire()
          if (this.options.subscriberTtlMs !== undefined) await log.expireSubscribers(this.options.subscriberTtlMs)
          await log.compact()
        }
        await this.budget.tick()
        for (const cap of this.caps.values()) await cap.recheck()
      } finally {
        this.maintaining = undefined
      }
    })()
    return this.maintaining
  }

  private async deadLetter (log: DeadLetterSource, sub: Subscriber, record: QueueRecord, deliveries: number): Promise<void> {
    const error = {
      code: 'EVAQ_MAX_DELIVERIES',
      message: `Delivered ${deliveries} time(s) to subscriber ${sub.name} of ${log.name} without an acknowledgement`,
      source: { log: log.name, id: record.id },
      subscriber: sub.name,
      deliveries,
    }
    // One write: the DLQ record and the subscriber's acknowledgement of the WAL record.
    const extra = Buffer.from(JSON.stringify(error))
    await this.dlqLog.log.push(record.payload, undefined, extra, (batch, delta) => log.ackCarried(sub, record.id, { batch, delta }))
  }

  /** What a repair or recount found gone: `dropped` events with reason 'corruption'. */
  private reportRepair (fixed: RepairFixes): void {
    for (const e of this.repairEvents(fixed)) this.emit('dropped', e)
  }

  /** One event per range a repair took out, so that every ID a reader will not find is named. */
  private repairEvents (fixed: RepairFixes): DropEvent[] {
    const events: DropEvent[] = []
    for (const [log, f] of Object.entries(fixed)) {
      for (const r of f.ranges) events.push({ log, reason: 'corruption', records: r.records, bytes: 0, firstId: r.firstId, lastId: r.lastId })
    }
    return events
  }

  private reportError (err: unknown): void {
    const error = err instanceof EvaqError ? err : fromLevel(err, 'A background task failed')
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  /** `'opening' | 'open' | 'closing' | 'closed'` */
  get status (): EvaqStatus {
    return this._status
  }

  /** Persist `payload` in the WAL; resolves with its ID once it is durable (per `durability`). */
  pushWal (payload: Buffer | Uint8Array | string, options?: PushOptions): Promise<number> {
    return this.walLog.push(payload, options)
  }

  /** Persist many payloads in one write; their IDs are contiguous, in call order. */
  pushWalMany (payloads: ReadonlyArray<Buffer | Uint8Array | string>, options?: PushOptions): Promise<number[]> {
    return this.walLog.pushMany(payloads, options)
  }

  /** Remove one or many records from the WAL, atomically (EVAQ_NOT_FOUND removes nothing). */
  async removeWal (ids: number | readonly number[]): Promise<void> {
    await this.walLog.remove(ids)
    await this.caps.get('wal')?.recheck()
  }

  /**
   * Put a failed message in the DLQ, with the error that sent it there. Its retry state starts
   * with `attempts` (default 0) and is due at once; the record and its state are one write.
   */
  pushRetryItem (payload: Buffer | Uint8Array | string, options: RetryItemOptions = {}): Promise<number> {
    return this.deadLetters.pushRetryItem(payload, options)
  }

  /**
   * Move WAL record `id` to the DLQ, as pushRetryItem would put it there (`payload` replaces the
   * stored one if given; `source` defaults to the WAL record). The removal from the WAL and the
   * push to the DLQ are one write: after a crash the record is in exactly one of the two.
   * Resolves with its DLQ ID; rejects with EVAQ_NOT_FOUND, and moves nothing, when `id` is not in
   * the WAL.
   */
  moveWalToDlq (id: number, options: RetryItemOptions & { payload?: Buffer | Uint8Array | string } = {}): Promise<number> {
    return this.deadLetters.moveWalToDlq(id, options)
  }

  /**
   * Remove retried records from the DLQ, atomically. Resolves with the highest ID removed, or
   * `undefined` for an empty list.
   */
  doneRetryItems (ids: readonly number[]): Promise<number | undefined> {
    return this.deadLetters.doneRetryItems(ids)
  }

  /**
   * DLQ records with `id >= offset` in ID order, whole records, at most `maxBytes` of payload in all,
   * but always at least one record when one exists. Each carries its retry state (`retry`).
   */
  firstNBytesFromDeadLetterQueue (offset: number, maxBytes: number): Promise<DeadLetterRecord[]> {
    return this.deadLetters.firstNBytesFromDeadLetterQueue(offset, maxBytes)
  }

  /**
   * Start a retry daemon that drains the DLQ through `handler`: resolving removes the record,
   * throwing reschedules it with backoff, or parks it after `maxAttempts` or a permanent error.
   * See {@link RetryOptions}. `close()` stops running daemons first.
   */
  retry (handler: RetryHandler, options?: RetryOptions): RetryDaemon {
    this.assertWritable()
    const resolved = resolveRetryOptions(options, this.options.clock)
    const daemon = new RetryDaemon({
      dlq: this.dlqLog,
      parked: this.parkedLog,
      moves: this.moves,
      assertOpen: () => this.assertWritable(),
      error: err => this.reportError(err),
      run: task => finishing.run(this, task),
    }, handler, resolved)
    this.daemons.add(daemon)
    daemon.once('stopped', () => this.daemons.delete(daemon))
    if (resolved.autoStart) daemon.start()
    return daemon
  }

  /**
   * Move DLQ records back to the WAL (a redrive): `ids` (all must be in the DLQ, or
   * EVAQ_NOT_FOUND and nothing is requeued) or `'all'` (the records in the DLQ when the call
   * starts). Resolves with their new WAL IDs, in DLQ order. Each page of records (up to
   * `maxBatchCount` and 1000 records, and about `maxBatchBytes`) is one write: after a crash every
   * record is in exactly one of the DLQ and the WAL. A record removed from the DLQ meanwhile is
   * left out.
   */
  requeueDeadLetters (ids: readonly number[] | 'all'): Promise<number[]> {
    return this.deadLetters.requeueDeadLetters(ids)
  }

  /**
   * Put parked records back in the DLQ, due at once, with `attempts` reset to 0 (the rest of
   * their history is kept, and `source` names the parked record). `ids` must all be parked
   * (EVAQ_NOT_FOUND otherwise, and nothing is requeued), or `'all'`. Resolves with their new DLQ
   * IDs, in the order of the parked IDs. Each record is moved crash-safely (see Guarantees).
   */
  requeueParked (ids: readonly number[] | 'all'): Promise<number[]> {
    return this.deadLetters.requeueParked(ids)
  }

  /**
   * Delete parked records for good: `ids` atomically (EVAQ_NOT_FOUND if one is not parked, and
   * nothing is deleted), or `'all'`. Resolves with the number deleted.
   */
  purgeParked (ids: readonly number[] | 'all'): Promise<number> {
    return this.deadLetters.purgeParked(ids)
  }

  /**
   * Back up the whole queue while it runs: one LevelDB snapshot of every log, removal, subscriber
   * progress, retry state and counter, at one instant. Resolves once the snapshot is taken, with
   * the archive to read once (see docs/backup.md): it holds every push and removal that resolved
   * before this call, and nothing done after it resolved. Acknowledgements not yet persisted
   * (`ackDurability` interval) are written first. `since` makes an incremental backup.
   */
  async backup (options: BackupOptions = {}): Promise<BackupStream> {
    this.assertOpen()
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    rejectUnknown(options, ['since'], ' of backup()')
    const base = sinceBase(options.since)
    // A failed progress write leaves the queue degraded; what is on disk is backed up all the same.
    await Promise.allSettled(this.logs.map(log => log.writeProgress()))
    this.assertOpen()
    const marks: Record<string, BackupLogMark> = {}
    for (const log of this.logs) {
      marks[log.name] = { highWater: Math.min(log.watermark + 1, this.health.failedAt?.get(log.name) ?? Infinity), nextId: log.nextId }
    }
    // In the same turn as the marks: every ID below a high-water is in the snapshot.
    return startBackup(takeSnapshot(this.store), marks, this.options.clock.now(), base)
  }

  /**
   * Restore backup archives into `dir`, which must not exist or be empty: a full archive, then the
   * incremental ones built on it, oldest first. Every archive is verified before anything is
   * written (a damaged one is refused with EVAQ_CORRUPTION, and the target is left as it was);
   * IDs of the restored queue continue above every ID the backed-up queue had issued. The queue
   * is built in a work directory beside `dir` and renamed into place once complete and fsynced:
   * aborted (`options.signal`: EVAQ_ABORTED), killed or crashed before that, `dir` is as it was.
   */
  static async restore (from: string | readonly string[], dir: string, options?: RestoreOptions): Promise<RestoreResult> {
    if (options !== null && typeof options === 'object') rejectUnknown(options, ['verify', 'onProgress', 'signal'], ' of restore()')
    return restoreArchives(typeof from === 'string' ? [from] : from, dir, options)
  }

  /** Counters of both logs, their subscribers, the disk budget and the tier. */
  async stats (): Promise<EvaqStats> {
    this.assertOpen()
    const tier = this.store.bucket === undefined ? undefined : this.tier.stats(this.store.files.values())
    return {
      wal: await this.walLog.stats(),
      dlq: await this.dlqLog.stats(),
      parked: await this.parkedLog.stats(),
      disk: { usedBytes: await this.budget.currentUsedBytes(), maxDiskBytes: this.options.maxDiskBytes, full: this.budget.isFull },
      ...(tier === undefined ? {} : { tier }),
    }
  }

  assertOpen (): void {
    if (this._status === 'closing' && this.finishingWork && finishing.getStore() === this) return
    if (this._status !== 'open' && this._status !== 'degraded') {
      throw new EvaqError('EVAQ_CLOSED', `The queue at ${this.location} is ${this._status}`)
    }
  }

  private assertWritable (): void {
    this.assertOpen()
    if (this._status === 'degraded') throw this.health.degradedError(this.location)
  }

  /** After a reopen: caches forgotten, and what a repair or LevelDB's recovery took out reported. */
  private reopened (repaired: RepairFixes | undefined): void {
    for (const log of this.logs) log.forgetCaches()
    if (repaired !== undefined) {
      this.reportRepair(repaired)
      this.reportError(new EvaqError('EVAQ_CORRUPTION', `LevelDB met damaged data in ${this.location}; evaq repaired it while reopening ` +
        `(LevelDB keeps the replaced files in lost/): ${JSON.stringify(repaired)}`))
    }
    if (this.store.corruption.length > this.openReport.corruption.length) {
      this.openReport.corruption = this.store.corruption
      this.reportError(new EvaqError('EVAQ_CORRUPTION', `LevelDB dropped damaged data while reopening ${this.location}: ${this.store.corruption.at(-1) ?? ''}`))
    }
  }

  /**
   * Wait for pending writes (including pushes waiting for buffer space), then close. Pushes
   * waiting for disk space under the `backpressure` policy and waiting `next()` calls reject with
   * EVAQ_CLOSED. Every method rejects with EVAQ_CLOSED afterwards.
   */
  close (): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.closing = (async () => {
      this._status = 'closing'
      this.emit('closing')
      // Retry daemons stop (their handlers get stopTimeoutMs), and a requeue or purge under way
      // finishes: their writes are let through, everybody else's are refused.
      this.finishingWork = true
      await Promise.all([...this.daemons].map(d => d.stop().catch(() => {})))
      await this.deadLetters.idle()
      this.finishingWork = false
      for (const timer of this.timers) clearInterval(timer)
      await this.budget.offloader?.close()
      await this.health.stop()
      const closed = new EvaqError('EVAQ_CLOSED', `The queue at ${this.location} is closing`)
      this.budget.rejectAll(closed)
      for (const cap of this.caps.values()) cap.rejectAll(closed)
      for (const log of this.logs) log.wakeSubscribers()
      await this.maintainNext?.catch(() => {})
      await this.maintaining?.catch(() => {})
      await Promise.all(this.logs.map(log => log.drain()))
      try {
        if (this.store.failed === undefined) for (const log of this.logs) await log.syncFrames()
        await this.health.finalSync()
      } finally {
        try {
          for (const files of this.store.files.values()) await files.close()
          this.store.bucket?.close()
          await this.store.db.close().catch(err => { throw fromLevel(err, 'Closing the database failed') })
          const ids: Record<string, { next: number, committed: number }> = {}
          for (const log of this.logs) ids[log.name] = { next: log.nextId, committed: this.store.journal.counters(log.name).next }
          await this.store.ids.close(ids).catch(err => { throw new EvaqError('EVAQ_IO', `Writing ${ID_FILE} failed`, { cause: err }) })
        } finally {
          // A database that failed to close still holds LevelDB's lock: keep the claim too.
          if (this.store.db.status === 'closed') this.store.claim.release()
          this._status = 'closed'
          this.emit('closed')
        }
      }
    })()
    return this.closing
  }
}
