import { EventEmitter } from 'node:events'
import { EvaqError, invalid, isEvaqError } from '../errors.js'
import type { Evaq } from '../evaq.js'
import type { DropEvent } from '../log/log.js'
import type { Delivery, Subscriber } from '../log/subscriber.js'
import { integer } from '../options.js'
import { classifyKafkaError, deadLetterError, type KafkaErrorClass } from './classify.js'
import { loadIdentity } from './identity.js'
import {
  checkMessage, decodeRecord, encodeRecord, existingEvaqId, EVAQ_ID_HEADER, toKafkaHeaders,
  type DecodedRecord, type KafkaMessage,
} from './record.js'

/**
 * What the producer needs of a kafkajs `Producer` (a structural subset, so that evaq's types do
 * not require kafkajs to be installed). Pass `kafka.producer()`.
 */
export interface KafkaProducerLike {
  connect (): Promise<void>
  disconnect (): Promise<void>
  sendBatch (batch: {
    topicMessages?: Array<{ topic: string, messages: Array<{ key?: Buffer | string | null, value: Buffer | string | null, partition?: number, headers?: Record<string, Buffer | string | Array<Buffer | string> | undefined>, timestamp?: string }> }>
    acks?: number
    timeout?: number
    compression?: number
  }): Promise<unknown>
}

/** When `send()` resolves. */
export type AwaitMode = 'local' | 'broker'

export interface EvacuatingProducerOptions {
  /**
   * The queue whose WAL holds the messages until the broker acknowledged them. Its WAL belongs to
   * this producer: records it did not write are moved to the DLQ (one producer per directory).
   */
  evaq: Evaq
  /** A kafkajs producer (`kafka.producer()`); `start()` connects it and `stop()` disconnects it. */
  producer: KafkaProducerLike
  /**
   * `'local'`: `send()` resolves once the messages are durable in the WAL (per the queue's
   * `durability`). `'broker'`: once the broker acknowledged every message (or it went to the DLQ);
   * their removal from the WAL follows (`flush()` waits for it).
   * @defaultValue `'local'`
   */
  await?: AwaitMode
  /** Topic of `send()` calls that name none. @defaultValue none */
  topic?: string
  /** `acks` of `send()` calls that give none (-1: all in-sync replicas, 1: the leader, 0: none). @defaultValue -1 */
  acks?: number
  /** The broker's time limit for a produce request, in ms (kafkajs `timeout`). @defaultValue kafkajs's 30000 */
  timeoutMs?: number
  /** kafkajs `CompressionTypes` value for every request. @defaultValue none */
  compression?: number
  /** Messages in one produce call (`sendBatch`) at most. @defaultValue 10000 */
  maxBatchCount?: number
  /**
   * Payload bytes in one produce call at most (a single larger message is sent alone). Keep it
   * below the broker's `message.max.bytes` (1 MiB by default), which bounds each partition's batch.
   * @defaultValue 524288 (512 KiB)
   */
  maxBatchBytes?: number
  /**
   * Waits between attempts after a retriable failure: `initialMs` doubling up to `maxMs`, each
   * drawn at random from its upper half.
   * @defaultValue `{ initialMs: 100, maxMs: 5000 }`
   */
  backoff?: { initialMs?: number, maxMs?: number }
  /**
   * Whether a failed send is worth another attempt (the messages stay in the WAL) or permanent
   * (each message it concerns goes to the DLQ). @defaultValue {@link classifyKafkaError}
   */
  classify?: (err: unknown) => KafkaErrorClass
  /** Name of the WAL subscriber that drains the WAL. @defaultValue `'kafka-producer'` */
  subscriber?: string
}

export interface SendOptions {
  /** @defaultValue the producer's `topic` */
  topic?: string
  messages: KafkaMessage[]
  /** @defaultValue the producer's `acks` */
  acks?: number
  /** Aborts a `send()` that waits for room in the WAL (budget policy `backpressure`). */
  signal?: AbortSignal
}

export interface DeadLetteredMessage {
  /** The message's WAL ID. */
  readonly id: number
  /** Its ID in the DLQ. */
  readonly dlqId: number
  /** The Kafka error type (`MESSAGE_TOO_LARGE`), see {@link deadLetterError}. */
  readonly code: string
  readonly error: unknown
}

