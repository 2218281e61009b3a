import { EvaqError, isEvaqError } from '../errors.js'
import type { StoreSnapshot } from '../store/snapshot.js'
import { newManifest, writeArchive } from './archive-writer.js'
import { baseOf, checkBase, parseManifest, type BackupBase, type BackupLogMark, type BackupManifest, type BackupSummary } from './manifest.js'

/** Options of `Evaq.backup`. */
export interface BackupOptions {
  /**
   * Make an incremental backup on top of an earlier one: its manifest (`readManifest(file)`), or
   * the `base` part of it. Segments below the earlier backup's high-water IDs are then listed by
   * reference instead of carried; everything else (removals, acknowledgements, retry state,
   * counters) is carried whole. @defaultValue none: a full backup
   */
  since?: BackupManifest | BackupBase
}

/** `since` as a base: a manifest or a base, validated (EVAQ_INVALID_ARGUMENT). */
export function sinceBase (since: unknown): BackupBase | undefined {
  if (since === undefined) return undefined
  if (since !== null && typeof since === 'object' && (since as { format?: unknown }).format === 'evaq-backup') {
    try {
      return baseOf(parseManifest(Buffer.from(JSON.stringify(since)), '`since`'))
    } catch (err) {
      // Another version's manifest is a bad argument to this call (over HTTP: 400, not 500).
      if (isEvaqError(err) && err.code === 'EVAQ_UNSUPPORTED_FORMAT') throw new EvaqError('EVAQ_INVALID_ARGUMENT', err.message, { cause: err })
      throw err
    }
  }
  return checkBase(since)
}

/**
 * A backup whose snapshot is taken: iterate it once for the archive's bytes (see format.ts). The
 * snapshot is held until the iteration ends; `close()` releases it early (an iteration under way
 * then fails).
 */
export class BackupStream implements AsyncIterable<Buffer> {
  /** Set once the last chunk was handed out. */
  summary: BackupSummary | undefined
  /** Bytes handed out so far. */
  bytes = 0
  private iterated = false

  constructor (readonly manifest: BackupManifest, private readonly snapshot: StoreSnapshot) {}

  async * [Symbol.asyncIterator] (): AsyncGenerator<Buffer> {
    if (this.iterated) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'A backup stream can be read once')
    this.iterated = true
    for await (const chunk of writeArchive(this.manifest, this.snapshot, summary => { this.summary = summary })) {
      this.bytes += chunk.byteLength
      yield chunk
    }
  }

  /** Release the snapshot without reading (or stop a read under way). */
  close (): Promise<void> {
    this.iterated = true
    return this.snapshot.close()
  }
}

/** A backup of `snapshot`, taken with the marks read in the same turn of the event loop. */
export function startBackup (snapshot: StoreSnapshot, logs: Record<string, BackupLogMark>, createdAt: number, base: BackupBase | undefined): BackupStream {
  let manifest: BackupManifest
  try {
    manifest = newManifest(logs, createdAt, base)
  } catch (err) {
    void snapshot.close()
    throw err
  }
  return new BackupStream(manifest, snapshot)
}
