import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import { startBackup, sinceBase, type BackupOptions, type BackupStream } from './backup/backup-stream.js'
import type { BackupLogMark } from './backup/manifest.js'
import { restoreArchives, type RestoreOptions, type RestoreResult } from './backup/restore.js'
import { EvaqError, fromLevel, hasCode, invalid } from './errors.js'
import { DiskBudget, levelLogBytes, type FullEvent } from './log/budget.js'
import { ByteCap } from './log/byte-cap.js'
import { checkId, checkIds, encodeError, Log, type Admission, type DeadLetterSource, type DropEvent, type FlushEvent, type LogContext, type LogView, type LogStats, type PushOptions, type QueueRecord, type RecordError, type Segment } from './log/log.js'
import type { Subscriber } from './log/subscriber.js'
import { rejectUnknown, resolveOptions, type EvaqOptions, type LogName, type ResolvedOptions } from './options.js'
import { Moves } from './dlq/moves.js'
import { RetryDaemon, type RetryHandler } from './retry/retry-daemon.js'
import { DeadLetterLog, type DeadLetterRecord } from './dlq/dead-letter-log.js'
import { ParkedLog, type ParkedRecord } from './dlq/parked-log.js'
import type { RetryLog } from './dlq/retry-log.js'
import { redrivePage } from './dlq/redrive.js'
import { resolveRetryOptions, type RetryOptions } from './retry/retry-options.js'
import type { RecordInit, RecordSource, RetryState } from './dlq/retry-state.js'
import { ID_FILE, SYNC_KEY } from './schema.js'
import { reconcile, repairInPlace, type RepairFixes } from './store/repair.js'
import { takeSnapshot } from './store/snapshot.js'
import { openStore, pendingRecount, type Store } from './store/store.js'

/**
 * `degraded`: a write failed (disk full, I/O error). Reads keep working, writes fail fast with
 * EVAQ_IO, and evaq reopens the database with backoff until it works again (`recovered`).
 */
export type EvaqStatus = 'opening' | 'open' | 'degraded' | 'closing' | 'closed'

export interface RetryItemOptions extends PushOptions {
  /** Why the record failed: an Error (its `code` and `message` are kept), a string, or `{ code?, message }`. */
  error?: unknown
  /**
   * Delivery attempts already made (they count towards the retry daemon's `maxAttempts`).
   * @defaultValue 0
   */
  attempts?: number
  /** Where the record came from, for example `{ log: 'wal', id }`. @defaultValue none */
  source?: RecordSource
}

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
  closing: []
  closed: []
}

/** Reopen attempts after a failed write: 100 ms, doubling up to 5 s. */
const RECOVERY_FIRST_MS = 100
const RECOVERY_MAX_MS = 5000
/** Free space a reopen needs beyond the size of LevelDB's log, which it turns into a table. */
const RECOVERY_ROOM_BYTES = 1024 * 1024
/** Records a requeue moves at once, and records a purge of everything reads per round. */
const REQUEUE_CONCURRENCY = 16
const PURGE_PAGE = 10_000
/** DLQ records a redrive moves in one write, at most (and at most maxBatchCount). */
const REDRIVE_PAGE = 1000
/**
 * Work the queue finishes while it closes (retry daemons stopping, a requeue or purge under way)
 * runs in this context: its writes are let through after `close()` turned the status to closing.
 */
const finishing = new AsyncLocalStorage<Evaq>()

