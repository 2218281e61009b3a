/**
 * The systems the comparison runs, each doing one workload once: evaq and its baselines (the
 * disk's limit and a plain file append through Node's fs in lib/disk.ts, raw classic-level,
 * better-sqlite3, lmdb-js in lib/lmdb.ts, BullMQ on redis-server), and the matrix of workloads.
 * See perf/README.md ("Comparison") for what each one does and why.
 */
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import Database from 'better-sqlite3'
import { Queue, Worker } from 'bullmq'
import { ClassicLevel } from 'classic-level'
import { Evaq, type EvaqOptions } from '../../src/index.js'
import { CALLERS, type LatencySample, measureLatency, measureThroughput, runningServers, type ThroughputSample } from './common.js'
import { fsGroup, fsOverwriteGroup, fsOverwriteSeq, fsSeq } from './disk.js'
import { resourceMeter } from './io.js'
import { lmdbDrain, lmdbGroup, lmdbPut, lmdbSeq } from './lmdb.js'
import {
  backlogFor, type Context, fromLatency, fromThroughput, MANY, type Sample, type SystemId, sleepUntil, timedDrain, type WorkloadId,
} from './sample.js'

export { MANY, type Sample, type SystemId, type WorkloadId }

/** BullMQ worker concurrency in the drain: the best of 1, 16, 100 and 256 in a probe on this machine. */
export const BULLMQ_CONCURRENCY = 100
/** evaq's segment framing: a 20-byte header and 8 bytes per record (length and CRC32). */
const SEGMENT_HEADER = 20
const SEGMENT_PER_RECORD = 8

// ---------------------------------------------------------------------------------------------
// evaq

async function withEvaq (dir: string, options: EvaqOptions, fn: (q: Evaq) => Promise<ThroughputSample | LatencySample>): Promise<Sample> {
  const q = await Evaq.open(dir, options)
  let result: ThroughputSample | LatencySample
  let records: number
  try {
    result = await fn(q)
    records = (await q.wal.stats()).count
  } finally {
    await q.close()
  }
  const segments = await countSegments(dir)
  const extra = { segments, segmentRecords: segments === 0 ? undefined : records / segments }
  return result.kind === 'throughput' ? fromThroughput(result, extra) : { ...fromLatency(result), ...extra }
}

/**
 * Segments evaq wrote: one LevelDB entry per flush under the `wal` sublevel (design.md, "Data
 * model"), counted after close with a plain classic-level iterator over `!wal!`.
 */
async function countSegments (dir: string): Promise<number> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  try {
    let n = 0
    // eslint-disable-next-line @typescript-eslint/no-unused-vars -- only the count of keys matters
    for await (const _ of db.keys({ gte: Buffer.from('!wal!'), lt: Buffer.from('!wal"') })) n++
    return n
  } finally {
    await db.close()
  }
}

async function evaqDrain (ctx: Context): Promise<Sample> {
  const q = await Evaq.open(ctx.dir)
  try {
    const sub = await q.wal.subscribe('drain')
    const backlog = backlogFor(ctx, 'evaq')
    const t0 = performance.now()
    for (let done = 0; done < backlog; done += CALLERS) {
      // Segments of 256 records: what `push-256` writes.
      await q.pushWalMany(Array.from({ length: Math.min(CALLERS, backlog - done) }, ctx.payload))
    }
    const buildMs = performance.now() - t0
    const maxBytes = MANY * ctx.size
    return await timedDrain(ctx.config, backlog, buildMs, async () => {
      const b = await sub.next({ maxCount: MANY, maxBytes })
      if (b === undefined) return 0
      await b.ack()
      return b.records.length
    })
  } finally {
    await q.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Raw classic-level

type RawDb = ClassicLevel<Buffer, Buffer>

/** classic-level with its defaults; keys are 8-byte big-endian sequence numbers. */
async function withLevel<T> (dir: string, fn: (db: RawDb, nextKey: () => Buffer) => Promise<T>): Promise<T> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  let seq = 0
  const nextKey = (): Buffer => {
    const key = Buffer.allocUnsafe(8)
    key.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 0)
    key.writeUInt32BE(seq >>> 0, 4)
    seq++
    return key
  }
  try {
    return await fn(db, nextKey)
  } finally {
    await db.close()
  }
}

const levelPut = (ctx: Context, sync: boolean): Promise<Sample> => withLevel(ctx.dir, async (db, nextKey) =>
  fromThroughput(await measureThroughput(ctx.config, CALLERS, 1, () => db.put(nextKey(), ctx.payload(), { sync }))))