export interface SendResult {
  /** The messages' WAL IDs, in order. */
  readonly ids: number[]
  /** Their `evaq-id` headers, in order. */
  readonly evaqIds: string[]
  /** With `await: 'broker'`: messages the broker refused, now in the DLQ. */
  readonly deadLettered?: DeadLetteredMessage[]
  /** With `await: 'broker'`: messages that left the WAL by retention or a full disk before they were acknowledged. */
  readonly dropped?: number[]
}

export type EvacuatingProducerStatus = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped'

export interface EvacuatingProducerStats {
  readonly status: EvacuatingProducerStatus
  /** Records in the WAL: waiting to be sent, being sent, or waiting for the next attempt. */
  readonly inWal: number
  /** Messages of the produce call under way. */
  readonly inFlight: number
  /** Messages the broker acknowledged (since this producer was created). */
  readonly sent: number
  /** Of those, messages sent again: after a failed attempt, or left in the WAL by an earlier run. */
  readonly resent: number
  /** Messages moved to the DLQ. */
  readonly deadLettered: number
  /** Produce calls that failed with a retriable error. */
  readonly failedAttempts: number
}

export interface SentEvent {
  readonly count: number
  readonly resent: number
  readonly firstId: number
  readonly lastId: number
}

export interface RetryingEvent {
  readonly error: unknown
  /** Messages that wait for the next attempt. */
  readonly count: number
  /** Failed attempts in a row. */
  readonly attempt: number
  readonly delayMs: number
}

/**
 * Events:
 * - `started`, `stopped`.
 * - `sent` (SentEvent): the broker acknowledged messages; they were removed from the WAL.
 * - `retrying` (RetryingEvent): a send failed with a retriable error; the messages stay in the WAL.
 * - `deadLettered` (DeadLetteredMessage): the broker refused a message; it is in the DLQ now.
 * - `error` (unknown): the queue failed under the drainer (it retries); emitted only when listened to.
 */
export interface EvacuatingProducerEvents {
  started: []
  stopped: []
  sent: [SentEvent]
  retrying: [RetryingEvent]
  deadLettered: [DeadLetteredMessage]
  error: [unknown]
}

export const KAFKA_DEFAULTS = Object.freeze({
  await: 'local' as AwaitMode,
  acks: -1,
  maxBatchCount: 10_000,
  maxBatchBytes: 512 * 1024, // 512 KiB
  backoff: Object.freeze({ initialMs: 100, maxMs: 5000 }),
  subscriber: 'kafka-producer',
})

/** DLQ code of a WAL record the producer did not write. */
export const NOT_A_KAFKA_RECORD = 'EVAQ_NOT_A_KAFKA_RECORD'

const KNOWN = ['evaq', 'producer', 'await', 'topic', 'acks', 'timeoutMs', 'compression', 'maxBatchCount', 'maxBatchBytes', 'backoff', 'classify', 'subscriber']
/** A lease no drainer holds for that long (the subscriber's upper bound): the drainer never gives records back by expiry. */
const LEASE_MS = 7 * 24 * 3_600_000
/** Removals of acknowledged runs in flight behind the sends. */
const MAX_REMOVALS = 4
/** How long one wait of the drainer for new records lasts before it looks again. */
const IDLE_WAIT_MS = 1000
/** One producer per queue: two would both drain the same WAL. */
const running = new WeakMap<Evaq, EvacuatingProducer>()

interface Pending {
  readonly id: number
  readonly payload: Buffer
  /** Undefined for a record that is not a Kafka record of evaq. */
  readonly record: DecodedRecord | undefined
  /** Failed attempts in this process. */
  attempts: number
  /** Delivered before (nacked at a stop, or left by an earlier run). */
  readonly again: boolean
}

interface Waiter {
  remaining: number
  readonly deadLettered: DeadLetteredMessage[]
  readonly dropped: number[]
  resolve (): void
  reject (err: unknown): void
}

type Outcome = { kind: 'sent' } | { kind: 'dead', message: DeadLetteredMessage } | { kind: 'dropped' }

/**
 * A kafkajs producer that persists every message in evaq's WAL before it sends it, removes it
 * once the broker acknowledged it, keeps it through broker outages and process crashes, and moves
 * what the broker refuses to the DLQ. See the README section "Kafka".
 *
 * One drainer, a WAL subscriber, sends everything in WAL ID order, one produce call at a time:
 * what `send()` persisted, what an outage left behind, and what a crash left in the WAL. That
 * single ordered lane is what keeps per-key (per-partition) order across failures and restarts.
 */
