import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import {
  copyRemovalSet, decodeHeader, decodeKey, decodeRemovalSet, decodeSummary, encodeKey, encodeRemovalSet, encodeSummary, markRemoved, type RemovalSet,
  type SegmentSummary,
} from './codec.js'
import { verifySegment } from './verify.js'
import { EvaqError, fromLevel } from '../errors.js'
import { FILE_LOGS, LOG_NAMES, logSublevels, SEGMENTS_DIR, SNAPSHOT_SUBLEVEL } from '../schema.js'
import { decodeLocator, LOCATOR_BYTES } from './frame.js'
import { SegmentFiles } from './segment-files.js'
import { claimDir, type DirClaim } from './dir-claim.js'
import { IdFloor } from './id-floor.js'
import { assertNotOrphaned, clearRecount, Journal, Keyspace, type Db, type Sublevel } from './store.js'

/**
 * Repair below the facade: LevelDB's own repair, then evaq's metadata made to agree with what
 * survived. Used by `evaq repair` (on a copy it made first) and by an open queue whose engine
 * reported damage in its own files (see Evaq's recovery).
 */

/** The logs a directory holds. */
export const LOGS = LOG_NAMES

export const ENC = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

const FILE_LOG_SET: ReadonlySet<string> = new Set(FILE_LOGS)

/** What a repair did to one log. */
export interface LogRepair {
  /**
   * Segments whose header or index failed its checksum, moved to the quarantine whole, and
   * segments whose frame in a segment file is damaged or whose file is missing (see `frames`).
   */
  quarantinedSegments: number
  /** The segments taken out because their frame could not be read, each with its file. */
  frames: FrameDamage[]
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
  /** Live records the counters held before the repair: `before = after + quarantined + lost`. */
  before: number
  /** Live records after the repair. */
  after: number
  /**
   * Where the records this repair took out are: the segments moved to the quarantine, the
   * damaged records, and the segments LevelDB lost (found through their summaries, which live in
   * other blocks, or else as the gaps between the segments left). `records` add up to
   * `before - after`; a range may include IDs removed earlier.
   */
  ranges: LostRange[]
}

export interface LostRange {
  readonly firstId: number
  readonly lastId: number
  readonly records: number
}

/** At most this many ranges per log; beyond, the last one covers the rest. */
const MAX_RANGES = 256

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
  /** A segment, its value resolved (the frame's body for a locator into a segment file). */
  segment (first: number, value: Buffer, summary: ReturnType<typeof decodeSummary> | undefined, removal: RemovalSet | undefined): void | Promise<void>
  /**
   * A segment whose locator points to a frame that cannot be read: damaged, or its segment file
   * missing (`damage.missing`). `stored`: the locator; its summary and removal set are those
   * LevelDB holds.
   */
  badFrame (first: number, damage: FrameDamage, stored: Buffer, summary: ReturnType<typeof decodeSummary> | undefined, removal: RemovalSet | undefined): void
  orphanSummary (first: number, summary: ReturnType<typeof decodeSummary> | undefined): void
  badRemovalSet (first: number): void
  unreadable (err: unknown): void
}

/** A segment whose frame cannot be read (see Visitor.badFrame), as check and repair report it. */
export interface FrameDamage {
  /** The segment's first ID. */
  readonly segment: number
  /** The segment file its locator names. */
  readonly file: number
  /** The file is missing (else the frame in it is damaged). */
  readonly missing: boolean
  readonly message: string
}

/**
 * The segment files of `dir`'s logs that have them, opened for reads (nothing in `dir` changes).
 * Close them with closeFiles().
 */
export async function openFilesReadOnly (dir: string): Promise<Map<string, SegmentFiles>> {
  const files = new Map<string, SegmentFiles>()
  for (const log of FILE_LOGS) files.set(log, await SegmentFiles.openReadOnly(join(dir, SEGMENTS_DIR, log)))
  return files
}

export async function closeFiles (files: ReadonlyMap<string, SegmentFiles>): Promise<void> {
  for (const set of files.values()) await set.close().catch(() => {})
}

/**
 * The segment `value` stands for: itself (inline), or the body of the frame its locator points
 * to; a FrameDamage when that frame cannot be read. An I/O error other than damage is thrown.
 */
