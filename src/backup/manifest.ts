import { EvaqError } from '../errors.js'
import { ARCHIVE_VERSION } from './format.js'

/** What an archive says about itself, in its first frame (see format.ts). */
export interface BackupManifest {
  readonly format: 'evaq-backup'
  readonly version: number
  /** Random ID of this archive; an incremental archive names the archive it builds on by it. */
  readonly id: string
  readonly kind: 'full' | 'incremental'
  /** Incremental only: the archive this one builds on, and the high-water IDs it was taken with. */
  readonly base?: BackupBase
  /** 0 for a full archive, base's + 1 for an incremental one: archives a restore needs, minus one. */
  readonly depth: number
  /** When the snapshot was taken, ms since the epoch. */
  readonly createdAt: number
  /** On-disk format of the data directory (store.ts FORMAT_VERSION) the entries are in. */
  readonly storeFormat: number
  readonly logs: Readonly<Record<string, BackupLogMark>>
}

export interface BackupLogMark {
  /**
   * Every record below this ID was committed before the snapshot: the snapshot holds every segment
   * of the log below it that still exists (the committed watermark + 1, and after a failed write
   * no higher than it was at that failure: a failed batch may come back from LevelDB's log). An
   * incremental archive built on this one lists those segments by reference.
   */
  readonly highWater: number
  /** No ID at or above this had been issued when the snapshot was taken; a restore continues here. */
  readonly nextId: number
}

/** The part of a manifest an incremental backup needs from its base (send it to `POST /v1/backup` as `since`). */
export interface BackupBase {
  readonly id: string
  readonly depth: number
  readonly storeFormat: number
  readonly logs: Readonly<Record<string, { readonly highWater: number }>>
}

/** What an archive counts in its last frame. */
export interface BackupSummary {
  /** Database entries listed (carried plus referenced). */
  readonly entries: number
  /** Entries whose value is in the base archive. */
  readonly references: number
  /** Value bytes carried by this archive. */
  readonly valueBytes: number
  /** Per log: segments in the snapshot, segments carried by this archive, and their bytes. */
  readonly segments: Readonly<Record<string, { readonly total: number, readonly carried: number, readonly carriedBytes: number }>>
  /** CRC32 chained over the head CRC of every frame before the summary (see format.ts). */
  readonly digest: number
}

const ID_PATTERN = /^[0-9a-f-]{8,64}$/
const LOG_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

function bad (what: string, detail: string): EvaqError {
  return new EvaqError('EVAQ_INVALID_ARGUMENT', `${what} is not a backup manifest: ${detail}`)
}

function isId (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 1
}

function checkLogs (value: unknown, what: string, withNext: boolean): Record<string, BackupLogMark> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad(what, '`logs` is not an object')
  const out: Record<string, BackupLogMark> = {}
  for (const [log, mark] of Object.entries(value as Record<string, unknown>)) {
    if (!LOG_PATTERN.test(log)) throw bad(what, `log name \`${log.slice(0, 80)}\``)
    const m = mark as { highWater?: unknown, nextId?: unknown } | null
    if (m === null || typeof m !== 'object' || !isId(m.highWater)) throw bad(what, `\`logs.${log}.highWater\` is not an ID`)
    if (withNext && (!isId(m.nextId) || m.nextId < m.highWater)) throw bad(what, `\`logs.${log}.nextId\` is not an ID at or above its high-water`)
    out[log] = withNext ? { highWater: m.highWater, nextId: m.nextId as number } : { highWater: m.highWater, nextId: m.highWater }
  }
  return out
}

