import type { Subscriber, SubscribeOptions, SubscriberInfo } from './subscriber.js'
import type { LogStats, PushOptions, QueueRecord, ReadOptions } from './types.js'

/**
 * A log as users see it (`evaq.wal`, `evaq.dlq`, `evaq.parked`): what README.md documents, and
 * nothing of the machinery behind it. `R` is what its reads return (the DLQ's records carry
 * their retry state).
 */
export interface QueueLog<R extends QueueRecord = QueueRecord> {
  readonly name: string
  /** Push one payload; resolves with its ID once it is as durable as `durability` says. */
  push (payload: Buffer | Uint8Array | string, options?: PushOptions): Promise<number>
  /** Push payloads atomically, with consecutive IDs. */
  pushMany (payloads: ReadonlyArray<Buffer | Uint8Array | string>, options?: PushOptions): Promise<number[]>
  /** Remove records by ID, atomically (EVAQ_NOT_FOUND removes nothing); resolves with the highest ID removed. */
  remove (ids: number | readonly number[]): Promise<number | undefined>
  /** Live records in ID order (see ReadOptions). */
  read (options?: ReadOptions): Promise<R[]>
  stats (): Promise<LogStats>
  /** Create or resume a named, persistent subscriber. */
  subscribe (name: string, options?: SubscribeOptions): Promise<Subscriber>
  /** Forget a subscriber and its progress. */
  unsubscribe (name: string): Promise<boolean>
  subscribers (): SubscriberInfo[]
}

/** What the service, the metrics and the retry daemon use of a log besides QueueLog. */
export interface LogView<R extends QueueRecord = QueueRecord> extends QueueLog<R> {
  /** The ID the next push gets. */
  readonly nextId: number
  /** Highest ID below which every record is committed. */
  readonly watermark: number
  /** Compactions run since the queue opened. */
  readonly compactions: number
  /** Be told whenever the watermark may have moved. Returns an unsubscribe function. */
  onCommitted (listener: () => void): () => void
}
