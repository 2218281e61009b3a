import { EvaqError } from '../errors.js'
import { FILE_LOGS, logSublevels, SNAPSHOT_SUBLEVEL } from '../schema.js'
import { decodeLocator, LOCATOR_BYTES, type Locator } from './frame.js'
import type { SegmentFiles } from './segment-files.js'
import { placeOf, type Entry } from './key-place.js'

/**
 * The database's entries as a backup carries them: the same whatever the storage format, and
 * nothing that describes this directory's own files. A restore writes them into a directory that
 * has no segment files, as inline segments (which format 2 reads as they are):
 *
 * - a segment of a log with segment files whose value is a locator becomes the segment's bytes
 *   (the frame's body, checked: EVAQ_CORRUPTION naming the segment when the frame is damaged or
 *   its file is missing);
 * - `<log>-files` (file number -> end of its records) is left out: those files are not restored;
 * - the counters' tail (`tailFile`/`tailOffset` in each commit snapshot, and in the deltas it
 *   lists as pending) is zeroed. It says where the frames indexed so far end in *this*
 *   directory's files; the restored directory numbers its own files from 1, and open indexes
 *   again the frames after the tail (file-recovery.ts): a tail carried over would point past the
 *   restored queue's first files, and frames LevelDB lost there would never be indexed again.
 */

const FILE_SUBLEVELS: ReadonlySet<string> = new Set(FILE_LOGS.map(log => logSublevels(log).files))
const FILE_LOG_SET: ReadonlySet<string> = new Set(FILE_LOGS)

/** One page of raw entries, made logical (see above). `files`: the segment files by log. */
export async function logicalPage (page: readonly Entry[], files: ReadonlyMap<string, SegmentFiles>): Promise<Entry[]> {
  const out: Entry[] = []
  /** Locators to resolve, by log: where their entry sits in `out`. */
  const pending = new Map<string, Array<{ at: number, loc: Locator, firstId: number }>>()
  for (const [key, value] of page) {
    const place = placeOf(key)
    if (FILE_SUBLEVELS.has(place.sublevel)) continue
    if (place.sublevel === SNAPSHOT_SUBLEVEL) {
      out.push([key, withoutTail(value)])
      continue
    }
    if (place.log !== undefined && FILE_LOG_SET.has(place.log) && value.byteLength === LOCATOR_BYTES) {
      const list = pending.get(place.log) ?? []
      pending.set(place.log, list)
      list.push({ at: out.length, loc: decodeLocator(place.segment!, value), firstId: place.segment! })
    }
    out.push([key, value])
  }
  for (const [log, list] of pending) {
    const bodies = await resolveFrames(log, files.get(log), list)
    for (let i = 0; i < list.length; i++) out[list[i]!.at]![1] = bodies[i]!
  }
  return out
}

/** The bodies of `list` (frames of `log`), read in runs; the first that cannot be read fails it. */
async function resolveFrames (log: string, files: SegmentFiles | undefined, list: ReadonlyArray<{ loc: Locator, firstId: number }>): Promise<Buffer[]> {
  const unreadable = (firstId: number, err: unknown): EvaqError => {
    const why = err instanceof Error ? err.message : String(err)
    return new EvaqError('EVAQ_CORRUPTION', `Segment ${firstId} of ${log} cannot be read from its segment file: ${why}`, { ids: [firstId], cause: err })
  }
  if (files === undefined) throw unreadable(list[0]!.firstId, new Error(`${log} has no segment files`))
  const bodies = await files.readEach(list)
  // One of them cannot be read: name it (the first one, in ID order).
  const bad = bodies.findIndex(b => b instanceof EvaqError)
  if (bad >= 0) throw unreadable(list[bad]!.firstId, bodies[bad])
  return bodies as Buffer[]
}

interface Counters { tailFile?: number, tailOffset?: number }

/** A commit snapshot (store.ts Journal) without the counters' tail (see above). */
function withoutTail (value: Buffer): Buffer {
  let snap: { logs?: Record<string, Counters>, pending?: Array<{ delta?: Record<string, Counters> }> }
  try {
    snap = JSON.parse(value.toString('utf8')) as typeof snap
  } catch {
    // Damaged: carried as it is, and refused by the restored queue's open as it would be here.
    return value
  }
  let changed = false
  for (const c of Object.values(snap.logs ?? {})) {
    if ((c.tailFile ?? 0) === 0 && (c.tailOffset ?? 0) === 0) continue
    c.tailFile = 0
    c.tailOffset = 0
    changed = true
  }
  for (const p of snap.pending ?? []) {
    for (const d of Object.values(p.delta ?? {})) {
      if (d.tailFile === undefined && d.tailOffset === undefined) continue
      delete d.tailFile
      delete d.tailOffset
      changed = true
    }
  }
  return changed ? Buffer.from(JSON.stringify(snap)) : value
}
