import { invalid } from '../errors.js'
import type { Evaq } from '../evaq.js'
import { integer, rejectUnknown } from '../validate.js'
import { classifyKafkaError, type KafkaErrorClass } from './classify.js'
import { detectClient, takesRequestSettings, type KafkaClient } from './client.js'

/** A message as `sendBatch` takes it. */
interface BatchMessage {
  key?: Buffer | string | null
  value: Buffer | string | null
  partition?: number
  headers?: Record<string, Buffer | string | Array<Buffer | string> | undefined>
  timestamp?: string
}

/**
 * What the producer needs of a kafkajs `Producer` or of @confluentinc/kafka-javascript's
 * KafkaJS-compatible one (a structural subset, so that evaq's types require neither to be
 * installed). Pass `kafka.producer()`.
 */
export interface KafkaProducerLike {
  connect (): Promise<void>
  disconnect (): Promise<void>
  sendBatch (batch: {
    topicMessages?: Array<{ topic: string, messages: BatchMessage[] }>
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
  /**
   * A kafkajs producer or a @confluentinc/kafka-javascript KafkaJS-compatible one
   * (`kafka.producer()`), or a function that makes one (`() => kafka.producer()`); `start()`
   * connects it and `stop()` disconnects it. A confluent producer connects once: given a
   * function, the producer makes a new one whenever its `connect()` failed or it was
   * disconnected (a later `start()`); given an instance, that instance is all it has.
   */
  producer: KafkaProducerLike | (() => KafkaProducerLike)
  /**
   * Which client `producer` belongs to (see client.ts): `'confluent'` takes no `acks`, `timeoutMs`
   * or `compression` here (set them in its config) and is connected once.
   * @defaultValue detected: `'confluent'` when the producer has `dependentAdmin()`, else `'kafkajs'`
   */
  client?: KafkaClient
  /**
   * `'local'`: `send()` resolves once the messages are durable in the WAL (per the queue's
   * `durability`). `'broker'`: once the broker acknowledged every message (or it went to the DLQ);
   * their removal from the WAL follows (`flush()` waits for it).
   * @defaultValue `'local'`
   */
  await?: AwaitMode
  /** Topic of `send()` calls that name none. @defaultValue none */
  topic?: string
  /**
   * `acks` of `send()` calls that give none (-1: all in-sync replicas, 1: the leader, 0: none).
   * Not with `client: 'confluent'`, whose config sets it (`kafkaJS: { acks }`).
   * @defaultValue -1
   */
  acks?: number
  /** The broker's time limit for a produce request, in ms (kafkajs `timeout`; not with `client: 'confluent'`). @defaultValue kafkajs's 30000 */
  timeoutMs?: number
  /** kafkajs `CompressionTypes` value for every request (not with `client: 'confluent'`). @defaultValue none */
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

export const KAFKA_DEFAULTS = Object.freeze({
  await: 'local' as AwaitMode,
  acks: -1,
  maxBatchCount: 10_000,
  maxBatchBytes: 512 * 1024, // 512 KiB
  backoff: Object.freeze({ initialMs: 100, maxMs: 5000 }),
  subscriber: 'kafka-producer',
})

/** The options with every default applied, validated. */
export interface ResolvedProducerOptions {
  readonly evaq: Evaq
  /** The first producer (the one `producer` gave, or the first the function made). */
  readonly producer: KafkaProducerLike
  /** Makes a new producer, when `producer` is a function. */
  readonly newProducer: (() => KafkaProducerLike) | undefined
  readonly client: KafkaClient
  readonly await: AwaitMode
  readonly topic: string | undefined
  readonly acks: number
  readonly timeoutMs: number | undefined
  readonly compression: number | undefined
  readonly maxBatchCount: number
  readonly maxBatchBytes: number
  readonly backoff: { readonly initialMs: number, readonly maxMs: number }
  readonly classify: (err: unknown) => KafkaErrorClass
  readonly subscriber: string
}

const KNOWN = [
  'evaq', 'producer', 'client', 'await', 'topic', 'acks', 'timeoutMs', 'compression', 'maxBatchCount', 'maxBatchBytes', 'backoff', 'classify', 'subscriber',
]

/**
 * Validate the options of `new EvacuatingProducer()` and apply the defaults. Throws
 * EVAQ_INVALID_ARGUMENT for an unknown key (a misspelt option is never silently ignored) and for
 * the first invalid value.
 */
export function resolveProducerOptions (options: EvacuatingProducerOptions): ResolvedProducerOptions {
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object like { evaq, producer }', options)
  rejectUnknown(options, KNOWN, ' of EvacuatingProducer')
  const o = options
  if (o.evaq === null || typeof o.evaq !== 'object' || typeof o.evaq.pushWalMany !== 'function') throw invalid('evaq', 'an open Evaq', o.evaq)
  const newProducer = typeof o.producer === 'function' ? checkedFactory(o.producer) : undefined
  const p = newProducer === undefined ? checkProducer(o.producer) : newProducer()
  if (o.client !== undefined && o.client !== 'kafkajs' && o.client !== 'confluent') throw invalid('client', "'kafkajs' or 'confluent'", o.client)
  const client = o.client ?? detectClient(p)
  if (!takesRequestSettings(client)) {
    // The confluent producer rejects every sendBatch() that names them: refuse them here, once.
    for (const [name, setting] of [['acks', 'acks'], ['timeoutMs', 'timeout'], ['compression', 'compression']] as const) {
      if (o[name] !== undefined) {
        throw invalid(name, `unset with a @confluentinc/kafka-javascript producer (set kafkaJS: { ${setting} } in its config)`, o[name])
      }
    }
  }
  if (o.await !== undefined && o.await !== 'local' && o.await !== 'broker') throw invalid('await', "'local' or 'broker'", o.await)
  if (o.topic !== undefined && (typeof o.topic !== 'string' || o.topic.length === 0)) throw invalid('topic', 'a non-empty string', o.topic)
  if (o.classify !== undefined && typeof o.classify !== 'function') throw invalid('classify', 'a function', o.classify)
  if (o.subscriber !== undefined && typeof o.subscriber !== 'string') throw invalid('subscriber', 'a subscriber name', o.subscriber)
  const b = o.backoff ?? {}
  if (b === null || typeof b !== 'object') throw invalid('backoff', 'an object like { initialMs, maxMs }', b)
  const acks = checkAcks(o.acks ?? KAFKA_DEFAULTS.acks, 'acks')
  const timeoutMs = o.timeoutMs === undefined ? undefined : integer('timeoutMs', o.timeoutMs, 1, 2 ** 31 - 1)
  const compression = o.compression === undefined ? undefined : integer('compression', o.compression, 0, 4)
  const maxBatchCount = integer('maxBatchCount', o.maxBatchCount ?? KAFKA_DEFAULTS.maxBatchCount, 1, 1_000_000)
  const maxBatchBytes = integer('maxBatchBytes', o.maxBatchBytes ?? KAFKA_DEFAULTS.maxBatchBytes, 1)
  const initialMs = integer('backoff.initialMs', b.initialMs ?? KAFKA_DEFAULTS.backoff.initialMs, 0, 3_600_000)
  const maxMs = integer('backoff.maxMs', b.maxMs ?? Math.max(KAFKA_DEFAULTS.backoff.maxMs, initialMs), initialMs, 3_600_000)
  return Object.freeze({
    evaq: o.evaq,
    producer: p,
    newProducer,
    client,
    await: o.await ?? KAFKA_DEFAULTS.await,
    topic: o.topic,
    acks,
    timeoutMs,
    compression,
    maxBatchCount,
    maxBatchBytes,
    backoff: Object.freeze({ initialMs, maxMs }),
    classify: o.classify ?? classifyKafkaError,
    subscriber: o.subscriber ?? KAFKA_DEFAULTS.subscriber,
  })
}

function checkProducer (value: unknown): KafkaProducerLike {
  const p = value as Partial<KafkaProducerLike> | null
  if (p === null || typeof p !== 'object' || typeof p.connect !== 'function' || typeof p.disconnect !== 'function' || typeof p.sendBatch !== 'function') {
    throw invalid('producer', 'a kafkajs or @confluentinc/kafka-javascript producer (kafka.producer()), or a function that returns one', value)
  }
  return p as KafkaProducerLike
}

/** `make`, checking every producer it returns. */
function checkedFactory (make: () => KafkaProducerLike): () => KafkaProducerLike {
  return () => checkProducer(make())
}

/** A Kafka `acks` value: -1 (all in-sync replicas), 1 (the leader) or 0 (none). */
export function checkAcks (value: unknown, name: string): number {
  if (value !== -1 && value !== 0 && value !== 1) throw invalid(name, '-1, 0 or 1', value)
  return value
}
