/**
 * lmdb-js: LMDB (a B+tree in one memory-mapped file, copy-on-write pages, no log) with its
 * commits on lmdb-js's own writer thread. Keys are increasing integers (`uint32` key encoding),
 * values the raw payload bytes (`binary` encoding).
 *
 * Durability: lmdb-js's default on Linux is `overlappingSync: true`, where a write's promise
 * resolves once its transaction is committed and visible, and the flush to disk follows later
 * (`db.flushed`). With `overlappingSync: false` (and `noSync` off) the writer thread runs each
 * transaction without MDB_NOSYNC, so `mdb_txn_commit` fdatasyncs the data pages and then writes
 * the meta page through a descriptor opened with O_DSYNC before it returns (strace: one
 * fdatasync per commit), and the promise resolves after that: an acknowledged put is durable.
 * Writes issued in one event turn share one transaction (`eventTurnBatching`, on by default),
 * so 256 callers awaiting `put` commit together, as they do on evaq's group commit.
 */
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { open, type RootDatabase } from 'lmdb'
import { CALLERS, measureLatency, measureThroughput } from './common.js'
import { backlogFor, type Context, fromLatency, fromThroughput, MANY, type Sample, timedDrain } from './sample.js'

type Db = RootDatabase<Buffer, number>

/** `sync` false: `noSync: true` (MDB_NOSYNC, nothing flushed; the kernel writes the pages back when it likes), the closest to the others' no-sync modes. */
async function withLmdb<T> (ctx: Context, sync: boolean, fn: (db: Db, nextKey: () => number) => Promise<T>): Promise<T> {
  const db: Db = open<Buffer, number>({
    path: path.join(ctx.dir, 'lmdb'),
    encoding: 'binary',
    keyEncoding: 'uint32',
    ...(sync ? { overlappingSync: false } : { noSync: true }),
  })
  let key = 0
  try {
    return await fn(db, () => ++key)
  } finally {
    await db.close()
  }
}

/** `push-256` / `push-256-none`: `callers` loops of `await db.put(key, payload)`. */
export const lmdbPut = (ctx: Context, sync: boolean): Promise<Sample> => withLmdb(ctx, sync, async (db, nextKey) =>
  fromThroughput(await measureThroughput(ctx.config, CALLERS, 1, () => db.put(nextKey(), ctx.payload()))))

/** `seq`: one `await db.put` at a time: one synced transaction per record. */
export const lmdbSeq = (ctx: Context): Promise<Sample> => withLmdb(ctx, true, async (db, nextKey) =>
  fromLatency(await measureLatency(ctx.config, () => db.put(nextKey(), ctx.payload()))))

/** `many-1000`: one transaction of `group` puts per call, committed and synced before it resolves. */
export const lmdbGroup = (ctx: Context, group: number): Promise<Sample> => withLmdb(ctx, true, async (db, nextKey) =>
  fromThroughput(await measureThroughput(ctx.config, 1, group, () => db.transaction(() => {
    for (let i = 0; i < group; i++) void db.put(nextKey(), ctx.payload())
  })), { group }))

/** `drain`: read the next MANY entries in key order (keys and payloads), remove them in one synced transaction. */
export const lmdbDrain = (ctx: Context): Promise<Sample> => withLmdb(ctx, true, async (db, nextKey) => {
  const backlog = backlogFor(ctx, 'lmdb')
  const t0 = performance.now()
  for (let done = 0; done < backlog; done += MANY) {
    const n = Math.min(MANY, backlog - done)
    await db.transaction(() => { for (let i = 0; i < n; i++) void db.put(nextKey(), ctx.payload()) })
  }
  const buildMs = performance.now() - t0
  let from = 0
  return timedDrain(ctx.config, backlog, buildMs, async () => {
    const keys: number[] = []
    // Every payload is read, as the other drains read theirs.
    let bytes = 0
    for (const { key, value } of db.getRange({ start: from, limit: MANY })) {
      keys.push(key)
      bytes += value.length
    }
    if (keys.length === 0 || bytes === 0) return 0
    await db.transaction(() => { for (const k of keys) void db.remove(k) })
    from = keys[keys.length - 1]! + 1
    return keys.length
  })
})
