import { EvaqError } from '../errors.js'
import { crashPoint } from '../crash-points.js'
import { CommitLater } from '../write/group-commit.js'
import type { Cleanup } from './cleanup.js'
import type { DeadLetterSource } from './context.js'
import type { Reader } from './reader.js'
import type { SegmentTable } from './segment-table.js'
import {
  resolveSubscribeOptions, checkSubscriberName, Subscriber, type Progress, type SubscribeOptions,
  type SubscriberHost, type SubscriberInfo,
} from './subscriber.js'
import type { Carrier } from './types.js'

/**
 * The subscribers of one log: the host they read through, their progress (loaded at open,
 * written through one progress lane, merged into group writes), and their expiry.
 */
export class Subscriptions {
  readonly subs = new Map<string, Subscriber>()
  private readonly dirtyProgress = new Map<string, Subscriber | null>()
  private progressWrite: Promise<void> | undefined
  private progressNext: Promise<void> | undefined
  private pendingExpired = 0
  private readonly host: SubscriberHost

  constructor (
    private readonly t: SegmentTable,
    private readonly reader: Reader,
    private readonly cleanup: Cleanup,
    /** The log records are dead-lettered from (see LogContext.deadLetter). */
    private readonly source: DeadLetterSource
  ) {
    this.host = this.makeHost()
  }

  /** Load the subscribers' progress: one small entry per subscriber, never the records. Returns the keys read. */
  async load (): Promise<number> {
    let read = 0
    for await (const [key, value] of this.t.subsLevel.iterator()) {
      read++
      const name = key.toString('utf8')
      let progress: Progress
      try {
        progress = JSON.parse(value.toString('utf8')) as Progress
      } catch (cause) {
        throw new EvaqError('EVAQ_CORRUPTION', `The progress of subscriber ${name} of ${this.t.name} cannot be decoded`, { cause })
      }
      const sub = new Subscriber(this.host, name, { ...progress, start: progress.start ?? progress.floor })
      // The inactivity clock starts at open: time the queue was closed is not inactivity.
      sub.touch(this.t.ctx.options.clock.now())
      this.subs.set(name, sub)
    }
    return read
  }

  private makeHost (): SubscriberHost {
    return {
      logName: this.t.name,
      now: () => this.t.ctx.options.clock.now(),
      assertOpen: () => this.t.ctx.assertOpen(),
      head: () => this.t.counters.floor,
      watermark: () => this.t.watermark,
      read: (from, maxBytes, maxCount) => this.reader.readSafely(from, maxBytes, maxCount),
      onCommitted: listener => this.t.onCommitted(listener),
      persist: sub => { this.t.ctx.assertWritable(); return this.persistProgress(sub) },
      deadLetter: async (sub, record, deliveries) => {
        if (this.t.ctx.deadLetter === undefined) return false
        await this.t.ctx.deadLetter(this.source, sub, record, deliveries)
        return true
      },
      meanRecordBytes: () => this.t.counters.count === 0 ? 0 : this.t.counters.bytes / this.t.counters.count,
    }
  }

  /**
   * A named, persistent subscriber: subscribing again with the same name resumes where it left
   * off (its `start` is then ignored, its lease and delivery limits updated).
   */
  async subscribe (name: string, options?: SubscribeOptions): Promise<Subscriber> {
    this.t.ctx.assertWritable()
    checkSubscriberName(name)
    const o = resolveSubscribeOptions(options)
    const existing = this.subs.get(name)
    const now = this.t.ctx.options.clock.now()
    if (existing !== undefined) {
      existing.touch(now)
      if (existing.leaseMs !== o.leaseMs || existing.maxDeliveries !== o.maxDeliveries) {
        // New limits apply from now on, to this same handle and its records in flight.
        existing.leaseMs = o.leaseMs
        existing.maxDeliveries = o.maxDeliveries
        await this.persistProgress(existing, true)
      }
      return existing
    }
    const floor = o.start === 'earliest' ? this.t.counters.floor : o.start === 'latest' ? this.t.writer.next : Math.max(o.start, 1)
    const progress = { v: 1 as const, start: floor, floor, acked: [], leaseMs: o.leaseMs, maxDeliveries: o.maxDeliveries, createdAt: now, lastActiveAt: now }
    const sub = new Subscriber(this.host, name, progress)
    this.subs.set(name, sub)
    await this.persistProgress(sub, true)
    return sub
  }

  /** Forget a subscriber and its progress; what only it held back can be cleaned up. */
  async unsubscribe (name: string): Promise<boolean> {
    this.t.ctx.assertWritable()
    checkSubscriberName(name)
    const sub = this.subs.get(name)
    if (sub === undefined) return false
    await this.dropSubscriber(sub, false)
    return true
  }

  private async dropSubscriber (sub: Subscriber, expired: boolean): Promise<void> {
    this.subs.delete(sub.name)
    this.dirtyProgress.set(sub.name, null)
    if (expired) this.pendingExpired++
    sub.detach()
    await this.flushProgress(true)
    this.cleanup.scheduleCleanup()
  }

  /** Drop subscribers inactive for `ttlMs`, counted and reported; persist others' activity. */
  async expireSubscribers (ttlMs: number): Promise<void> {
    const now = this.t.ctx.options.clock.now()
    for (const sub of [...this.subs.values()]) {
      if (now - sub.lastActiveAt >= ttlMs) {
        await this.dropSubscriber(sub, true)
        this.t.ctx.dropped({ log: this.t.name, reason: 'subscriber-ttl', records: 0, bytes: 0, subscriber: sub.name })
      } else if (sub.activityUnpersistedFor(ttlMs / 4)) {
        this.dirtyProgress.set(sub.name, sub)
      }
    }
    if (this.dirtyProgress.size > 0) await this.flushProgress(true)
  }