const levelPutSeq = (ctx: Context): Promise<Sample> => withLevel(ctx.dir, async (db, nextKey) =>
  fromLatency(await measureLatency(ctx.config, () => db.put(nextKey(), ctx.payload(), { sync: true }))))

const levelBatch = (ctx: Context, group: number, sync: boolean): Promise<Sample> => withLevel(ctx.dir, async (db, nextKey) =>
  fromThroughput(await measureThroughput(ctx.config, 1, group, () => {
    const batch = db.batch()
    for (let i = 0; i < group; i++) batch.put(nextKey(), ctx.payload())
    return batch.write({ sync })
  }), { group }))

/**
 * evaq's write pattern without evaq: one value the size of a `group`-record segment (random
 * bytes) and one 256 B value like its commit snapshot, in one synced chained batch. The most evaq
 * can reach on LevelDB with segments of that size.
 */
const levelSegment = (ctx: Context, group: number): Promise<Sample> => withLevel(ctx.dir, async (db, nextKey) => {
  const value = randomBytes(SEGMENT_HEADER + group * (ctx.size + SEGMENT_PER_RECORD))
  const snapshot = randomBytes(256)
  return fromThroughput(await measureThroughput(ctx.config, 1, group, () => {
    const batch = db.batch()
    batch.put(nextKey(), value)
    batch.put(nextKey(), snapshot)
    return batch.write({ sync: true })
  }), { group })
})

const levelDrain = (ctx: Context): Promise<Sample> => withLevel(ctx.dir, async (db, nextKey) => {
  const backlog = backlogFor(ctx, 'level-batch')
  const t0 = performance.now()
  for (let done = 0; done < backlog; done += MANY) {
    const batch = db.batch()
    for (let i = 0; i < Math.min(MANY, backlog - done); i++) batch.put(nextKey(), ctx.payload())
    await batch.write({ sync: true })
  }
  const buildMs = performance.now() - t0
  let last: Buffer | undefined
  return timedDrain(ctx.config, backlog, buildMs, async () => {
    const entries = await db.iterator(last === undefined ? { limit: MANY } : { gt: last, limit: MANY }).all()
    if (entries.length === 0) return 0
    const batch = db.batch()
    for (const [key] of entries) batch.del(key)
    await batch.write({ sync: true })
    last = entries[entries.length - 1]![0]
    return entries.length
  })
})

// ---------------------------------------------------------------------------------------------
// better-sqlite3: a queue table in WAL mode

