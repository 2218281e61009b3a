import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ID_FILE } from '../schema.js'
import { replaceFileDurably } from './durable-file.js'

/**
 * IDs are never reused, even when LevelDB loses the end of its log.
 *
 * The ID high-water mark is written in the same LevelDB batch as the records (see Journal), which
 * covers every crash LevelDB itself survives. It does not cover damage to LevelDB's log: a torn
 * or truncated log loses its last batches, records and high-water mark together, and LevelDB
 * reads a log that ends early as a crash during a write, reporting nothing. The IDs of those
 * records, acknowledged once, would be issued again, and a consumer that drops duplicates by ID
 * would then drop new records.
 *
 * So each log also reserves IDs ahead in a small file beside LevelDB's (`EVAQ-IDS`), written with
 * fsync before any ID at or above the reservation is committed, once per RESERVATION IDs. Open
 * takes the higher of the two. A crash leaves a gap of at most RESERVATION IDs; a clean close
 * writes the exact next ID, so a clean restart leaves none. The file also remembers, after a
 * clean close, the highest ID committed: if LevelDB then opens with less, records were lost
 * without LevelDB noticing, and evaq says so (Evaq's openReport.corruption, `evaq check`).
 *
 * LevelDB leaves files it does not know alone, and its repair does too.
 */

/** IDs reserved per file write. */
export const RESERVATION = 65_536

interface LogIds {
  /** No ID at or above this was issued. */
  next: number
  /** After a clean close: the next ID LevelDB's counters held (every ID below it was committed or failed). */
  committed?: number
}

interface IdFile {
  version: 1
  clean: boolean
  logs: Record<string, LogIds>
}

export class IdFloor {
  private writing: Promise<void> = Promise.resolve()
  /** Set when the file could not be read: what open reports. */
  readonly problem: string | undefined

  private constructor (private readonly dir: string, private state: IdFile, problem?: string) {
    this.problem = problem
  }

  static async load (dir: string): Promise<IdFloor> {
    let text: string
    try {
      text = await readFile(join(dir, ID_FILE), 'utf8')
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return new IdFloor(dir, { version: 1, clean: true, logs: {} })
      throw err
    }
    try {
      const parsed = JSON.parse(text) as IdFile
      if (parsed.version !== 1 || typeof parsed.logs !== 'object' || parsed.logs === null) throw new Error('unknown layout')
      for (const ids of Object.values(parsed.logs)) {
        if (!Number.isSafeInteger(ids.next) || ids.next < 1) throw new Error('bad next ID')
      }
      return new IdFloor(dir, parsed)
    } catch (err) {
      // A damaged reservation file must not keep the queue closed: LevelDB's own high-water mark
      // still holds for every crash it survives. Reported, and rewritten at the next reservation.
      const why = `${ID_FILE} cannot be read (${(err as Error).message}); IDs continue from LevelDB's counters`
      return new IdFloor(dir, { version: 1, clean: false, logs: {} }, why)
    }
  }

  /** The lowest ID `log` may issue next. */
  floor (log: string): number {
    return this.state.logs[log]?.next ?? 1
  }

  /**
   * After a clean close, the next ID LevelDB's counters held; if they now hold less, LevelDB lost
   * batches it did not report.
   */
  lost (log: string, next: number): { expected: number, found: number } | undefined {
    const committed = this.state.clean ? this.state.logs[log]?.committed : undefined
    return committed !== undefined && next < committed ? { expected: committed, found: next } : undefined
  }

  /** After a clean close, the next ID LevelDB's counters held, if known. */
  committed (log: string): number | undefined {
    return this.state.clean ? this.state.logs[log]?.committed : undefined
  }

  /** Whether IDs up to `upTo` (exclusive) are covered by the reservation. */
  covers (log: string, upTo: number): boolean {
    return !this.state.clean && upTo <= this.floor(log)
  }

  /** Reserve IDs so that `upTo` (exclusive) is covered: one fsynced file write per RESERVATION IDs. */
  reserve (log: string, upTo: number): Promise<void> {
    this.writing = this.writing.catch(() => {}).then(async () => {
      if (this.covers(log, upTo)) return
      const logs = { ...this.state.logs }
      for (const [name, ids] of Object.entries(logs)) logs[name] = { next: ids.next }
      logs[log] = { next: Math.max(upTo, this.floor(log)) + RESERVATION }
      await this.write({ version: 1, clean: false, logs })
    })
    return this.writing
  }

  /** After a clean close: the exact next ID of each log, and the one LevelDB's counters hold. */
  close (logs: Record<string, LogIds>): Promise<void> {
    this.writing = this.writing.catch(() => {}).then(() => this.write({ version: 1, clean: true, logs: { ...this.state.logs, ...logs } }))
    return this.writing
  }

  private async write (state: IdFile): Promise<void> {
    await replaceFileDurably(join(this.dir, ID_FILE), JSON.stringify(state))
    this.state = state
  }
}