async function resolveValue (log: string, first: number, value: Buffer, files: SegmentFiles | undefined): Promise<Buffer | FrameDamage> {
  if (!FILE_LOG_SET.has(log) || value.byteLength !== LOCATOR_BYTES) return value
  const loc = decodeLocator(first, value)
  if (files === undefined) return { segment: first, file: loc.file, missing: true, message: `${log} has no segment files` }
  try {
    return await files.read(loc, first)
  } catch (err) {
    if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION') throw err
    const missing = (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
    return { segment: first, file: loc.file, missing, message: err.message }
  }
}

/**
 * A segment this Node cannot decode (a zstd frame on a Node without zstd): intact, so neither
 * damage nor an unreadable database; check and repair stop with it instead of taking it out.
 */
function unsupported (err: unknown): boolean {
  return err instanceof EvaqError && err.code === 'EVAQ_UNSUPPORTED_FORMAT'
}

/**
 * Every segment of `log` with its summary and removal set, in ID order. `files`: the segment
 * files of the directory (openFilesReadOnly), through which locators are resolved.
 */
export async function walk (db: Db, log: string, visit: Visitor, files?: ReadonlyMap<string, SegmentFiles>): Promise<void> {
  const names = logSublevels(log)
  const segs = db.sublevel<Buffer, Buffer>(names.segments, ENC)
  const index = db.sublevel<Buffer, Buffer>(names.index, ENC)
  const removals = db.sublevel<Buffer, Buffer>(names.removed, ENC)
  const summaries = new Map<number, ReturnType<typeof decodeSummary> | null>()
  try {
    for await (const [key, value] of index.iterator()) {
      const first = decodeKey(key)
      try { summaries.set(first, decodeSummary(first, value)) } catch { summaries.set(first, null) }
    }
    const one = async (first: number, stored: Buffer): Promise<void> => {
      const summary = summaries.get(first) ?? undefined
      summaries.delete(first)
      const value = await resolveValue(log, first, stored, files?.get(log))
      let removal: RemovalSet | undefined
      const raw = await removals.get(encodeKey(first))
      if (raw !== undefined) {
        try {
          const count = summary?.count ?? (Buffer.isBuffer(value) ? decodeHeader(first, value).count : undefined)
          if (count === undefined) throw new Error('no count')
          removal = decodeRemovalSet(first, count, raw)
        } catch {
          visit.badRemovalSet(first)
        }
      }
      if (Buffer.isBuffer(value)) await visit.segment(first, value, summary, removal)
      else visit.badFrame(first, value, stored, summary, removal)
    }
    try {
      for await (const [key, value] of segs.iterator({ highWaterMarkBytes: 1 << 20 } as object)) await one(decodeKey(key), value)
    } catch (err) {
      if (unsupported(err)) throw err
      visit.unreadable(err)
      // An iterator stops at a block it cannot read: the segments the summaries name beyond it
      // are looked up one by one (a point read touches only its own block), so that only the
      // segments that really cannot be read are taken for lost.
      for (const first of [...summaries.keys()].sort((a, b) => a - b)) {
        let value: Buffer | undefined
        try { value = await segs.get(encodeKey(first)) } catch { value = undefined }
        if (value !== undefined) await one(first, value)
      }
    }
  } catch (err) {
    if (unsupported(err)) throw err
    visit.unreadable(err)
  }
  for (const [first, summary] of summaries) visit.orphanSummary(first, summary ?? undefined)
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
  let files: Map<string, SegmentFiles> | undefined
  try {
    files = await openFilesReadOnly(dir)
    const snaps = db.sublevel<Buffer, Buffer>(SNAPSHOT_SUBLEVEL, ENC)
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
      const f: LogRepair = {
        quarantinedSegments: 0,
        quarantinedRecords: 0,
        summariesRewritten: 0,
        orphansRemoved: 0,
        lostRecords: 0,
        frames: [],
        before: c.count,
        after: 0,
        ranges: [],
      }
      let quarantinedLive = 0
      /** [first, end) of every segment left, and of every range taken out, with its live records. */
      const kept: Array<[number, number]> = []
      const out: Array<{ firstId: number, lastId: number, records: number }> = []
      fixed[log] = f
      const names = logSublevels(log)
      const segKeys = new Keyspace(db.sublevel<Buffer, Buffer>(names.segments, ENC) as unknown as Sublevel)
      const indexKeys = new Keyspace(db.sublevel<Buffer, Buffer>(names.index, ENC) as unknown as Sublevel)
      const removalKeys = new Keyspace(db.sublevel<Buffer, Buffer>(names.removed, ENC) as unknown as Sublevel)
      const quarantine = new Keyspace(db.sublevel<Buffer, Buffer>(names.quarantine, ENC) as unknown as Sublevel)
      const n = { next: c.next, count: 0, bytes: 0, floor: Infinity, quarantined: 0 }
      counters[log] = n
      const batch = db.batch()
      const orphans: Array<{ firstId: number, count: number }> = []
      /** Take segment `first` out whole, keeping what LevelDB held for it (`stored`) in the quarantine. */
      const quarantineWhole = (first: number, stored: Buffer, summary: SegmentSummary | undefined, removal: RemovalSet | undefined): void => {
        const live = summary === undefined ? 0 : summary.count - (removal?.removed ?? 0)
        quarantinedLive += live
        out.push({ firstId: first, lastId: first + (summary?.count ?? 1) - 1, records: live })
        quarantine.put(batch, first, stored)
        segKeys.del(batch, first)
        indexKeys.del(batch, first)
        removalKeys.del(batch, first)
        f.quarantinedSegments++
      }
      await walk(db, log, {
        segment: (first, value, summary, removal) => {
          const { header, badRecords } = verifySegment(first, value, removal)
          if (header === undefined) {
            quarantineWhole(first, value, summary, removal)
            return
          }
          // A copy: the removal set is rewritten below when it differs from the one on disk.
          const set = badRecords.length === 0 ? removal : copyRemovalSet(header.count, removal)
          for (const i of badRecords) {
            markRemoved(set!, i, header.lengths[i]!)
            const start = header.offsets[i]!
            quarantine.put(batch, first + i, Buffer.from(value.subarray(start, start + header.lengths[i]!)))
            f.quarantinedRecords++
            quarantinedLive++
            out.push({ firstId: first + i, lastId: first + i, records: 1 })
          }
          if (set !== undefined && set.removed === header.count) {
            segKeys.del(batch, first)
            indexKeys.del(batch, first)
            removalKeys.del(batch, first)
          } else {
            if (set !== removal) removalKeys.put(batch, first, encodeRemovalSet(set!))
            if (summary === undefined || summary.count !== header.count || summary.payloadBytes !== header.payloadBytes) {
              indexKeys.put(batch, first, encodeSummary(header.count, header.payloadBytes, header.pushedAt))
              f.summariesRewritten++
            }
            n.count += header.count - (set?.removed ?? 0)
            n.bytes += header.payloadBytes - (set?.removedBytes ?? 0)
            n.floor = Math.min(n.floor, first)
            kept.push([first, first + header.count])
          }
          n.next = Math.max(n.next, first + header.count)
        },
        orphanSummary: (first, summary) => {
          indexKeys.del(batch, first)
          f.orphansRemoved++
          // Its segment is gone (LevelDB could not read its block): the summary says which IDs.
          if (summary !== undefined) {
            orphans.push({ firstId: first, count: summary.count })
            // Its IDs were issued: they stay used even when the counters lost them too.
            n.next = Math.max(n.next, first + summary.count)
          }
        },
        badFrame: (first, damage, stored, summary, removal) => {
          // Taken out like a segment whose header fails its checksum. The quarantine keeps what
          // LevelDB held, the locator (the frame's bytes stay in the file, and in the copy
          // `evaq repair` makes first); the summary says which IDs went.
          quarantineWhole(first, stored, summary, removal)
          f.frames.push(damage)
          if (summary !== undefined) n.next = Math.max(n.next, first + summary.count)
        },
        badRemovalSet: (first) => { removalKeys.del(batch, first) },
        unreadable: () => {},
      }, files)
      await batch.write({ sync: true })
      // At least what the summaries of the lost segments held, where the counters were lost too.
      f.lostRecords = Math.max(0, c.count - n.count - quarantinedLive, orphans.reduce((sum, o) => sum + o.count, 0))
      // A lost batch at the end of LevelDB's log takes its counter snapshot with it: after a
      // clean close EVAQ-IDS still says which IDs were committed, and those the segments left
      // do not hold were lost too.
      const committed = ids.committed(log) ?? 0
      f.lostRecords += Math.max(0, committed - Math.max(c.next, n.next))
      f.after = n.count
      f.before = n.count + quarantinedLive + f.lostRecords
      f.ranges = lostRanges(out, orphans, kept, f.lostRecords, c.floor, Math.max(c.next, ids.committed(log) ?? 0))
      // Records lost are counted with the quarantined ones: both were taken out for damage.
      n.quarantined = c.quarantinedCount + quarantinedLive + f.lostRecords
    }
    // One fresh commit snapshot with the recounted counters replaces all others.
    const snapKeys: Buffer[] = []
    for await (const key of snaps.keys()) snapKeys.push(key)
    const seq = snapKeys.length === 0 ? 1 : decodeKey(snapKeys[snapKeys.length - 1]!) + 1
    const logs: Record<string, object> = {}
    for (const log of LOGS) {
      const n = counters[log]!
      const old = journal.counters(log)
      // Records LevelDB lost keep their IDs: the next ID stays above every ID the counters, the
      // summaries or the reservation say was issued, even where the last segments are gone.
      const next = Math.max(n.next, old.next)
      nexts[log] = { next: Math.max(next, ids.floor(log)), committed: next }
      logs[log] = { ...old, next, count: n.count, bytes: n.bytes, floor: Number.isFinite(n.floor) ? n.floor : next, quarantinedCount: n.quarantined }
    }
    const batch = db.batch()
    for (const key of snapKeys) batch.del(key, { sublevel: snaps })
    batch.put(encodeKey(seq), Buffer.from(JSON.stringify({ seq, logs, pending: [] })), { sublevel: snaps })
    await batch.write({ sync: true })
  } finally {
    if (files !== undefined) await closeFiles(files)
    await db.close().catch(() => {})
  }
  // The counters now hold what survived: what was lost has been reported by this repair.
  await ids.close(nexts)
  await clearRecount(dir)
  return fixed
}