function withSqlite<T> (ctx: Context, sync: boolean, fn: (db: Database.Database, insert: Database.Statement<[Buffer]>) => Promise<T>): Promise<T> {
  const db = new Database(path.join(ctx.dir, 'queue.db'))
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${sync ? 'FULL' : 'OFF'}`)
  db.exec('CREATE TABLE queue (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
  const insert = db.prepare<[Buffer]>('INSERT INTO queue (payload) VALUES (?)')
  return fn(db, insert).finally(() => db.close())
}

const sqliteGroup = (ctx: Context, group: number, sync: boolean): Promise<Sample> => withSqlite(ctx, sync, async (db, insert) => {
  const tx = db.transaction(() => { for (let i = 0; i < group; i++) insert.run(ctx.payload()) })
  return fromThroughput(await measureThroughput(ctx.config, 1, group, async () => tx()), { group })
})

const sqliteSeq = (ctx: Context): Promise<Sample> => withSqlite(ctx, true, async (_db, insert) =>
  fromLatency(await measureLatency(ctx.config, async () => insert.run(ctx.payload()))))

const sqliteDrain = (ctx: Context): Promise<Sample> => withSqlite(ctx, true, async (db, insert) => {
  const backlog = backlogFor(ctx, 'sqlite')
  const t0 = performance.now()
  const tx = db.transaction((n: number) => { for (let i = 0; i < n; i++) insert.run(ctx.payload()) })
  for (let done = 0; done < backlog; done += MANY) tx(Math.min(MANY, backlog - done))
  const buildMs = performance.now() - t0
  const select = db.prepare<[number, number], { id: number, payload: Buffer }>('SELECT id, payload FROM queue WHERE id > ? ORDER BY id LIMIT ?')
  const del = db.prepare<[number]>('DELETE FROM queue WHERE id <= ?')
  let last = 0
  return timedDrain(ctx.config, backlog, buildMs, async () => {
    const rows = select.all(last, MANY)
    if (rows.length === 0) return 0
    last = rows[rows.length - 1]!.id
    del.run(last)
    return rows.length
  })
})

// ---------------------------------------------------------------------------------------------
// BullMQ on the harness's redis-server

let queues = 0
const base64 = new WeakMap<Buffer, string>()
/** Job data as a Node user would send a binary payload through JSON: base64 (encoded once per pooled payload, not timed). */
function jobData (payload: Buffer): { p: string } {
  let p = base64.get(payload)
  if (p === undefined) base64.set(payload, p = payload.toString('base64'))
  return { p }
}

async function withBullmq<T> (ctx: Context, fsync: 'always' | 'everysec', fn: (queue: Queue, connection: object) => Promise<T>): Promise<T> {
  const redis = ctx.redis!
  await redis.reset()
  await redis.setFsync(fsync)
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null }
  const queue = new Queue(`bench-${++queues}`, { connection })
  await queue.waitUntilReady()
  try {
    return await fn(queue, connection)
  } finally {
    await queue.close()
    await redis.reset()
  }
}

const bullmqAdd = (ctx: Context, fsync: 'always' | 'everysec'): Promise<Sample> => withBullmq(ctx, fsync, async queue =>
  fromThroughput(await measureThroughput(ctx.config, CALLERS, 1, () => queue.add('m', jobData(ctx.payload())))))

const bullmqSeq = (ctx: Context): Promise<Sample> => withBullmq(ctx, 'always', async queue =>
  fromLatency(await measureLatency(ctx.config, () => queue.add('m', jobData(ctx.payload())))))

const bullmqBulk = (ctx: Context): Promise<Sample> => withBullmq(ctx, 'always', async queue =>
  fromThroughput(await measureThroughput(ctx.config, 1, MANY, () =>
    queue.addBulk(Array.from({ length: MANY }, () => ({ name: 'm', data: jobData(ctx.payload()) })))), { group: MANY }))

const bullmqDrain = (ctx: Context): Promise<Sample> => withBullmq(ctx, 'always', async (queue, connection) => {
  const backlog = backlogFor(ctx, 'bullmq')
  const t0 = performance.now()
  for (let done = 0; done < backlog; done += MANY) {
    await queue.addBulk(Array.from({ length: Math.min(MANY, backlog - done) }, () => ({ name: 'm', data: jobData(ctx.payload()) })))
  }
  const buildMs = performance.now() - t0
  let completed = 0
  const worker = new Worker(queue.name, async () => {}, { connection, concurrency: BULLMQ_CONCURRENCY, autorun: false, removeOnComplete: { count: 0 } })
  worker.on('completed', () => { completed++ })
  let drained: () => void = () => {}
  const empty = new Promise<void>(resolve => { drained = resolve })
  worker.on('drained', () => drained())
  const running = worker.run()
  const warmEnd = performance.now() + ctx.config.warmupMs
  await Promise.race([sleepUntil(warmEnd), empty])
  const meter = resourceMeter(runningServers())
  const start = performance.now()
  const c0 = completed
  await Promise.race([sleepUntil(start + ctx.config.durationMs), empty])
  const elapsedMs = performance.now() - start
  const messages = completed - c0
  const resources = meter()
  await worker.close()
  await running
  return {
    kind: 'throughput', msgsPerSec: messages / elapsedMs * 1000, messages, elapsedMs,
    backlogRecords: backlog, buildMs, exhausted: completed >= backlog, group: BULLMQ_CONCURRENCY, resources,
  } satisfies Sample
})

// ---------------------------------------------------------------------------------------------
// The matrix

export interface SystemSpec {
  readonly id: SystemId
  readonly title: string
  /** Uses `ctx.group` (so runs after evaq in the same workload, size and round). */
  readonly grouped?: boolean
  readonly needsRedis?: boolean
  run (ctx: Context): Promise<Sample>
}

export interface WorkloadSpec {
  readonly id: WorkloadId
  readonly title: string
  readonly metric: 'msgsPerSec' | 'p50Us'
  readonly durability: 'durable' | 'non-durable'
  /** Payload sizes in the full run (the quick run uses 1 KiB only). */
  readonly sizes: readonly number[]
  /** Payload sizes at which the baselines run (evaq runs at every size). */
  readonly baselineSizes: readonly number[]
  /** evaq first, then the baselines. */
  readonly systems: readonly SystemSpec[]
  /**
   * The records the workload's callers have in flight at once (256 concurrent callers: 256).
   * The grouped baselines write groups of at least this many, even when evaq splits them into
   * smaller flushes to keep two in flight (a hand-written queue would batch all of them).
   */
  readonly concurrent?: number
}

const ALL_SIZES = [100, 1024, 16384] as const

export const WORKLOADS: readonly WorkloadSpec[] = [
  {
    id: 'push-256',
    concurrent: CALLERS,
    title: `durable push, ${CALLERS} concurrent callers`,
    metric: 'msgsPerSec',
    durability: 'durable',
    sizes: ALL_SIZES,
    baselineSizes: ALL_SIZES,
    systems: [
      {
        id: 'evaq',
        title: `evaq: ${CALLERS} callers, each \`await pushWal(payload)\` in a loop (durability 'sync')`,
        run: ctx => withEvaq(ctx.dir, {}, q => measureThroughput(ctx.config, CALLERS, 1, () => q.pushWal(ctx.payload()))),
      },
      {
        id: 'fs-overwrite',
        grouped: true,
        title: "disk limit: one writer pwrites evaq's mean segment of payloads into space written and synced beforehand, fdatasync per group",
        run: ctx => fsOverwriteGroup(ctx, ctx.group),
      },
      {
        id: 'fs',
        grouped: true,
        title: "plain file append: one writer appends evaq's mean segment of payloads to a file, fdatasync per group",
        run: ctx => fsGroup(ctx, ctx.group, true),
      },
      { id: 'level-put', title: `classic-level: ${CALLERS} callers, \`put(key, payload, { sync: true })\``, run: ctx => levelPut(ctx, true) },
      {
        id: 'level-batch',
        grouped: true,
        title: "classic-level: one writer, chained batches of evaq's mean segment size, `write({ sync: true })`",
        run: ctx => levelBatch(ctx, ctx.group, true),
      },
      {
        id: 'level-segment',
        grouped: true,
        title: 'classic-level: one writer, one segment-sized value + a 256 B value per synced batch (the LevelDB ceiling for evaq)',
        run: ctx => levelSegment(ctx, ctx.group),
      },
      {
        id: 'sqlite',
        grouped: true,
        title: 'better-sqlite3: queue table, WAL, synchronous=FULL, one transaction per evaq mean segment of inserts',
        run: ctx => sqliteGroup(ctx, ctx.group, true),
      },
      {
        id: 'lmdb',
        title: `lmdb-js: ${CALLERS} callers, \`await db.put(key, payload)\`, overlappingSync false (resolves once synced)`,
        run: ctx => lmdbPut(ctx, true),
      },
      { id: 'bullmq', needsRedis: true, title: `BullMQ: ${CALLERS} callers, \`queue.add\`, redis appendfsync always`, run: ctx => bullmqAdd(ctx, 'always') },
    ],
  },
  {
    id: 'seq',
    title: 'durable push, one sequential caller (p50 latency)',
    metric: 'p50Us',
    durability: 'durable',
    sizes: ALL_SIZES,
    baselineSizes: ALL_SIZES,
    systems: [
      {
        id: 'evaq',
        title: "evaq: `await pushWal(payload)` in sequence (durability 'sync')",
        run: ctx => withEvaq(ctx.dir, {}, q => measureLatency(ctx.config, () => q.pushWal(ctx.payload()))),
      },
      { id: 'fs-overwrite', title: 'disk limit: pwrite the payload into space written and synced beforehand + fdatasync, per record', run: fsOverwriteSeq },
      { id: 'fs', title: 'plain file append: append the payload to a file + fdatasync, per record', run: fsSeq },
      { id: 'level-put', title: 'classic-level: `put(key, payload, { sync: true })` in sequence', run: levelPutSeq },
      { id: 'sqlite', title: 'better-sqlite3: one INSERT per (autocommit) transaction, WAL, synchronous=FULL', run: sqliteSeq },
      { id: 'lmdb', title: 'lmdb-js: `await db.put(key, payload)` in sequence, overlappingSync false', run: lmdbSeq },
      { id: 'bullmq', needsRedis: true, title: 'BullMQ: `await queue.add` in sequence, appendfsync always', run: bullmqSeq },
    ],
  },
  {
    id: 'many-1000',
    title: `durable push of batches of ${MANY.toLocaleString('en-US')}, one caller`,
    metric: 'msgsPerSec',
    durability: 'durable',
    sizes: ALL_SIZES,
    baselineSizes: ALL_SIZES,
    systems: [
      {
        id: 'evaq',
        title: `evaq: \`await pushWalMany(${MANY} payloads)\` in sequence`,
        run: ctx => withEvaq(ctx.dir, {}, q => measureThroughput(ctx.config, 1, MANY, () => q.pushWalMany(Array.from({ length: MANY }, ctx.payload)))),
      },
      {
        id: 'fs-overwrite',
        grouped: true,
        title: "disk limit: pwrite evaq's mean segment of payloads into space written beforehand, fdatasync per group",
        run: ctx => fsOverwriteGroup(ctx, ctx.group),
      },
      { id: 'fs', grouped: true, title: "plain file append: evaq's mean segment of payloads, fdatasync per group", run: ctx => fsGroup(ctx, ctx.group, true) },
      { id: 'level-batch', title: `classic-level: chained batches of ${MANY}, \`write({ sync: true })\``, run: ctx => levelBatch(ctx, MANY, true) },
      { id: 'sqlite', title: `better-sqlite3: transactions of ${MANY} inserts, synchronous=FULL`, run: ctx => sqliteGroup(ctx, MANY, true) },
      { id: 'lmdb', title: `lmdb-js: \`db.transaction\` of ${MANY} puts, overlappingSync false`, run: ctx => lmdbGroup(ctx, MANY) },
      { id: 'bullmq', needsRedis: true, title: `BullMQ: \`queue.addBulk\` of ${MANY}, appendfsync always`, run: bullmqBulk },
    ],
  },
  {
    id: 'push-256-none',
    concurrent: CALLERS,
    title: `non-durable push, ${CALLERS} concurrent callers`,
    metric: 'msgsPerSec',
    durability: 'non-durable',
    sizes: [1024],
    baselineSizes: [1024],
    systems: [
      {
        id: 'evaq',
        title: `evaq: ${CALLERS} callers, \`pushWal\`, durability 'none'`,
        run: ctx => withEvaq(ctx.dir, { durability: 'none' }, q => measureThroughput(ctx.config, CALLERS, 1, () => q.pushWal(ctx.payload()))),
      },
      {
        id: 'fs',
        grouped: true,
        title: "plain file append (no sync): evaq's mean segment of payloads, no fdatasync",
        run: ctx => fsGroup(ctx, ctx.group, false),
      },
      { id: 'level-put', title: `classic-level: ${CALLERS} callers, \`put\` without sync`, run: ctx => levelPut(ctx, false) },
      {
        id: 'level-batch',
        grouped: true,
        title: "classic-level: chained batches of evaq's mean segment size, no sync",
        run: ctx => levelBatch(ctx, ctx.group, false),
      },
      {
        id: 'sqlite',
        grouped: true,
        title: "better-sqlite3: transactions of evaq's mean segment size, WAL, synchronous=OFF",
        run: ctx => sqliteGroup(ctx, ctx.group, false),
      },
      { id: 'lmdb', title: `lmdb-js: ${CALLERS} callers, \`put\`, noSync true (MDB_NOSYNC)`, run: ctx => lmdbPut(ctx, false) },
      {
        id: 'bullmq',
        needsRedis: true,
        title: `BullMQ: ${CALLERS} callers, \`queue.add\`, redis appendfsync everysec (its default)`,
        run: ctx => bullmqAdd(ctx, 'everysec'),
      },
    ],
  },
  {
    id: 'drain',
    title: `drain a backlog, batches of ${MANY.toLocaleString('en-US')} (fetch + durable ack/delete)`,
    metric: 'msgsPerSec',
    durability: 'durable',
    sizes: ALL_SIZES,
    baselineSizes: [1024],
    systems: [
      {
        id: 'evaq',
        title: `evaq: one subscriber, \`next({ maxCount: ${MANY} })\` + \`ack()\` (ackDurability 'sync'), cleanup in the background`,
        run: evaqDrain,
      },
      { id: 'level-batch', title: `classic-level: iterator of ${MANY} + a synced batch deleting them`, run: levelDrain },
      { id: 'sqlite', title: `better-sqlite3: SELECT … LIMIT ${MANY} + DELETE … WHERE id <= last (synchronous=FULL)`, run: sqliteDrain },
      { id: 'lmdb', title: `lmdb-js: getRange of ${MANY} in key order + one synced transaction removing them`, run: lmdbDrain },
      {
        id: 'bullmq',
        needsRedis: true,
        title: `BullMQ: a Worker (concurrency ${BULLMQ_CONCURRENCY}, no-op processor, removeOnComplete), appendfsync always`,
        run: bullmqDrain,
      },
    ],
  },
]

export const SYSTEM_NAMES: Record<SystemId, string> = {
  evaq: 'evaq',
  'fs-overwrite': 'disk limit (overwrite + fdatasync)',
  fs: 'plain file append (+ fdatasync)',
  'level-put': 'classic-level put',
  'level-batch': 'classic-level batch',
  'level-segment': 'LevelDB ceiling (segment values)',
  sqlite: 'better-sqlite3',
  lmdb: 'lmdb-js',
  bullmq: 'BullMQ',
}
