import { crashPoint } from '../crash-points.js'
import { EvaqError, isEvaqError } from '../errors.js'
import { decodeKey } from '../store/codec.js'
import { Keyspace, type ChainedBatch, type Store, type Sublevel } from '../store/store.js'
import type { RecordInit } from './retry-state.js'
import type { MoveIntent } from './retry-state.js'
import type { RetryLog } from './retry-log.js'

/**
 * Moving a record between the DLQ and `parked` touches two logs, each with its own group commit
 * and ID sequence, so it cannot be one LevelDB batch. It is three, with an intent that makes the
 * move crash-safe:
 *
 *   1. the intent `{ from, id, to }` is written (synced, per the log's durability);
 *   2. the record is pushed to `to`; the same batch records its new ID in the intent;
 *   3. the record is removed from `from`; the same batch deletes the intent.
 *
 * An intent left by a crash is finished when the queue opens: without a new ID, nothing was
 * pushed and the intent goes; with one, the record is removed from `from` if it is still there,
 * and if it is not (something else removed it meanwhile: `doneRetryItems`, a purge, retention),
 * the copy in `to` is removed instead, so the record ends in exactly one place either way. The
 * same rule applies at once when step 3 finds the record gone.
 */
export class Moves {
  private readonly level: Sublevel
  private readonly keys: Keyspace
  private seq = 0
  /** Moves under way in this process: a recovery pass leaves their intents alone. */
  private readonly active = new Set<number>()

  constructor (store: Store) {
    this.level = store.sublevel('retry-moves')
    this.keys = new Keyspace(this.level)
  }

  /** Read the last sequence number used; returns the keys read (at most one). */
  async load (): Promise<number> {
    const [last] = await this.level.keys({ reverse: true, limit: 1 }).all()
    this.seq = last === undefined ? 0 : decodeKey(last)
    return last === undefined ? 0 : 1
  }

  put (batch: ChainedBatch, seq: number, intent: MoveIntent): void {
    this.keys.put(batch, seq, Buffer.from(JSON.stringify(intent)))
  }

  del (batch: ChainedBatch, seq: number): void {
    this.keys.del(batch, seq)
  }

  /** The intents on disk: moves under way, or left by a crash. Few: one per move in flight. */
  async pending (): Promise<Array<[number, MoveIntent]>> {
    const out: Array<[number, MoveIntent]> = []
    for await (const [key, value] of this.level.iterator()) {
      const seq = decodeKey(key)
      try {
        out.push([seq, JSON.parse(value.toString('utf8')) as MoveIntent])
      } catch (cause) {
        throw new EvaqError('EVAQ_CORRUPTION', `Move intent ${seq} cannot be decoded`, { cause })
      }
    }
    return out
  }

  /**
   * Move `record` from `from` to `to` (see the class comment). Resolves with its new ID, or
   * undefined when the record left `from` by other means while it was being moved (then the copy
   * in `to` is removed again).
   */
  async move (from: RetryLog, to: RetryLog, id: number, payload: Buffer, init: Omit<RecordInit, 'move'>): Promise<number | undefined> {
    const seq = ++this.seq
    const intent: MoveIntent = { from: from.name, id, to: to.name }
    this.active.add(seq)
    try {
      await from.writeIntent(seq, intent)
      crashPoint('move:intent')
      let toId: number
      try {
        toId = await to.pushRecord(payload, { ...init, move: { seq, intent } })
      } catch (err) {
        // The push may or may not be stored (EVAQ_IO): the intent stays, and the next recovery settles it.
        if (!isEvaqError(err, 'EVAQ_IO')) await from.deleteIntent(seq).catch(() => {})
        throw err
      }
      crashPoint('move:pushed')
      try {
        await from.removeForMove([id], seq)
      } catch (err) {
        if (!isEvaqError(err, 'EVAQ_NOT_FOUND')) throw err
        await this.undo(to, toId, seq)
        return undefined
      }
      crashPoint('move:removed')
      return toId
    } finally {
      this.active.delete(seq)
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
      if (this.active.has(seq)) continue
      const from = logs.get(intent.from)
      const to = logs.get(intent.to)
      if (from === undefined || to === undefined) throw new EvaqError('EVAQ_CORRUPTION', `Move intent ${seq} names an unknown log (${intent.from} to ${intent.to})`)
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
