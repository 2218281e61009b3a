import { MAX_ID, type OwnKeys } from '../log/log.js'
import type { ChainedBatch } from '../store/store.js'
import { decodeDueKey, encodeDueKey, scheduleTime } from './retry-state.js'

const EMPTY = Buffer.alloc(0)

/**
 * The DLQ's schedule index (`<log>-due`): one key per record, (nextAttemptAt, ID), so that key
 * order is due order and the due records are one bounded range read. Entries are staged in the
 * batches that write the states (see RetryStates).
 */
export class Schedule {
  constructor (private readonly keys: OwnKeys) {}

  stage (batch: ChainedBatch, at: number, id: number): void {
    this.keys.putKey(batch, encodeDueKey(EMPTY, at, id), EMPTY)
  }

  unstage (batch: ChainedBatch, at: number, id: number): void {
    this.keys.delKey(batch, encodeDueKey(EMPTY, at, id))
  }

  /** Entries due at `now` (at <= now), earliest first, at most `limit`. */
  async due (now: number, limit: number): Promise<Array<{ at: number, id: number }>> {
    const keys = await this.keys.keys({ lte: encodeDueKey(EMPTY, scheduleTime(now), MAX_ID), limit })
    return keys.map(k => decodeDueKey(k))
  }

  /** When the earliest entry is due, if there is one. */
  async first (): Promise<number | undefined> {
    const [key] = await this.keys.keys({ limit: 1 })
    return key === undefined ? undefined : decodeDueKey(key).at
  }
}
