import { join } from 'node:path'
import { EvaqError } from '../errors.js'
import { FILE_LOGS, logSublevels, SEGMENTS_DIR } from '../schema.js'
import { decodeHeader, encodeKey, encodeSummary, type SegmentHeader } from './codec.js'
import { encodeLocator, frameSpan, JOINS_NEXT, JOINS_PREVIOUS, SELF_COMMITTED } from './frame.js'
import type { ScannedFrame } from './frame-reader.js'
import { SegmentFiles, type SegmentFilesOptions } from './segment-files.js'
import { SegmentTier } from './segment-tier.js'
import { Keyspace } from './keyspace.js'
import { dropUnsynced, type UnsyncedRange } from './unsynced-frames.js'
import type { Delta, Store } from './store.js'

/** Frames indexed per batch by the recovery. */
const BATCH_FRAMES = 256

/** What opening the segment files found. */
export interface FileRecovery {
  /** Segments indexed again from their frames, because LevelDB had lost their locators. */
  readonly segments: number
  readonly records: number
  /** Lines for the open report's corruption: what was indexed again after LevelDB dropped part of its log. */
  readonly lines: string[]
  /** Segments whose frames never reached the disk, taken out of the index (see unsynced-frames.ts). */
  readonly unsynced: UnsyncedRange[]
}

/**
 * Open the segment files of every log that has them, take out the locators whose frames never
 * reached the disk (unsynced-frames.ts), and index the frames LevelDB lost.
 *
 * A push's frame is committed when its fdatasync returns; its locator is written afterwards
 * without a sync (schema.ts). A process crash loses the locators of the flushes in flight; a power
 * cut may lose every write since LevelDB's last sync. Both lose the end of what LevelDB was told,
 * in order, together with the counters' snapshots of the same batches: so the frames to index
 * again are exactly those after the counters' tail (the end of the last frame indexed) whose IDs
 * lie at or above the counters' `next`. A frame below `next` was indexed once and may have been
 * deleted since: it is not brought back. The scan is bounded: a file switch writes its locators
 * with a sync (Log.commit), so at most the frames since then are read.
 *
 * When LevelDB reported that it dropped damaged records of its log (`store.corruption`), the
 * lost batches may lie before surviving ones: every frame from the oldest file on is then checked,
 * and one at or above the floor whose locator is missing is indexed again. A record removed in a
 * batch LevelDB dropped can come back that way (it is delivered again); nothing acknowledged is
 * lost. The report says so.
 */
