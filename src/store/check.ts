import { cp, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError, fromLevel } from '../errors.js'
import { closeFiles, ENC, LOGS, openFilesReadOnly, openRaw, repairInPlace, walk, type FrameDamage, type RepairFixes } from './repair.js'
import { IdFloor } from './id-floor.js'
import { heldByAnotherProcess, withCheckCopy } from './check-copy.js'
import { claimDir, isClaimed, type DirClaim } from './dir-claim.js'
import { FILE_LOGS, FORMAT_KEY, FORMAT_VERSION, LEVELDB_LOCK_FILE, logSublevels, META_SUBLEVEL, SEGMENTS_DIR, SNAPSHOT_SUBLEVEL } from '../schema.js'
import { SegmentTier } from './segment-tier.js'
import { engineCorruption, Journal, pendingRecount, type Db } from './store.js'
import { verifySegment } from './verify.js'

/**
 * Checking and repairing a whole directory (`evaq check`, `evaq repair`): the only code that reads
 * every record of a directory. It works on a directory no process holds, through classic-level
 * directly, so that a check changes nothing and a repair can work where Evaq.open would refuse.
 */

export interface LogCheck {
  segments: number
  records: number
  bytes: number
  /**
   * Segments whose header or index fails its checksum or cannot be decoded, and segments whose
   * frame in a segment file is damaged or whose file is missing (named in `badFrames`).
   */
  badSegments: number
  /** The segments counted in `badSegments` because their frame cannot be read, each with its file. */
  badFrames: FrameDamage[]
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
  status: CheckStatus
  /** Whether LevelDB could open the directory at all. */
  opened: boolean
  error?: { code: string, message: string }
  format?: number
  logs: Record<string, LogCheck>
  subscribers: { ok: number, bad: number }
  /**
   * What LevelDB reported as corruption while opening (a dropped log record loses its batch), and
   * records lost that LevelDB did not report (its counters end below what a clean close left).
   */
  engine: string[]
  /** Damage found, or the directory could not be read (status `damaged`). */
  damaged: boolean
}

function describeError (err: unknown): { code: string, message: string } {
  const e = err instanceof EvaqError ? err : fromLevel(err, 'LevelDB failed')
  let cause = e.cause as { code?: unknown } | undefined
  const codes = [e.code]
  for (let i = 0; cause != null && i < 4; i++, cause = (cause as { cause?: { code?: unknown } }).cause) {
    if (typeof cause.code === 'string') codes.push(cause.code as never)
  }
  return { code: e.code, message: `${e.message} (${codes.join(' <- ')})` }
}

/**
 * What check found: `ok`, `damaged`, `locked` (another process holds the directory: check it
 * through that process, or stop it), `not-found` (no such directory, or no LevelDB database in it),
 * `tiered` (segment files of it are in object storage, which check does not read: see docs/tier.md).
 */
export type CheckStatus = 'ok' | 'damaged' | 'locked' | 'not-found' | 'tiered'

const LEVELDB_FILE = /^(CURRENT|MANIFEST-\d+|\d+\.(ldb|log|sst))$/

/**
 * Check `dir` without changing it: LevelDB opens a copy (see check-copy.ts), never the directory,
 * so that two checks see the same thing and the damage they report is still there for repair.
 */
export function check (dir: string, onProgress?: (done: number) => void): Promise<CheckReport> {
  return inspect(dir, onProgress, undefined)
}

/** check(), by the holder of `held` (a repair) or by anyone (no claim). */
async function inspect (dir: string, onProgress: ((done: number) => void) | undefined, held: DirClaim | undefined): Promise<CheckReport> {
  const report: CheckReport = { dir, status: 'damaged', opened: false, logs: {}, subscribers: { ok: 0, bad: 0 }, engine: [], damaged: true }
  const notFound = (message: string): CheckReport => {
    report.error = { code: 'EVAQ_NOT_FOUND', message }
    return Object.assign(report, { status: 'not-found', damaged: false })
  }
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    return notFound(`${dir}: ${(err as Error).message}`)
  }
  if (!names.some(name => LEVELDB_FILE.test(name))) return notFound(`${dir} holds no evaq queue (no LevelDB files)`)
  if ((held === undefined && await isClaimed(dir)) || await heldByAnotherProcess(dir)) {
    report.error = { code: 'EVAQ_LOCKED', message: `${dir} is held by a running queue; check it through that process, or stop it first` }
    return Object.assign(report, { status: 'locked', damaged: false })
  }
  const offloaded = await offloadedFiles(dir)
  if (offloaded > 0) {
    report.error = {
      code: 'EVAQ_INVALID_ARGUMENT',
      message: `${dir} has ${offloaded} segment file(s) in object storage (a tier), which check and repair do not read; ` +
        'open it with its tier instead (evaq serve --tier): reads verify every fetched file',
    }
    return Object.assign(report, { status: 'tiered', damaged: false })
  }
  try {
    return await withCheckCopy(dir, copy => checkCopy(copy, dir, report, onProgress), held)
  } catch (err) {
    report.error = describeError(err)
    return report
  }
}

