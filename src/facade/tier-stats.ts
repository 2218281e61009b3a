import type { EvaqError } from '../errors.js'
import type { SegmentFiles } from '../store/segment-files.js'
import type { TierEvents } from '../store/segment-tier.js'

/** What the tier holds now, and what it did since the queue opened. */
export interface TierStats {
  /** Segment files in the bucket, and their bytes. */
  readonly segments: number
  readonly bytes: number
  /** Files uploaded, fetched back and deleted since open, and the bytes moved. */
  readonly uploads: number
  readonly uploadedBytes: number
  readonly downloads: number
  readonly downloadedBytes: number
  readonly deletes: number
  /** Failed calls to the bucket since open (each one retried). */
  readonly errors: number
  /** Bytes of fetched files kept in the data directory for reads. */
  readonly cachedBytes: number
  /** The last failure, until the tier works again. */
  readonly lastError?: { readonly code: string, readonly message: string }
}

/** A segment file moved to the tier (`offload`) or was fetched back from it (`fetch`). */
export interface TierEvent {
  readonly log: string
  readonly file: number
  readonly bytes: number
  /** For `offload`: the records in the file, [firstId, end). */
  readonly firstId?: number
  readonly end?: number
}

/** A call to the tier's bucket failed (it is retried; nothing acknowledged is lost). */
export interface TierErrorEvent {
  readonly log: string
  readonly op: 'offload' | 'fetch' | 'delete' | 'sweep'
  readonly error: EvaqError
}

/**
 * What the queue says of its tier: the events the store's tiers report (store/segment-tier.ts),
 * passed on as the queue's `offload`, `fetch` and `tier-error` events, and the figures of
 * `stats().tier` with the last failure until a call to the bucket succeeds again.
 */
export class TierReport {
  private lastError: EvaqError | undefined
  readonly events: TierEvents

  constructor (emit: (name: 'offload' | 'fetch' | 'tier-error', e: TierEvent | TierErrorEvent) => void) {
    this.events = {
      offloaded: e => { this.lastError = undefined; emit('offload', e) },
      fetched: e => { this.lastError = undefined; emit('fetch', e) },
      failed: e => { this.lastError = e.error; emit('tier-error', e) },
    }
  }

  /** The tier's figures, summed over the logs that have segment files. */
  stats (files: Iterable<SegmentFiles>): TierStats {
    const t = { segments: 0, bytes: 0, uploads: 0, uploadedBytes: 0, downloads: 0, downloadedBytes: 0, deletes: 0, errors: 0, cachedBytes: 0 }
    for (const set of files) {
      const tier = set.tier
      if (tier === undefined) continue
      t.segments += tier.remote.size
      t.bytes += tier.remoteBytes
      t.cachedBytes += tier.cacheUsedBytes
      for (const k of ['uploads', 'uploadedBytes', 'downloads', 'downloadedBytes', 'deletes', 'errors'] as const) t[k] += tier.counters[k]
    }
    const last = this.lastError
    return { ...t, ...(last === undefined ? {} : { lastError: { code: last.code, message: last.message } }) }
  }
}
