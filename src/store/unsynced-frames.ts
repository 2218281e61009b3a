import { EvaqError } from '../errors.js'
import { logSublevels } from '../schema.js'
import { decodeRemovalSet, decodeSummary, encodeKey, decodeKey } from './codec.js'
import { decodeLocator, JOINS_NEXT, JOINS_PREVIOUS, LOCATOR_BYTES, type Locator } from './frame.js'
import { Keyspace } from './keyspace.js'
import type { SegmentFiles } from './segment-files.js'
import type { Delta, Store } from './store.js'

/** Records of one log whose frames had not reached the disk when the machine stopped. */
export interface UnsyncedRange {
  readonly log: string
  readonly firstId: number
  readonly lastId: number
  /** Live records (not removed before the stop) and their payload bytes. */
  readonly records: number
  readonly bytes: number
}

/**
 * Take out the segments whose locator LevelDB kept but whose frame never reached the disk.
 *
 * A frame's locator is written without a sync after the frame (schema.ts), and under durability
 * 'none' or an interval the frame is not synced either. After a power cut the two writes may have
 * reached the disk in either order: LevelDB can hold a locator whose frame is zeros, older bytes
 * or torn. Under 'sync' such a push was never acknowledged (its fdatasync had not returned);
 * under 'none' or an interval it was acknowledged without the promise of surviving a power cut.
 * Either way it is a loss at the stop, not damage: reads would otherwise meet these segments
 * later and report them as corruption.
 *
 * Only locators at or above the counters' `syncedBelow` can name such a frame (see
 * SegmentFiles.syncedBelow), so the check reads what the last flushes wrote: under 'sync' the
 * flushes in flight, under 'none' what was appended since the last synced batch (a new file, or
 * every 16 MiB). Each segment taken out is counted as dropped and reported as a range (the open
 * report's `dropped`, reason 'unsynced'); its IDs are never issued again.
 */
export async function dropUnsynced (store: Store, log: string, files: SegmentFiles): Promise<UnsyncedRange[]> {
  const names = logSublevels(log)
  const segs = store.sublevel(names.segments)
  const index = store.sublevel(names.index)
  const removed = store.sublevel(names.removed)
  const c = store.journal.counters(log)
  // No frame indexed yet (tailFile 0): every segment is inline, nothing to check.
  if (c.tailFile === 0 || c.syncedBelow >= c.next) return []
  /** Every segment from syncedBelow on that is in a segment file. */
  const located: Array<{ firstId: number, loc: Locator }> = []
  const entries = segs.iterator({ gte: encodeKey(c.syncedBelow) })
  try {
    for (;;) {
      let entry: [Buffer, Buffer] | undefined
      try {
        entry = await entries.next()
      } catch {
        // LevelDB cannot read this part of the index: the reads that meet it name the damage
        // (reader.ts). What was checked before it still counts.
        break
      }
      if (entry === undefined) break
      const [key, value] = entry
      if (value.byteLength !== LOCATOR_BYTES) continue
      const first = decodeKey(key)
      let loc: Locator
      try {
        loc = decodeLocator(first, value)
      } catch {
        continue // a damaged locator is damage, not a lost write: reads name it
      }
      located.push({ firstId: first, loc })
    }
  } finally {
    await entries.close().catch(() => {})
  }
  // Adjacent frames are read together; a frame not whole is its EVAQ_CORRUPTION.
  const bodies = await files.readEach(located)
  const seen = located.map((s, i) => ({ first: s.firstId, loc: s.loc, whole: !(bodies[i] instanceof EvaqError) }))
  if (seen.every(s => s.whole)) return []
  // A pushMany is indexed whole or not at all: the frames joined to a lost one go with it.
  const out = new Set<number>()
  for (let i = 0; i < seen.length; i++) {
    if (seen[i]!.whole) continue
    out.add(i)
    for (let j = i - 1; j >= 0 && seen[j]!.whole; j--) {
      const flags = await files.flagsAt(seen[j]!.loc, seen[j]!.first)
      if ((flags & JOINS_NEXT) === 0) break
      out.add(j)
      if ((flags & JOINS_PREVIOUS) === 0) break
    }
    for (let j = i + 1; j < seen.length && seen[j]!.whole; j++) {
      const flags = await files.flagsAt(seen[j]!.loc, seen[j]!.first)
      if ((flags & JOINS_PREVIOUS) === 0) break
      out.add(j)
      if ((flags & JOINS_NEXT) === 0) break
    }
  }
  const lost: Array<{ first: number, ids: number, records: number, bytes: number }> = []
  for (const i of [...out].sort((a, b) => a - b)) {
    const { first } = seen[i]!
    let ids = 1
    let records = 0
    let bytes = 0
    try {
      const summary = await index.get(encodeKey(first))
      if (summary !== undefined) {
        const s = decodeSummary(first, summary)
        const set = await removed.get(encodeKey(first))
        const gone = set === undefined ? undefined : decodeRemovalSet(first, s.count, set)
        ids = s.count
        records = s.count - (gone?.removed ?? 0)
        bytes = s.payloadBytes - (gone?.removedBytes ?? 0)
      }
    } catch { /* a damaged summary or removal set: the counters stay as they are, as a quarantine does */ }
    lost.push({ first, ids, records, bytes })
  }
  if (lost.length === 0) return []
  const batch = store.db.batch()
  const segKeys = new Keyspace(segs)
  const indexKeys = new Keyspace(index)
  const removalKeys = new Keyspace(removed)
  let records = 0
  let bytes = 0
  let floor = c.floor
  for (const l of lost) {
    segKeys.del(batch, l.first)
    indexKeys.del(batch, l.first)
    removalKeys.del(batch, l.first)
    records += l.records
    bytes += l.bytes
    if (l.first <= floor) floor = Math.max(floor, l.first + l.ids)
  }
  const delta: Delta = { [log]: { count: -records, bytes: -bytes, droppedCount: records, droppedBytes: bytes, floor } }
  const seq = store.journal.stage(batch, delta)
  try {
    await batch.write({ sync: true })
  } catch (cause) {
    store.journal.settle(seq, false)
    throw new EvaqError('EVAQ_IO', `Taking ${lost.length} segment(s) of ${log} whose frames never reached the disk out of the index failed`, { cause })
  }
  store.journal.settle(seq, true)
  return ranges(log, lost)
}

/** Adjacent lost segments as one range each. */
function ranges (log: string, lost: ReadonlyArray<{ first: number, ids: number, records: number, bytes: number }>): UnsyncedRange[] {
  const out: UnsyncedRange[] = []
  for (const l of lost) {
    const prev = out[out.length - 1]
    if (prev !== undefined && prev.lastId + 1 === l.first) {
      out[out.length - 1] = { ...prev, lastId: l.first + l.ids - 1, records: prev.records + l.records, bytes: prev.bytes + l.bytes }
    } else {
      out.push({ log, firstId: l.first, lastId: l.first + l.ids - 1, records: l.records, bytes: l.bytes })
    }
  }
  return out
}