export class EvacuatingProducer extends EventEmitter<EvacuatingProducerEvents> {
  readonly evaq: Evaq
  readonly producer: KafkaProducerLike
  private readonly awaitMode: AwaitMode
  private readonly topic: string | undefined
  private readonly acks: number
  private readonly timeoutMs: number | undefined
  private readonly compression: number | undefined
  private readonly maxBatchCount: number
  private readonly maxBatchBytes: number
  private readonly backoff: { readonly initialMs: number, readonly maxMs: number }
  private readonly classify: (err: unknown) => KafkaErrorClass
  private readonly subscriberName: string
  /** WAL IDs below this were pushed before this producer existed: sending them is a resend. */
  private readonly firstOwnId: number
  private _status: EvacuatingProducerStatus = 'idle'
  private identity: Promise<string> | undefined
  private identitySync: string | undefined
  private sub: Subscriber | undefined
  private connected = false
  private abort: AbortController | undefined
  private loop: Promise<void> | undefined
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private readonly held: Pending[] = []
  private inFlight = 0
  private counters = { sent: 0, resent: 0, deadLettered: 0, failedAttempts: 0 }
  private readonly waiters = new Map<number, Waiter>()
  /** Sends registering their waiters; outcomes that arrive before are kept until they do. */
  private registering = 0
  private readonly early = new Map<number, Outcome>()
  private readonly settledListeners = new Set<() => void>()
  private readonly pushes = new Set<Promise<unknown>>()
  private readonly removals = new Set<Promise<void>>()
  private readonly onDropped = (e: DropEvent): void => this.dropped(e)

