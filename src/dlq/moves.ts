import { EvaqError, isEvaqError } from '../errors.js'
import type { Store } from '../store/store.js'
import { MoveIntents } from './move-intents.js'
import type { MoveSource, RetryLog } from './retry-log.js'
import type { MoveIntent, RecordInit } from './retry-state.js'

/**
 * Moves of a record between logs (WAL to DLQ, DLQ to `parked`, `parked` to DLQ). A move is one
 * LevelDB batch: the record is pushed to `to` through `to`'s write buffer, in a segment of its
 * own, and that segment's batch is handed to `from`'s removal lane, which stages the removal of
 * the record into it and writes it (Log.removeCarried). So the record is in exactly one of the two
 * logs at every instant, a crash included, and each log's IDs and counters change in the batch
 * that changes its records. When the record is gone from `from` by then (removed, purged, dropped
 * by retention), nothing is written and the move resolves with undefined; a removal and a move of
 * the same ID in one removal group: the removal wins.
 *
 * Earlier versions moved in three batches with an intent `{ from, id, to }` in `retry-moves`; an
 * intent such a version left behind after a crash is settled when the queue opens: without a new
 * ID, nothing was pushed and the intent goes; with one, the record is removed from `from` if it is
 * still there, and if it is not, the copy in `to` is removed instead.
 */
export class Moves {
  /** The intents on disk (see the class comment); the retry logs write them in their batches. */
  readonly intents: MoveIntents

  constructor (store: Store) {
    this.intents = new MoveIntents(store)
  }

  /** Read the last sequence number used; returns the keys read (at most one). */
  load (): Promise<number> {
    return this.intents.load()
  }

  /** The intents on disk: moves under way, or left by a crash. */
  pending (): Promise<Array<[number, MoveIntent]>> {
    return this.intents.pending()
  }

  /**
   * Move record `id` of `from` to `to`, with `payload` and `init` (one batch, see the class
   * comment). Resolves with its new ID, or undefined when the record is no longer in `from`.
   */
  async move (from: MoveSource, to: RetryLog, id: number, payload: Buffer | Uint8Array | string, init: Omit<RecordInit, 'move'>): Promise<number | undefined> {
    try {
      return await to.pushMoved(payload, init, from, id)
    } catch (err) {
      if (isEvaqError(err, 'EVAQ_NOT_FOUND')) return undefined
      throw err
    }
  }

  /** Remove the copy `toId` from `to` (and the intent); fine if it is gone already. */
  private async undo (to: RetryLog, toId: number, seq: number): Promise<void> {
    try {
      await to.removeForMove([toId], seq)
    } catch (err) {
      if (!isEvaqError(err, 'EVAQ_NOT_FOUND')) throw err
      await to.deleteIntent(seq)
    }
  }

  /**
   * Finish the moves a crash (or a failed write) interrupted. Returns how many intents it
   * settled. Runs when the queue opens, before any daemon, and after a recovery from a failed write.
   */
  async recover (logs: ReadonlyMap<string, RetryLog>): Promise<number> {
    let settled = 0
    for (const [seq, intent] of await this.pending()) {
      const from = logs.get(intent.from)
      const to = logs.get(intent.to)
      if (from === undefined || to === undefined) {
        throw new EvaqError('EVAQ_CORRUPTION', `Move intent ${seq} names an unknown log (${intent.from} to ${intent.to})`)
      }
      if (intent.toId === undefined) {
        await from.deleteIntent(seq)
      } else if (await from.has(intent.id)) {
        await from.removeForMove([intent.id], seq)
      } else {
        await this.undo(to, intent.toId, seq)
      }
      settled++
    }
    return settled
  }
}
