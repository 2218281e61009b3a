import { ClassicLevel } from 'classic-level'
import {
  decodeHeader, decodeKey, decodeRemovalSet, decodeSummary, encodeKey, encodeRemovalSet, encodeSummary,
  isRemoved, markRemoved, newRemovalSet, payloadAt, type RemovalSet,
} from './codec.js'
import { fromLevel } from '../errors.js'
import { claimDir, type DirClaim } from './dir-claim.js'
import { IdFloor } from './id-floor.js'
import { assertNotOrphaned, clearRecount, Journal, Keyspace, type Db, type Sublevel } from './store.js'

/**
 * Repair below the facade: LevelDB's own repair, then evaq's metadata made to agree with what
 * survived. Used by `evaq repair` (on a copy it made first) and by an open queue whose engine
 * reported damage in its own files (see Evaq's recovery).
 */

/** The logs a directory holds. */
export const LOGS = ['wal', 'dlq', 'parked'] as const

export const ENC = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

/** What a repair did to one log. */
export interface LogRepair {
  /** Segments whose header or index failed its checksum, moved to the quarantine whole. */
  quarantinedSegments: number
  /** Records whose payload failed its checksum, moved to the quarantine. */
  quarantinedRecords: number
  /** Summaries rebuilt from their segment. */
  summariesRewritten: number
  /** Summaries of segments that are gone, deleted. */
  orphansRemoved: number
  /**
   * Live records the counters held that are gone after LevelDB's repair (it drops what it cannot
   * read) and were not moved to the quarantine by this repair.
   */
  lostRecords: number
}

export type RepairFixes = Record<string, LogRepair>

/**
 * Open `dir` as it is (never creating it). `held`: the caller's own claim on the directory (an
 * open queue repairing itself while its database is closed); without one, the directory is
 * claimed here until the database closes.
 */
export async function openRaw (dir: string, held?: DirClaim): Promise<Db> {
  const claim = held ?? await claimDir(dir)
  const db: Db = new ClassicLevel<Buffer, Buffer>(dir, { ...ENC, createIfMissing: false })
  try {
    await assertNotOrphaned(dir)
    await db.open()
  } catch (err) {
    if (held === undefined) claim.release()
    throw fromLevel(err, `Cannot open ${dir}`)
  }
  if (held === undefined) db.once('closed', () => claim.release())
  return db
}

export interface Visitor {
  segment (first: number, value: Buffer, summary: ReturnType<typeof decodeSummary> | undefined, removal: RemovalSet | undefined): void | Promise<void>
  orphanSummary (first: number): void
  badRemovalSet (first: number): void
  unreadable (err: unknown): void
}

/** Every segment of `log` with its summary and removal set, in ID order. */
export async function walk (db: Db, log: string, visit: Visitor): Promise<void> {
  const segs = db.sublevel<Buffer, Buffer>(log, ENC)
  const index = db.sublevel<Buffer, Buffer>(`${log}-index`, ENC)
  const removals = db.sublevel<Buffer, Buffer>(`${log}-removed`, ENC)
  const summaries = new Map<number, ReturnType<typeof decodeSummary> | null>()
  try {
    for await (const [key, value] of index.iterator()) {
      const first = decodeKey(key)
      try { summaries.set(first, decodeSummary(first, value)) } catch { summaries.set(first, null) }
    }
    for await (const [key, value] of segs.iterator({ highWaterMarkBytes: 1 << 20 } as object)) {
      const first = decodeKey(key)
      const summary = summaries.get(first) ?? undefined
      summaries.delete(first)
      let removal: RemovalSet | undefined
      const raw = await removals.get(encodeKey(first))
      if (raw !== undefined) {
        try {
          removal = decodeRemovalSet(first, summary?.count ?? decodeHeader(first, value).count, raw)
        } catch {
          visit.badRemovalSet(first)
        }
      }
      await visit.segment(first, value, summary, removal)
    }
  } catch (err) {
    visit.unreadable(err)
  }
  for (const first of summaries.keys()) visit.orphanSummary(first)
}

/**
 * Run LevelDB's repair on `dir` (no process may hold it: LevelDB's repair takes no lock), then
 * make evaq's metadata agree with what survived: damaged segments and records go to the
 * quarantine, summaries and counters are rebuilt from the segments, and IDs stay above every ID
 * the counters ever issued. LevelDB keeps the files it replaced in `dir/lost/`.
 */
export async function repairInPlace (dir: string, held?: DirClaim): Promise<RepairFixes> {
  const claim = held ?? await claimDir(dir)
  try {
    await ClassicLevel.repair(dir)
    return await reconcile(dir, claim)
  } finally {
    if (held === undefined) claim.release()
  }
}

/**
 * The second half of a repair, alone: rebuild summaries and counters from the segments of `dir`
 * (no process may hold it). Needed whenever LevelDB lost batches without the counters knowing,
 * for example when it dropped a damaged record of its log while opening: the batches after it
 * are replayed, and their counter snapshots still count what was dropped.
 */
