import { EvaqError, invalid } from '../errors.js'
import { bound, integer, rejectUnknown } from '../validate.js'
import { IdRanges } from './id-ranges.js'
import type { QueueRecord, SubscriberInfo } from './types.js'

export type { SubscriberInfo }

/** Where a new subscriber starts; ignored when a subscriber of that name already exists. */
export type SubscribeStart = 'earliest' | 'latest' | number

export interface SubscribeOptions {
  /** Where a new subscriber starts: the oldest live record, the next record pushed, or an ID. @defaultValue 'earliest' */
  start?: SubscribeStart
  /** How long a delivered record stays leased to this subscriber before it is delivered again, in ms. @defaultValue 30000 */
  leaseMs?: number
  /** Deliveries after which an unacknowledged record goes to the DLQ instead of again to this subscriber. @defaultValue 10 */
  maxDeliveries?: number
}

export interface NextOptions {
  /** Upper bound on the payload bytes delivered; at least one record is delivered when one is ready. @defaultValue 1 MiB */
  maxBytes?: number
  /** Upper bound on the records delivered. @defaultValue 1000 */
  maxCount?: number
  /** How long to wait for a record when none is ready, in ms; `next` resolves `undefined` after it. @defaultValue 0 */
  waitMs?: number
  /** Aborts the wait with `EVAQ_ABORTED`. */
  signal?: AbortSignal
}

/** A delivered record. */
export interface Delivery extends QueueRecord {
  /** 1 on the first delivery to this subscriber, 2 on the first redelivery, and so on. */
  readonly deliveryCount: number
}

export interface Batch {
  readonly records: readonly Delivery[]
  /** Acknowledge every record of the batch. */
  ack (): Promise<void>
  /** Give the records back: they are delivered again after `delayMs` (default 0). */
  nack (options?: { delayMs?: number }): Promise<void>
}

/** What a subscriber persists: enough to resume right after its acknowledgements. */
export interface Progress {
  readonly v: 1
  /** The first ID the subscriber cared about: records below it were never its to acknowledge. */
  readonly start: number
  readonly floor: number
  readonly acked: Array<[number, number]>
  readonly leaseMs: number
  readonly maxDeliveries: number
  readonly createdAt: number
  readonly lastActiveAt: number
}

/** What a subscriber needs from its log. */
export interface SubscriberHost {
  readonly logName: string
  now (): number
  assertOpen (): void
  /** The first ID that may still exist in the log. */
  head (): number
  /** Highest committed ID that readers may see. */
  watermark (): number
  read (from: number, maxBytes: number, maxCount: number): Promise<QueueRecord[]>
  onCommitted (listener: () => void): () => void
  /** Persist the subscriber's progress; resolves once it is as durable as `ackDurability` says. */
  persist (sub: Subscriber): Promise<void>
  /**
   * Move a record that was delivered too often to the dead-letter queue. Resolves false when the
   * log has nowhere to move it (it is then delivered again).
   */
  deadLetter (sub: Subscriber, record: QueueRecord, deliveries: number): Promise<boolean>
  /** Mean payload bytes per live record, for lag estimates. */
  meanRecordBytes (): number
}

interface Outstanding {
  readonly record: QueueRecord
  deliveries: number
  /** When the record may be delivered again: lease expiry, or the end of a nack delay. */
  visibleAt: number
}

export const SUBSCRIBER_DEFAULTS = Object.freeze({ leaseMs: 30_000, maxDeliveries: 10 })
const DEFAULT_NEXT_BYTES = 1024 * 1024
const DEFAULT_NEXT_COUNT = 1000
const NAME = /^[A-Za-z0-9_.-]{1,128}$/

export function checkSubscriberName (name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) throw invalid('name', '1 to 128 letters, digits, `_`, `.` or `-`', name)
  return name
}

export function resolveSubscribeOptions (options: unknown): Required<SubscribeOptions> {
  if (options === undefined) return { start: 'earliest', ...SUBSCRIBER_DEFAULTS }
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  const o = options as Record<string, unknown>
  const { start = 'earliest', leaseMs = SUBSCRIBER_DEFAULTS.leaseMs, maxDeliveries = SUBSCRIBER_DEFAULTS.maxDeliveries, ...rest } = o
  rejectUnknown(rest, ['start', 'leaseMs', 'maxDeliveries'], ' of subscribe()')
  if (start !== 'earliest' && start !== 'latest' && (typeof start !== 'number' || !Number.isSafeInteger(start) || start < 0)) {
    throw invalid('start', "'earliest', 'latest' or an ID", start)
  }
  return {
    start,
    leaseMs: integer('leaseMs', leaseMs, 1, 7 * 24 * 3_600_000),
    maxDeliveries: integer('maxDeliveries', maxDeliveries, 1),
  }
}

