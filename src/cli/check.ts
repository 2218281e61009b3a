import { cp, readdir, stat } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import { EvaqError, fromLevel } from '../errors.js'
import {
  decodeHeader, decodeKey, decodeRemovalSet, decodeSummary, encodeKey, encodeRemovalSet, encodeSummary,
  isRemoved, markRemoved, newRemovalSet, payloadAt, type RemovalSet,
} from '../store/codec.js'
import { assertNotOrphaned, engineCorruption, FORMAT_VERSION, Journal, Keyspace, type Db, type Sublevel } from '../store/store.js'

/**
 * `evaq check` and `evaq repair`: the only code that reads every record of a directory. They
 * work on a directory no process holds, through classic-level directly, so that a check changes
 * nothing and a repair can work where Evaq.open would refuse.
 */

export interface LogCheck {
  segments: number
  records: number
  bytes: number
  /** Segments whose header or index fails its checksum or cannot be decoded. */
  badSegments: number
  /** Records whose payload fails its checksum. */
  badRecords: number
  /** Segments without a summary, summaries without a segment or disagreeing with it, damaged removal sets. */
  inconsistencies: number
  /** Whether LevelDB itself failed to read part of the log. */
  unreadable: boolean
  /** Live records and bytes according to the persisted counters. */
  counted: { records: number, bytes: number }
  quarantined: number
}

export interface CheckReport {
  dir: string
  /** Whether LevelDB could open the directory at all. */
  opened: boolean
  error?: { code: string, message: string }
  format?: number
  logs: Record<string, LogCheck>
  subscribers: { ok: number, bad: number }
  /** What LevelDB reported as corruption while opening (a dropped log record loses its batch). */
  engine: string[]
  /** Damage found: the command exits non-zero. */
  damaged: boolean
}

const LOGS = ['wal', 'dlq'] as const
const ENC = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const

function describeError (err: unknown): { code: string, message: string } {
  const e = err instanceof EvaqError ? err : fromLevel(err, 'LevelDB failed')
  let cause = e.cause as { code?: unknown } | undefined
  const codes = [e.code]
  for (let i = 0; cause != null && i < 4; i++, cause = (cause as { cause?: { code?: unknown } }).cause) if (typeof cause.code === 'string') codes.push(cause.code as never)
  return { code: e.code, message: `${e.message} (${codes.join(' <- ')})` }
}

