import type { LogContext, QueueLog, QueueRecord, RecordError } from '../log/log.js'
import type { MoveIntents } from './move-intents.js'
import { RetryLog } from './retry-log.js'
import { failureHistory, type ParkedState, type RecordInit } from './retry-state.js'

/** A parked record as reads return it: the record, and the history it was parked with. */
export interface ParkedRecord extends QueueRecord {
  readonly retry: ParkedState
}

/** `evaq.parked` as users see it: a log whose reads carry each record's history. */
export type ParkedQueue = QueueLog<ParkedRecord>

function initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): ParkedState {
  const s = (init?.state ?? {}) as Partial<ParkedState>
  return {
    ...failureHistory(s, pushedAt, error),
    parkedAt: s.parkedAt ?? pushedAt,
    reason: s.reason ?? 'permanent',
    ...(s.dlqId === undefined ? {} : { dlqId: s.dlqId }),
  }
}

/** Records the daemon gave up on: a RetryLog without a schedule. */
export class ParkedLog extends RetryLog<ParkedState> {
  constructor (name: string, ctx: LogContext, intents: MoveIntents) {
    super(name, ctx, intents, { initialState, fallbackState: record => initialState(record.pushedAt, undefined, record.error) })
  }
}
