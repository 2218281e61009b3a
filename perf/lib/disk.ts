/**
 * The disk's baselines: Node writing the same bytes to one file with one fdatasync per group,
 * nothing in between.
 *
 * - `fs-overwrite`, the disk's limit: the writes land in a ring of space written and synced
 *   before the measurement, so each fdatasync flushes data only. On ext4, an fdatasync of a file
 *   that grew must also commit the new size and block allocation through the journal: a second
 *   write and a journal commit per sync, which is what a log that preallocates avoids.
 * - `fs`, the plain file append: what a hand-written append-only log gets without preallocating.
 *
 * Synchronous calls (writeSync, fdatasyncSync) on purpose: no thread-pool hop, no promise; the
 * least Node can spend per synced write. One writer, so blocking the event loop costs nothing.
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from 'node:fs'
import path from 'node:path'
import { measureLatency, measureThroughput } from './common.js'
import { type Context, fromLatency, fromThroughput, type Sample } from './sample.js'

/** The overwrite ring: large enough that its pages are not rewritten many times a second, small enough to fill in about a second. */
const RING_BYTES = 256 * 2 ** 20
/**
 * The ring is filled in page-sized writes: the page cache keeps a file's data in folios sized by
 * the writes that created them (ext4 uses large folios), and a later small overwrite dirties,
 * writes back and counts in `write_bytes` (lib/io.ts) the whole folio. Filled in 8 MiB writes,
 * overwriting 25 KiB groups counted 63× the bytes written, filled in 4 KiB writes 1.12× (the
 * partial pages at both ends).
 */
const FILL_CHUNK = 4096

function withFile<T> (ctx: Context, fn: (fd: number) => Promise<T>): Promise<T> {
  const fd = openSync(path.join(ctx.dir, 'append.log'), 'a')
  return fn(fd).finally(() => closeSync(fd))
}

function writeAll (fd: number, buf: Buffer, position?: number): void {
  for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off, position === undefined ? null : position + off)
}

/** `fs`: append `group` payloads with one write, then one fdatasync (none when `sync` is false). */
export function fsGroup (ctx: Context, group: number, sync: boolean): Promise<Sample> {
  return withFile(ctx, async fd => {
    const buf = Buffer.allocUnsafe(group * ctx.size)
    const s = await measureThroughput(ctx.config, 1, group, async () => {
      for (let i = 0; i < group; i++) ctx.payload().copy(buf, i * ctx.size)
      writeAll(fd, buf)
      if (sync) fdatasyncSync(fd)
    })
    return fromThroughput(s, { group })
  })
}

/** `fs`: append one payload, fdatasync, per record. */
export function fsSeq (ctx: Context): Promise<Sample> {
  return withFile(ctx, async fd => fromLatency(await measureLatency(ctx.config, async () => {
    writeAll(fd, ctx.payload())
    fdatasyncSync(fd)
  })))
}

/**
 * A ring of RING_BYTES written full of zeros and fsynced (data, size and allocation on disk) before
 * the measurement; `write` puts a buffer at the next offset (back to 0 where it would not fit).
 */
function withRing<T> (ctx: Context, fn: (write: (buf: Buffer) => void, fd: number) => Promise<T>): Promise<T> {
  const fd = openSync(path.join(ctx.dir, 'ring.log'), 'w')
  try {
    const zeros = Buffer.alloc(FILL_CHUNK)
    for (let off = 0; off < RING_BYTES; off += FILL_CHUNK) writeAll(fd, zeros, off)
    fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    throw err
  }
  let next = 0
  const write = (buf: Buffer): void => {
    if (next + buf.length > RING_BYTES) next = 0
    writeAll(fd, buf, next)
    next += buf.length
  }
  return fn(write, fd).finally(() => closeSync(fd))
}

/** `fs-overwrite`: `group` payloads with one pwrite into the ring, then one fdatasync. */
export function fsOverwriteGroup (ctx: Context, group: number): Promise<Sample> {
  return withRing(ctx, async (write, fd) => {
    const buf = Buffer.allocUnsafe(group * ctx.size)
    const s = await measureThroughput(ctx.config, 1, group, async () => {
      for (let i = 0; i < group; i++) ctx.payload().copy(buf, i * ctx.size)
      write(buf)
      fdatasyncSync(fd)
    })
    return fromThroughput(s, { group })
  })
}

/** `fs-overwrite`: one payload into the ring, fdatasync, per record. */
export function fsOverwriteSeq (ctx: Context): Promise<Sample> {
  return withRing(ctx, async (write, fd) => fromLatency(await measureLatency(ctx.config, async () => {
    write(ctx.payload())
    fdatasyncSync(fd)
  })))
}
