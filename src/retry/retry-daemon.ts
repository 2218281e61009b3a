import { EventEmitter } from 'node:events'
import PQueue from 'p-queue'
import { crashPoint } from '../crash-points.js'
import { EvaqError, fromLevel, invalid } from '../errors.js'
import { rejectUnknown } from '../validate.js'
import { backoffDelay } from './backoff.js'
import type { DeadLetterLog, DeadLetterRecord } from '../dlq/dead-letter-log.js'
import type { Moves } from '../dlq/moves.js'
import type { ParkedLog } from '../dlq/parked-log.js'
import type { ResolvedRetryOptions } from './retry-options.js'
import { scheduleTime, type AttemptError, type ParkedState, type ParkReason, type RetryState } from '../dlq/retry-state.js'

/** What the handler gets besides the record. */
export interface RetryContext {
  /** This attempt's number, counting every attempt made so far (1 for the first). */
  readonly attempt: number
  /** Aborted when `stop()` runs out of time for the handlers in flight. */
  readonly signal: AbortSignal
}

/**
 * Deliver one DLQ record. Resolving means the downstream has it (the record is removed);
 * throwing means this attempt failed (the record is rescheduled or parked).
 */
export type RetryHandler = (record: DeadLetterRecord, context: RetryContext) => unknown

/** An attempt starts: its count is already durable. */
export interface RetriedEvent {
  readonly id: number
  readonly attempt: number
}

/** The handler succeeded and the record was removed. */
export interface SucceededEvent {
  readonly id: number
  readonly attempt: number
}

/** The handler failed; the record waits for its next attempt. */
export interface RescheduledEvent {
  readonly id: number
  readonly attempt: number
  /** When the next attempt is due, ms since the epoch. */
  readonly nextAttemptAt: number
  readonly error: AttemptError
  /** Whether `stop()` aborted the attempt. */
  readonly aborted: boolean
}

/** The record moved to `parked`. */
export interface ParkedEvent {
  /** The record's ID in the DLQ. */
  readonly id: number
  /** Its ID in `parked`. */
  readonly parkedId: number
  readonly attempts: number
  readonly reason: ParkReason
  readonly error: AttemptError | undefined
}

/**
 * Events:
 * - `retried` (RetriedEvent): an attempt starts.
 * - `succeeded` (SucceededEvent), `rescheduled` (RescheduledEvent), `parked` (ParkedEvent): its outcome.
 * - `error` (EvaqError): a read or write of the daemon failed; it goes on at its next look.
 * - `stopped` (): `stop()` finished.
 */
export interface RetryDaemonEvents {
  retried: [RetriedEvent]
  succeeded: [SucceededEvent]
  rescheduled: [RescheduledEvent]
  parked: [ParkedEvent]
  error: [EvaqError]
  stopped: []
}

export interface RetryDaemonStats {
  /** Handler calls started. */
  readonly attempts: number
  readonly succeeded: number
  readonly rescheduled: number
  readonly parked: number
  /** DLQ records read to be handed to the handler: only due ones. */
  readonly recordsRead: number
  /** Entries of the schedule index read (due ones, and stale ones that were cleaned up). */
  readonly scheduleEntriesRead: number
  /** Stale schedule entries (of records dropped by retention or cleanup) deleted. */
  readonly staleEntries: number
  /** Records waiting for a concurrency or rate-limit slot. */
  readonly queued: number
  /** Handlers running now. */
  readonly inFlight: number
}

/** What the queue hands a daemon. */
export interface RetryHost {
  readonly dlq: DeadLetterLog
  readonly parked: ParkedLog
  readonly moves: Moves
  assertOpen (): void
  /** Report an error nobody listens for on the daemon. */
  error (err: EvaqError): void
  /** Run an attempt: its writes must go through while the queue closes (close() stops the daemon first). */
  run<T> (task: () => Promise<T>): Promise<T>
}

interface Queued {
  readonly record: DeadLetterRecord
  /** Resolves when the attempt settled, or when stop() dropped it before it started. */
  readonly done: Promise<void>
  release (): void
}

type Counters = { -readonly [K in keyof RetryDaemonStats]: RetryDaemonStats[K] }

/**
 * Drains the DLQ: finds due records through the schedule index, calls the handler with bounded
 * concurrency and an optional rate limit, removes what succeeded, reschedules what failed with
 * exponential backoff and full jitter, and parks what failed for good.
 *
 * The attempt count is written (with a provisional next attempt time, as if the attempt failed)
 * before the handler is called, so a crash counts the attempt in flight once, and that record
 * comes due again after its backoff. Handler calls are at-least-once: a handler that succeeded
 * just before a crash, before the removal was written, is called again.
 */
