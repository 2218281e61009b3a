import { EvaqError, isEvaqError } from '../errors.js'
import type { Evaq, EvaqStats } from '../evaq.js'
import type { FullEvent } from '../log/budget.js'
import type { LogView as Log, QueueRecord } from '../log/log.js'
import type { Delivery, SubscribeStart, Subscriber, SubscriberInfo } from '../log/subscriber.js'
import type { EvaqMetrics } from '../metrics.js'
import { LOG_NAME_PATTERN, READ_DEFAULTS, READ_LIMITS } from './params.js'
import { LOG_NAMES } from '../schema.js'

/**
 * What the HTTP service and the local `evaq` commands do with a queue, in one place: the log
 * lookup, the bounds of a request, long polls that end when the service stops, subscriber handles
 * kept between requests, and the DLQ redrive. Both entry points call this, so they behave alike.
 */

/** A read over the service: the log's read, plus a long poll. */
export interface ServiceReadOptions {
  /** First ID to return. @defaultValue 0 (the oldest live record) */
  from?: number
  /** Payload bytes to return at most (at least one record is returned when one exists). @defaultValue 1 MiB */
  maxBytes?: number
  /** Records to return at most. @defaultValue 1000 */
  maxCount?: number
  /** How long to wait for a record at or after `from` when there is none yet, in ms. @defaultValue 0 */
  waitMs?: number
  /** Ends the wait early (the read then returns what it has: nothing). */
  signal?: AbortSignal
}

/** `stats()` of the service: the queue's status and every log's counters. */
export interface ServiceStats extends EvaqStats {
  readonly status: Evaq['status']
}

/** A subscriber of one log, as listed by the service. */
export interface LogSubscriberInfo extends SubscriberInfo {
  readonly log: string
}

/** Options of {@link QueueService}. */
export interface QueueServiceOptions {
  /**
   * How long a push may wait for room (a disk budget or byte cap under `onFull: 'backpressure'`,
   * or a full write buffer) before it fails with `EVAQ_AT_CAPACITY`, storing nothing. 0 fails at
   * once instead of waiting. @defaultValue 5000
   */
  pushTimeoutMs?: number
}

export const PUSH_TIMEOUT_MS = 5000

const LOG_NAME = new RegExp(LOG_NAME_PATTERN)

export class QueueService {
  private readonly subs = new Map<string, Subscriber>()
  /** Who waits for acks, nacks and unsubscribes of a subscriber (the streams: see onSettled). */
  private readonly settledListeners = new Map<string, Set<(ids: readonly number[]) => void>>()
  private readonly stopping = new AbortController()
  private polls = 0
  private fullEvent: FullEvent | undefined
  private readonly onFull = (e: FullEvent): void => { this.fullEvent = e }
  private readonly onDrain = (): void => { this.fullEvent = undefined }
  /** An offload succeeded: the tier's error no longer says why pushes wait. */
  private readonly onOffload = (): void => {
    if (this.fullEvent?.tier !== undefined) this.fullEvent = { ...this.fullEvent, tier: undefined }
  }

  /** See {@link QueueServiceOptions.pushTimeoutMs}. */
  readonly pushTimeoutMs: number

  /**
   * @param evaq - an open queue; the service does not close it.
   * @param metrics - counts pushes, acks, removals and redeliveries, when given.
   */
  constructor (readonly evaq: Evaq, private readonly metrics?: EvaqMetrics, options: QueueServiceOptions = {}) {
    this.pushTimeoutMs = checkPushTimeout(options.pushTimeoutMs)
    evaq.on('full', this.onFull)
    evaq.on('drain', this.onDrain)
    evaq.on('offload', this.onOffload)
  }

  /**
   * Whether the disk budget refuses or holds back pushes (from its `full` event to its `drain`):
   * `/readyz` then answers 503.
   */
  get full (): boolean {
    return this.fullEvent !== undefined
  }

  /**
   * While {@link full}, under `onFull: 'offload'`: why offloading does not make room, the tier's
   * last error (from the latest `full` event).
   */
  get tierError (): { readonly code: string, readonly message: string } | undefined {
    return this.fullEvent?.tier
  }

