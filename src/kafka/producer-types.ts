/** The shapes `EvacuatingProducer`'s calls take and return, and its events. */
import type { KafkaMessage } from './record.js'

export interface SendOptions {
  /** @defaultValue the producer's `topic` */
  topic?: string
  messages: KafkaMessage[]
  /** @defaultValue the producer's `acks` (not with a @confluentinc/kafka-javascript producer: its config sets it) */
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