export class RetryDaemon extends EventEmitter<RetryDaemonEvents> {
  private readonly queue: PQueue
  private readonly queued = new Map<number, Queued>()
  private readonly running = new Map<number, { readonly controller: AbortController, readonly done: Promise<void> }>()
  private readonly counters: Counters = {
    attempts: 0, succeeded: 0, rescheduled: 0, parked: 0, recordsRead: 0, scheduleEntriesRead: 0, staleEntries: 0, queued: 0, inFlight: 0,
  }

  private started = false
  private stopping: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private wakeQueued = false
  private looping = false
  private loopAgain = false
  private unsubscribe: (() => void) | undefined
  private slotWaiters: Array<() => void> = []
  /** Records a tick or the loop may hold at once: running plus waiting for a slot. */
  private readonly capacity: number

  constructor (private readonly host: RetryHost, private readonly handler: RetryHandler, readonly options: ResolvedRetryOptions) {
    super()
    if (typeof handler !== 'function') throw invalid('handler', 'a function', handler)
    const { concurrency, rateLimit } = options
    this.queue = new PQueue({
      concurrency,
      ...(rateLimit === undefined ? {} : { intervalCap: rateLimit.max, interval: rateLimit.intervalMs }),
    })
    this.capacity = 2 * concurrency
  }

  /** Whether the daemon looks for due records by itself (after `start()`, until `stop()`). */
  get isRunning (): boolean {
    return this.started && this.stopping === undefined
  }

  /** Start looking for due records by itself (done by `evaq.retry` unless `autoStart` is false). */
  start (): void {
    this.host.assertOpen()
    if (this.stopping !== undefined) throw new EvaqError('EVAQ_CLOSED', 'The retry daemon was stopped; start a new one with evaq.retry()')
    if (this.started) return
    this.started = true
    this.unsubscribe = this.host.dlq.onCommitted(() => this.wake())
    this.wake()
  }

  stats (): RetryDaemonStats {
    return { ...this.counters, queued: this.queued.size, inFlight: this.running.size }
  }

  /**
   * Handle every record due now (`nextAttemptAt <= clock.now()`), each at most once, and resolve
   * when all of them were handled (succeeded, rescheduled or parked). Records that fail and come
   * due again at once wait for the next tick. Resolves with the number of records handed to the handler.
   */
  async tick (): Promise<{ handled: number }> {
    this.host.assertOpen()
    const now = this.options.clock.now()
    const seen = new Set<number>()
    const all: Array<Promise<void>> = []
    while (this.stopping === undefined) {
      const started = await this.dispatch(now, seen)
      all.push(...started)
      if (started.length > 0) continue
      if (this.queued.size + this.running.size < this.capacity) break
      await new Promise<void>(resolve => this.slotWaiters.push(resolve))
    }
    await Promise.all(all)
    return { handled: seen.size }
  }

  /** Resolves once no record is queued or being handled. */
  async onIdle (): Promise<void> {
    while (this.queued.size + this.running.size > 0) {
      await Promise.all([...[...this.queued.values()].map(q => q.done), ...[...this.running.values()].map(r => r.done)])
    }
  }