async function checkCopy (dir: string, original: string, report: CheckReport, onProgress?: (done: number) => void): Promise<CheckReport> {
  let db: Db
  try {
    db = await openRaw(dir)
  } catch (err) {
    report.error = describeError(err)
    return report
  }
  report.opened = true
  let files: Awaited<ReturnType<typeof openFilesReadOnly>> | undefined
  // What LevelDB dropped while opening the copy; the directory itself still holds it, and the
  // next Evaq.open sees (and recounts after) the same.
  report.engine = (await engineCorruption(dir)).map(line => line.replaceAll(dir, original))
  for (const line of await pendingRecount(dir)) report.engine.push(`seen at an earlier open: ${line}`)
  try {
    const format = await db.sublevel<Buffer, Buffer>(META_SUBLEVEL, ENC).get(FORMAT_KEY)
    report.format = format === undefined ? undefined : (JSON.parse(format.toString('utf8')) as { version: number }).version
    if (report.format !== FORMAT_VERSION) {
      report.error = { code: 'EVAQ_UNSUPPORTED_FORMAT', message: `format ${String(report.format)}, expected ${FORMAT_VERSION}` }
      return report
    }
    const journal = await Journal.load(db.sublevel<Buffer, Buffer>(SNAPSHOT_SUBLEVEL, ENC))
    const ids = await IdFloor.load(dir)
    if (ids.problem !== undefined) report.engine.push(ids.problem)
    for (const log of LOGS) {
      const gap = ids.lost(log, journal.counters(log).next)
      if (gap !== undefined) {
        report.engine.push(`${log}: LevelDB lost records it had acknowledged before the last clean close: ` +
          `its counters end at ID ${gap.found - 1}, they ended at ${gap.expected - 1}`)
      }
    }
    files = await openFilesReadOnly(dir)
    let done = 0
    for (const log of LOGS) {
      const c = journal.counters(log)
      const result: LogCheck = {
        segments: 0, records: 0, bytes: 0, badSegments: 0, badFrames: [], badRecords: 0, inconsistencies: 0, unreadable: false,
        counted: { records: c.count, bytes: c.bytes }, quarantined: c.quarantinedCount,
      }
      report.logs[log] = result
      await walk(db, log, {
        segment: (first, value, summary, removal) => {
          const { header, badRecords, goodRecords, goodBytes } = verifySegment(first, value, removal)
          if (header === undefined) {
            result.badSegments++
            return
          }
          result.segments++
          if (summary === undefined || summary.count !== header.count || summary.payloadBytes !== header.payloadBytes) result.inconsistencies++
          result.records += goodRecords
          result.bytes += goodBytes
          result.badRecords += badRecords.length
          onProgress?.(++done)
        },
        badFrame: (first, damage) => {
          result.badSegments++
          // The copy's path, as check names the directory it was asked about.
          result.badFrames.push({ ...damage, message: damage.message.replaceAll(dir, original) })
        },
        orphanSummary: () => { result.inconsistencies++ },
        badRemovalSet: () => { result.inconsistencies++ },
        unreadable: () => { result.unreadable = true },
      }, files)
      if (result.records + result.badRecords !== c.count && result.badSegments === 0 && !result.unreadable) result.inconsistencies++
      for await (const [, value] of db.sublevel<Buffer, Buffer>(logSublevels(log).subscribers, ENC).iterator()) {
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
    report.status = report.damaged ? 'damaged' : 'ok'
  } catch (err) {
    report.error = describeError(err)
  } finally {
    if (files !== undefined) await closeFiles(files)
    await db.close().catch(() => {})
  }
  return report
}

export interface RepairReport {
  backup: string
  before: CheckReport
  after: CheckReport
  /** What repair did per log. */
  fixed: RepairFixes
}

/**
 * Copy the directory to `backup` first, run LevelDB's repair, then make evaq's own metadata
 * agree with what survived: damaged segments and records go to the quarantine, summaries and
 * counters are rebuilt from the segments, and IDs stay above every ID the counters ever issued.
 */
export async function repair (dir: string, backup: string, onProgress?: (done: number) => void): Promise<RepairReport> {
  // A repair would take locators into files in the bucket for damage: never run one there.
  const offloaded = await offloadedFiles(dir)
  if (offloaded > 0) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${dir} has ${offloaded} segment file(s) in object storage (a tier); evaq repair does not read them`)
  }
  try {
    const entries = await readdir(backup)
    if (entries.length > 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `The backup directory ${backup} is not empty`)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err
  }
  await stat(dir).catch((err: unknown) => { throw new EvaqError('EVAQ_NOT_FOUND', `${dir}: ${(err as Error).message}`, { cause: err }) })
  const claim = await claimDir(dir)
  try {
    // LOCK is not copied (opening and closing it would drop a lock this process holds on it);
    // LevelDB never writes into it, so the backup gets an empty one of its own.
    const lock = join(dir, LEVELDB_LOCK_FILE)
    await cp(dir, backup, { recursive: true, errorOnExist: true, force: false, filter: from => from !== lock })
    if (await stat(lock).then(() => true, () => false)) await writeFile(join(backup, 'LOCK'), '', { flag: 'wx' })
    // LevelDB's repair takes no lock: make sure no process holds the directory before touching it
    // (after the copy, which must be the directory exactly as it was).
    if (await heldByAnotherProcess(dir)) throw new EvaqError('EVAQ_LOCKED', `Cannot repair ${dir}: the data directory is locked by another process`)
    const before = await inspect(dir, onProgress, claim)
    let fixed: RepairFixes
    try {
      fixed = await repairInPlace(dir, claim)
    } catch (err) {
      throw fromLevel(err, `LevelDB could not repair ${dir}`)
    }
    const after = await inspect(dir, onProgress, claim)
    return { backup, before, after, fixed }
  } finally {
    claim.release()
  }
}

/** How many segment files of `dir` are offloaded to a tier (their markers, segment-tier.ts). */
async function offloadedFiles (dir: string): Promise<number> {
  let n = 0
  for (const log of FILE_LOGS) n += (await SegmentTier.markers(join(dir, SEGMENTS_DIR, log))).length
  return n
}