export async function reconcile (dir: string, held?: DirClaim): Promise<RepairFixes> {
  const ids = await IdFloor.load(dir)
  const db = await openRaw(dir, held)
  const fixed: RepairFixes = {}
  const nexts: Record<string, { next: number, committed: number }> = {}
  try {
    const snaps = db.sublevel<Buffer, Buffer>('snap', ENC)
    let journal: Journal
    try {
      journal = await Journal.load(snaps)
    } catch {
      await db.clear({ gte: Buffer.from('!snap!'), lt: Buffer.from('!snap"') })
      journal = await Journal.load(snaps)
    }
    const counters: Record<string, { next: number, count: number, bytes: number, floor: number, quarantined: number }> = {}
    for (const log of LOGS) {
      const c = journal.counters(log)
      const f: LogRepair = { quarantinedSegments: 0, quarantinedRecords: 0, summariesRewritten: 0, orphansRemoved: 0, lostRecords: 0 }
      let quarantinedLive = 0
      fixed[log] = f
      const segKeys = new Keyspace(db.sublevel<Buffer, Buffer>(log, ENC) as unknown as Sublevel)
      const indexKeys = new Keyspace(db.sublevel<Buffer, Buffer>(`${log}-index`, ENC) as unknown as Sublevel)
      const removalKeys = new Keyspace(db.sublevel<Buffer, Buffer>(`${log}-removed`, ENC) as unknown as Sublevel)
      const quarantine = new Keyspace(db.sublevel<Buffer, Buffer>(`${log}-quarantine`, ENC) as unknown as Sublevel)
      const n = { next: c.next, count: 0, bytes: 0, floor: Infinity, quarantined: c.quarantinedCount }
      counters[log] = n
      const batch = db.batch()
      await walk(db, log, {
        segment: (first, value, summary, removal) => {
          let header
          try {
            header = decodeHeader(first, value)
          } catch {
            quarantinedLive += summary === undefined ? 0 : summary.count - (removal?.removed ?? 0)
            quarantine.put(batch, first, value)
            segKeys.del(batch, first)
            indexKeys.del(batch, first)
            removalKeys.del(batch, first)
            f.quarantinedSegments++
            return
          }
          let set = removal
          for (let i = 0; i < header.count; i++) {
            if (isRemoved(set, i)) continue
            try {
              payloadAt(header, value, i)
            } catch {
              set ??= newRemovalSet(header.count)
              markRemoved(set, i, header.lengths[i]!)
              const start = header.offsets[i]!
              quarantine.put(batch, first + i, Buffer.from(value.subarray(start, start + header.lengths[i]!)))
              f.quarantinedRecords++
              quarantinedLive++
              n.quarantined++
            }
          }
          if (set !== undefined && set.removed === header.count) {
            segKeys.del(batch, first)
            indexKeys.del(batch, first)
            removalKeys.del(batch, first)
          } else {
            if (set !== removal && set !== undefined) removalKeys.put(batch, first, encodeRemovalSet(set))
            if (summary === undefined || summary.count !== header.count || summary.payloadBytes !== header.payloadBytes) {
              indexKeys.put(batch, first, encodeSummary(header.count, header.payloadBytes, header.pushedAt))
              f.summariesRewritten++
            }
            n.count += header.count - (set?.removed ?? 0)
            n.bytes += header.payloadBytes - (set?.removedBytes ?? 0)
            n.floor = Math.min(n.floor, first)
          }
          n.next = Math.max(n.next, first + header.count)
        },
        orphanSummary: (first) => { indexKeys.del(batch, first); f.orphansRemoved++ },
        badRemovalSet: (first) => { removalKeys.del(batch, first) },
        unreadable: () => {},
      })
      await batch.write({ sync: true })
      f.lostRecords = Math.max(0, c.count - n.count - quarantinedLive)
    }
    // One fresh commit snapshot with the recounted counters replaces all others.
    const snapKeys: Buffer[] = []
    for await (const key of snaps.keys()) snapKeys.push(key)
    const seq = snapKeys.length === 0 ? 1 : decodeKey(snapKeys[snapKeys.length - 1]!) + 1
    const logs: Record<string, object> = {}
    for (const log of LOGS) {
      const n = counters[log]!
      const old = journal.counters(log)
      // Records LevelDB lost keep their IDs: the next open starts above the reservation too.
      nexts[log] = { next: Math.max(n.next, ids.floor(log)), committed: n.next }
      logs[log] = { ...old, next: n.next, count: n.count, bytes: n.bytes, floor: Number.isFinite(n.floor) ? n.floor : n.next, quarantinedCount: n.quarantined }
    }
    const batch = db.batch()
    for (const key of snapKeys) batch.del(key, { sublevel: snaps })
    batch.put(encodeKey(seq), Buffer.from(JSON.stringify({ seq, logs, pending: [] })), { sublevel: snaps })
    await batch.write({ sync: true })
  } finally {
    await db.close().catch(() => {})
  }
  // The counters now hold what survived: what was lost has been reported by this repair.
  await ids.close(nexts)
  await clearRecount(dir)
  return fixed
}
