import { isEvaqError } from '../errors.js'
import type { Log } from '../log/log.js'
import type { DeadLetterLog, DeadLetterRecord } from './dead-letter-log.js'

/**
 * Move a page of DLQ records back to `wal` (a redrive) in one LevelDB batch: their payloads are
 * pushed to the WAL as one carried segment, and the DLQ's removal lane stages their removal into
 * that segment's batch (see Moves and Log.removeCarried). A crash leaves every record in exactly
 * one of the two logs. Records removed from the DLQ meanwhile (done, purged, parked, requeued by
 * another call) are left out and the rest is moved; nothing is moved twice. Resolves with the new
 * WAL IDs of the records moved, in page order.
 *
 * While the page moves its records are marked busy, so that a retry daemon of this process does
 * not start an attempt on one of them; an attempt already running is not waited for (the record
 * is moved all the same: its handler's success then finds it gone, and it is delivered again from
 * the WAL, at least once).
 */
export async function redrivePage (wal: Log, dlq: DeadLetterLog, records: readonly DeadLetterRecord[]): Promise<number[]> {
  const claimed = records.map(r => r.id).filter(id => !dlq.busy.has(id))
  for (const id of claimed) dlq.busy.add(id)
  try {
    let page = records
    while (page.length > 0) {
      const ids = page.map(r => r.id)
      try {
        const first = await wal.pushCarried(page.map(r => r.payload), (batch, delta) => dlq.removeCarried(ids, { batch, delta }))
        return ids.map((_, i) => first + i)
      } catch (err) {
        if (!isEvaqError(err, 'EVAQ_NOT_FOUND') || err.ids === undefined) throw err
        const gone = new Set(err.ids)
        page = page.filter(r => !gone.has(r.id))
      }
    }
    return []
  } finally {
    for (const id of claimed) dlq.busy.delete(id)
  }
}
