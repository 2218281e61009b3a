import { logOwnKeys, type LogContext, type QueueLog, type QueueRecord, type RecordError } from '../log/log.js'
import type { MoveIntents } from './move-intents.js'
import { RetryLog } from './retry-log.js'
import { failureHistory, scheduleTime, type RecordInit, type RetryState } from './retry-state.js'
import { Schedule } from './schedule.js'

/** A DLQ record as reads return it: the record, and its retry state. */
export interface DeadLetterRecord extends QueueRecord {
  readonly retry: RetryState
}

/** `evaq.dlq` as users see it: a log whose reads carry each record's retry state. */
export type DeadLetterQueue = QueueLog<DeadLetterRecord>

function initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): RetryState {
  const s = (init?.state ?? {}) as Partial<RetryState>
  return { ...failureHistory(s, pushedAt, error), nextAttemptAt: scheduleTime(s.nextAttemptAt ?? pushedAt) }
}

/** The dead-letter queue: a RetryLog with the schedule index `<log>-due`. */
export class DeadLetterLog extends RetryLog<RetryState> {
  private readonly schedule: Schedule

  constructor (name: string, ctx: LogContext, intents: MoveIntents) {
    const schedule = new Schedule(logOwnKeys(ctx.store, name, 'due'))
    super(name, ctx, intents, { initialState, fallbackState: record => initialState(record.pushedAt, undefined, record.error) }, schedule)
    this.schedule = schedule
  }

  /**
   * Entries of the schedule due at `now` (nextAttemptAt <= now), earliest first, at most `limit`:
   * one bounded range read of the index. An entry is stale when its record left by a whole-segment
   * deletion (retention, drop-oldest, cleanup), which deletes states by ID range without reading
   * them; callers check each entry against the state and drop the stale ones (dropStale).
   */
  dueEntries (now: number, limit: number): Promise<Array<{ at: number, id: number }>> {
    return this.schedule.due(now, limit)
  }

  /** When the earliest entry of the schedule is due, if there is one. */
  firstDueAt (): Promise<number | undefined> {
    return this.schedule.first()
  }

  /** Replace a record's state (and its schedule entry) in one batch. */
  async updateState (id: number, from: RetryState | undefined, to: RetryState, what: string): Promise<void> {
    const batch = this.states.batch()
    if (from !== undefined && from.nextAttemptAt !== to.nextAttemptAt) this.schedule.unstage(batch, from.nextAttemptAt, id)
    this.states.stageState(batch, id, to)
    await this.log.writeOwn(batch, what)
  }

  /** Delete schedule entries that no longer match a state, and the states of records that are gone. */
  async dropStale (entries: ReadonlyArray<{ at: number, id: number }>, orphans: ReadonlyArray<{ at: number, id: number }>): Promise<void> {
    if (entries.length === 0 && orphans.length === 0) return
    const batch = this.states.batch()
    for (const e of entries) this.schedule.unstage(batch, e.at, e.id)
    for (const e of orphans) {
      this.schedule.unstage(batch, e.at, e.id)
      this.states.unstageState(batch, e.id)
    }
    await this.log.writeOwn(batch, `Cleaning ${entries.length + orphans.length} stale schedule entries of ${this.name} failed`)
  }
}
