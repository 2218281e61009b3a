import test, { type ExecutionContext } from 'ava'
import { randomFillSync } from 'node:crypto'
import { createRequire } from 'node:module'
import { Evaq, type EvaqOptions, type LogStats, type Subscriber } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

/*
 * Open reads a bounded number of keys (commit snapshots and one progress entry per subscriber),
 * never the records or the segments. Three directories, each with three subscribers holding
 * different progress: 10^5 records of 1 KiB, 10^6 records of 32 bytes, and 10^5 segments of one
 * record each. Two independent measures of what open read:
 * - `openReport.keysRead`, what evaq says it read;
 * - every entry LevelDB handed to JavaScript during open (point lookups and iterator entries,
 *   counted at classic-level's native binding), so a scan that evaq forgot to count is caught too.
 * Wall times are reported with t.log only.
 */

/** Bound on the commit snapshot keys open may read (the journal keeps a few dozen at most). */
const SNAPSHOT_KEYS_MAX = 64
/** Point lookups open makes besides what keysRead counts (the format key). */
const META_GETS_MAX = 2

const SUBS = ['all', 'holes', 'idle'] as const
/** Records `all` receives and acknowledges before the reopen (its floor is then ALL + 1). */
const ALL = 10_000
/** Records `holes` receives; it acknowledges those whose ID is not a multiple of 3, out of order. */
const HOLES = 2_000
const BUILD: EvaqOptions = { durability: 'none', minFreeDiskBytes: 0 }
const REOPEN: EvaqOptions = { minFreeDiskBytes: 0 }

// ---- counting what LevelDB returns to JavaScript -------------------------------------------

interface Binding {
  db_get: (...args: unknown[]) => Promise<unknown>
  db_get_sync: (...args: unknown[]) => unknown
  db_get_many: (ctx: unknown, keys: unknown[], ...rest: unknown[]) => Promise<unknown[]>
  iterator_nextv: (...args: unknown[]) => Promise<unknown[]>
}
// The same module instance classic-level loads (CommonJS caches by path).
const binding = createRequire(import.meta.url)('classic-level/binding') as Binding

/**
 * Run `fn` and count what LevelDB handed out meanwhile: point lookups (`gets`, one per key asked
 * for) and iterator entries (`iterated`).
 */
async function countingReads<T> (fn: () => Promise<T>): Promise<{ value: T, gets: number, iterated: number }> {
  const original = { ...binding }
  let gets = 0
  let iterated = 0
  binding.db_get = (...args) => { gets++; return original.db_get(...args) }
  binding.db_get_sync = (...args) => { gets++; return original.db_get_sync(...args) }
  binding.db_get_many = (ctx, keys, ...rest) => { gets += keys.length; return original.db_get_many(ctx, keys, ...rest) }
  binding.iterator_nextv = (...args) => original.iterator_nextv(...args).then(r => { iterated += r.length; return r })
  try {
    const value = await fn()
    return { value, gets, iterated }
  } finally {
    Object.assign(binding, {
      db_get: original.db_get,
      db_get_sync: original.db_get_sync,
      db_get_many: original.db_get_many,
      iterator_nextv: original.iterator_nextv,
    })
  }
}

// ---- payloads -----------------------------------------------------------------------------

/** Incompressible bytes, so that the 1 KiB records really occupy about 100 MB (Snappy is on). */
const POOL = randomFillSync(Buffer.alloc(4 * 1024 * 1024))

/** The payload of record `id`: its ID in decimal, then bytes from the pool, `size` bytes in all. */
function payloadOf (id: number, size: number): Buffer {
  const offset = (id * 7919) % (POOL.length - size)
  const p = Buffer.from(POOL.subarray(offset, offset + size))
  p.write(`${id}:`, 'latin1')
  return p
}

// ---- building ---------------------------------------------------------------------------

interface Scenario {
  readonly title: string
  readonly records: number
  readonly size: number
  /** Records per pushWalMany. */
  readonly chunk: number
  readonly options: EvaqOptions
  /** Bounds on the segments (LevelDB entries) the build produces, checked by reading everything back. */
  readonly segments: readonly [min: number, max: number]
}

const scenarios: Scenario[] = [
  { title: '10^5 records of 1 KiB', records: 100_000, size: 1024, chunk: 16_384, options: {}, segments: [1, 1000] },
  { title: '10^6 records of 32 B', records: 1_000_000, size: 32, chunk: 65_536, options: {}, segments: [1, 1000] },
  { title: '10^5 segments of one record', records: 100_000, size: 48, chunk: 10_000, options: { maxBatchCount: 1 }, segments: [100_000, 200_000] },
]

