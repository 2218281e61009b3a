/** A small queue with a tier, for the tier's tests (test/tier/). */
import type { EvaqOptions } from '../../src/index.js'
import type { S3Server } from './s3.js'

/** The disk budget of those queues: 4 MiB (segment files of 256 KiB). */
export const BUDGET = 4 * 1024 * 1024

/** Options of a small queue that offloads to `server` under `prefix`. */
export function tierOptions (server: S3Server, prefix: string, more: EvaqOptions = {}): EvaqOptions {
  return {
    maxDiskBytes: BUDGET,
    minFreeDiskBytes: 0,
    writeBufferSize: 256 * 1024,
    onFull: 'offload',
    maintenanceIntervalMs: 50,
    // Small, so that reads go to the segment files (and the bucket), not to segments kept in memory.
    segmentCacheBytes: 64 * 1024,
    tier: { s3: server.options(prefix) },
    ...more,
  }
}
