import type { LogSidecar, OwnKeys, QueueRecord, RecordError } from '../log/log.js'
import type { ChainedBatch } from '../store/store.js'
import type { PendingSegment } from '../write/group-commit.js'
import type { MoveIntents } from './move-intents.js'
import type { Schedule } from './schedule.js'
import { decodeInit, decodeState, encodeState, parseRecordError, type ParkedState, type RecordInit, type RetryState } from './retry-state.js'

/** How a retry log makes the state of a record (the DLQ's and parked's differ). */
export interface StatePolicy<S extends RetryState | ParkedState> {
  /** The state a record gets when it is committed. */
  initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): S
  /** The state of a record that has none on disk (it cannot be found in the schedule). */
  fallbackState (record: QueueRecord): S
}

/**
 * The sidecar of a retry log (the DLQ, `parked`): each record's retry state beside the payload
 * (`<log>-retry`, keyed by ID), written in the batch that commits the record and deleted in the
 * batch that removes, drops or quarantines it; with a schedule (the DLQ's `<log>-due`), its entry
 * goes with the state.
 */
export class RetryStates<S extends RetryState | ParkedState> implements LogSidecar {
  constructor (
    private readonly logName: string,
    /** `<log>-retry`. */
    private readonly keys: OwnKeys,
    /** `<log>-extra`, the log's own: written again here when a push carried a RecordInit. */
    private readonly extras: OwnKeys,
    private readonly intents: MoveIntents,
    private readonly policy: StatePolicy<S>,
    private readonly schedule: Schedule | undefined
  ) {}

  /** A new batch for the log's writeOwn. */
  batch (): ChainedBatch {
    return this.keys.batch()
  }

  /** Stage `state` as the state of record `id` (and its schedule entry). */
  stageState (batch: ChainedBatch, id: number, state: S): void {
    this.keys.put(batch, id, encodeState(state))
    if (this.schedule !== undefined) this.schedule.stage(batch, (state as RetryState).nextAttemptAt, id)
  }

  stageCommit (batch: ChainedBatch, segment: PendingSegment, pushedAt: number): void {
    const { firstId, count } = segment.builder
    const extras = segment.extras.length === 0 ? undefined : new Map(segment.extras)
    for (let id = firstId; id < firstId + count; id++) {
      const extra = extras?.get(id)
      const init = extra === undefined ? undefined : decodeInit(extra)
      if (init !== undefined) {
        // The Log staged the extra as given; what it keeps is the error alone (or nothing).
        if (init.error === undefined) this.extras.del(batch, id)
        else this.extras.put(batch, id, Buffer.from(JSON.stringify(init.error)))
        if (init.move !== undefined) this.intents.put(batch, init.move.seq, { ...init.move.intent, toId: id })
      }
      this.stageState(batch, id, this.policy.initialState(pushedAt, init, init === undefined ? parseRecordError(extra) : init.error))
    }
  }

  async stageRemoval (batch: ChainedBatch, ids: readonly number[]): Promise<void> {
    if (this.schedule !== undefined) {
      const schedule = this.schedule
      const states = await this.getStates(ids, true)
      states.forEach((state, i) => {
        if (state !== undefined) schedule.unstage(batch, (state as RetryState).nextAttemptAt, ids[i]!)
      })
    }
    for (const id of ids) this.keys.del(batch, id)
  }

  stageSegmentDeletion (batch: ChainedBatch, first: number, count: number): void {
    for (let id = first; id < first + count; id++) this.keys.del(batch, id)
  }

  /** Stage the deletion of the state of record `id` alone (a record that is gone). */
  unstageState (batch: ChainedBatch, id: number): void {
    this.keys.del(batch, id)
  }

  /** `records` with their retry states (`retry`). */
  async withStates (records: QueueRecord[]): Promise<Array<QueueRecord & { readonly retry: S }>> {
    if (records.length === 0) return []
    const values = await this.keys.getMany(records.map(r => r.id))
    return records.map((r, i) => {
      const value = values[i]
      const retry = value === undefined ? this.policy.fallbackState(r) : decodeState<S>(this.logName, r.id, value)
      return Object.assign(r, { retry })
    })
  }

  /**
   * The stored states of `ids` (undefined where there is none). A state that cannot be decoded
   * throws EVAQ_CORRUPTION, or with `lenient` counts as none.
   */
  async getStates (ids: readonly number[], lenient = false): Promise<Array<S | undefined>> {
    if (ids.length === 0) return []
    const values = await this.keys.getMany(ids)
    return values.map((v, i) => {
      if (v === undefined) return undefined
      try {
        return decodeState<S>(this.logName, ids[i]!, v)
      } catch (err) {
        if (lenient) return undefined
        throw err
      }
    })
  }
}