function shuffled (ids: number[]): number[] {
  // A fixed permutation: every 7th from a rotating start, so that acks arrive out of order.
  const out: number[] = []
  for (let start = 0; start < 7; start++) for (let i = start; i < ids.length; i += 7) out.push(ids[i]!)
  return out
}

/** Fill `dir` with `records` records and give the subscribers their progress. */
async function build (dir: string, s: Scenario): Promise<LogStats> {
  const q = await Evaq.open(dir, { ...BUILD, ...s.options })
  try {
    const subs = new Map<string, Subscriber>()
    for (const name of SUBS) subs.set(name, await q.wal.subscribe(name, { leaseMs: 600_000 }))
    for (let first = 1; first <= s.records; first += s.chunk) {
      const n = Math.min(s.chunk, s.records - first + 1)
      const payloads = new Array<Buffer>(n)
      for (let i = 0; i < n; i++) payloads[i] = payloadOf(first + i, s.size)
      const ids = await q.pushWalMany(payloads)
      if (ids[0] !== first || ids.length !== n) throw new Error(`pushWalMany gave IDs from ${ids[0]}, expected ${first}`)
    }
    // `all`: the first ALL records, acknowledged batch by batch.
    const all = subs.get('all')!
    for (let got = 0; got < ALL;) {
      const batch = await all.next({ maxCount: Math.min(5_000, ALL - got), maxBytes: Infinity })
      if (batch === undefined) throw new Error('all: ran out of records')
      got += batch.records.length
      await batch.ack()
    }
    // `holes`: the first HOLES records; everything but the multiples of 3, out of order.
    const holes = subs.get('holes')!
    const delivered: number[] = []
    while (delivered.length < HOLES) {
      const batch = await holes.next({ maxCount: HOLES - delivered.length, maxBytes: Infinity })
      if (batch === undefined) throw new Error('holes: ran out of records')
      for (const r of batch.records) delivered.push(r.id)
    }
    const acks = shuffled(delivered.filter(id => id % 3 !== 0))
    for (let i = 0; i < acks.length; i += 100) await holes.ack(acks.slice(i, i + 100))
    // `idle` never fetches: it holds every record, so nothing is cleaned up.
    return await q.wal.stats()
  } finally {
    await q.close()
  }
}

async function timed<T> (fn: () => Promise<T>): Promise<{ value: T, ms: number }> {
  const start = performance.now()
  const value = await fn()
  return { value, ms: performance.now() - start }
}

async function openCounted (t: ExecutionContext, dir: string): Promise<{ q: Evaq, entries: number, ms: number }> {
  const { value: { value: q, gets, iterated }, ms } = await timed(() => countingReads(() => Evaq.open(dir, REOPEN)))
  t.teardown(() => q.close())
  return { q, entries: gets + iterated, ms }
}