  subscribers (): SubscriberInfo[] {
    const mean = this.host.meanRecordBytes()
    return [...this.subs.values()].map(s => s.info(mean, undefined, this.t.counters.count))
  }

  /** Persist a subscriber's progress: merged with others' into one write (group commit). */
  private persistProgress (sub: Subscriber, force = false): Promise<void> {
    this.dirtyProgress.set(sub.name, sub)
    const sync = force || this.t.ackSync
    const written = this.flushProgress(sync)
    this.cleanup.scheduleCleanup()
    return sync ? written : Promise.resolve()
  }

  private flushProgress (sync: boolean): Promise<void> {
    // Interval ack durability: the owner's periodic timer writes it.
    if (!sync) return Promise.resolve()
    if (this.progressWrite === undefined) {
      this.progressWrite = this.writeDirtyProgress().finally(() => { this.progressWrite = undefined })
      return this.progressWrite
    }
    // A write is in flight: everything dirty now goes into the next one.
    this.progressNext ??= this.progressWrite.catch(() => {}).then(() => {
      this.progressNext = undefined
      return this.flushProgress(true)
    })
    return this.progressNext
  }

  /**
   * Write every dirty subscriber's progress (interval ack durability calls this on a timer).
   * Through the one progress lane: LevelDB may apply two batches written at once in either order
   * (classic-level writes on a thread pool), and an older progress applied last would bring back
   * acknowledged records, or an unsubscribed subscriber, after a restart.
   */
  writeProgress (): Promise<void> {
    return this.flushProgress(true)
  }

  private async writeDirtyProgress (): Promise<void> {
    for (;;) {
      await this.t.untilReopened()
      const reopens = this.t.ctx.store.reopens
      try {
        await this.writeDirtyProgressOnce()
        return
      } catch (err) {
        if (!(this.t.later(err, reopens) instanceof CommitLater)) throw err
      }
    }
  }

  private async writeDirtyProgressOnce (): Promise<void> {
    if (this.dirtyProgress.size === 0 && this.pendingExpired === 0) return
    const dirty = [...this.dirtyProgress]
    const expired = this.pendingExpired
    this.dirtyProgress.clear()
    this.pendingExpired = 0
    const batch = this.t.ctx.store.db.batch()
    for (const [name, sub] of dirty) {
      const key = Buffer.from(name, 'utf8')
      if (sub === null) batch.del(key, { sublevel: this.t.subsLevel })
      else batch.put(key, Buffer.from(JSON.stringify(sub.progress())), { sublevel: this.t.subsLevel })
    }
    try {
      crashPoint('progress-write:before')
      const delta = { [this.t.name]: expired > 0 ? { expiredSubscribers: expired } : {} }
      await this.t.write(batch, delta, this.t.ackSync, `Persisting the progress of ${dirty.length} subscriber(s) of ${this.t.name} failed`)
      crashPoint('progress-write:after')
    } catch (err) {
      for (const [name, sub] of dirty) if (!this.dirtyProgress.has(name)) this.dirtyProgress.set(name, sub)
      this.pendingExpired += expired
      throw err
    }
  }

  /**
   * Acknowledge leased record `id` for `sub` in the batch `carrier` of another log (the push that
   * moves the record to the dead-letter queue), and write it: through the progress lane, so that
   * no older progress of `sub` is applied after it. Both commit together, or neither.
   */
  async ackCarried (sub: Subscriber, id: number, carrier: Carrier): Promise<void> {
    for (let busy = this.progressNext ?? this.progressWrite; busy !== undefined; busy = this.progressNext ?? this.progressWrite) {
      await busy.catch(() => {})
    }
    const run = (async () => {
      const { batch } = carrier
      batch.put(Buffer.from(sub.name, 'utf8'), Buffer.from(JSON.stringify(sub.progressAcking(id))), { sublevel: this.t.subsLevel })
      crashPoint('move:before')
      await this.t.write(batch, carrier.delta, this.t.sync, `Moving record ${id} of ${this.t.name} to the dead-letter queue failed; it may or may not be moved`)
      crashPoint('move:after')
      sub.ackMoved(id)
    })()
    const written: Promise<void> = run.finally(() => { if (this.progressWrite === written) this.progressWrite = undefined })
    written.catch(() => {})
    this.progressWrite = written
    await run
  }

  /** Whether progress is waiting for the interval timer. */
  get progressDirty (): boolean {
    return this.dirtyProgress.size > 0
  }

  /** Records were removed: leases on them end, persisted with the next progress write (or at close). */
  removed (requests: ReadonlyArray<readonly number[]>): void {
    for (const sub of this.subs.values()) {
      for (const ids of requests) if (sub.forget(ids)) this.dirtyProgress.set(sub.name, sub)
    }
  }

  /** For drain(): write what is dirty and wait for every progress write under way. */
  async settle (): Promise<void> {
    if (this.dirtyProgress.size > 0) await this.writeProgress().catch(err => this.t.ctx.error(err))
    while (this.progressWrite !== undefined || this.progressNext !== undefined) await (this.progressNext ?? this.progressWrite)?.catch(() => {})
  }

  /** Used by close(): waiting `next()` calls wake up (and see the queue closing). */
  wakeAll (): void {
    for (const sub of this.subs.values()) sub.wakeAll()
  }
}