export async function openSegmentFiles (
  dir: string, store: Store, options: SegmentFilesOptions, tiers?: (log: string, dir: string) => Promise<SegmentTier>
): Promise<{ files: Map<string, SegmentFiles>, recovery: FileRecovery }> {
  const files = new Map<string, SegmentFiles>()
  let segments = 0
  let records = 0
  const lines: string[] = []
  const unsynced: UnsyncedRange[] = []
  const damagedLog = store.corruption.some(line => line.includes('dropping'))
  try {
    for (const log of FILE_LOGS) {
      const logDir = join(dir, SEGMENTS_DIR, log)
      const tier = await tiers?.(log, logDir)
      if (tier === undefined) {
        const offloaded = await SegmentTier.markers(logDir)
        if (offloaded.length > 0) {
          throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${dir} has ${offloaded.length} segment file(s) of ${log} in object storage: ` +
            'open it with its `tier` option (evaq serve --tier)')
        }
      }
      const set = await SegmentFiles.open(logDir, tier === undefined ? options : { ...options, tier })
      files.set(log, set)
      unsynced.push(...await dropUnsynced(store, log, set))
      const r = await indexLost(store, log, set, damagedLog)
      segments += r.segments
      records += r.records
      if (r.segments > 0 && damagedLog) {
        lines.push(`${log}: indexed ${r.segments} segment(s) (${r.records} record(s)) again from the segment files; LevelDB had lost their ` +
          'locators with the damaged part of its log, so records removed shortly before may be delivered again')
      }
    }
  } catch (err) {
    for (const set of files.values()) await set.close().catch(() => {})
    throw err
  }
  return { files, recovery: { segments, records, lines, unsynced } }
}

async function indexLost (store: Store, log: string, files: SegmentFiles, everyFrame: boolean): Promise<{ segments: number, records: number }> {
  const names = logSublevels(log)
  const segs = store.sublevel(names.segments)
  const segKeys = new Keyspace(segs)
  const indexKeys = new Keyspace(store.sublevel(names.index))
  const fileKeys = new Keyspace(store.sublevel(names.files))
  const c = store.journal.counters(log)
  files.numberAbove(c.tailFile)
  let next = c.next
  const from = everyFrame || c.tailFile === 0 ? { file: 0, offset: 0 } : { file: c.tailFile, offset: c.tailOffset }
  let segments = 0
  let records = 0
  /** Frames to index, each with its segment header (decoded once, while scanning). */
  let pending: Array<{ frame: ScannedFrame, header: SegmentHeader }> = []
  const ends = new Map<number, number>()
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return
    const batch = store.db.batch()
    let count = 0
    let bytes = 0
    let top = next
    let tail = { file: 0, offset: 0 }
    for (const { frame, header } of pending) {
      segKeys.put(batch, frame.firstId, encodeLocator(frame.loc))
      indexKeys.put(batch, frame.firstId, encodeSummary(header.count, header.payloadBytes, header.pushedAt))
      const end = frame.firstId + header.count
      ends.set(frame.loc.file, Math.max(ends.get(frame.loc.file) ?? 0, end))
      count += header.count
      bytes += header.payloadBytes
      top = Math.max(top, end)
      tail = { file: frame.loc.file, offset: frame.loc.offset + frameSpan(frame.loc.length) }
    }
    for (const [f, end] of ends) fileKeys.put(batch, f, encodeKey(end))
    const delta: Delta = { [log]: { next: top, count, bytes, tailFile: tail.file, tailOffset: tail.offset } }
    const seq = store.journal.stage(batch, delta)
    try {
      await batch.write({ sync: true })
    } catch (cause) {
      store.journal.settle(seq, false)
      throw new EvaqError('EVAQ_IO', `Indexing ${pending.length} segment(s) of ${log} from its segment files failed`, { cause })
    }
    store.journal.settle(seq, true)
    segments += pending.length
    records += count
    next = top
    pending = []
  }
  /** The frames of one pushMany seen so far (JOINS_NEXT), indexed only once the group is whole. */
  let group: Array<{ frame: ScannedFrame, header: SegmentHeader }> = []
  /** The ID after the last frame queued to be indexed. */
  let queued = 0
  let groupEnd = -1
  for await (const frame of files.scan(from)) {
    if ((frame.flags & SELF_COMMITTED) === 0) continue
    let header: SegmentHeader
    try {
      header = decodeHeader(frame.firstId, frame.body)
    } catch {
      // The frame's checksum held, so its body is what was written; a segment that does not
      // decode was never a valid one: nothing of it was acknowledged.
      group = []
      continue
    }
    if ((frame.flags & JOINS_PREVIOUS) !== 0 && (group.length === 0 || frame.firstId !== groupEnd)) {
      // The rest of a group whose first frames were not whole: the push was never acknowledged.
      group = []
      continue
    }
    if ((frame.flags & JOINS_PREVIOUS) === 0) group = []
    group.push({ frame, header })
    groupEnd = frame.firstId + header.count
    if ((frame.flags & JOINS_NEXT) !== 0) continue
    for (const entry of group) {
      const f = entry.frame
      // Below `queued`: a second copy of a frame queued already (a flush LevelDB refused is
      // appended again after the repair): indexed once.
      if (f.firstId < queued) continue
      let lost = f.firstId >= next
      if (!lost && everyFrame && f.firstId >= c.floor) lost = await segs.get(encodeKey(f.firstId)) === undefined
      if (!lost) continue
      pending.push(entry)
      queued = f.firstId + entry.header.count
    }
    group = []
    if (pending.length >= BATCH_FRAMES) await flush()
  }
  // A group the scan ended inside was never acknowledged.
  await flush()
  return { segments, records }
}