/** Validate a base (the `since` of a backup): EVAQ_INVALID_ARGUMENT names what is wrong. */
export function checkBase (value: unknown, what = '`since`'): BackupBase {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad(what, 'not an object')
  const v = value as Record<string, unknown>
  if (typeof v.id !== 'string' || !ID_PATTERN.test(v.id)) throw bad(what, '`id` is not an archive ID')
  if (typeof v.depth !== 'number' || !Number.isSafeInteger(v.depth) || v.depth < 0) throw bad(what, '`depth` is not an integer >= 0')
  if (typeof v.storeFormat !== 'number' || !Number.isSafeInteger(v.storeFormat)) throw bad(what, '`storeFormat` is not an integer')
  const logs: Record<string, { highWater: number }> = {}
  for (const [log, mark] of Object.entries(checkLogs(v.logs, what, false))) logs[log] = { highWater: mark.highWater }
  return { id: v.id, depth: v.depth, storeFormat: v.storeFormat, logs }
}

/** The base an incremental backup built on `manifest` names. */
export function baseOf (manifest: BackupManifest): BackupBase {
  const logs: Record<string, { highWater: number }> = {}
  for (const [log, mark] of Object.entries(manifest.logs)) logs[log] = { highWater: mark.highWater }
  return { id: manifest.id, depth: manifest.depth, storeFormat: manifest.storeFormat, logs }
}

/**
 * Parse and validate a manifest read from an archive (its frame CRC already matched, so a
 * mismatch here is a different writer, not damage). Throws EVAQ_UNSUPPORTED_FORMAT for another
 * version, EVAQ_INVALID_ARGUMENT for anything else malformed.
 */
export function parseManifest (json: Buffer, what: string): BackupManifest {
  let v: Record<string, unknown>
  try {
    v = JSON.parse(json.toString('utf8')) as Record<string, unknown>
  } catch {
    throw bad(what, 'not JSON')
  }
  if (v === null || typeof v !== 'object' || v.format !== 'evaq-backup') throw bad(what, '`format` is not `evaq-backup`')
  if (v.version !== ARCHIVE_VERSION) {
    throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT', `${what} has manifest version ${String(v.version)}; this evaq reads version ${ARCHIVE_VERSION}`)
  }
  if (typeof v.id !== 'string' || !ID_PATTERN.test(v.id)) throw bad(what, '`id` is not an archive ID')
  if (v.kind !== 'full' && v.kind !== 'incremental') throw bad(what, '`kind` is neither full nor incremental')
  if (typeof v.createdAt !== 'number' || !Number.isFinite(v.createdAt)) throw bad(what, '`createdAt` is not a time')
  if (typeof v.storeFormat !== 'number' || !Number.isSafeInteger(v.storeFormat)) throw bad(what, '`storeFormat` is not an integer')
  if (typeof v.depth !== 'number' || !Number.isSafeInteger(v.depth) || v.depth < 0) throw bad(what, '`depth` is not an integer >= 0')
  const logs = checkLogs(v.logs, what, true)
  let base: BackupBase | undefined
  if (v.kind === 'incremental') {
    base = checkBase(v.base, `${what} (its base)`)
    if (v.depth !== base.depth + 1) throw bad(what, '`depth` is not its base\'s + 1')
  } else if (v.base !== undefined || v.depth !== 0) {
    throw bad(what, 'a full archive has no base and depth 0')
  }
  return {
    format: 'evaq-backup',
    version: ARCHIVE_VERSION,
    id: v.id,
    kind: v.kind,
    ...(base === undefined ? {} : { base }),
    depth: v.depth,
    createdAt: v.createdAt,
    storeFormat: v.storeFormat,
    logs,
  }
}

export function parseSummary (json: Buffer, what: string): BackupSummary {
  let v: BackupSummary
  try {
    v = JSON.parse(json.toString('utf8')) as BackupSummary
  } catch {
    throw bad(what, 'its summary is not JSON')
  }
  if (v === null || typeof v !== 'object' || !Number.isSafeInteger(v.entries) || !Number.isSafeInteger(v.references) || !Number.isSafeInteger(v.digest)) {
    throw bad(what, 'its summary lacks counts')
  }
  return v
}
