import type { ChainedBatch, Sublevel } from './store.js'

/**
 * Keys of one sublevel, written through the root database. A sublevel stores its keys with a
 * prefix (`!wal!…`); building the prefixed key once here spares abstract-level's per-operation
 * sublevel handling in chained batches, which measured as the largest cost of a small flush.
 * Reads still go through the sublevel, which strips the prefix.
 */
export class Keyspace {
  private readonly prefix: Buffer

  constructor (readonly sublevel: Sublevel) {
    this.prefix = Buffer.from(sublevel.prefix, 'utf8')
  }

  /** The root-level key of ID `id` in this sublevel. */
  id (id: number): Buffer {
    const p = this.prefix.byteLength
    const key = Buffer.allocUnsafe(p + 8)
    this.prefix.copy(key, 0)
    key.writeUInt32BE(Math.floor(id / 0x1_0000_0000), p)
    key.writeUInt32BE(id >>> 0, p + 4)
    return key
  }

  put (batch: ChainedBatch, id: number, value: Buffer): void {
    batch.put(this.id(id), value)
  }

  del (batch: ChainedBatch, id: number): void {
    batch.del(this.id(id))
  }
}
