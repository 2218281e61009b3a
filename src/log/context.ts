import type { EvaqError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { Store } from '../store/store.js'
import type { LRUCache } from 'lru-cache'
import type { Segment } from './segment.js'
import type { Subscriber } from './subscriber.js'
import type { Admission, Carrier, DropEvent, FlushEvent, QueueRecord } from './types.js'

/** The log a subscriber's record is dead-lettered from: the move acknowledges it there (see Log.ackCarried). */
export interface DeadLetterSource {
  readonly name: string
  ackCarried (sub: Subscriber, id: number, carrier: Carrier): Promise<void>
}

/** What a log takes from its owner (Evaq): the store, the options, and the queue's state and events. */
export interface LogContext {
  readonly store: Store
  readonly options: ResolvedOptions
  readonly segments: LRUCache<string, Segment>
  /** Whether this log keeps a per-record extra (the DLQ keeps the error). */
  readonly extras: boolean
  /** Records older than this many ms are dropped (and counted). */
  readonly maxAgeMs: number | undefined
  readonly admission: Admission
  /** Throws EVAQ_CLOSED once the owner closes. Reads work while the queue is degraded. */
  assertOpen (): void
  /** Like assertOpen, and throws EVAQ_IO while the queue is degraded (writes would fail). */
  assertWritable (): void
  isOpen (): boolean
  /**
   * The reopen under way (a recovery from a failed write, or a repair), if any: the database is
   * briefly closed, and nothing is written until it is open again.
   */
  reopening (): Promise<void> | undefined
  /**
   * LevelDB met damage in its own files (a block it cannot read). Starts a repair while the
   * queue stays open, or joins the one under way, and returns what writes wait for; undefined
   * when the queue cannot repair now (it degrades instead, see Evaq).
   */
  damaged (err: EvaqError): Promise<void> | undefined
  /** A write failed: LevelDB refuses further writes until it is reopened. */
  ioFailed (err: EvaqError): void
  /** Called after a write that was not fsynced (interval durability). */
  markDirty (): void
  /** Move a record a subscriber could not process to the dead-letter queue; undefined: keep redelivering. */
  readonly deadLetter: ((log: DeadLetterSource, sub: Subscriber, record: QueueRecord, deliveries: number) => Promise<void>) | undefined
  dropped (event: DropEvent): void
  /** A flush completed (for metrics). */
  flushed? (event: FlushEvent): void
  error (err: unknown): void
}