/**
 * A named, persistent consumer of one log. Delivery is at-least-once: a record is delivered
 * again when its lease expires or it is nacked, until it is acknowledged. Progress is a floor
 * (every ID below it acknowledged) plus the acknowledged ranges above it, so acknowledgements may
 * arrive in any order and a restart resumes right after them.
 */
export class Subscriber {
  readonly name: string
  /** The first ID this subscriber cared about (see Progress.start). */
  readonly start: number
  leaseMs: number
  maxDeliveries: number
  readonly createdAt: number
  private cursor: number
  /** Acknowledged IDs at or above the floor (after a restart: acknowledged before it). */
  private readonly acked: IdRanges
  private readonly outstanding = new Map<number, Outstanding>()
  private earliestVisible = Infinity
  private _lastActiveAt: number
  private persistedActiveAt: number
  /** The floor last handed to be written (see progress()). */
  private persistedFloor: number
  private closed = false
  private readonly wakers = new Set<() => void>()
  /** collect() moves the cursor after an await: concurrent next() calls take turns. */
  private turn: Promise<unknown> = Promise.resolve()

  constructor (private readonly host: SubscriberHost, name: string, progress: Progress) {
    this.name = name
    this.start = progress.start
    this.leaseMs = progress.leaseMs
    this.maxDeliveries = progress.maxDeliveries
    this.createdAt = progress.createdAt
    this.cursor = progress.floor
    this.acked = IdRanges.from(progress.acked)
    this._lastActiveAt = progress.lastActiveAt
    this.persistedActiveAt = progress.lastActiveAt
    this.persistedFloor = progress.floor
  }

  /** Every ID below this is acknowledged. */
  get floor (): number {
    // Map order is delivery order: the first key is the lowest ID outstanding.
    const first = this.outstanding.keys().next()
    return first.done === true ? this.cursor : first.value
  }

  get lastActiveAt (): number {
    return this._lastActiveAt
  }

  /** Whether the persisted lastActiveAt is stale by more than `ms`. */
  activityUnpersistedFor (ms: number): boolean {
    return this._lastActiveAt - this.persistedActiveAt >= ms
  }

  progress (): Progress {
    const floor = this.floor
    this.acked.pruneBelow(floor)
    this.persistedActiveAt = this._lastActiveAt
    this.persistedFloor = floor
    return this.progressWith(floor, this.acked)
  }

  /**
   * The next batch of records: due redeliveries first, then new records in ID order. Waits up to
   * `waitMs` for one; resolves `undefined` when none came.
   */
  async next (options: NextOptions = {}): Promise<Batch | undefined> {
    this.host.assertOpen()
    this.assertSubscribed()
    const { maxBytes, maxCount, waitMs, signal } = checkNextOptions(options)
    if (signal?.aborted === true) throw aborted(signal)
    // waitMs is real time; leases and nack delays follow the injected clock.
    const deadline = performance.now() + waitMs
    for (;;) {
      const records = await this.exclusive(() => this.collect(maxBytes, maxCount))
      if (records.length > 0) return this.batch(records)
      const left = deadline - performance.now()
      if (left <= 0) return undefined
      // The queue may have started closing while this call read: do not sleep through it.
      this.host.assertOpen()
      this.assertSubscribed()
      await this.wait(Math.min(left, this.earliestVisible - this.host.now()), signal)
      this.host.assertOpen()
      this.assertSubscribed()
    }
  }

  /** Batches as they come, waiting `waitMs` at a time (default 1 s) until `signal` aborts. */
  async * batches (options: NextOptions = {}): AsyncGenerator<Batch, void, undefined> {
    const opts = { waitMs: 1000, ...options }
    for (;;) {
      let batch: Batch | undefined
      try {
        batch = await this.next(opts)
      } catch (err) {
        if (err instanceof EvaqError && err.code === 'EVAQ_ABORTED') return
        throw err
      }
      if (batch !== undefined) yield batch
    }
  }

  private exclusive<T> (task: () => Promise<T>): Promise<T> {
    const run = this.turn.then(task)
    this.turn = run.catch(() => {})
    return run
  }

