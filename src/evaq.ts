import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import { EvaqError, fromLevel, invalid } from './errors.js'
import { encodeError, Log, type PushOptions, type QueueRecord, type Segment } from './log/log.js'
import { resolveOptions, type EvaqOptions, type ResolvedOptions } from './options.js'
import { openStore, type Store } from './store/store.js'

export type EvaqStatus = 'opening' | 'open' | 'closing' | 'closed'

export interface RetryItemOptions extends PushOptions {
  /** Why the record failed: an Error (its `code` and `message` are kept), a string, or `{ code?, message }`. */
  error?: unknown
}

const SYNC_KEY = Buffer.from('sync')

/**
 * The evacuation queue: a write-ahead log (`wal`) of messages on their way to a downstream and a
 * dead-letter queue (`dlq`) of those that failed, in one LevelDB database per directory.
 */
export class Evaq extends EventEmitter {
  /** Messages persisted before they are handed to a downstream. */
  readonly wal: Log
  /** Messages whose delivery failed, waiting to be retried. */
  readonly dlq: Log
  readonly location: string
  readonly options: ResolvedOptions
  private _status: EvaqStatus = 'opening'
  private readonly store: Store
  private syncTimer: NodeJS.Timeout | undefined
  private dirty = false
  private syncing: Promise<void> | undefined
  private closing: Promise<void> | undefined

  private constructor (location: string, store: Store, options: ResolvedOptions) {
    super()
    this.location = location
    this.store = store
    this.options = options
    const segments = new LRUCache<string, Segment>({
      maxSize: Math.max(1, options.segmentCacheBytes),
      sizeCalculation: s => Math.max(1, s.value.byteLength),
    })
    const context = (extras: boolean) => ({
      store,
      options,
      segments,
      extras,
      assertOpen: () => this.assertOpen(),
      markDirty: () => { this.dirty = true },
    })
    this.wal = new Log('wal', context(false))
    this.dlq = new Log('dlq', context(true))
    const durability = options.durability
    if (typeof durability === 'object') {
      this.syncTimer = setInterval(() => { void this.syncNow().catch(err => this.emit('error', err)) }, durability.intervalMs)
      this.syncTimer.unref()
    }
  }

  /** Open (creating if needed) the queue stored in directory `dir`. */
  static async open (dir: string, options?: EvaqOptions): Promise<Evaq> {
    if (typeof dir !== 'string' || dir.length === 0) throw invalid('dir', 'a non-empty directory path', dir)
    const resolved = resolveOptions(options)
    const store = await openStore(dir, resolved)
    const evaq = new Evaq(dir, store, resolved)
    evaq._status = 'open'
    return evaq
  }

  /** `'opening' | 'open' | 'closing' | 'closed'` */
  get status (): EvaqStatus {
    return this._status
  }

  /** Persist `payload` in the WAL; resolves with its ID once it is durable (per `durability`). */
  pushWal (payload: Buffer | Uint8Array | string, options?: PushOptions): Promise<number> {
    return this.wal.push(payload, options)
  }

  /** Persist many payloads in one write; their IDs are contiguous, in call order. */
  pushWalMany (payloads: ReadonlyArray<Buffer | Uint8Array | string>, options?: PushOptions): Promise<number[]> {
    return this.wal.pushMany(payloads, options)
  }

  /** Remove one or many records from the WAL, atomically (EVAQ_NOT_FOUND removes nothing). */
  async removeWal (ids: number | readonly number[]): Promise<void> {
    await this.wal.remove(ids)
  }

  /** Park a failed message in the DLQ, with the error that sent it there. */
  async pushRetryItem (payload: Buffer | Uint8Array | string, options: RetryItemOptions = {}): Promise<number> {
    this.assertOpen()
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    const { error, ...rest } = options
    return this.dlq.push(payload, rest, encodeError(error))
  }

  /**
   * Remove retried records from the DLQ, atomically. Resolves with the highest ID removed, or
   * `undefined` for an empty list.
   */
  doneRetryItems (ids: readonly number[]): Promise<number | undefined> {
    if (!Array.isArray(ids)) return Promise.reject(invalid('ids', 'an array of IDs', ids))
    return this.dlq.remove(ids)
  }

  /**
   * DLQ records with `id >= offset` in ID order, whole records, at most `maxBytes` of payload in all,
   * but always at least one record when one exists.
   */
  firstNBytesFromDeadLetterQueue (offset: number, maxBytes: number): Promise<QueueRecord[]> {
    return this.dlq.read({ from: offset, maxBytes, maxCount: Infinity })
  }

  assertOpen (): void {
    if (this._status !== 'open') throw new EvaqError('EVAQ_CLOSED', `The queue at ${this.location} is ${this._status}`)
  }

  /** fsync LevelDB's log now, if anything was written without sync since the last time. */
  private async syncNow (): Promise<void> {
    if (this.syncing !== undefined) return this.syncing
    if (!this.dirty) return
    this.dirty = false
    this.syncing = this.store.db.put(SYNC_KEY, SYNC_KEY, { sync: true })
      .catch((err: unknown) => { this.dirty = true; throw fromLevel(err, 'Periodic fsync failed') })
      .finally(() => { this.syncing = undefined })
    return this.syncing
  }

  /** Wait for pending writes, then close. Every method rejects with EVAQ_CLOSED afterwards. */
  close (): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.closing = (async () => {
      this._status = 'closing'
      this.emit('closing')
      if (this.syncTimer !== undefined) clearInterval(this.syncTimer)
      await Promise.all([this.wal.drain(), this.dlq.drain()])
      try {
        if (this.syncing !== undefined) await this.syncing.catch(() => {})
        if (this.dirty && this.options.durability !== 'none') await this.syncNow()
      } finally {
        await this.store.db.close().catch(err => { throw fromLevel(err, 'Closing the database failed') })
        this._status = 'closed'
        this.emit('closed')
      }
    })()
    return this.closing
  }
}