/**
 * Name the IDs a repair took out. `taken` are the segments and records it quarantined; `orphans`
 * the summaries whose segment LevelDB lost. Lost records no summary names lie in the gaps between
 * the segments left, within [floor, next): those gaps are named, the count given to them in ID
 * order (a gap may also hold records removed before the damage).
 */
function lostRanges (
  taken: LostRange[],
  orphans: ReadonlyArray<{ firstId: number, count: number }>,
  kept: ReadonlyArray<[number, number]>,
  lost: number,
  floor: number,
  next: number
): LostRange[] {
  const ranges = [...taken]
  let left = lost
  const covered: Array<[number, number]> = [...kept]
  for (const o of orphans) {
    const records = Math.min(left, o.count)
    left -= records
    ranges.push({ firstId: o.firstId, lastId: o.firstId + o.count - 1, records })
    covered.push([o.firstId, o.firstId + o.count])
  }
  for (const r of taken) covered.push([r.firstId, r.lastId + 1])
  if (left > 0) {
    covered.sort((a, b) => a[0] - b[0])
    let at = floor
    const gaps: Array<[number, number]> = []
    for (const [from, to] of covered) {
      if (from > at && at < next) gaps.push([at, Math.min(from, next)])
      at = Math.max(at, to)
    }
    if (at < next) gaps.push([at, next])
    for (const [from, to] of gaps) {
      const records = Math.min(left, to - from)
      left -= records
      ranges.push({ firstId: from, lastId: to - 1, records })
    }
    // Nothing to pin them on (the counters were ahead of every ID left): name the whole span.
    if (left > 0) ranges.push({ firstId: floor, lastId: Math.max(floor, next - 1), records: left })
  }
  ranges.sort((a, b) => a.firstId - b.firstId)
  if (ranges.length <= MAX_RANGES) return ranges
  const head = ranges.slice(0, MAX_RANGES - 1)
  const rest = ranges.slice(MAX_RANGES - 1)
  head.push({ firstId: rest[0]!.firstId, lastId: Math.max(...rest.map(r => r.lastId)), records: rest.reduce((n, r) => n + r.records, 0) })
  return head
}