  private async collect (maxBytes: number, maxCount: number): Promise<Delivery[]> {
    const now = this.host.now()
    this._lastActiveAt = now
    const out: Delivery[] = []
    let bytes = 0
    if (now >= this.earliestVisible) {
      let earliest = Infinity
      let movedAway = false
      for (const [id, o] of this.outstanding) {
        if (o.visibleAt > now) { earliest = Math.min(earliest, o.visibleAt); continue }
        if (id < this.host.head()) {
          // Dropped by retention or drop-oldest while leased: nothing left to deliver.
          this.markAcked([id])
          continue
        }
        if (out.length >= maxCount || (out.length > 0 && bytes + o.record.payload.byteLength > maxBytes)) { earliest = now; break }
        if (o.deliveries >= this.maxDeliveries && await this.host.deadLetter(this, o.record, o.deliveries)) {
          this.markAcked([id])
          movedAway = true
          continue
        }
        o.deliveries++
        o.visibleAt = now + this.leaseMs
        earliest = Math.min(earliest, o.visibleAt)
        out.push({ ...o.record, deliveryCount: o.deliveries })
        bytes += o.record.payload.byteLength
      }
      this.earliestVisible = earliest
      // The record is in the DLQ now: acknowledge it like any other, durably.
      if (movedAway) await this.host.persist(this)
    }
    while (out.length < maxCount && (out.length === 0 || bytes < maxBytes)) {
      const from = Math.max(this.cursor, this.host.head())
      // The watermark as the read starts: it moves on while the read runs, and an empty read
      // only proves that nothing lies between `from` and the watermark the read saw.
      const watermark = this.host.watermark()
      if (from > watermark) break
      const fresh = await this.host.read(from, out.length === 0 ? maxBytes : maxBytes - bytes, maxCount - out.length)
      if (fresh.length === 0) { this.cursor = Math.max(this.cursor, watermark + 1); break }
      let taken = 0
      for (const r of fresh) {
        if (out.length > 0 && bytes + r.payload.byteLength > maxBytes) break
        taken++
        if (this.acked.has(r.id)) continue // acknowledged before a restart
        this.outstanding.set(r.id, { record: r, deliveries: 1, visibleAt: now + this.leaseMs })
        this.earliestVisible = Math.min(this.earliestVisible, now + this.leaseMs)
        out.push({ ...r, deliveryCount: 1 })
        bytes += r.payload.byteLength
      }
      if (taken === 0) break
      this.cursor = fresh[taken - 1]!.id + 1
      if (taken < fresh.length) break
    }
    // Nothing delivered, yet the floor moved: the read passed over IDs that hold no record
    // (removed, dropped). No ack will write that floor, so write it here: else the queue's
    // stats, a backup and a restart would each see another floor for the same state.
    if (out.length === 0 && this.floor > this.persistedFloor) {
      try {
        await this.host.persist(this)
      } catch {
        // A queue that cannot write keeps the floor in memory: nothing lies below it to deliver.
      }
    }
    return out
  }

  private batch (records: Delivery[]): Batch {
    const ids = records.map(r => r.id)
    return {
      records,
      ack: () => this.ack(ids),
      nack: (options) => this.nack(ids, options),
    }
  }

  /**
   * Acknowledge records delivered to this subscriber, in any order. Acknowledging one twice is
   * fine; one never delivered is EVAQ_NOT_FOUND and nothing is acknowledged. Resolves once the
   * progress is as durable as `ackDurability` says.
   */
  async ack (ids: number | readonly number[]): Promise<void> {
    this.host.assertOpen()
    this.assertSubscribed()
    const list = toIdList(ids)
    const floor = this.floor
    const unknown = list.filter(id => !this.outstanding.has(id) && id >= floor && !this.acked.has(id))
    if (unknown.length > 0) {
      const which = unknown.slice(0, 10).join(', ')
      throw new EvaqError('EVAQ_NOT_FOUND', `Subscriber ${this.name} was not delivered ${which}; nothing was acknowledged`, { ids: unknown })
    }
    this._lastActiveAt = this.host.now()
    this.markAcked(list)
    await this.host.persist(this)
  }

  private progressWith (floor: number, acked: IdRanges): Progress {
    return {
      v: 1,
      start: this.start,
      floor,
      acked: acked.toJSON(),
      leaseMs: this.leaseMs,
      maxDeliveries: this.maxDeliveries,
      createdAt: this.createdAt,
      lastActiveAt: this._lastActiveAt,
    }
  }

  /**
   * The progress as it will be once leased record `id` is acknowledged, without acknowledging it:
   * written in the batch that moves the record to the dead-letter queue (see ackMoved).
   */
  progressAcking (id: number): Progress {
    let floor = this.cursor
    for (const k of this.outstanding.keys()) {
      if (k !== id) { floor = k; break }
    }
    const acked = IdRanges.from(this.acked.toJSON())
    if (this.outstanding.has(id)) acked.add(id)
    acked.pruneBelow(floor)
    return this.progressWith(floor, acked)
  }

  /** The acknowledgement of `id` that progressAcking wrote is durable: take it in memory. */
  ackMoved (id: number): void {
    this.markAcked([id])
  }

  /** Records removed from the log: leases on them end as if acknowledged (nothing to redeliver). */
  forget (ids: readonly number[]): boolean {
    const leased = ids.filter(id => this.outstanding.has(id))
    if (leased.length > 0) this.markAcked(leased)
    return leased.length > 0
  }

