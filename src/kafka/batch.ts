/** The records the drainer holds, and how it groups them into produce calls. */
import type { Delivery } from '../log/subscriber.js'
import { takesRequestSettings, type KafkaClient } from './client.js'
import type { KafkaProducerLike } from './producer-options.js'
import { decodeRecord, EVAQ_ID_HEADER, toKafkaHeaders, type DecodedRecord } from './record.js'

/** A WAL record the drainer took from its subscriber and has not sent, dead-lettered or given back yet. */
export interface Pending {
  readonly id: number
  readonly payload: Buffer
  /** Undefined for a record that is not a Kafka record of evaq. */
  readonly record: DecodedRecord | undefined
  /** Failed attempts in this process. */
  attempts: number
  /** Delivered before (nacked at a stop, or left by an earlier run). */
  readonly again: boolean
}

export type ProduceBatch = Parameters<KafkaProducerLike['sendBatch']>[0]

/** What every produce call shares: the producer's defaults and request settings. */
export interface BatchSettings {
  readonly client: KafkaClient
  readonly acks: number
  readonly timeoutMs: number | undefined
  readonly compression: number | undefined
  readonly maxBatchCount: number
  readonly maxBatchBytes: number
}

/** A delivered record; `firstOwnId` is the first WAL ID this producer pushed (IDs below it are resends). */
export function pending (r: Delivery, firstOwnId: number): Pending {
  let record: DecodedRecord | undefined
  try {
    record = decodeRecord(r.payload)
  } catch {
    record = undefined
  }
  return { id: r.id, payload: r.payload, record, attempts: 0, again: r.deliveryCount > 1 || r.id < firstOwnId }
}

/**
 * Remove and return the longest prefix of `held` that can go in one produce call: same `acks`,
 * within the batch bounds. A record that is not a Kafka record is a run of its own.
 */
export function takeRun (held: Pending[], s: BatchSettings): Pending[] {
  const first = held[0]!
  if (first.record === undefined) return held.splice(0, 1)
  const acks = first.record.acks ?? s.acks
  let n = 0
  let bytes = 0
  for (const p of held) {
    if (p.record === undefined || (p.record.acks ?? s.acks) !== acks) break
    if (n > 0 && (n >= s.maxBatchCount || bytes + p.payload.byteLength > s.maxBatchBytes)) break
    n++
    bytes += p.payload.byteLength
  }
  return held.splice(0, n)
}

/**
 * The `sendBatch` argument of a run; messages without an `evaq-id` header get `<identity>:<WAL ID>`.
 * `acks`, `timeout` and `compression` only for a client that takes them per call (client.ts).
 */
export function batchOf (run: readonly Pending[], identity: string, s: BatchSettings): ProduceBatch {
  type Message = { key: Buffer | null, value: Buffer | null, partition?: number, headers: Record<string, Buffer | Buffer[]>, timestamp: string }
  const byTopic = new Map<string, Message[]>()
  for (const p of run) {
    const r = p.record!
    const headers = toKafkaHeaders(r.headers)
    if (headers[EVAQ_ID_HEADER] === undefined) headers[EVAQ_ID_HEADER] = Buffer.from(`${identity}:${p.id}`)
    const message = { key: r.key, value: r.value, headers, timestamp: r.timestamp, ...(r.partition === undefined ? {} : { partition: r.partition }) }
    let list = byTopic.get(r.topic)
    if (list === undefined) byTopic.set(r.topic, list = [])
    list.push(message)
  }
  const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }))
  if (!takesRequestSettings(s.client)) return { topicMessages }
  return {
    topicMessages,
    acks: run[0]!.record!.acks ?? s.acks,
    ...(s.timeoutMs === undefined ? {} : { timeout: s.timeoutMs }),
    ...(s.compression === undefined ? {} : { compression: s.compression }),
  }
}