/**
 * The evacuation queue: a write-ahead log (`wal`) of messages on their way to a downstream and a
 * dead-letter queue (`dlq`) of those that failed, in one LevelDB database per directory.
 */
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
   * a `dropped` event with reason 'corruption' right after open resolves.
   */
  readonly openReport: { keysRead: number, corruption: readonly string[], dropped: readonly DropEvent[] } = { keysRead: 0, corruption: [], dropped: [] }
  private _status: EvaqStatus = 'opening'
  private readonly store: Store
  private readonly budget: DiskBudget
  private readonly timers: NodeJS.Timeout[] = []
  private dirty = false
  private syncing: Promise<void> | undefined
  private maintaining: Promise<void> | undefined
  private degradedBy: EvaqError | undefined
  /**
   * Each log's high-water ID (watermark + 1) when a write first failed in this process. A batch
   * whose write failed may still be in LevelDB's log and come back when the database reopens, with
   * IDs above this: a backup's high-water never goes past it, so that an incremental backup
   * carries such a batch instead of referring to a base that lacks it.
   */
  private failedAt: Map<string, number> | undefined
  private recoveryTimer: NodeJS.Timeout | undefined
  private recovering: Promise<void> | undefined
  private maintainNext: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private readonly moves: Moves
  private readonly caps = new Map<LogName, ByteCap>()
  private readonly daemons = new Set<RetryDaemon>()
  /** Requeues and purges, one at a time. */
  private parkedLane: Promise<unknown> = Promise.resolve()
  /** While close() lets daemons and parked-record work finish. */
  private finishingWork = false

  private constructor (location: string, store: Store, options: ResolvedOptions) {
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
    const admission = (name: LogName): Admission => {
      const retention = options.retention[name]
      if (retention?.maxBytes === undefined) return this.budget
      const cap = new ByteCap(() => this.log(name), retention.maxBytes, retention.onFull ?? options.onFull, this.budget)
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
      reopening: () => this.recovering,
      damaged: err => this.repairDamage(err),
      ioFailed: err => this.degrade(err),
      markDirty: () => { this.dirty = true },
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
    const store = await openStore(dir, resolved)
    const evaq = new Evaq(dir, store, resolved)
    try {
      evaq.openReport.keysRead = store.journal.loadedKeys + await evaq.walLog.load() + await evaq.dlqLog.log.load() + await evaq.parkedLog.log.load() + await evaq.moves.load()
      const lost: string[] = []
      for (const log of evaq.logs) {
        const gap = store.ids.lost(log.name, store.journal.counters(log.name).next)
        if (gap !== undefined) lost.push(`${log.name}: LevelDB lost records it had acknowledged before the last clean close: its counters end at ID ${gap.found - 1}, they ended at ${gap.expected - 1}`)
      }
      if (store.ids.problem !== undefined) lost.push(store.ids.problem)
      evaq.openReport.corruption = [...store.corruption, ...lost]
      // LevelDB dropped damaged records of its log while opening: batches after them were
      // replayed, with counter snapshots that still count what was dropped. Recount once, now
      // (a scan, but only after such damage), so that stats and budgets tell the truth.
      const earlier = await pendingRecount(dir)
      if (earlier.length > 0) evaq.openReport.corruption = [...evaq.openReport.corruption, ...earlier.map(line => `seen at an earlier open: ${line}`)]
      if (earlier.length > 0 || store.corruption.some(line => line.includes('dropping'))) {
        let fixed: RepairFixes | undefined
        await store.reopen(async () => { fixed = await reconcile(dir, store.claim) })
        // Nobody listens yet: kept in openReport, and emitted once the caller got the queue.
        evaq.openReport.dropped = evaq.repairEvents(fixed!)
      }
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
    if (typeof durability === 'object') every(durability.intervalMs, () => this.syncNow())
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
    await this.dlqLog.log.push(record.payload, undefined, Buffer.from(JSON.stringify(error)), (batch, delta) => log.ackCarried(sub, record.id, { batch, delta }))
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
  async pushRetryItem (payload: Buffer | Uint8Array | string, options: RetryItemOptions = {}): Promise<number> {
    this.assertOpen()
    const [init, rest] = this.retryInit(options)
    return this.dlqLog.pushRecord(payload, init, rest)
  }

  /**
   * Move WAL record `id` to the DLQ, as pushRetryItem would put it there (`payload` replaces the
   * stored one if given; `source` defaults to the WAL record). The removal from the WAL and the push to the DLQ are one write: after a
   * crash the record is in exactly one of the two. Resolves with its DLQ ID; rejects with
   * EVAQ_NOT_FOUND, and moves nothing, when `id` is not in the WAL.
   */
  async moveWalToDlq (id: number, options: RetryItemOptions & { payload?: Buffer | Uint8Array | string } = {}): Promise<number> {
    this.assertWritable()
    checkId(id, 'id')
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    const { payload, ...rest } = options
    const [init] = this.retryInit({ source: { log: this.walLog.name, id }, ...rest })
    let body: Buffer | Uint8Array | string
    if (payload !== undefined) body = payload
    else {
      const record = await this.walLog.read({ from: id, maxCount: 1, maxBytes: 0 })
      if (record[0]?.id !== id) throw new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${id} in ${this.walLog.name}; nothing was moved`, { ids: [id] })
      body = record[0].payload
    }
    const dlqId = await this.moves.move(this.walLog, this.dlqLog, id, body, init)
    if (dlqId === undefined) throw new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${id} in ${this.walLog.name}; nothing was moved`, { ids: [id] })
    await this.caps.get('wal')?.recheck()
    return dlqId
  }

  private retryInit (options: RetryItemOptions): [Omit<RecordInit, 'move'>, PushOptions] {
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    rejectUnknown(options, ['error', 'attempts', 'source', 'signal'], ' of pushRetryItem()')
    const { error, attempts, source, ...rest } = options
    const encoded = encodeError(error)
    const state: Partial<RetryState> = {}
    if (attempts !== undefined) {
      if (typeof attempts !== 'number' || !Number.isSafeInteger(attempts) || attempts < 0) throw invalid('attempts', 'an integer >= 0', attempts)
      Object.assign(state, { attempts })
    }
    if (source !== undefined) {
      if (source === null || typeof source !== 'object' || typeof source.log !== 'string' || source.log.length === 0) {
        throw invalid('source', 'an object like { log, id }', source)
      }
      Object.assign(state, { source: { log: source.log, id: checkId(source.id, 'source.id') } })
    }
    return [{
      ...(encoded === undefined ? {} : { error: JSON.parse(encoded.toString('utf8')) as RecordError }),
      state,
    }, rest]
  }

  /**
   * Remove retried records from the DLQ, atomically. Resolves with the highest ID removed, or
   * `undefined` for an empty list.
   */
  async doneRetryItems (ids: readonly number[]): Promise<number | undefined> {
    if (!Array.isArray(ids)) throw invalid('ids', 'an array of IDs', ids)
    const highest = await this.dlqLog.remove(ids)
    await this.caps.get('dlq')?.recheck()
    return highest
  }

  /**
   * DLQ records with `id >= offset` in ID order, whole records, at most `maxBytes` of payload in all,
   * but always at least one record when one exists. Each carries its retry state (`retry`).
   */
  firstNBytesFromDeadLetterQueue (offset: number, maxBytes: number): Promise<DeadLetterRecord[]> {
    return this.dlqLog.read({ from: offset, maxBytes, maxCount: Infinity })
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
    return this.parkedWork(ids, async list => {
      const out: number[] = []
      const maxCount = Math.min(REDRIVE_PAGE, this.options.maxBatchCount)
      const maxBytes = this.options.maxBatchBytes
      if (list === 'all') {
        const end = this.dlqLog.nextId
        for (let from = 0; ;) {
          const page = (await this.dlqLog.read({ from, maxBytes, maxCount })).filter(r => r.id < end)
          if (page.length === 0) return out
          out.push(...await redrivePage(this.walLog, this.dlqLog, page))
          from = page[page.length - 1]!.id + 1
        }
      }
      const wanted = [...new Set(list)].sort((a, b) => a - b)
      const records = await Promise.all(wanted.map(id => this.dlqLog.get(id)))
      const missing = wanted.filter((_, i) => records[i] === undefined)
      if (missing.length > 0) throw new EvaqError('EVAQ_NOT_FOUND', `No DLQ record with ID ${missing.slice(0, 10).join(', ')}; nothing was requeued`, { ids: missing })
      for (let i = 0; i < records.length;) {
        let bytes = 0
        let j = i
        while (j < records.length && j - i < maxCount && (j === i || bytes + records[j]!.payload.byteLength <= maxBytes)) bytes += records[j++]!.payload.byteLength
        out.push(...await redrivePage(this.walLog, this.dlqLog, records.slice(i, j) as DeadLetterRecord[]))
        i = j
      }
      return out
    })
  }

  /**
   * Put parked records back in the DLQ, due at once, with `attempts` reset to 0 (the rest of
   * their history is kept, and `source` names the parked record). `ids` must all be parked
   * (EVAQ_NOT_FOUND otherwise, and nothing is requeued), or `'all'`. Resolves with their new DLQ
   * IDs, in the order of the parked IDs. Each record is moved crash-safely (see Guarantees).
   */
  requeueParked (ids: readonly number[] | 'all'): Promise<number[]> {
    return this.parkedWork(ids, async list => {
      const out: number[] = []
      const move = async (records: ParkedRecord[]): Promise<void> => {
        const now = this.options.clock.now()
        const ids = new Array<number | undefined>(records.length)
        let next = 0
        const worker = async (): Promise<void> => {
          for (let i = next++; i < records.length; i = next++) ids[i] = await this.requeueOne(records[i]!, now)
        }
        await Promise.all(Array.from({ length: Math.min(REQUEUE_CONCURRENCY, records.length) }, worker))
        for (const id of ids) if (id !== undefined) out.push(id)
      }
      if (list === 'all') {
        for (let from = 0; ;) {
          const page = await this.parkedLog.read({ from, maxBytes: 4 * 1024 * 1024, maxCount: 1000 })
          if (page.length === 0) break
          await move(page)
          from = page[page.length - 1]!.id + 1
        }
      } else {
        const records = await Promise.all(list.map(id => this.parkedLog.get(id)))
        const missing = list.filter((_, i) => records[i] === undefined)
        if (missing.length > 0) throw new EvaqError('EVAQ_NOT_FOUND', `No parked record with ID ${missing.slice(0, 10).join(', ')}; nothing was requeued`, { ids: missing })
        await move(records as ParkedRecord[])
      }
      return out
    })
  }

  private requeueOne (record: ParkedRecord, now: number): Promise<number | undefined> {
    const h = record.retry
    const source = { log: this.parkedLog.name, id: record.id }
    const state: Partial<RetryState> = {
      attempts: 0,
      firstFailedAt: h.firstFailedAt,
      lastFailedAt: h.lastFailedAt,
      ...(h.lastError === undefined ? {} : { lastError: h.lastError }),
      nextAttemptAt: now,
      source,
    }
    const error = h.lastError === undefined ? undefined : { ...h.lastError, source }
    return this.moves.move(this.parkedLog, this.dlqLog, record.id, record.payload, { ...(error === undefined ? {} : { error }), state })
  }

  /**
   * Delete parked records for good: `ids` atomically (EVAQ_NOT_FOUND if one is not parked, and
   * nothing is deleted), or `'all'`. Resolves with the number deleted.
   */
  purgeParked (ids: readonly number[] | 'all'): Promise<number> {
    return this.parkedWork(ids, async list => {
      if (list !== 'all') {
        await this.parkedLog.remove(list)
        return list.length
      }
      let purged = 0
      for (;;) {
        const page = await this.parkedLog.read({ maxBytes: 16 * 1024 * 1024, maxCount: PURGE_PAGE })
        if (page.length === 0) return purged
        purged += (await this.parkedLog.removeExisting(page.map(r => r.id))).length
      }
    })
  }

  /** Run a requeue (either) or purge of parked records in one lane, one at a time, and let close() wait for it. */
  private parkedWork<T> (ids: unknown, task: (list: number[] | 'all') => Promise<T>): Promise<T> {
    let list: number[] | 'all'
    try {
      this.assertWritable()
      list = ids === 'all' ? 'all' : checkIds(ids, 'ids')
      if (typeof ids === 'number') throw invalid('ids', "an array of IDs or 'all'", ids)
    } catch (err) {
      return Promise.reject(err)
    }
    const run = this.parkedLane.then(() => finishing.run(this, async () => {
      this.assertWritable()
      try {
        return await task(list)
      } finally {
        await this.caps.get('parked')?.recheck()
        await this.caps.get('dlq')?.recheck()
      }
    }))
    this.parkedLane = run.catch(() => {})
    return run
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
    for (const log of this.logs) marks[log.name] = { highWater: Math.min(log.watermark + 1, this.failedAt?.get(log.name) ?? Infinity), nextId: log.nextId }
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

  /** Counters of both logs, their subscribers, and the disk budget. */
  async stats (): Promise<EvaqStats> {
    this.assertOpen()
    return {
      wal: await this.walLog.stats(),
      dlq: await this.dlqLog.stats(),
      parked: await this.parkedLog.stats(),
      disk: { usedBytes: await this.budget.currentUsedBytes(), maxDiskBytes: this.options.maxDiskBytes, full: this.budget.isFull },
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
    if (this._status === 'degraded') {
      throw new EvaqError('EVAQ_IO', `The queue at ${this.location} is degraded after a failed write and takes no writes until it recovers`, { cause: this.degradedBy })
    }
  }

  private degrade (err: EvaqError): void {
    if (this._status !== 'open') return
    this._status = 'degraded'
    this.degradedBy = err
    this.failedAt ??= new Map(this.logs.map(log => [log.name, log.watermark + 1]))
    this.emit('degraded', err)
    this.scheduleRecovery(RECOVERY_FIRST_MS)
  }

  private scheduleRecovery (delayMs: number): void {
    this.recoveryTimer = setTimeout(() => { void this.recover(delayMs) }, delayMs)
    this.recoveryTimer.unref()
  }

  /**
   * Reopen the database once writes can work again: after a failed write LevelDB refuses every
   * later one until it is reopened, and on a full disk it cannot even reopen. Backs off from
   * RECOVERY_FIRST_MS to RECOVERY_MAX_MS while the cause persists.
   */
  private async recover (lastDelayMs: number): Promise<void> {
    this.recoveryTimer = undefined
    if (this._status !== 'degraded') return
    const retry = (): void => this.scheduleRecovery(Math.min(RECOVERY_MAX_MS, lastDelayMs * 2))
    let repaired: RepairFixes | undefined
    try {
      // Let the writes already under way fail first.
      await Promise.all(this.logs.map(log => log.drain())).catch(() => {})
      // Reopening closes the database first, and LevelDB cannot open again without room to flush
      // its log: closing it on a full disk would take the reads down with the writes.
      await this.budget.measure()
      const needed = (await levelLogBytes(this.location)) + RECOVERY_ROOM_BYTES
      if (this.budget.freeBytes < Math.max(this.options.minFreeDiskBytes, needed)) { retry(); return }
      // A write fails with LEVEL_CORRUPTION when LevelDB met damage in its own files, typically a
      // compaction reading a data block that cannot be read. That error is sticky too, and every
      // compaction of that table would set it again: reopening alone would only flap. So repair
      // while the database is closed: LevelDB rewrites the damaged table without the blocks it
      // cannot read (reads already quarantined and reported them), and evaq's counters are
      // rebuilt from what survived, IDs kept above every ID issued.
      const repair = hasCode(this.degradedBy, 'LEVEL_CORRUPTION')
      this.recovering = this.store.reopen(repair ? async () => { repaired = await repairInPlace(this.location, this.store.claim) } : undefined)
      await this.recovering
    } catch (err) {
      this.reportError(err)
      if (this.store.db.status === 'closed') await this.store.db.open().catch(() => {})
      retry()
      return
    } finally {
      this.recovering = undefined
    }
    if (this._status !== 'degraded') return
    this.reopened(repaired)
    this._status = 'open'
    this.degradedBy = undefined
    // A move that failed with the write may have left its intent: settle it now.
    this.moves.recover(this.retryLogs).catch(err => this.reportError(err))
    this.emit('recovered')
  }

  /** After a reopen: caches forgotten, and what a repair or LevelDB's recovery took out reported. */
  private reopened (repaired: RepairFixes | undefined): void {
    for (const log of this.logs) log.forgetCaches()
    if (repaired !== undefined) {
      this.reportRepair(repaired)
      this.reportError(new EvaqError('EVAQ_CORRUPTION', `LevelDB met damaged data in ${this.location}; evaq repaired it while reopening (LevelDB keeps the replaced files in lost/): ${JSON.stringify(repaired)}`))
    }
    if (this.store.corruption.length > this.openReport.corruption.length) {
      this.openReport.corruption = this.store.corruption
      this.reportError(new EvaqError('EVAQ_CORRUPTION', `LevelDB dropped damaged data while reopening ${this.location}: ${this.store.corruption.at(-1) ?? ''}`))
    }
  }

  /**
   * A compaction met a block of LevelDB's own files it cannot read, and LevelDB now refuses every
   * write until it is reopened (every later compaction of that table would fail again). Repair it
   * at once, while the queue stays open: the database closes (after
   * the writes LevelDB is already doing), LevelDB rewrites the damaged table without the blocks it
   * cannot read, evaq recounts what survived and names every range it lost in a `dropped` event,
   * and the database opens again. Meanwhile pushes keep filling the write buffer, and writes and
   * reads wait; a write LevelDB refused is built and written again afterwards. Only when the
   * repair itself fails does the queue degrade (and recover() tries again with backoff).
   * Returns what writes wait for, or undefined when the queue is not open.
   */
  private repairDamage (err: EvaqError): Promise<void> | undefined {
    if (this.recovering !== undefined) return this.recovering
    if (this._status !== 'open') return undefined
    const repair = (async () => {
      let repaired: RepairFixes | undefined
      try {
        await this.store.reopen(async () => { repaired = await repairInPlace(this.location, this.store.claim) })
      } catch (cause) {
        this.reportError(cause)
        if (this.store.db.status === 'closed') await this.store.db.open().catch(() => {})
        this.store.failed ??= err
        this.degrade(err)
        return
      }
      this.reopened(repaired)
    })()
    this.recovering = repair.finally(() => { if (this.recovering === guarded) this.recovering = undefined })
    const guarded = this.recovering
    return guarded
  }

  /** fsync LevelDB's log now, if anything was written without sync since the last time. */
  private async syncNow (): Promise<void> {
    if (this.syncing !== undefined) return this.syncing
    if (!this.dirty) return
    if (this.store.failed !== undefined || this.recovering !== undefined) return
    this.dirty = false
    this.syncing = this.store.db.put(SYNC_KEY, SYNC_KEY, { sync: true })
      .catch((err: unknown) => {
        this.dirty = true
        const error = fromLevel(err, 'Periodic fsync failed')
        // Refused for damage met by a compaction, before anything was written: repair it.
        if (hasCode(err, 'LEVEL_CORRUPTION') && this.repairDamage(error) !== undefined) throw error
        this.store.failed ??= error
        this.degrade(error)
        throw error
      })
      .finally(() => { this.syncing = undefined })
    return this.syncing
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
      await this.parkedLane.catch(() => {})
      this.finishingWork = false
      for (const timer of this.timers) clearInterval(timer)
      if (this.recoveryTimer !== undefined) clearTimeout(this.recoveryTimer)
      await this.recovering?.catch(() => {})
      const closed = new EvaqError('EVAQ_CLOSED', `The queue at ${this.location} is closing`)
      this.budget.rejectAll(closed)
      for (const cap of this.caps.values()) cap.rejectAll(closed)
      for (const log of this.logs) log.wakeSubscribers()
      await this.maintainNext?.catch(() => {})
      await this.maintaining?.catch(() => {})
      await Promise.all(this.logs.map(log => log.drain()))
      try {
        if (this.syncing !== undefined) await this.syncing.catch(() => {})
        if (this.dirty && this.options.durability !== 'none') await this.syncNow()
      } finally {
        try {
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