  private markAcked (ids: readonly number[]): void {
    for (const id of ids) {
      if (this.outstanding.delete(id)) this.acked.add(id)
    }
    this.acked.pruneBelow(this.floor)
  }

  /** Give delivered records back; they become deliverable again after `delayMs`. */
  async nack (ids: number | readonly number[], options: { delayMs?: number } = {}): Promise<void> {
    this.host.assertOpen()
    this.assertSubscribed()
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    rejectUnknown(options, ['delayMs'], ' of nack()')
    const delayMs = integer('delayMs', options.delayMs ?? 0, 0, 7 * 24 * 3_600_000)
    const list = toIdList(ids)
    const unknown = list.filter(id => !this.outstanding.has(id))
    if (unknown.length > 0) {
      const which = unknown.slice(0, 10).join(', ')
      throw new EvaqError('EVAQ_NOT_FOUND', `Subscriber ${this.name} holds no lease on ${which}; nothing was nacked`, { ids: unknown })
    }
    const at = this.host.now() + delayMs
    for (const id of list) this.outstanding.get(id)!.visibleAt = at
    this.earliestVisible = Math.min(this.earliestVisible, at)
    this.wake()
  }

  /**
   * @param liveRecords - the log's live records: lag never exceeds them (IDs of removed records
   *   and IDs never used lie between the floor and the watermark too, and are not lag).
   */
  info (meanRecordBytes: number, oldestPushedAt: number | undefined, liveRecords: number): SubscriberInfo {
    const floor = this.floor
    const span = this.host.watermark() + 1 - Math.max(floor, this.host.head()) - this.acked.size
    const lagRecords = Math.max(0, Math.min(span, liveRecords))
    return {
      name: this.name,
      ackFloor: floor,
      cursor: this.cursor,
      inFlight: this.outstanding.size,
      lagRecords,
      lagBytes: Math.round(lagRecords * meanRecordBytes),
      oldestUnackedAgeMs: oldestPushedAt === undefined || lagRecords === 0 ? 0 : Math.max(0, this.host.now() - oldestPushedAt),
      leaseMs: this.leaseMs,
      maxDeliveries: this.maxDeliveries,
      lastActiveAt: this._lastActiveAt,
    }
  }

  private wait (ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        stop()
        signal?.removeEventListener('abort', onAbort)
        this.wakers.delete(wake)
      }
      const stop = this.host.onCommitted(() => {
        if (this.host.watermark() >= Math.max(this.cursor, this.host.head())) { done(); resolve() }
      })
      const onAbort = (): void => { done(); reject(aborted(signal!)) }
      const wake = (): void => { done(); resolve() }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.wakers.add(wake)
      if (Number.isFinite(ms)) timer = setTimeout(() => { done(); resolve() }, Math.max(0, ms))
    })
  }

  private wake (): void {
    for (const w of [...this.wakers]) w()
  }

  /** Wake every waiting `next()` so that it looks again (used when the queue closes). */
  wakeAll (): void {
    this.wake()
  }

  /** Pending waits, for tests of the wake-up bookkeeping. */
  get waiting (): number {
    return this.wakers.size
  }

  /** Start the inactivity clock again (after an open: downtime is not inactivity). */
  touch (now: number): void {
    this._lastActiveAt = Math.max(this._lastActiveAt, now)
  }

  /** Detach: waiting calls wake up and see the subscriber gone. */
  detach (): void {
    this.closed = true
    this.wake()
  }

  private assertSubscribed (): void {
    if (this.closed) throw new EvaqError('EVAQ_NOT_FOUND', `Subscriber ${this.name} of ${this.host.logName} was unsubscribed or expired`)
  }
}

function toIdList (ids: unknown): number[] {
  const list = typeof ids === 'number' ? [ids] : Array.isArray(ids) ? ids : undefined
  if (list === undefined) throw invalid('ids', 'an ID or an array of IDs', ids)
  return list.map((id, i) => {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) throw invalid(`ids[${i}]`, 'an integer ID from 1 to 2^53-1', id)
    return id
  })
}

function checkNextOptions (options: unknown): { maxBytes: number, maxCount: number, waitMs: number, signal: AbortSignal | undefined } {
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  const { maxBytes = DEFAULT_NEXT_BYTES, maxCount = DEFAULT_NEXT_COUNT, waitMs = 0, signal, ...rest } = options as Record<string, unknown>
  rejectUnknown(rest, ['maxBytes', 'maxCount', 'waitMs', 'signal'], ' of next()')
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal', 'an AbortSignal', signal)
  return { maxBytes: bound('maxBytes', maxBytes, 0), maxCount: bound('maxCount', maxCount, 1), waitMs: integer('waitMs', waitMs, 0, 2_147_483_647), signal }
}

function aborted (signal: AbortSignal): EvaqError {
  return new EvaqError('EVAQ_ABORTED', 'The wait for records was aborted', { cause: signal.reason })
}
