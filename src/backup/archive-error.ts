import { EvaqError } from '../errors.js'

/** Where in an archive damage was found, for callers to act on (messages may change; this does not). */
export interface ArchiveDamage {
  /** The archive: its path, or what the caller called it. */
  readonly archive: string
  /** Byte offset of the damaged frame (or of the end, when the archive was cut short). */
  readonly offset: number
  /** For a database entry: its sublevel (`wal`, `wal-index`, `dlq-retry`, …; `''` for the root). */
  readonly sublevel?: string
  /** For a segment: the log and the segment's first ID. */
  readonly log?: string
  readonly segment?: number
  /** For a database entry: its key within the sublevel, in hex. */
  readonly key?: string
  /** What failed: `value-checksum`, `head-checksum`, `truncated`, `order`, `summary`, `reference`, … */
  readonly reason: string
}

/**
 * EVAQ_CORRUPTION for a damaged archive, with `damage` saying where. For a segment, `ids` holds
 * its first ID too (the HTTP service and the CLI print `ids`).
 */
export class ArchiveCorruption extends EvaqError {
  readonly damage: ArchiveDamage

  constructor (message: string, damage: ArchiveDamage) {
    super('EVAQ_CORRUPTION', message, damage.segment === undefined ? {} : { ids: [damage.segment] })
    this.damage = damage
  }
}