  /** Seconds a client should wait before it retries a push refused for capacity (`Retry-After`). */
  get retryAfterSeconds (): number {
    return Math.max(1, Math.ceil(this.evaq.options.maintenanceIntervalMs / 1000))
  }

  /** The logs the service exposes, in the order `stats` lists them. */
  get logNames (): readonly string[] {
    return LOG_NAMES
  }

  /** Reads and `next` calls with a `waitMs` under way. */
  get longPolls (): number {
    return this.polls
  }

  /** Aborted by {@link stop}: long polls end at once. */
  get stopSignal (): AbortSignal {
    return this.stopping.signal
  }

  /** End every long poll now and refuse new ones (the service is shutting down). */
  stop (): void {
    this.stopping.abort()
    this.evaq.off('full', this.onFull)
    this.evaq.off('drain', this.onDrain)
    this.evaq.off('offload', this.onOffload)
  }

  /** The log called `name`: EVAQ_INVALID_ARGUMENT for a malformed name, EVAQ_NOT_FOUND for an unknown one. */
  log (name: string): Log {
    if (typeof name !== 'string' || !LOG_NAME.test(name)) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected a log name of 1 to 64 letters, digits, \`-\` or \`_\`, got \`${String(name).slice(0, 80)}\``)
    }
    switch (name) {
      case 'wal': return this.evaq.wal
      case 'dlq': return this.evaq.dlq
      case 'parked': return this.evaq.parked
      default: throw new EvaqError('EVAQ_NOT_FOUND', `There is no log \`${name}\`; the logs are ${this.logNames.join(', ')}`)
    }
  }

  /**
   * Push payloads to a log in one atomic write; resolves with their IDs once durable. A push that
   * has to wait for room waits at most `pushTimeoutMs`, then fails with EVAQ_AT_CAPACITY having
   * stored nothing; `signal` (the client went away) ends the wait with EVAQ_ABORTED.
   */
  async push (name: string, payloads: readonly Uint8Array[], signal?: AbortSignal): Promise<number[]> {
    const log = this.log(name)
    if (log === this.evaq.parked) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Records are parked by the retry daemon, not pushed: push to the DLQ (dlq) instead')
    }
    if (payloads.length === 0) return []
    const started = performance.now()
    // One signal for both ends of a wait: the client going away and the push timeout. A wait
    // aborted by either stores nothing; a push that got in is written whatever happens after.
    const controller = new AbortController()
    const gone = (): void => { controller.abort(signal?.reason) }
    if (signal?.aborted === true) gone()
    else signal?.addEventListener('abort', gone, { once: true })
    const limit = this.pushTimeoutMs
    let timedOut = false
    const timeout = (): void => { timedOut = true; controller.abort() }
    let timer: NodeJS.Timeout | undefined
    if (limit > 0) timer = setTimeout(timeout, limit)
    const options = { signal: controller.signal }
    let ids: number[]
    try {
      const pushing = payloads.length === 1 ? log.push(payloads[0]!, options).then(id => [id]) : log.pushMany(payloads, options)
      // A push is admitted, or starts to wait, within the call: with no timeout, that wait ends
      // now. (An already-aborted signal would refuse even a push that fits.)
      if (limit === 0) timeout()
      ids = await pushing
    } catch (err) {
      if (timedOut && isEvaqError(err, 'EVAQ_ABORTED')) {
        throw new EvaqError('EVAQ_AT_CAPACITY', limit === 0
          ? `No room for the push in ${name} now; nothing was stored`
          : `No room for the push in ${name} within ${limit} ms; nothing was stored`, { cause: err })
      }
      throw err
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', gone)
    }
    this.metrics?.pushed(name, ids.length, (performance.now() - started) / 1000)
    return ids
  }

  /** Records with `id >= from` in ID order; with `waitMs`, waits for one to be committed. */
  async read (name: string, options: ServiceReadOptions = {}): Promise<QueueRecord[]> {
    const log = this.log(name)
    const { from = 0, maxBytes = READ_DEFAULTS.maxBytes, maxCount = READ_DEFAULTS.maxCount, waitMs = 0 } = options
    checkBound('maxBytes', maxBytes, 0, READ_LIMITS.maxBytes)
    checkBound('maxCount', maxCount, 1, READ_LIMITS.maxCount)
    checkBound('waitMs', waitMs, 0, READ_LIMITS.waitMs)
    const signal = this.withStop(options.signal)
    const deadline = performance.now() + waitMs
    if (waitMs > 0) this.polls++
    try {
      for (;;) {
        // Any commit after this point moves the watermark past `seen`.
        const seen = log.watermark
        const records = await log.read({ from, maxBytes, maxCount })
        const left = deadline - performance.now()
        if (records.length > 0 || left <= 0 || signal.aborted) return records
        await commitAfter(log, Math.max(seen, from - 1), left, signal)
      }
    } finally {
      if (waitMs > 0) this.polls--
    }
  }

  /** Remove records by ID, atomically (EVAQ_NOT_FOUND removes nothing); resolves with the count. */
  async remove (name: string, ids: readonly number[]): Promise<number> {
    const log = this.log(name)
    if (log === this.evaq.wal) await this.evaq.removeWal(ids)
    else if (log === this.evaq.dlq) await this.evaq.doneRetryItems(ids)
    else await this.evaq.purgeParked(ids)
    const count = new Set(ids).size
    this.metrics?.removed(name, count)
    return count
  }

  /** Counters of every log, the disk budget and the queue's status. */
  async stats (): Promise<ServiceStats> {
    return { status: this.evaq.status, ...await this.evaq.stats() }
  }

  // ---- subscribers ------------------------------------------------------------------------------

  /** Subscribers of one log, or of every log. */
  async subscribers (name?: string): Promise<LogSubscriberInfo[]> {
    const names = name === undefined ? this.logNames : [name]
    const out: LogSubscriberInfo[] = []
    for (const n of names) {
      const stats = await this.log(n).stats()
      for (const s of stats.subscribers) out.push({ log: n, ...s })
    }
    return out
  }

  /**
   * Create a subscriber, or resume it with new limits. Resolves with its info and whether it was
   * created by this call.
   */
  async subscribe (
    name: string,
    subscriber: string,
    options: { start?: SubscribeStart, leaseMs?: number, maxDeliveries?: number } = {}
  ): Promise<{ created: boolean, info: LogSubscriberInfo }> {
    const log = this.log(name)
    const existed = log.subscribers().some(s => s.name === subscriber)
    const existing = existed ? log.subscribers().find(s => s.name === subscriber) : undefined
    const sub = await log.subscribe(subscriber, {
      ...(options.start === undefined ? {} : { start: options.start }),
      leaseMs: options.leaseMs ?? existing?.leaseMs,
      maxDeliveries: options.maxDeliveries ?? existing?.maxDeliveries,
    })
    this.subs.set(key(name, subscriber), sub)
    return { created: !existed, info: await this.subscriberInfo(name, subscriber) }
  }

  /** Forget a subscriber and its progress: EVAQ_NOT_FOUND if there is none of that name. */
  async unsubscribe (name: string, subscriber: string): Promise<void> {
    const log = this.log(name)
    this.subs.delete(key(name, subscriber))
    const removed = await log.unsubscribe(subscriber)
    this.settled(name, subscriber, [])
    if (!removed) throw notSubscribed(name, subscriber)
  }

  /**
   * The lease of a subscriber's deliveries, in ms of the queue's clock: EVAQ_NOT_FOUND for an
   * unknown subscriber (what a stream checks before it starts).
   */
  async leaseMs (name: string, subscriber: string): Promise<number> {
    return (await this.handle(name, subscriber)).leaseMs
  }

  /**
   * Call `listener` with the IDs of every ack and nack of this subscriber made through the service
   * (and with none when it is unsubscribed): a stream frees room for more records by them.
   * Returns the function that stops it.
   */
  onSettled (name: string, subscriber: string, listener: (ids: readonly number[]) => void): () => void {
    const k = key(name, subscriber)
    let set = this.settledListeners.get(k)
    if (set === undefined) this.settledListeners.set(k, set = new Set())
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.settledListeners.get(k) === set) this.settledListeners.delete(k)
    }
  }

  private settled (name: string, subscriber: string, ids: readonly number[]): void {
    const set = this.settledListeners.get(key(name, subscriber))
    if (set !== undefined) for (const listener of [...set]) listener(ids)
  }

  /** The next batch for a subscriber (leased); waits up to `waitMs` for one. Empty when none came. */
  async next (
    name: string,
    subscriber: string,
    options: { maxBytes?: number, maxCount?: number, waitMs?: number, signal?: AbortSignal } = {}
  ): Promise<Delivery[]> {
    const { maxBytes = READ_DEFAULTS.maxBytes, maxCount = READ_DEFAULTS.maxCount, waitMs = 0 } = options
    checkBound('maxBytes', maxBytes, 0, READ_LIMITS.maxBytes)
    checkBound('maxCount', maxCount, 1, READ_LIMITS.maxCount)
    checkBound('waitMs', waitMs, 0, READ_LIMITS.waitMs)
    const sub = await this.handle(name, subscriber)
    const signal = this.withStop(options.signal)
    let batch
    if (waitMs > 0) this.polls++
    try {
      batch = await this.onSubscriber(name, subscriber, () => sub.next({ maxBytes, maxCount, waitMs, signal }))
    } catch (err) {
      // A long poll that the service's shutdown ended: nothing was leased.
      if (isEvaqError(err, 'EVAQ_ABORTED') && options.signal?.aborted !== true) return []
      throw err
    } finally {
      if (waitMs > 0) this.polls--
    }
    const records = batch?.records ?? []
    if (records.length > 0) this.metrics?.delivered(name, subscriber, records)
    return [...records]
  }

  /** Acknowledge delivered records (EVAQ_NOT_FOUND for one never delivered: nothing is acknowledged). */
  async ack (name: string, subscriber: string, ids: readonly number[]): Promise<number> {
    const sub = await this.handle(name, subscriber)
    await this.onSubscriber(name, subscriber, () => sub.ack(ids))
    const count = new Set(ids).size
    this.metrics?.acked(name, subscriber, count)
    this.settled(name, subscriber, ids)
    return count
  }

  /** Give leased records back, delivered again after `delayMs`. */
  async nack (name: string, subscriber: string, ids: readonly number[], delayMs = 0): Promise<number> {
    const sub = await this.handle(name, subscriber)
    await this.onSubscriber(name, subscriber, () => sub.nack(ids, { delayMs }))
    const count = new Set(ids).size
    this.metrics?.nacked(name, subscriber, count)
    this.settled(name, subscriber, ids)
    return count
  }

  private async subscriberInfo (name: string, subscriber: string): Promise<LogSubscriberInfo> {
    const info = (await this.log(name).stats()).subscribers.find(s => s.name === subscriber)
    if (info === undefined) throw notSubscribed(name, subscriber)
    return { log: name, ...info }
  }

  /**
   * The in-process handle of a persisted subscriber. Subscribing again with its own limits resumes
   * it unchanged, so after a restart the first request picks it up where it left off.
   */
  private async handle (name: string, subscriber: string): Promise<Subscriber> {
    const log = this.log(name)
    const cached = this.subs.get(key(name, subscriber))
    if (cached !== undefined) return cached
    const info = log.subscribers().find(s => s.name === subscriber)
    if (info === undefined) throw notSubscribed(name, subscriber)
    const sub = await log.subscribe(subscriber, { leaseMs: info.leaseMs, maxDeliveries: info.maxDeliveries })
    this.subs.set(key(name, subscriber), sub)
    return sub
  }

  /** A handle whose subscriber was unsubscribed or expired reports EVAQ_NOT_FOUND: forget it. */
  private async onSubscriber<T> (name: string, subscriber: string, task: () => Promise<T>): Promise<T> {
    try {
      return await task()
    } catch (err) {
      if (isEvaqError(err, 'EVAQ_NOT_FOUND') && err.ids === undefined) this.subs.delete(key(name, subscriber))
      throw err
    }
  }

  // ---- the DLQ ----------------------------------------------------------------------------------

  /**
   * Move DLQ records back to the WAL (a redrive; see `evaq.requeueDeadLetters`): `ids` (all must be
   * in the DLQ, or EVAQ_NOT_FOUND and nothing moves) or `'all'`. Each page is one write: after a
   * crash a record is in exactly one of the two logs. Resolves with the new WAL IDs, in DLQ order.
   */
  async requeueDeadLetters (ids: readonly number[] | 'all'): Promise<number[]> {
    const walIds = await this.evaq.requeueDeadLetters(ids === 'all' ? 'all' : [...ids])
    this.metrics?.requeued('dlq', walIds.length)
    return walIds
  }

  /** Delete DLQ records: `ids` atomically (EVAQ_NOT_FOUND deletes nothing), or `'all'`. Resolves with the count. */
  async purgeDeadLetters (ids: readonly number[] | 'all'): Promise<number> {
    if (ids !== 'all') return this.remove('dlq', ids)
    const end = (await this.evaq.dlq.stats()).nextId
    let purged = 0
    for (let from = 0; ;) {
      const page = (await this.evaq.dlq.read({ from, maxBytes: READ_LIMITS.maxBytes, maxCount: READ_LIMITS.maxCount })).filter(r => r.id < end)
      if (page.length === 0) return purged
      // Records that someone else removed since the read are not this purge's to count.
      let ids = page.map(r => r.id)
      while (ids.length > 0) {
        try {
          purged += await this.remove('dlq', ids)
          break
        } catch (err) {
          if (!isEvaqError(err, 'EVAQ_NOT_FOUND') || err.ids === undefined) throw err
          const gone = new Set(err.ids)
          ids = ids.filter(id => !gone.has(id))
        }
      }
      from = page[page.length - 1]!.id + 1
    }
  }

  // ---- parked records ---------------------------------------------------------------------------

  /**
   * Put parked records back in the DLQ, due at once with their attempts reset (see
   * `evaq.requeueParked`): `ids` (all parked, or EVAQ_NOT_FOUND and nothing moves) or `'all'`.
   * Resolves with their new DLQ IDs.
   */
  async requeueParked (ids: readonly number[] | 'all'): Promise<number[]> {
    const dlqIds = await this.evaq.requeueParked(ids === 'all' ? 'all' : [...ids])
    this.metrics?.requeued('parked', dlqIds.length)
    return dlqIds
  }

  /** Delete parked records: `ids` atomically (EVAQ_NOT_FOUND deletes nothing), or `'all'`. Resolves with the count. */
  async purgeParked (ids: readonly number[] | 'all'): Promise<number> {
    const purged = await this.evaq.purgeParked(ids === 'all' ? 'all' : [...ids])
    this.metrics?.removed('parked', purged)
    return purged
  }

  private withStop (signal: AbortSignal | undefined): AbortSignal {
    return signal === undefined ? this.stopping.signal : AbortSignal.any([signal, this.stopping.signal])
  }
}

/** `pushTimeoutMs`, checked (EVAQ_INVALID_ARGUMENT), or its default. */
export function checkPushTimeout (value: number | undefined): number {
  const timeout = value ?? PUSH_TIMEOUT_MS
  checkBound('pushTimeoutMs', timeout, 0, 2 ** 31 - 1)
  return timeout
}

function key (log: string, subscriber: string): string {
  return `${log}\0${subscriber}`
}

function notSubscribed (log: string, subscriber: string): EvaqError {
  return new EvaqError('EVAQ_NOT_FOUND', `Log ${log} has no subscriber \`${subscriber}\``)
}

function checkBound (name: string, value: number, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${String(value)}\``)
  }
}

/** Resolves once `log`'s watermark passes `above`, after `ms`, or when `signal` aborts. */
function commitAfter (log: Log, above: number, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      stop()
      signal.removeEventListener('abort', done)
      resolve()
    }
    const stop = log.onCommitted(() => { if (log.watermark > above) done() })
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    if (log.watermark > above || signal.aborted) done()
  })
}