  constructor (options: EvacuatingProducerOptions) {
    super()
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object like { evaq, producer }', options)
    for (const key of Object.keys(options)) {
      if (!KNOWN.includes(key)) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Unknown option \`${key}\` of EvacuatingProducer; expected one of ${KNOWN.join(', ')}`)
    }
    const o = options
    if (o.evaq === null || typeof o.evaq !== 'object' || typeof o.evaq.pushWalMany !== 'function') throw invalid('evaq', 'an open Evaq', o.evaq)
    const p = o.producer as Partial<KafkaProducerLike> | null
    if (p === null || typeof p !== 'object' || typeof p.connect !== 'function' || typeof p.disconnect !== 'function' || typeof p.sendBatch !== 'function') {
      throw invalid('producer', 'a kafkajs producer (kafka.producer())', o.producer)
    }
    if (o.await !== undefined && o.await !== 'local' && o.await !== 'broker') throw invalid('await', "'local' or 'broker'", o.await)
    if (o.topic !== undefined && (typeof o.topic !== 'string' || o.topic.length === 0)) throw invalid('topic', 'a non-empty string', o.topic)
    if (o.classify !== undefined && typeof o.classify !== 'function') throw invalid('classify', 'a function', o.classify)
    if (o.subscriber !== undefined && typeof o.subscriber !== 'string') throw invalid('subscriber', 'a subscriber name', o.subscriber)
    const b = o.backoff ?? {}
    if (b === null || typeof b !== 'object') throw invalid('backoff', 'an object like { initialMs, maxMs }', b)
    this.evaq = o.evaq
    this.producer = o.producer
    this.awaitMode = o.await ?? KAFKA_DEFAULTS.await
    this.topic = o.topic
    this.acks = checkAcks(o.acks ?? KAFKA_DEFAULTS.acks, 'acks')
    this.timeoutMs = o.timeoutMs === undefined ? undefined : integer('timeoutMs', o.timeoutMs, 1, 2 ** 31 - 1)
    this.compression = o.compression === undefined ? undefined : integer('compression', o.compression, 0, 4)
    this.maxBatchCount = integer('maxBatchCount', o.maxBatchCount ?? KAFKA_DEFAULTS.maxBatchCount, 1, 1_000_000)
    this.maxBatchBytes = integer('maxBatchBytes', o.maxBatchBytes ?? KAFKA_DEFAULTS.maxBatchBytes, 1)
    const initialMs = integer('backoff.initialMs', b.initialMs ?? KAFKA_DEFAULTS.backoff.initialMs, 0, 3_600_000)
    const maxMs = integer('backoff.maxMs', b.maxMs ?? Math.max(KAFKA_DEFAULTS.backoff.maxMs, initialMs), initialMs, 3_600_000)
    this.backoff = Object.freeze({ initialMs, maxMs })
    this.classify = o.classify ?? classifyKafkaError
    this.subscriberName = o.subscriber ?? KAFKA_DEFAULTS.subscriber
    this.firstOwnId = this.evaq.wal.nextId
  }

  /** `'idle' | 'starting' | 'running' | 'stopping' | 'stopped'` */
  get status (): EvacuatingProducerStatus {
    return this._status
  }

  /**
   * Connect, then drain the WAL: first what an earlier run left in it (it is older, so it goes
   * first), then what `send()` persists. While the brokers are unreachable the producer keeps
   * trying in the background (`retrying` events), and `send()` keeps persisting: `start()` does
   * not fail because Kafka is down. Rejects with EVAQ_INVALID_ARGUMENT when another producer is
   * running on the same queue.
   */
  start (): Promise<void> {
    if ((this._status === 'starting' || this._status === 'running') && this.starting !== undefined) return this.starting
    const previous = this.stopping
    this.stopping = undefined
    let starting: Promise<void> | undefined
    starting = (async () => {
      await previous
      const other = running.get(this.evaq)
      if (other !== undefined && other !== this) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Another EvacuatingProducer is running on the queue at ${this.evaq.location}; one queue has one producer`)
      running.set(this.evaq, this)
      this._status = 'starting'
      try {
        await this.evaqId()
        this.sub = await this.evaq.wal.subscribe(this.subscriberName, { start: 'earliest', leaseMs: LEASE_MS, maxDeliveries: Number.MAX_SAFE_INTEGER })
        try {
          await this.producer.connect()
          this.connected = true
        } catch (err) {
          // Kafka may be down when the application starts: the drainer keeps trying.
          this.emitRetrying(err, 0, 0, 0)
        }
      } catch (err) {
        running.delete(this.evaq)
        this._status = 'stopped'
        if (this.starting === starting) this.starting = undefined
        throw err
      }
      this.evaq.on('dropped', this.onDropped)
      const abort = new AbortController()
      this.abort = abort
      this._status = 'running'
      this.loop = this.drain(this.sub, abort.signal)
      this.emit('started')
    })()
    this.starting = starting
    return starting
  }

  private get stopped (): boolean {
    return this._status === 'stopping' || this._status === 'stopped'
  }

  /**
   * Persist the messages in the WAL (one atomic write), then send them (see the class comment).
   * Resolves per `await`: once they are durable locally, or once the broker acknowledged them.
   * Every message gets an `evaq-id` header, `<identity>:<WAL ID>`, unless it has one. When the
   * queue's disk budget is full, waits or rejects with EVAQ_AT_CAPACITY per its `onFull`.
   * Rejects with EVAQ_INVALID_ARGUMENT for a malformed message (nothing is written) and with
   * EVAQ_CLOSED once `stop()` was called.
   */
  async send (options: SendOptions): Promise<SendResult> {
    if (this.stopped) throw new EvaqError('EVAQ_CLOSED', `The producer is ${this._status}`)
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object like { topic, messages }', options)
    const { topic = this.topic, messages, acks, signal, ...rest } = options
    const unknown = Object.keys(rest)
    if (unknown.length > 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Unknown send option \`${unknown[0]}\`; expected topic, messages, acks or signal`)
    if (typeof topic !== 'string' || topic.length === 0 || Buffer.byteLength(topic) > 0xFFFF) throw invalid('topic', 'a topic name (or the producer\'s `topic` option)', topic)
    if (!Array.isArray(messages)) throw invalid('messages', 'an array of messages', messages)
    const a = acks === undefined ? this.acks : checkAcks(acks, 'acks')
    const now = this.evaq.options.clock.now()
    const checked = messages.map((m, i) => checkMessage(m, `messages[${i}]`, now))
    if (checked.length === 0) return { ids: [], evaqIds: [], ...(this.awaitMode === 'broker' ? { deadLettered: [], dropped: [] } : {}) }
    const payloads = checked.map(m => encodeRecord(topic, acks === undefined ? undefined : a, m))
    const broker = this.awaitMode === 'broker'
    if (broker) this.registering++
    const push = (async () => {
      const identity = await this.evaqId()
      return { identity, ids: await this.evaq.pushWalMany(payloads, signal === undefined ? undefined : { signal }) }
    })()
    // flush() waits for pushes under way: a message whose send() began before flush() is flushed.
    this.pushes.add(push)
    let identity: string
    let ids: number[]
    try {
      ({ identity, ids } = await push)
    } catch (err) {
      if (broker) this.doneRegistering()
      throw err
    } finally {
      this.pushes.delete(push)
    }
    const evaqIds = ids.map((id, i) => existingEvaqId(checked[i]!.headers) ?? `${identity}:${id}`)
    if (!broker) return { ids, evaqIds }
    const deadLettered: DeadLetteredMessage[] = []
    const dropped: number[] = []
    const done = new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { remaining: ids.length, deadLettered, dropped, resolve, reject }
      for (const id of ids) {
        const outcome = this.early.get(id)
        if (outcome === undefined) { this.waiters.set(id, waiter); continue }
        this.early.delete(id)
        this.applyOutcome(waiter, id, outcome)
      }
      if (waiter.remaining === 0) resolve()
    })
    this.doneRegistering()
    if (this.stopped) this.rejectWaiters()
    await done
    return { ids, evaqIds, deadLettered, dropped }
  }

  /**
   * Resolves when nothing is left to send: every record in the WAL when `flush` was called, and
   * every message of a `send()` called before it, was acknowledged by the broker or moved to the DLQ. Rejects with EVAQ_ABORTED after `timeoutMs`
   * or when `signal` aborts, and with EVAQ_CLOSED when the producer stops first.
   */
  async flush (options: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object like { timeoutMs }', options)
    const { timeoutMs, signal } = options
    if (timeoutMs !== undefined) integer('timeoutMs', timeoutMs, 0, 2 ** 31 - 1)
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal', 'an AbortSignal', signal)
    await Promise.allSettled([...this.pushes])
    const target = this.evaq.wal.nextId - 1
    const drained = async (): Promise<boolean> => {
      const { firstId } = await this.evaq.wal.stats()
      return firstId === undefined || firstId > target
    }
    if (await drained()) return
    const signals = [signal, timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs)].filter(s => s !== undefined)
    const stop = signals.length === 0 ? undefined : AbortSignal.any(signals)
    await new Promise<void>((resolve, reject) => {
      let checking = false
      let again = false
      const finish = (err?: unknown): void => {
        this.settledListeners.delete(check)
        stop?.removeEventListener('abort', onAbort)
        if (err === undefined) resolve()
        else reject(err)
      }
      const check = (): void => {
        if (this.stopped) { finish(new EvaqError('EVAQ_CLOSED', `The producer is ${this._status}; records are left in the WAL`)); return }
        if (checking) { again = true; return }
        checking = true
        drained().then(done => {
          checking = false
          if (done) finish()
          else if (again) { again = false; check() }
        }, finish)
      }
      const onAbort = (): void => finish(new EvaqError('EVAQ_ABORTED', 'flush() ended before everything was sent', { cause: stop!.reason }))
      if (stop?.aborted === true) { onAbort(); return }
      stop?.addEventListener('abort', onAbort, { once: true })
      this.settledListeners.add(check)
      check()
    })
  }

  /**
   * Let the produce call under way finish (and its removal or dead-lettering), then stop and
   * disconnect the producer. Everything not acknowledged stays in the WAL for the next `start()`
   * (of this or another process). Pending `send()` calls with `await: 'broker'` reject with
   * EVAQ_CLOSED; their messages are in the WAL.
   */
  stop (): Promise<void> {
    if (this.stopping !== undefined) return this.stopping
    const starting = this.starting
    this.stopping = (async () => {
      await starting?.catch(() => {})
      this._status = 'stopping'
      this.abort?.abort()
      this.rejectWaiters()
      await this.loop
      this.evaq.off('dropped', this.onDropped)
      // Give back what the drainer holds, so that a later start() in this process sends it at once.
      const held = this.held.splice(0).map(p => p.id)
      if (held.length > 0 && this.sub !== undefined) await this.sub.nack(held).catch(err => this.reportError(err))
      this.notifySettled()
      try {
        if (this.connected) await this.producer.disconnect()
      } finally {
        this.connected = false
        this.loop = undefined
        this.abort = undefined
        if (this.starting === starting) this.starting = undefined
        if (running.get(this.evaq) === this) running.delete(this.evaq)
        this._status = 'stopped'
        this.emit('stopped')
      }
    })()
    return this.stopping
  }

  /** Counters and the WAL's record count. */
  async stats (): Promise<EvacuatingProducerStats> {
    const wal = await this.evaq.wal.stats()
    return { status: this._status, inWal: wal.count, inFlight: this.inFlight, ...this.counters }
  }

  /** This directory's identity, the first half of every `evaq-id`. */
  evaqId (): Promise<string> {
    this.identity ??= loadIdentity(this.evaq.location).then(
      identity => { this.identitySync = identity; return identity },
      err => { this.identity = undefined; throw err },
    )
    return this.identity
  }

  // ---- the drainer ----

  private async drain (sub: Subscriber, signal: AbortSignal): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      try {
        await this.fill(sub, signal)
        failures = 0
      } catch (err) {
        if (signal.aborted) break
        if (isEvaqError(err, 'EVAQ_CLOSED')) { this.reportError(err); break }
        this.reportError(err)
        await sleep(this.delay(failures++), signal)
        continue
      }
      if (this.held.length === 0) continue
      // Removals run behind the sends, a few at most.
      while (this.removals.size >= MAX_REMOVALS) await Promise.race(this.removals)
      const run = this.takeRun()
      await this.deliver(run, signal)
    }
    await Promise.all(this.removals)
  }

  /** Take delivered records from the subscriber: wait for some when none are held, else only what is ready. */
  private async fill (sub: Subscriber, signal: AbortSignal): Promise<void> {
    if (this.held.length >= this.maxBatchCount) return
    const heldBytes = this.held.reduce((n, p) => n + p.payload.byteLength, 0)
    if (this.held.length > 0 && heldBytes >= this.maxBatchBytes) return
    const batch = await sub.next({
      maxCount: this.maxBatchCount - this.held.length,
      maxBytes: Math.max(1, this.maxBatchBytes - heldBytes),
      waitMs: this.held.length === 0 ? IDLE_WAIT_MS : 0,
      signal,
    })
    if (batch === undefined) return
    for (const r of batch.records) this.held.push(this.pending(r))
  }

  private pending (r: Delivery): Pending {
    let record: DecodedRecord | undefined
    try {
      record = decodeRecord(r.payload)
    } catch {
      record = undefined
    }
    return { id: r.id, payload: r.payload, record, attempts: 0, again: r.deliveryCount > 1 || r.id < this.firstOwnId }
  }

  /** The longest prefix of `held` that can go in one produce call: same `acks`, within the batch bounds. */
  private takeRun (): Pending[] {
    const first = this.held[0]!
    if (first.record === undefined) return this.held.splice(0, 1)
    const acks = first.record.acks ?? this.acks
    let n = 0
    let bytes = 0
    for (const p of this.held) {
      if (p.record === undefined || (p.record.acks ?? this.acks) !== acks) break
      if (n > 0 && (n >= this.maxBatchCount || bytes + p.payload.byteLength > this.maxBatchBytes)) break
      n++
      bytes += p.payload.byteLength
    }
    return this.held.splice(0, n)
  }

  /**
   * Send `run` until the broker acknowledged it or refused parts of it. A retriable failure keeps
   * the whole run and tries it again after a backoff: nothing behind it is sent meanwhile, which
   * is what keeps per-partition order. A permanent failure does not say which message the broker
   * refused (a Produce error covers a partition's whole batch), so the run is split in halves and
   * each half is sent in order, down to the single message that goes to the DLQ. The broker
   * appends a partition's batch entirely or not at all, so a resend only repeats a contiguous run.
   */
  private async deliver (run: Pending[], signal: AbortSignal): Promise<void> {
    if (run.length === 1 && run[0]!.record === undefined) {
      const p = run[0]!
      await this.deadLetter(p, { code: NOT_A_KAFKA_RECORD, message: `WAL record ${p.id} is not a Kafka record of evaq; the producer owns its queue's WAL` }, signal)
      return
    }
    for (let failures = 0; ;) {
      if (signal.aborted) { this.giveBack(run); return }
      let error: unknown
      this.inFlight = run.length
      try {
        if (!this.connected) {
          await this.producer.connect()
          this.connected = true
        }
        await this.producer.sendBatch(this.batchOf(run))
      } catch (err) {
        error = err ?? new Error('sendBatch rejected without an error')
      } finally {
        this.inFlight = 0
      }
      if (error === undefined) {
        this.settle(run, signal)
        return
      }
      let verdict: KafkaErrorClass
      try {
        verdict = this.classify(error)
      } catch (err) {
        this.reportError(err)
        verdict = 'retriable'
      }
      if (verdict === 'permanent') {
        if (run.length === 1) {
          await this.deadLetter(run[0]!, error, signal)
          return
        }
        const half = Math.ceil(run.length / 2)
        const second = run.slice(half)
        await this.deliver(run.slice(0, half), signal)
        if (signal.aborted) { this.giveBack(second); return }
        await this.deliver(second, signal)
        return
      }
      this.counters.failedAttempts++
      for (const p of run) p.attempts++
      // The producer may have lost its connection; connect() is cheap when it has one.
      this.connected = false
      const delayMs = this.delay(failures++)
      this.emitRetrying(error, run.length, failures, delayMs)
      await sleep(delayMs, signal)
    }
  }

  private batchOf (run: readonly Pending[]): Parameters<KafkaProducerLike['sendBatch']>[0] {
    const identity = this.identitySync!
    const byTopic = new Map<string, Array<{ key: Buffer | null, value: Buffer | null, partition?: number, headers: Record<string, Buffer | Buffer[]>, timestamp: string }>>()
    for (const p of run) {
      const r = p.record!
      const headers = toKafkaHeaders(r.headers)
      if (headers[EVAQ_ID_HEADER] === undefined) headers[EVAQ_ID_HEADER] = Buffer.from(`${identity}:${p.id}`)
      const message = { key: r.key, value: r.value, headers, timestamp: r.timestamp, ...(r.partition === undefined ? {} : { partition: r.partition }) }
      let list = byTopic.get(r.topic)
      if (list === undefined) byTopic.set(r.topic, list = [])
      list.push(message)
    }
    return {
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      acks: run[0]!.record!.acks ?? this.acks,
      ...(this.timeoutMs === undefined ? {} : { timeout: this.timeoutMs }),
      ...(this.compression === undefined ? {} : { compression: this.compression }),
    }
  }

  /**
   * The broker acknowledged `run`: count it, resolve its `send()` calls, and remove it from the WAL
   * in the background, so that the next produce call does not wait for that write (the log merges
   * concurrent removals into one batch). A crash before the removal is durable sends the run
   * again after the restart: a duplicate with the same `evaq-id`.
   */
  private settle (run: Pending[], signal: AbortSignal): void {
    let resent = 0
    for (const p of run) if (p.again || p.attempts > 0) resent++
    this.counters.sent += run.length
    this.counters.resent += resent
    for (const p of run) this.outcome(p.id, { kind: 'sent' })
    this.emit('sent', { count: run.length, resent, firstId: run[0]!.id, lastId: run[run.length - 1]!.id })
    const removal: Promise<void> = this.remove(run.map(p => p.id), signal).finally(() => {
      this.removals.delete(removal)
      this.notifySettled()
    })
    this.removals.add(removal)
  }

  /**
   * Remove acknowledged records, retrying while the queue cannot write (degraded). IDs already
   * gone (retention, drop-oldest) are skipped. Gives up only when the producer stops; the records
   * are then sent again by the next run, a duplicate with the same `evaq-id`.
   */
  private async remove (ids: number[], signal: AbortSignal): Promise<void> {
    for (let failures = 0; ids.length > 0;) {
      try {
        await this.evaq.removeWal(ids)
        return
      } catch (err) {
        if (isEvaqError(err, 'EVAQ_NOT_FOUND') && err.ids !== undefined && err.ids.length > 0) {
          const gone = new Set(err.ids)
          ids = ids.filter(id => !gone.has(id))
          continue
        }
        this.reportError(err)
        if (isEvaqError(err, 'EVAQ_CLOSED') || signal.aborted) return
        await sleep(this.delay(failures++), signal)
        if (signal.aborted) return
      }
    }
  }

  /**
   * Move one message the broker refused from the WAL to the DLQ (with its evaq-id, so a resend
   * keeps it): one write, so that a crash leaves it in exactly one of the two.
   */
  private async deadLetter (p: Pending, err: unknown, signal: AbortSignal): Promise<void> {
    const error = deadLetterError(err)
    let payload = p.payload
    if (p.record !== undefined && !p.record.headers.some(([name]) => name === EVAQ_ID_HEADER)) {
      const r = p.record
      payload = encodeRecord(r.topic, r.acks, { key: r.key, value: r.value, partition: r.partition, headers: r.headers, timestamp: r.timestamp }, [[EVAQ_ID_HEADER, Buffer.from(`${this.identitySync!}:${p.id}`)]])
    }
    // `attempts` and `source` feed the retry daemon (this was one delivery attempt, from the WAL).
    const options = { payload, error, attempts: 1, source: { log: this.evaq.wal.name, id: p.id } }
    let dlqId: number | undefined
    for (let failures = 0; dlqId === undefined;) {
      try {
        dlqId = await this.evaq.moveWalToDlq(p.id, options)
      } catch (e) {
        if (isEvaqError(e, 'EVAQ_NOT_FOUND')) {
          // Gone from the WAL meanwhile (retention, drop-oldest: reported as dropped): nothing to move.
          this.outcome(p.id, { kind: 'dropped' })
          this.notifySettled()
          return
        }
        this.reportError(e)
        if (isEvaqError(e, 'EVAQ_CLOSED') || signal.aborted) { this.giveBack([p]); return }
        await sleep(this.delay(failures++), signal)
      }
    }
    const message: DeadLetteredMessage = { id: p.id, dlqId, code: error.code, error: err }
    this.counters.deadLettered++
    this.outcome(p.id, { kind: 'dead', message })
    this.emit('deadLettered', message)
    this.notifySettled()
  }

  /** Records a stop interrupted go back to the front of `held` (they are nacked by stop()). */
  private giveBack (run: Pending[]): void {
    this.held.unshift(...run)
    this.held.sort((a, b) => a.id - b.id)
  }

  private delay (failures: number): number {
    const ceiling = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(failures, 30))
    return Math.round(ceiling / 2 + Math.random() * ceiling / 2)
  }

  private emitRetrying (error: unknown, count: number, attempt: number, delayMs: number): void {
    this.emit('retrying', { error, count, attempt, delayMs })
  }

  private reportError (err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }

  private notifySettled (): void {
    for (const check of [...this.settledListeners]) check()
  }

  // ---- outcomes for `await: 'broker'` ----

  private outcome (id: number, outcome: Outcome): void {
    const waiter = this.waiters.get(id)
    if (waiter !== undefined) {
      this.waiters.delete(id)
      this.applyOutcome(waiter, id, outcome)
      if (waiter.remaining === 0) waiter.resolve()
    } else if (this.registering > 0) {
      this.early.set(id, outcome)
    }
  }

  private applyOutcome (waiter: Waiter, id: number, outcome: Outcome): void {
    waiter.remaining--
    if (outcome.kind === 'dead') waiter.deadLettered.push(outcome.message)
    else if (outcome.kind === 'dropped') waiter.dropped.push(id)
  }

  private doneRegistering (): void {
    if (--this.registering === 0) this.early.clear()
  }

  private dropped (e: DropEvent): void {
    if (e.log !== this.evaq.wal.name || e.firstId === undefined || e.lastId === undefined) return
    for (const id of [...this.waiters.keys()]) {
      if (id >= e.firstId && id <= e.lastId) this.outcome(id, { kind: 'dropped' })
    }
    this.notifySettled()
  }

  private rejectWaiters (): void {
    const waiters = new Set(this.waiters.values())
    this.waiters.clear()
    const err = new EvaqError('EVAQ_CLOSED', 'The producer stopped before the broker acknowledged every message; the rest is in the WAL')
    for (const w of waiters) w.reject(err)
  }
}

function checkAcks (value: unknown, name: string): number {
  if (value !== -1 && value !== 0 && value !== 1) throw invalid(name, '-1, 0 or 1', value)
  return value
}

/** Wait `ms`, or less when `signal` aborts (never rejects). */
function sleep (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve()
  return new Promise(resolve => {
    const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
