import type { ChainedBatch, Delta } from '../store/store.js'
import type { PendingSegment } from '../write/group-commit.js'

/**
 * The types a log's modules share (records, options, stats, events, and what a log takes from
 * its owner and its sidecar). Types and one constant only: every module of src/log may import it.
 */

/** A record as reads return it. */
export interface QueueRecord {
  /** The record's ID: strictly increasing per log, never reused. */
  readonly id: number
  /** The payload, a copy the caller owns. */
  readonly payload: Buffer
  /** When the record's segment was written, ms since the epoch. */
  readonly pushedAt: number
  /** What the record was stored with, if anything (the DLQ stores the error that sent it there). */
  readonly error?: RecordError
}

export interface RecordError {
  readonly code?: string
  readonly message: string
  /** Where the record came from, when evaq moved it (for example after too many deliveries). */
  readonly source?: { readonly log: string, readonly id: number }
  /** The subscriber that could not process it, and how often it was delivered. */
  readonly subscriber?: string
  readonly deliveries?: number
}

export interface ReadOptions {
  /** Lowest ID to return; earlier IDs are skipped. @defaultValue the first live record */
  from?: number
  /** Upper bound on the payload bytes returned; at least one record is returned when one exists. @defaultValue 1 MiB */
  maxBytes?: number
  /** Upper bound on the records returned. @defaultValue 10000 */
  maxCount?: number
}

export interface PushOptions {
  /** Aborts a push that is waiting for buffer space, with `EVAQ_ABORTED`. */
  signal?: AbortSignal
}

export interface LogStats {
  /** Live records: committed and not removed. */
  readonly count: number
  /** Payload bytes of the live records. */
  readonly bytes: number
  /** Lowest live ID, if any. */
  readonly firstId: number | undefined
  /** When the record `firstId` was pushed (ms since the epoch, the queue's clock), if any. */
  readonly firstPushedAt: number | undefined
  /** Highest live ID, if any. */
  readonly lastId: number | undefined
  /** The ID the next push will get. */
  readonly nextId: number
  /** Records and payload bytes dropped by retention or drop-oldest since the log was created. */
  readonly dropped: { readonly records: number, readonly bytes: number }
  /** Subscribers dropped for inactivity since the log was created. */
  readonly expiredSubscribers: number
  /**
   * Records taken out for damage: their stored bytes failed a checksum (kept in
   * `<log>-quarantine`), or LevelDB could not read or recover them. Each was named by a `dropped`
   * event with reason 'corruption' (or, at open, in `openReport.dropped`).
   */
  readonly quarantined: number
  readonly subscribers: readonly SubscriberInfo[]
}

/** Why records left a log without being removed or acknowledged. */
export type DropReason = 'drop-oldest' | 'retention' | 'corruption' | 'unsynced'

/** One flush of the write buffer: one LevelDB batch (and one fsync under durability 'sync'). */
export interface FlushEvent {
  readonly log: string
  /** Records written by this flush. */
  readonly records: number
  /** Segments written (one per pushMany group or buffer fill). */
  readonly segments: number
  /** Payload bytes written. */
  readonly bytes: number
  /** Time the LevelDB write took, fsync included when `synced`, in ms. */
  readonly durationMs: number
  /** Whether the write was fsynced (durability 'sync'). */
  readonly synced: boolean
}

export interface DropEvent {
  readonly log: string
  readonly reason: DropReason | 'subscriber-ttl'
  /** Records and payload bytes dropped (0 for a subscriber). */
  readonly records: number
  readonly bytes: number
  /** The ID range dropped, or the subscriber. */
  readonly firstId?: number
  readonly lastId?: number
  readonly subscriber?: string
}

/** The highest ID a log can issue. */
export const MAX_ID = Number.MAX_SAFE_INTEGER

export interface SubscriberInfo {
  readonly name: string
  /** Every ID below this is acknowledged by the subscriber. */
  readonly ackFloor: number
  /** The next ID not yet delivered. */
  readonly cursor: number
  /** Records delivered and not acknowledged yet. */
  readonly inFlight: number
  /**
   * Records committed at or above `ackFloor` and not acknowledged: the IDs in that range, at most
   * the log's live records (an over-count while removed records lie in that range).
   */
  readonly lagRecords: number
  /** Payload bytes of `lagRecords`, estimated from the log's mean record size. */
  readonly lagBytes: number
  /** Age of the oldest unacknowledged record in ms, or 0. */
  readonly oldestUnackedAgeMs: number
  readonly leaseMs: number
  readonly maxDeliveries: number
  readonly lastActiveAt: number
}

/** Pushes are admitted through this; a disk budget makes pushes wait, fail or drop old data. */
export interface Admission {
  admit (log: AdmittedLog, bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined
}

/** What an admission may do to a log to make room (see DiskBudget). */
export interface AdmittedLog {
  readonly name: string
  /** Live payload bytes (committed, not removed). */
  readonly liveBytes: number
  /** Drop the oldest segments until at least `bytes` of live payload went (at least one segment). */
  dropOldest (bytes: number): Promise<{ records: number, bytes: number }>
  /** Compact the ranges deleted so far. */
  compact (): Promise<void>
}

/**
 * A batch another log built (a push to it) and hands to this log's removal lane: the removal is
 * staged into it and the lane writes it, so that both commit together or not at all.
 */
export interface Carrier {
  readonly batch: ChainedBatch
  readonly delta: Delta
}

/** Commits a carried segment (see GroupCommit's `carrier`) in place of the log's own write. */
export type CarryFn = (batch: ChainedBatch, delta: Delta) => Promise<void>

/**
 * What a log that keeps more per record (the DLQ's retry state) adds to the log's own batches:
 * the log calls it while it builds a batch, so that the additions commit with the records, or not
 * at all. Composed into a log (see Log's constructor), never a subclass.
 */
export interface LogSidecar {
  /** Add what belongs to the records of `segment` to the batch that commits it. */
  stageCommit? (batch: ChainedBatch, segment: PendingSegment, pushedAt: number): void
  /** Add what goes with the removal of `ids` (explicitly removed or quarantined) to its batch. */
  stageRemoval? (batch: ChainedBatch, ids: readonly number[]): Promise<void>
  /** Add what goes with the deletion of the whole segment [first, first + count) to its batch. */
  stageSegmentDeletion? (batch: ChainedBatch, first: number, count: number): void
}
