import type { EventEmitter } from 'node:events'
import { isEvaqError } from '../errors.js'
import type { Subscriber } from '../log/subscriber.js'
import { backoffDelay, sleep } from './backoff.js'
import { batchOf, pending, takeRun, type Pending } from './batch.js'
import { deadLetterError, type KafkaErrorClass } from './classify.js'
import { reconnects } from './client.js'
import type { Outcomes } from './outcomes.js'
import type { KafkaProducerLike, ResolvedProducerOptions } from './producer-options.js'
import type { DeadLetteredMessage, EvacuatingProducerEvents } from './producer-types.js'
import { encodeRecord, EVAQ_ID_HEADER } from './record.js'

/** DLQ code of a WAL record the producer did not write. */
export const NOT_A_KAFKA_RECORD = 'EVAQ_NOT_A_KAFKA_RECORD'

/** Removals of acknowledged runs in flight behind the sends. */
const MAX_REMOVALS = 4
/** How long one wait of the drainer for new records lasts before it looks again. */
const IDLE_WAIT_MS = 1000

export interface DrainerContext {
  readonly options: ResolvedProducerOptions
  /** The producer: the drainer emits `sent`, `retrying`, `deadLettered` and `error` on it. */
  readonly events: EventEmitter<EvacuatingProducerEvents>
  readonly outcomes: Outcomes
  /** Records left the WAL (sent and removed, dead-lettered, or gone): `flush()` looks again. */
  readonly settled: () => void
}

/**
 * The producer's single ordered lane: a WAL subscriber whose records it sends in WAL ID order, one
 * produce call at a time, then removes from the WAL or moves to the DLQ. It lives as long as the
 * producer (its counters count since the producer was created); each `start()` runs it anew.
 */
export class Drainer {
  /** Records taken from the subscriber and not sent yet, in WAL ID order. */
  private readonly held: Pending[] = []
  /** Messages of the produce call under way. */
  inFlight = 0
  /** Whether the producer is connected, as far as the drainer knows. */
  connected = false
  /** The producer the drainer sends with (options.newProducer replaces a spent one). */
  producer: KafkaProducerLike
  /** A confluent producer whose connect() failed, or that was disconnected: it cannot connect again (client.ts). */
  private spent = false
  readonly counters = { sent: 0, resent: 0, deadLettered: 0, failedAttempts: 0 }
  private readonly removals = new Set<Promise<void>>()
  private readonly options: ResolvedProducerOptions
  private readonly events: EventEmitter<EvacuatingProducerEvents>
  private readonly outcomes: Outcomes
  private readonly settled: () => void
  /** WAL IDs below this were pushed before this producer existed: sending them is a resend. */
  private readonly firstOwnId: number
  /** The directory's identity, the first half of every `evaq-id` (known before `run()`). */
  private identity = ''

  constructor (context: DrainerContext) {
    this.options = context.options
    this.events = context.events
    this.outcomes = context.outcomes
    this.settled = context.settled
    this.firstOwnId = this.options.evaq.wal.nextId
    this.producer = this.options.producer
  }

  /** Connect at start. Kafka may be down when the application starts: the drainer keeps trying. */
  async connect (): Promise<void> {
    try {
      await this.ensureConnected()
    } catch (err) {
      this.events.emit('retrying', { error: err, count: 0, attempt: 0, delayMs: 0 })
    }
  }

  async disconnect (): Promise<void> {
    try {
      if (this.connected) await this.producer.disconnect()
    } finally {
      if (this.connected && !reconnects(this.options.client)) this.spent = true
      this.connected = false
    }
  }

  /**
   * Connect unless connected. A producer that cannot connect again (spent) is replaced by a new
   * one when `producer` was a function; else its connect() fails again (ERR__STATE), a retriable
   * error that keeps the messages in the WAL until the application stops and starts anew.
   */
  private async ensureConnected (): Promise<void> {
    if (this.connected) return
    if (this.spent && this.options.newProducer !== undefined) {
      this.producer = this.options.newProducer()
      this.spent = false
    }
    try {
      await this.producer.connect()
    } catch (err) {
      if (!reconnects(this.options.client)) this.spent = true
      throw err
    }
    this.connected = true
  }

