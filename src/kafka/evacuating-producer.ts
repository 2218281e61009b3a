import { EventEmitter } from 'node:events'
import { EvaqError, invalid } from '../errors.js'
import type { Evaq } from '../evaq.js'
import type { DropEvent } from '../log/log.js'
import type { Subscriber } from '../log/subscriber.js'
import { integer, rejectUnknown } from '../validate.js'
import { takesRequestSettings } from './client.js'
import { Drainer } from './drainer.js'
import { loadIdentity } from './identity.js'
import { Outcomes } from './outcomes.js'
import { checkAcks, resolveProducerOptions, type EvacuatingProducerOptions, type KafkaProducerLike, type ResolvedProducerOptions } from './producer-options.js'
import type { EvacuatingProducerEvents, EvacuatingProducerStats, EvacuatingProducerStatus, SendOptions, SendResult } from './producer-types.js'
import { checkMessage, encodeRecord, existingEvaqId } from './record.js'

/** A lease no drainer holds for that long (the subscriber's upper bound): the drainer never gives records back by expiry. */
const LEASE_MS = 7 * 24 * 3_600_000
/** One producer per queue: two would both drain the same WAL. */
const running = new WeakMap<Evaq, EvacuatingProducer>()

/**
 * A kafkajs (or @confluentinc/kafka-javascript KafkaJS-compatible) producer that persists every message in evaq's WAL before it sends it, removes it
 * once the broker acknowledged it, keeps it through broker outages and process crashes, and moves
 * what the broker refuses to the DLQ. See docs/kafka.md.
 *
 * One drainer, a WAL subscriber, sends everything in WAL ID order, one produce call at a time:
 * what `send()` persisted, what an outage left behind, and what a crash left in the WAL. That
 * single ordered lane is what keeps per-key (per-partition) order across failures and restarts.
 * The drainer is in drainer.ts, the outcomes `send()` with `await: 'broker'` waits for in outcomes.ts.
 */
export class EvacuatingProducer extends EventEmitter<EvacuatingProducerEvents> {
  readonly evaq: Evaq
  private readonly options: ResolvedProducerOptions
  private _status: EvacuatingProducerStatus = 'idle'
  private identity: Promise<string> | undefined
  private sub: Subscriber | undefined
  private abort: AbortController | undefined
  private loop: Promise<void> | undefined
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private readonly outcomes = new Outcomes()
  private readonly drainer: Drainer
  /** flush() calls waiting: each looks again whenever records left the WAL. */
  private readonly settledListeners = new Set<() => void>()
  /** send() pushes under way: flush() waits for them. */
  private readonly pushes = new Set<Promise<unknown>>()
  private readonly onDropped = (e: DropEvent): void => this.dropped(e)

  constructor (options: EvacuatingProducerOptions) {
    super()
    this.options = resolveProducerOptions(options)
    this.evaq = this.options.evaq
    this.drainer = new Drainer({ options: this.options, events: this, outcomes: this.outcomes, settled: () => this.notifySettled() })
  }

  /** The producer it sends with: the one given, or the latest the `producer` function made. */
  get producer (): KafkaProducerLike {
    return this.drainer.producer
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
    // eslint-disable-next-line prefer-const -- TypeScript flags a const read inside its own IIFE initializer (TS2454)
    starting = (async () => {
      await previous
      const other = running.get(this.evaq)
      if (other !== undefined && other !== this) {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Another EvacuatingProducer is running on the queue at ${this.evaq.location}; one queue has one producer`)
      }
      running.set(this.evaq, this)
      this._status = 'starting'
      let identity: string
      try {
        identity = await this.evaqId()
        this.sub = await this.evaq.wal.subscribe(this.options.subscriber, { start: 'earliest', leaseMs: LEASE_MS, maxDeliveries: Number.MAX_SAFE_INTEGER })
        await this.drainer.connect()
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
      this.loop = this.drainer.run(this.sub, identity, abort.signal)
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
    rejectUnknown(options, ['topic', 'messages', 'acks', 'signal'], ' of send()')
    const { topic = this.options.topic, messages, acks, signal } = options
    if (typeof topic !== 'string' || topic.length === 0 || Buffer.byteLength(topic) > 0xFFFF) {
      throw invalid('topic', 'a topic name (or the producer\'s `topic` option)', topic)
    }
    if (!Array.isArray(messages)) throw invalid('messages', 'an array of messages', messages)
    if (acks !== undefined && !takesRequestSettings(this.options.client)) {
      throw invalid('acks', 'unset with a @confluentinc/kafka-javascript producer (set it in the producer\'s config: kafkaJS: { acks })', acks)
    }
    const a = acks === undefined ? this.options.acks : checkAcks(acks, 'acks')
    const now = this.evaq.options.clock.now()
    const checked = messages.map((m, i) => checkMessage(m, `messages[${i}]`, now))
    if (checked.length === 0) return { ids: [], evaqIds: [], ...(this.options.await === 'broker' ? { deadLettered: [], dropped: [] } : {}) }
    const payloads = checked.map(m => encodeRecord(topic, acks === undefined ? undefined : a, m))
    const broker = this.options.await === 'broker'
    if (broker) this.outcomes.expect()
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
      if (broker) this.outcomes.abandon()
      throw err
    } finally {
      this.pushes.delete(push)
    }
    const evaqIds = ids.map((id, i) => existingEvaqId(checked[i]!.headers) ?? `${identity}:${id}`)
    if (!broker) return { ids, evaqIds }
    const done = this.outcomes.wait(ids)
    if (this.stopped) this.outcomes.rejectAll()
    const { deadLettered, dropped } = await done
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
      this.outcomes.rejectAll()
      await this.loop
      this.evaq.off('dropped', this.onDropped)
      await this.drainer.release(this.sub)
      this.notifySettled()
      try {
        await this.drainer.disconnect()
      } finally {
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
    return { status: this._status, inWal: wal.count, inFlight: this.drainer.inFlight, ...this.drainer.counters }
  }

  /** This directory's identity, the first half of every `evaq-id`. */
  evaqId (): Promise<string> {
    // A failed load is not kept: the next call tries again.
    this.identity ??= loadIdentity(this.evaq.location).catch(err => { this.identity = undefined; throw err })
    return this.identity
  }

  private notifySettled (): void {
    for (const check of [...this.settledListeners]) check()
  }

  private dropped (e: DropEvent): void {
    if (e.log !== this.evaq.wal.name || e.firstId === undefined || e.lastId === undefined) return
    this.outcomes.dropRange(e.firstId, e.lastId)
    this.notifySettled()
  }
}
