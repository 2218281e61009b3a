import { EvaqError } from '../errors.js'
import { OwnKeys } from '../log/log.js'
import { MOVES_SUBLEVEL } from '../schema.js'
import type { ChainedBatch, Store } from '../store/store.js'
import type { MoveIntent } from './retry-state.js'

/**
 * The move intents in `retry-moves`, keyed by sequence number. Moves are one batch now, so
 * only an intent a version before that left behind, or a move a test stages by hand, is here;
 * the DLQ and parked logs write the new ID into an intent in the batch of the push (see Moves).
 */
export class MoveIntents {
  private readonly keys: OwnKeys

  constructor (store: Store) {
    this.keys = new OwnKeys(store, MOVES_SUBLEVEL)
  }

  /** Read the last sequence number used; returns the keys read (at most one). */
  async load (): Promise<number> {
    const last = await this.keys.lastId()
    return last === undefined ? 0 : 1
  }

  put (batch: ChainedBatch, seq: number, intent: MoveIntent): void {
    this.keys.put(batch, seq, Buffer.from(JSON.stringify(intent)))
  }

  del (batch: ChainedBatch, seq: number): void {
    this.keys.del(batch, seq)
  }

  /** A new batch to put or delete intents in (written through Log.writeOwn). */
  batch (): ChainedBatch {
    return this.keys.batch()
  }

  /** The intents on disk: moves under way, or left by a crash. Few: one per move in flight. */
  async pending (): Promise<Array<[number, MoveIntent]>> {
    const out: Array<[number, MoveIntent]> = []
    for await (const [seq, value] of this.keys.entries()) {
      try {
        out.push([seq, JSON.parse(value.toString('utf8')) as MoveIntent])
      } catch (cause) {
        throw new EvaqError('EVAQ_CORRUPTION', `Move intent ${seq} cannot be decoded`, { cause })
      }
    }
    return out
  }
}