  /** Drain `sub` until `signal` aborts; resolves once the removals under way are done. */
  async run (sub: Subscriber, identity: string, signal: AbortSignal): Promise<void> {
    this.identity = identity
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
      const run = takeRun(this.held, this.options)
      await this.deliver(run, signal)
    }
    await Promise.all(this.removals)
  }

  /** After `run()` ended: give back what the drainer holds, so that a later start() in this process sends it at once. */
  async release (sub: Subscriber | undefined): Promise<void> {
    const held = this.held.splice(0).map(p => p.id)
    if (held.length > 0 && sub !== undefined) await sub.nack(held).catch(err => this.reportError(err))
  }

  /** Emit `error` only when listened to: the drainer retries, an unhandled `error` event would crash the process. */
  reportError (err: unknown): void {
    if (this.events.listenerCount('error') > 0) this.events.emit('error', err)
  }

  /** Take delivered records from the subscriber: wait for some when none are held, else only what is ready. */
  private async fill (sub: Subscriber, signal: AbortSignal): Promise<void> {
    const { maxBatchCount, maxBatchBytes } = this.options
    if (this.held.length >= maxBatchCount) return
    const heldBytes = this.held.reduce((n, p) => n + p.payload.byteLength, 0)
    if (this.held.length > 0 && heldBytes >= maxBatchBytes) return
    const batch = await sub.next({
      maxCount: maxBatchCount - this.held.length,
      maxBytes: Math.max(1, maxBatchBytes - heldBytes),
      waitMs: this.held.length === 0 ? IDLE_WAIT_MS : 0,
      signal,
    })
    if (batch === undefined) return
    for (const r of batch.records) this.held.push(pending(r, this.firstOwnId))
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
      const message = `WAL record ${p.id} is not a Kafka record of evaq; the producer owns its queue's WAL`
      await this.deadLetter(p, { code: NOT_A_KAFKA_RECORD, message }, signal)
      return
    }
    for (let failures = 0; ;) {
      if (signal.aborted) { this.giveBack(run); return }
      let error: unknown
      this.inFlight = run.length
      try {
        await this.ensureConnected()
        await this.producer.sendBatch(batchOf(run, this.identity, this.options))
      } catch (err) {
        error = err ?? new Error('sendBatch rejected without an error')
      } finally {
        this.inFlight = 0
      }
      if (error === undefined) {
        this.acknowledged(run, signal)
        return
      }
      let verdict: KafkaErrorClass
      try {
        verdict = this.options.classify(error)
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
      // A kafkajs producer may have lost its connection; connect() is cheap when it has one. The
      // confluent producer is connected once: librdkafka reconnects by itself (client.ts).
      if (reconnects(this.options.client)) this.connected = false
      const delayMs = this.delay(failures++)
      this.events.emit('retrying', { error, count: run.length, attempt: failures, delayMs })
      await sleep(delayMs, signal)
    }
  }

  /**
   * The broker acknowledged `run`: count it, resolve its `send()` calls, and remove it from the WAL
   * in the background, so that the next produce call does not wait for that write (the log merges
   * concurrent removals into one batch). A crash before the removal is durable sends the run
   * again after the restart: a duplicate with the same `evaq-id`.
   */
  private acknowledged (run: Pending[], signal: AbortSignal): void {
    let resent = 0
    for (const p of run) if (p.again || p.attempts > 0) resent++
    this.counters.sent += run.length
    this.counters.resent += resent
    for (const p of run) this.outcomes.settle(p.id, { kind: 'sent' })
    this.events.emit('sent', { count: run.length, resent, firstId: run[0]!.id, lastId: run[run.length - 1]!.id })
    const removal: Promise<void> = this.remove(run.map(p => p.id), signal).finally(() => {
      this.removals.delete(removal)
      this.settled()
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
        await this.options.evaq.removeWal(ids)
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
    const { evaq } = this.options
    const error = deadLetterError(err)
    let payload = p.payload
    if (p.record !== undefined && !p.record.headers.some(([name]) => name === EVAQ_ID_HEADER)) {
      const r = p.record
      const message = { key: r.key, value: r.value, partition: r.partition, headers: r.headers, timestamp: r.timestamp }
      payload = encodeRecord(r.topic, r.acks, message, [[EVAQ_ID_HEADER, Buffer.from(`${this.identity}:${p.id}`)]])
    }
    // `attempts` and `source` feed the retry daemon (this was one delivery attempt, from the WAL).
    const options = { payload, error, attempts: 1, source: { log: evaq.wal.name, id: p.id } }
    let dlqId: number | undefined
    for (let failures = 0; dlqId === undefined;) {
      try {
        dlqId = await evaq.moveWalToDlq(p.id, options)
      } catch (e) {
        if (isEvaqError(e, 'EVAQ_NOT_FOUND')) {
          // Gone from the WAL meanwhile (retention, drop-oldest: reported as dropped): nothing to move.
          this.outcomes.settle(p.id, { kind: 'dropped' })
          this.settled()
          return
        }
        this.reportError(e)
        if (isEvaqError(e, 'EVAQ_CLOSED') || signal.aborted) { this.giveBack([p]); return }
        await sleep(this.delay(failures++), signal)
      }
    }
    const message: DeadLetteredMessage = { id: p.id, dlqId, code: error.code, error: err }
    this.counters.deadLettered++
    this.outcomes.settle(p.id, { kind: 'dead', message })
    this.events.emit('deadLettered', message)
    this.settled()
  }

  /** Records a stop interrupted go back to the front of `held` (`release()` nacks them). */
  private giveBack (run: Pending[]): void {
    this.held.unshift(...run)
    this.held.sort((a, b) => a.id - b.id)
  }

  private delay (failures: number): number {
    return backoffDelay(this.options.backoff, failures)
  }
}