  /**
   * Stop: no new attempts start, records waiting for a slot are left for later (they were not
   * counted), and handlers in flight get `timeoutMs` to finish; then their `signal` aborts and
   * their attempt counts as failed (rescheduled, or parked if it was the last). Resolves when
   * every outcome is written. Calling it again returns the same promise.
   */
  stop (options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping !== undefined) return this.stopping
    if (options === null || typeof options !== 'object') return Promise.reject(invalid('options', 'an object', options))
    try {
      rejectUnknown(options, ['timeoutMs'], ' of stop()')
    } catch (err) {
      return Promise.reject(err)
    }
    const timeoutMs = options.timeoutMs ?? this.options.stopTimeoutMs
    if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
      return Promise.reject(invalid('timeoutMs', 'an integer >= 0', timeoutMs))
    }
    this.stopping = (async () => {
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.unsubscribe?.()
      this.queue.clear()
      for (const q of [...this.queued.values()]) q.release()
      this.releaseSlots()
      const inFlight = Promise.all([...this.running.values()].map(r => r.done))
      if (this.running.size > 0) {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([inFlight, new Promise<void>(resolve => { timer = setTimeout(resolve, timeoutMs) })])
        clearTimeout(timer)
        const reason = (): EvaqError => new EvaqError('EVAQ_ABORTED', `The retry daemon stopped and gave the handler ${timeoutMs} ms`)
        for (const r of this.running.values()) r.controller.abort(reason())
        await inFlight
      }
      this.emit('stopped')
    })()
    return this.stopping
  }

  private wake (): void {
    if (!this.started || this.stopping !== undefined || this.wakeQueued) return
    this.wakeQueued = true
    setImmediate(() => {
      this.wakeQueued = false
      void this.loop()
    })
  }

  /** One look by the background loop; then sleep until the next due time, at most pollIntervalMs. */
  private async loop (): Promise<void> {
    if (this.looping) { this.loopAgain = true; return }
    this.looping = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    let delay = this.options.pollIntervalMs
    try {
      // Degraded (writes fail until evaq recovers) or closing: look again after the poll interval.
      this.host.assertOpen()
    } catch {
      this.looping = false
      if (this.stopping === undefined) this.timer = setTimeout(() => this.wake(), delay)
      return
    }
    try {
      const now = this.options.clock.now()
      await this.dispatch(now)
      const next = await this.host.dlq.firstDueAt()
      // Due now but not dispatched: busy, or no slot. A finishing handler wakes the loop.
      if (next !== undefined && next > now) delay = Math.min(delay, next - now)
    } catch (err) {
      this.report(err)
    } finally {
      this.looping = false
    }
    if (this.stopping !== undefined) return
    if (this.loopAgain) {
      this.loopAgain = false
      this.wake()
      return
    }
    this.timer = setTimeout(() => this.wake(), delay)
  }

  /**
   * Read due entries of the schedule (as many as there are free slots, plus those to skip), check
   * them against the states, read the records, and queue an attempt for each. Entries of `seen`
   * (already handled in this tick) are skipped. Returns the attempts queued.
   */
  private async dispatch (now: number, seen?: Set<number>): Promise<Array<Promise<void>>> {
    const dlq = this.host.dlq
    const started: Array<Promise<void>> = []
    for (;;) {
      const room = this.capacity - this.queued.size - this.running.size
      if (room <= 0 || this.stopping !== undefined) return started
      const skip = dlq.busy.size + (seen?.size ?? 0)
      const entries = await dlq.dueEntries(now, room + skip)
      this.counters.scheduleEntriesRead += entries.length
      const open = entries.filter(e => !dlq.busy.has(e.id) && seen?.has(e.id) !== true)
      const states = await dlq.getStates(open.map(e => e.id), true)
      const stale: Array<{ at: number, id: number }> = []
      const due: Array<{ at: number, id: number, state: RetryState }> = []
      open.forEach((e, i) => {
        const state = states[i]
        if (state === undefined || state.nextAttemptAt !== e.at) stale.push(e)
        else due.push({ ...e, state })
      })
      // Claim synchronously: another dispatch (the loop, a tick) may have claimed some meanwhile.
      const claimed = due.filter(e => !dlq.busy.has(e.id)).slice(0, Math.max(0, this.capacity - this.queued.size - this.running.size))
      for (const e of claimed) { dlq.busy.add(e.id); seen?.add(e.id) }
      const orphans: Array<{ at: number, id: number }> = []
      const records = await Promise.all(claimed.map(async e => {
        try {
          const record = await dlq.get(e.id)
          // Not readable yet (an older flush is still being written): it comes due at the next look.
          if (record === undefined && e.id <= dlq.watermark) orphans.push(e)
          else if (record !== undefined) this.counters.recordsRead++
          return record
        } catch (err) {
          this.report(err)
          return undefined
        }
      }))
      records.forEach((record, i) => {
        if (record === undefined) { dlq.busy.delete(claimed[i]!.id); return }
        started.push(this.enqueue(record))
      })
      if (stale.length + orphans.length > 0) {
        await dlq.dropStale(stale, orphans)
        this.counters.staleEntries += stale.length + orphans.length
      }
      // Stale entries took room in this read: read again for the due ones behind them.
      if (stale.length + orphans.length === 0 || entries.length < room + skip) return started
    }
  }

  private enqueue (record: DeadLetterRecord): Promise<void> {
    let release!: () => void
    const done = new Promise<void>(resolve => { release = resolve })
    const queued: Queued = {
      record,
      done,
      release: () => {
        // Dropped by stop() before it started: nothing was counted, the record stays due.
        if (this.queued.get(record.id) !== queued) return
        this.queued.delete(record.id)
        this.host.dlq.busy.delete(record.id)
        release()
      },
    }
    this.queued.set(record.id, queued)
    this.queue.add(async () => {
      if (this.queued.get(record.id) !== queued) return
      this.queued.delete(record.id)
      const controller = new AbortController()
      const attempt = this.host.run(() => this.attempt(record, controller.signal))
      this.running.set(record.id, { controller, done: attempt })
      try {
        await attempt
      } finally {
        this.running.delete(record.id)
        this.host.dlq.busy.delete(record.id)
        release()
        this.releaseSlots()
        this.wake()
      }
    }).catch(err => this.report(err))
    return done
  }

  private releaseSlots (): void {
    const waiters = this.slotWaiters
    this.slotWaiters = []
    for (const w of waiters) w()
  }

  private async attempt (record: DeadLetterRecord, signal: AbortSignal): Promise<void> {
    const { dlq } = this.host
    const { clock, random, backoff, maxAttempts } = this.options
    const id = record.id
    const state = record.retry
    try {
      if (state.attempts >= maxAttempts) {
        // Counted before a crash (or pushed with that many): no attempt is left.
        await this.park(record, state, 'max-attempts')
        return
      }
      const attempt = state.attempts + 1
      const startedAt = clock.now()
      // Written before the call: a crash counts this attempt once, and the record comes due
      // again after the backoff it would have had if the attempt had failed.
      const nextAttemptAt = scheduleTime(startedAt + backoffDelay(attempt + 1, backoff, random))
      const counted: RetryState = { ...state, attempts: attempt, lastAttemptAt: startedAt, nextAttemptAt }
      await dlq.updateState(id, state, counted, `Counting attempt ${attempt} of DLQ record ${id} failed`)
      crashPoint('retry:counted')
      this.counters.attempts++
      this.emit('retried', { id, attempt })
      let failure: { err: unknown } | undefined
      try {
        await this.call({ ...record, retry: counted }, attempt, signal)
      } catch (err) {
        failure = { err }
      }
      if (failure === undefined) {
        await dlq.removeExisting([id])
        this.counters.succeeded++
        this.emit('succeeded', { id, attempt })
        return
      }
      const failedAt = clock.now()
      const error = toAttemptError(failure.err)
      const aborted = signal.aborted
      const permanent = !aborted && this.classify(failure.err) === 'permanent'
      const failed: RetryState = { ...counted, lastFailedAt: failedAt, lastError: error }
      if (permanent || attempt >= maxAttempts) {
        await this.park(record, failed, permanent ? 'permanent' : 'max-attempts')
        return
      }
      const next: RetryState = { ...failed, nextAttemptAt: scheduleTime(failedAt + backoffDelay(attempt + 1, backoff, random)) }
      await dlq.updateState(id, counted, next, `Rescheduling DLQ record ${id} failed`)
      this.counters.rescheduled++
      this.emit('rescheduled', { id, attempt, nextAttemptAt: next.nextAttemptAt, error, aborted })
    } catch (err) {
      this.report(err)
    }
  }

  /** Call the handler; a stop that runs out of time rejects at once with EVAQ_ABORTED. */
  private call (record: DeadLetterRecord, attempt: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason)
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      const settle = (): void => signal.removeEventListener('abort', onAbort)
      Promise.resolve()
        .then(() => this.handler(record, { attempt, signal }))
        .then(() => { settle(); resolve() }, (err: unknown) => { settle(); reject(err) })
    })
  }

  private classify (err: unknown): 'transient' | 'permanent' {
    try {
      return this.options.classify(err) === 'permanent' ? 'permanent' : 'transient'
    } catch (cause) {
      this.report(new EvaqError('EVAQ_INVALID_ARGUMENT', 'The retry daemon\'s classify() threw; the error was taken as transient', { cause }))
      return 'transient'
    }
  }

  private async park (record: DeadLetterRecord, state: RetryState, reason: ParkReason): Promise<void> {
    const { dlq, parked, moves } = this.host
    const id = record.id
    const history: ParkedState = {
      attempts: state.attempts,
      firstFailedAt: state.firstFailedAt,
      lastFailedAt: state.lastFailedAt,
      ...(state.lastAttemptAt === undefined ? {} : { lastAttemptAt: state.lastAttemptAt }),
      ...(state.lastError === undefined ? {} : { lastError: state.lastError }),
      ...(state.source === undefined ? {} : { source: state.source }),
      parkedAt: this.options.clock.now(),
      reason,
      dlqId: id,
    }
    const error = state.lastError === undefined ? undefined : { ...state.lastError, source: { log: dlq.name, id } }
    const parkedId = await moves.move(dlq, parked, id, record.payload, { ...(error === undefined ? {} : { error }), state: history })
    if (parkedId === undefined) return // removed by someone else meanwhile: nothing to park
    this.counters.parked++
    this.emit('parked', { id, parkedId, attempts: state.attempts, reason, error: state.lastError })
  }

  private report (err: unknown): void {
    const error = err instanceof EvaqError ? err : fromLevel(err, 'The retry daemon failed')
    if (this.listenerCount('error') > 0) this.emit('error', error)
    else this.host.error(error)
  }
}

/** The stored form of a handler's error: its string `code`, if any, and its message. */
export function toAttemptError (err: unknown): AttemptError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return typeof code === 'string' ? { code, message: err.message } : { message: err.message }
  }
  if (err !== null && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') {
    const { code, message } = err as { code?: unknown, message: string }
    return typeof code === 'string' ? { code, message } : { message }
  }
  return { message: String(err) }
}