async function openRaw (dir: string): Promise<Db> {
  await assertNotOrphaned(dir)
  const db: Db = new ClassicLevel<Buffer, Buffer>(dir, { ...ENC, createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    throw fromLevel(err, `Cannot open ${dir}`)
  }
  return db
}

export async function check (dir: string, onProgress?: (done: number) => void): Promise<CheckReport> {
  const report: CheckReport = { dir, opened: false, logs: {}, subscribers: { ok: 0, bad: 0 }, engine: [], damaged: true }
  try {
    await stat(dir)
  } catch (err) {
    report.error = { code: 'EVAQ_NOT_FOUND', message: `${dir}: ${(err as Error).message}` }
    return report
  }
  let db: Db
  try {
    db = await openRaw(dir)
  } catch (err) {
    report.error = describeError(err)
    return report
  }
  report.opened = true
  report.engine = await engineCorruption(dir)
  try {
    const format = await db.sublevel<Buffer, Buffer>('meta', ENC).get(Buffer.from('format'))
    report.format = format === undefined ? undefined : (JSON.parse(format.toString('utf8')) as { version: number }).version
    if (report.format !== FORMAT_VERSION) {
      report.error = { code: 'EVAQ_UNSUPPORTED_FORMAT', message: `format ${String(report.format)}, expected ${FORMAT_VERSION}` }
      return report
    }
    const journal = await Journal.load(db.sublevel<Buffer, Buffer>('snap', ENC))
    let done = 0
    for (const log of LOGS) {
      const c = journal.counters(log)
      const result: LogCheck = {
        segments: 0, records: 0, bytes: 0, badSegments: 0, badRecords: 0, inconsistencies: 0, unreadable: false,
        counted: { records: c.count, bytes: c.bytes }, quarantined: c.quarantinedCount,
      }
      report.logs[log] = result
      await walk(db, log, {
        segment: (first, value, summary, removal) => {
          let header
          try {
            header = decodeHeader(first, value)
          } catch {
            result.badSegments++
            return
          }
          result.segments++
          if (summary === undefined || summary.count !== header.count || summary.payloadBytes !== header.payloadBytes) result.inconsistencies++
          for (let i = 0; i < header.count; i++) {
            if (isRemoved(removal, i)) continue
            try {
              payloadAt(header, value, i)
              result.records++
              result.bytes += header.lengths[i]!
            } catch {
              result.badRecords++
            }
          }
          onProgress?.(++done)
        },
        orphanSummary: () => { result.inconsistencies++ },
        badRemovalSet: () => { result.inconsistencies++ },
        unreadable: () => { result.unreadable = true },
      })
      if (result.records + result.badRecords !== c.count && result.badSegments === 0 && !result.unreadable) result.inconsistencies++
      for await (const [, value] of db.sublevel<Buffer, Buffer>(`${log}-subs`, ENC).iterator()) {
        try {
          JSON.parse(value.toString('utf8'))
          report.subscribers.ok++
        } catch {
          report.subscribers.bad++
        }
      }
    }
    report.damaged = report.engine.length > 0 || report.subscribers.bad > 0 || Object.values(report.logs).some(l =>
      l.badSegments > 0 || l.badRecords > 0 || l.inconsistencies > 0 || l.unreadable)
  } catch (err) {
    report.error = describeError(err)
  } finally {
    await db.close().catch(() => {})
  }
  return report
}

interface Visitor {
  segment (first: number, value: Buffer, summary: ReturnType<typeof decodeSummary> | undefined, removal: RemovalSet | undefined): void | Promise<void>
  orphanSummary (first: number): void
  badRemovalSet (first: number): void
  unreadable (err: unknown): void
}

/** Every segment of `log` with its summary and removal set, in ID order. */
async function walk (db: Db, log: string, visit: Visitor): Promise<void> {
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

async function assertUnlocked (dir: string): Promise<void> {
  await stat(dir).catch((err: unknown) => { throw new EvaqError('EVAQ_NOT_FOUND', `${dir}: ${(err as Error).message}`, { cause: err }) })
  const db: Db = new ClassicLevel<Buffer, Buffer>(dir, { ...ENC, createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    const error = fromLevel(err, `Cannot repair ${dir}`)
    if (error.code === 'EVAQ_LOCKED') throw error
    return // damaged beyond opening: that is what repair is for
  }
  await db.close()
}

export interface RepairReport {
  backup: string
  before: CheckReport
  after: CheckReport
  /** What repair did per log. */
  fixed: Record<string, { quarantinedSegments: number, quarantinedRecords: number, summariesRewritten: number, orphansRemoved: number }>
}

/**
 * Copy the directory to `backup` first, run LevelDB's repair, then make evaq's own metadata
 * agree with what survived: damaged segments and records go to the quarantine, summaries and
 * counters are rebuilt from the segments, and IDs stay above every ID the counters ever issued.
 */
export async function repair (dir: string, backup: string): Promise<RepairReport> {
  try {
    const entries = await readdir(backup)
    if (entries.length > 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `The backup directory ${backup} is not empty`)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err
  }
  await stat(dir).catch((err: unknown) => { throw new EvaqError('EVAQ_NOT_FOUND', `${dir}: ${(err as Error).message}`, { cause: err }) })
  await cp(dir, backup, { recursive: true, errorOnExist: true, force: false })
  // LevelDB's repair takes no lock: make sure no process holds the directory before touching it
  // (after the copy, which must be the directory exactly as it was).
  await assertUnlocked(dir)
  const before = await check(dir)
  try {
    await ClassicLevel.repair(dir)
  } catch (err) {
    throw fromLevel(err, `LevelDB could not repair ${dir}`)
  }
  const db = await openRaw(dir)
  const fixed: RepairReport['fixed'] = {}
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
      const f = { quarantinedSegments: 0, quarantinedRecords: 0, summariesRewritten: 0, orphansRemoved: 0 }
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
    }
    // One fresh commit snapshot with the recounted counters replaces all others.
    const snapKeys: Buffer[] = []
    for await (const key of snaps.keys()) snapKeys.push(key)
    const seq = snapKeys.length === 0 ? 1 : decodeKey(snapKeys[snapKeys.length - 1]!) + 1
    const logs: Record<string, object> = {}
    for (const log of LOGS) {
      const n = counters[log]!
      const old = journal.counters(log)
      logs[log] = { ...old, next: n.next, count: n.count, bytes: n.bytes, floor: Number.isFinite(n.floor) ? n.floor : n.next, quarantinedCount: n.quarantined }
    }
    const batch = db.batch()
    for (const key of snapKeys) batch.del(key, { sublevel: snaps })
    batch.put(encodeKey(seq), Buffer.from(JSON.stringify({ seq, logs, pending: [] })), { sublevel: snaps })
    await batch.write({ sync: true })
  } finally {
    await db.close().catch(() => {})
  }
  const after = await check(dir)
  return { backup, before, after, fixed }
}
