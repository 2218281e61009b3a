import { decodeKey, encodeKey } from '../store/codec.js'
import { logSublevels } from '../schema.js'
import { Keyspace, type ChainedBatch, type Store, type Sublevel } from '../store/store.js'

/** The sublevels of a log that a sidecar may keep its own keys in (see LogSidecar). */
export type OwnKeysKind = 'retry' | 'due' | 'extra'

/**
 * A handle on one sublevel for code above the log (the DLQ's retry states, its schedule, the move
 * intents): keys by ID, or raw keys of the caller's own encoding, written in a batch the caller
 * hands to a log's write (Log.writeOwn, or a sidecar's stage calls), and read back. The only way
 * such code reaches the store.
 */
export class OwnKeys {
  private readonly level: Sublevel
  private readonly keyspace: Keyspace
  private readonly prefix: Buffer

  constructor (private readonly store: Store, name: string) {
    this.level = store.sublevel(name)
    this.keyspace = new Keyspace(this.level)
    this.prefix = Buffer.from(this.level.prefix, 'utf8')
  }

  /** A new batch of the database, for Log.writeOwn. */
  batch (): ChainedBatch {
    return this.store.db.batch()
  }

  put (batch: ChainedBatch, id: number, value: Buffer): void {
    this.keyspace.put(batch, id, value)
  }

  del (batch: ChainedBatch, id: number): void {
    this.keyspace.del(batch, id)
  }

  /** Put a key of the caller's own encoding (not an ID). */
  putKey (batch: ChainedBatch, key: Buffer, value: Buffer): void {
    batch.put(Buffer.concat([this.prefix, key]), value)
  }

  delKey (batch: ChainedBatch, key: Buffer): void {
    batch.del(Buffer.concat([this.prefix, key]))
  }

  /** The values of IDs `ids` (undefined where there is none). */
  getMany (ids: readonly number[]): Promise<Array<Buffer | undefined>> {
    return this.level.getMany(ids.map(id => encodeKey(id)))
  }

  /** Keys of the caller's own encoding, in key order (from the first, up to `lte`), at most `limit`. */
  keys (range: { lte?: Buffer, limit?: number }): Promise<Buffer[]> {
    return this.level.keys(range.lte === undefined ? { limit: range.limit ?? -1 } : { lte: range.lte, limit: range.limit ?? -1 }).all()
  }

  /** The highest ID with a value, if any. */
  async lastId (): Promise<number | undefined> {
    const [last] = await this.level.keys({ reverse: true, limit: 1 }).all()
    return last === undefined ? undefined : decodeKey(last)
  }

  /** Every entry, keyed by ID, in ID order. */
  async * entries (): AsyncGenerator<[number, Buffer]> {
    for await (const [key, value] of this.level.iterator()) yield [decodeKey(key), value]
  }
}

/** A handle on sublevel `kind` of log `log` (its `<log>-retry`, `<log>-due` or `<log>-extra`). */
export function logOwnKeys (store: Store, log: string, kind: OwnKeysKind): OwnKeys {
  return new OwnKeys(store, logSublevels(log)[kind])
}