for (const s of scenarios) {
  test.serial(`open reads a bounded number of keys, none of the records or segments: ${s.title}`, async t => {
    const dir = await tmpDir(t, 'evaq-open-')
    const built = await timed(() => build(dir, s))
    const before = built.value
    t.is(before.count, s.records)
    t.is(before.nextId, s.records + 1)

    const first = await openCounted(t, dir)
    const { q } = first
    const keysRead = q.openReport.keysRead
    t.log(`${s.title}: built in ${Math.round(built.ms)} ms; first open after the build ${first.ms.toFixed(1)} ms, ` +
      `keysRead ${keysRead}, LevelDB entries read ${first.entries}`)
    t.true(keysRead >= 1 + SUBS.length, `keysRead ${keysRead} does not even cover the subscribers`)
    t.true(keysRead <= SNAPSHOT_KEYS_MAX + SUBS.length, `keysRead ${keysRead} is above ${SNAPSHOT_KEYS_MAX} + ${SUBS.length}`)
    t.true(first.entries <= keysRead + META_GETS_MAX, `open read ${first.entries} entries from LevelDB, but reports ${keysRead}`)

    // The counters: from the journal, not from a scan.
    const stats = await q.wal.stats()
    t.like(stats, {
      count: s.records,
      bytes: s.records * s.size,
      firstId: 1,
      lastId: s.records,
      nextId: s.records + 1,
      dropped: { records: 0, bytes: 0 },
      expiredSubscribers: 0,
    })
    t.like(stats, { count: before.count, bytes: before.bytes, nextId: before.nextId })
    t.like(await q.dlq.stats(), { count: 0, nextId: 1 })

    // The subscribers' progress, including acknowledged ranges above the floor.
    const acked = new Set<number>()
    for (let id = 1; id <= HOLES; id++) if (id % 3 !== 0) acked.add(id)
    let aboveFloor = 0
    for (const id of acked) if (id >= 3) aboveFloor++
    const info = new Map(q.wal.subscribers().map(i => [i.name, i]))
    t.deepEqual([...info.keys()].sort(), [...SUBS].sort())
    t.like(info.get('all'), { ackFloor: ALL + 1, inFlight: 0, lagRecords: s.records - ALL, leaseMs: 600_000 })
    t.like(info.get('holes'), { ackFloor: 3, inFlight: 0, lagRecords: s.records - 2 - aboveFloor })
    t.like(info.get('idle'), { ackFloor: 1, inFlight: 0, lagRecords: s.records })

    // Resuming delivers exactly what each one has not acknowledged, in ID order, intact.
    const expectNext = async (name: string, maxCount: number, ids: number[]): Promise<void> => {
      const sub = await q.wal.subscribe(name, { leaseMs: 600_000 })
      const batch = await sub.next({ maxCount, maxBytes: Infinity })
      t.deepEqual(batch?.records.map(r => r.id), ids, `${name} resumed elsewhere`)
      t.true(batch?.records.every(r => r.deliveryCount === 1 && r.payload.equals(payloadOf(r.id, s.size))), `${name} got a wrong payload`)
    }
    await expectNext('all', 5, [ALL + 1, ALL + 2, ALL + 3, ALL + 4, ALL + 5])
    await expectNext('holes', 100, Array.from({ length: 100 }, (_, i) => 3 * (i + 1)))
    await expectNext('idle', 3, [1, 2, 3])

    // The directory holds what the scenario says: every record, intact, in as many segments as
    // intended (a LevelDB iterator entry is a segment), so that the bound above means something.
    const scan = await countingReads(async () => {
      let expected = 1
      let wrong = 0
      for (;;) {
        const page = await q.wal.read({ from: expected, maxCount: 20_000, maxBytes: Infinity })
        if (page.length === 0) break
        for (const r of page) {
          if (r.id !== expected) return { last: expected - 1, wrong: wrong + 1 }
          if (r.id % 997 === 1 && !r.payload.equals(payloadOf(r.id, s.size))) wrong++
          expected++
        }
      }
      return { last: expected - 1, wrong }
    })
    t.deepEqual(scan.value, { last: s.records, wrong: 0 })
    t.log(`${s.title}: reading every record back took ${scan.iterated} LevelDB iterator entries`)
    t.true(scan.iterated >= s.segments[0] && scan.iterated <= s.segments[1] + 1000,
      `${scan.iterated} iterator entries for ${s.records} records; expected ${s.segments[0]} to ${s.segments[1]} segments`)
    await q.close()

    // Open again (LevelDB's own recovery has less to do now): the same keys, counters unchanged
    // (deliveries are not persisted, only acknowledgements).
    const second = await openCounted(t, dir)
    t.log(`${s.title}: open again ${second.ms.toFixed(1)} ms, keysRead ${second.q.openReport.keysRead}, LevelDB entries read ${second.entries}`)
    t.is(second.q.openReport.keysRead, keysRead)
    t.true(second.entries <= keysRead + META_GETS_MAX)
    t.like(await second.q.wal.stats(), { count: s.records, bytes: s.records * s.size, nextId: s.records + 1 })
    t.deepEqual(second.q.wal.subscribers().map(i => [i.name, i.ackFloor]).sort(), [['all', ALL + 1], ['holes', 3], ['idle', 1]])
  })
}

test.serial('the bound holds for an empty queue and a tiny one too, with the same subscribers', async t => {
  for (const records of [0, 10]) {
    const dir = await tmpDir(t, 'evaq-open-small-')
    const q0 = await Evaq.open(dir, BUILD)
    for (const name of SUBS) await q0.wal.subscribe(name)
    if (records > 0) await q0.pushWalMany(Array.from({ length: records }, (_, i) => payloadOf(i + 1, 16)))
    await q0.close()
    const { q, entries } = await openCounted(t, dir)
    const keysRead = q.openReport.keysRead
    t.log(`${records} records: keysRead ${keysRead}, LevelDB entries read ${entries}`)
    t.true(keysRead >= 1 + SUBS.length && keysRead <= SNAPSHOT_KEYS_MAX + SUBS.length)
    t.true(entries <= keysRead + META_GETS_MAX)
    t.like(await q.wal.stats(), { count: records, nextId: records + 1 })
    await q.close()
  }
})
