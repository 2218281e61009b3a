import { readFile, rm } from 'node:fs/promises'
import { EvaqError } from '../errors.js'
import type { Backend } from './backend.js'
import { replaceFileDurably } from '../store/durable-file.js'

/**
 * Where an `evaq import --in FILE` stands, in `FILE.evaq-import` beside the source, so that the
 * same command run again continues after the records already imported instead of pushing them a
 * second time. Written (to a temporary name, fsynced, renamed, directory fsynced) before each batch
 * is pushed, naming the batch as pending with the log's next ID at that moment, and again once the
 * push resolved (durable under the queue's durability), without it. Removed when the import ends.
 * Ctrl-C and SIGTERM wait for that second write; only a kill or a crash leaves a batch pending.
 *
 * A process killed while a batch is pending leaves the question whether the batch was stored
 * (pushes are atomic: all of it or none, and a batch's IDs follow each other). The next run
 * settles it from the log: records with the IDs from that next ID on carry the batch's payloads
 * in order, so it was stored; the log holds no record at or above that ID, so it was not (a
 * crash moves the next ID ahead, so the ID itself cannot tell). Anything else (other writers
 * pushed meanwhile) it cannot tell, and it stops with EVAQ_INVALID_ARGUMENT, naming the IDs to
 * look at, instead of guessing. One case it reads wrongly: the batch was stored and every one of
 * its records was removed (consumed) before the next run; the batch is then imported again.
 */

export interface ImportMarker {
  version: 1
  /** What was imported into: the data directory (absolute) or the service's URL. */
  target: string
  log: string
  /** The source file as it was (the import refuses to continue from a file that changed). */
  source: { size: number, mtimeMs: number }
  /** Lines of the source imported (every record on lines 1..line is stored). */
  line: number
  /** Records imported so far, and the first and last of their IDs. */
  imported: number
  firstId?: number
  lastId?: number
  /** A batch being pushed: records on lines `from`..`line`, `count` of them; the log's next ID before. */
  pending?: { from: number, line: number, count: number, nextId: number }
}

export function markerPath (source: string): string {
  return `${source}.evaq-import`
}

export async function readMarker (path: string): Promise<ImportMarker | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw new EvaqError('EVAQ_IO', `Cannot read ${path}`, { cause: err })
  }
  try {
    const m = JSON.parse(text) as ImportMarker
    if (m.version !== 1 ||
      typeof m.target !== 'string' ||
      typeof m.log !== 'string' ||
      !Number.isSafeInteger(m.line) ||
      !Number.isSafeInteger(m.imported)) throw new Error('unknown layout')
    return m
  } catch (err) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      `${path} is not the progress file of an evaq import (${(err as Error).message}); delete it to import from the first line`, { cause: err })
  }
}

/**
 * Replace the progress file. `renameDurable`: fsync the directory after the rename, so that the
 * new file survives an OS crash; needed when it names a pending batch (it must be on disk before
 * the push), not after the push (lost, the pending one is found and settled).
 */
export async function writeMarker (path: string, marker: ImportMarker, renameDurable = true): Promise<void> {
  try {
    await replaceFileDurably(path, JSON.stringify(marker), { syncDir: renameDurable })
  } catch (err) {
    throw new EvaqError('EVAQ_IO', `Cannot write the import's progress to ${path}`, { cause: err })
  }
}

export async function removeMarker (path: string): Promise<void> {
  await rm(path, { force: true })
  await rm(`${path}.tmp`, { force: true })
}

/**
 * Whether the pending batch of `marker` was stored (see above); `payloads` are its records, read
 * again from the source. EVAQ_INVALID_ARGUMENT when the log cannot tell.
 */
export async function pendingStored (q: Backend, marker: ImportMarker, payloads: readonly Buffer[], path: string): Promise<boolean> {
  const pending = marker.pending!
  const records = await q.read(marker.log, { from: pending.nextId, maxCount: pending.count, maxBytes: 16 * 1024 * 1024 })
  if (records.length === 0) return false
  if (payloads.length === pending.count &&
    records.length === pending.count &&
    records.every((r, i) => r.id === pending.nextId + i && r.payload.equals(payloads[i]!))) return true
  throw new EvaqError('EVAQ_INVALID_ARGUMENT',
    `The import was stopped while it pushed the records of lines ${pending.from}..${pending.line} to ${marker.log} ` +
    `(as IDs from ${pending.nextId}), and the log cannot tell whether they were stored: it holds other records from ID ${records[0]!.id}. ` +
    `Look at ${marker.log} from ID ${pending.nextId}; then either delete ${path} (to import from the first line) ` +
    `or set its "line" to ${pending.line} (they were stored) and remove "pending"`)
}
