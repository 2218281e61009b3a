/** A small queue with a tier, and what its tests check it with (test/tier/, test/cli/serve-tier.test.ts). */
import { createHash } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
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

/** Payload `i` of `size` bytes: it names its index, and does not compress. */
export function tierPayload (i: number, size: number): Buffer {
  const head = Buffer.from(`record ${i} `)
  const body = createHash('sha256').update(String(i)).digest()
  const out = Buffer.alloc(size)
  head.copy(out)
  for (let at = head.length; at < size; at += body.length) body.copy(out, at)
  return out
}

/** Bytes of every file in `dir`, recursively (a file deleted while this looks occupies nothing). */
export async function du (dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, e.name)
    total += e.isDirectory() ? await du(path) : await stat(path).then(s => s.size, () => 0)
  }
  return total
}
