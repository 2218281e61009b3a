import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { EvaqError } from '../errors.js'
import { Bucket, parseS3Url } from '../store/s3-bucket.js'
import { ArchiveReader, type ArchiveSource } from './archive-reader.js'
import { ChunkBytes } from './byte-source.js'
import type { BackupManifest, BackupSummary } from './manifest.js'

/**
 * Archives as objects in a bucket (`s3://bucket/key`), for `evaq backup --out` and `--since`,
 * and `evaq restore --from`.
 *
 * Writing: the archive is uploaded as it is made (a multipart upload: the object appears under
 * its key only when the upload completes) and read by an archive reader on the way, so that the
 * upload completes only once every frame and the summary checked out. An upload that fails or is
 * interrupted is never completed, so nothing is left under the key (its parts are aborted where
 * the server allows it).
 *
 * Reading: ranged GETs, one window after another (the next one fetched while the current one is
 * read), rather than one GET whose body would have to be drained within the client's per-call
 * timeout however slowly the restore writes. A manifest-only read (`--since`, the chain check)
 * fetches small windows from the start of the object, and nothing more once it has the manifest.
 */

/** Where the buckets are. Credentials come from the AWS SDK's default chain. */
export interface S3Place {
  readonly endpoint?: string
  readonly region: string
  readonly forcePathStyle?: boolean
}

/** The bucket and key of an archive's URL: EVAQ_INVALID_ARGUMENT unless it names one object. */
export function archiveObject (url: string): { bucket: string, key: string } {
  const { bucket, key } = parseS3Url(url)
  if (key === '' || url.endsWith('/')) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected s3://bucket/key naming one object, got \`${url.slice(0, 200)}\``)
  }
  return { bucket, key }
}

/** The buckets one command uses, opened once each; close() ends their connections. */
export class ArchiveBuckets {
  private readonly open = new Map<string, Promise<Bucket>>()

  constructor (private readonly place: S3Place) {}

  bucket (name: string): Promise<Bucket> {
    let b = this.open.get(name)
    if (b === undefined) {
      b = Bucket.open({ ...this.place, bucket: name })
      this.open.set(name, b)
    }
    return b
  }

  /** The archive at `url` (s3://bucket/key), to read. */
  async source (url: string): Promise<ArchiveSource> {
    const { bucket, key } = archiveObject(url)
    return objectSource(await this.bucket(bucket), key, url)
  }

  async close (): Promise<void> {
    for (const b of this.open.values()) await b.then(x => x.close(), () => {})
    this.open.clear()
  }
}

/** The first window of a manifest-only read; each further one is twice as large. */
const HEAD_WINDOW = 64 * 1024
/** Bytes per GET when the whole archive is read. */
const WINDOW = 8 * 1024 * 1024

/** The object `key` as an archive to read (`name`: its URL, for messages). */
export function objectSource (bucket: Bucket, key: string, name: string): ArchiveSource {
  return {
    name,
    async open (headOnly) {
      const info = await bucket.head(key)
      if (info === undefined) throw new EvaqError('EVAQ_NOT_FOUND', `There is no archive at ${name}`)
      return new ChunkBytes(windows(bucket, key, name, info.bytes, headOnly), info.bytes)
    },
  }
}

async function * windows (bucket: Bucket, key: string, name: string, size: number, headOnly: boolean): AsyncGenerator<Buffer> {
  let step = headOnly ? HEAD_WINDOW : WINDOW
  const get = (from: number, n: number): Promise<Buffer | undefined> => {
    const p = bucket.getBytes(key, `bytes=${from}-${Math.min(size, from + n) - 1}`)
    // A window fetched ahead and never asked for (the reader stopped) must not fail the process.
    p.catch(() => {})
    return p
  }
  let next = size > 0 ? get(0, step) : undefined
  for (let from = 0; from < size && next !== undefined;) {
    const got = await next
    if (got === undefined) throw new EvaqError('EVAQ_NOT_FOUND', `The archive at ${name} was removed while it was read`)
    const expected = Math.min(size, from + step) - from
    from += step
    if (headOnly) {
      step = Math.min(step * 2, WINDOW)
      next = undefined
    } else {
      next = from < size ? get(from, step) : undefined
    }
    yield got
    // A shorter window: the object changed under the reader; what follows reads as a cut archive.
    if (got.byteLength < expected) return
    if (headOnly && from < size) next = get(from, step)
  }
}

/** EVAQ_INVALID_ARGUMENT when the bucket has an object under `key` (checked before a backup starts). */
export async function assertNewObject (bucket: Bucket, key: string, name: string): Promise<void> {
  if (await bucket.head(key) !== undefined) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${name} exists: a backup never replaces an object`)
}

/**
 * Upload an archive's bytes as `key`, checking them on the way: the upload completes only when
 * the archive read back whole (manifest, every frame, summary), so an archive cut short or
 * damaged on its way (a service that stopped mid-backup) never appears under the key. `signal`
 * stops the upload (EVAQ_ABORTED) and nothing is completed.
 */
export async function uploadArchive (
  chunks: AsyncIterable<Uint8Array>,
  bucket: Bucket,
  key: string,
  name: string,
  onProgress?: (phase: 'write', bytes: number) => void,
  signal?: AbortSignal
): Promise<{ manifest: BackupManifest, summary: BackupSummary, bytes: number }> {
  const checked = checkOnTheWay(chunks, name, bytes => onProgress?.('write', bytes))
  try {
    await bucket.upload(key, checked.chunks, signal)
  } catch (err) {
    // The body's own failure says more than what the upload made of it (an abort answered 405, say).
    throw signal?.aborted !== true && checked.failure !== undefined ? checked.failure : err
  }
  const done = checked.done
  if (done === undefined) throw new EvaqError('EVAQ_INTERNAL', 'An upload completed before its archive was checked')
  const head = await bucket.head(key)
  if (head === undefined || head.bytes !== done.bytes) {
    throw new EvaqError('EVAQ_IO', `Bucket ${bucket.name} holds ${head?.bytes ?? 'no'} bytes under ${key} after an upload of ${done.bytes}`)
  }
  return done
}

interface CheckedChunks {
  readonly chunks: AsyncIterable<Uint8Array>
  /** Set once the chunks ended and the archive checked out. */
  readonly done: { manifest: BackupManifest, summary: BackupSummary, bytes: number } | undefined
  /** Why the chunks failed, if they did. */
  readonly failure: unknown
}

/** `chunks`, passed on as they come, while an archive reader checks a copy of them. */
function checkOnTheWay (chunks: AsyncIterable<Uint8Array>, name: string, onBytes: (bytes: number) => void): CheckedChunks {
  const pipe = new PassThrough({ highWaterMark: 1024 * 1024 })
  let failure: unknown
  let done: CheckedChunks['done']
  let bytes = 0
  /** The upload stopped reading (it failed, or was aborted): the reader's end is no failure of the archive. */
  let abandoned = false
  const reading = (async () => {
    const reader = await ArchiveReader.open({ name, open: () => Promise.resolve(new ChunkBytes(pipe)) })
    try {
      for await (const frame of reader.frames()) void frame
      return { manifest: reader.manifest, summary: reader.summary! }
    } finally {
      await reader.close()
    }
  })()
  reading.catch((err: unknown) => { if (!abandoned) failure ??= err })
  async function * pass (): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of chunks) {
        if (failure !== undefined) throw failure
        // Wait for the reader to keep up, or to fail.
        if (!pipe.write(chunk)) await Promise.race([once(pipe, 'drain'), reading])
        bytes += chunk.byteLength
        onBytes(bytes)
        try {
          yield chunk
        } catch (err) {
          // Thrown in by the upload as it stops reading (its stream destroyed): not the archive's failure.
          abandoned = true
          throw err
        }
      }
      pipe.end()
      const checked = await reading
      done = { ...checked, bytes }
    } catch (err) {
      if (!abandoned) failure ??= err
      throw err
    } finally {
      if (done === undefined) {
        abandoned = true
        pipe.destroy()
      }
    }
  }
  return {
    chunks: pass(),
    get done () { return done },
    get failure () { return failure },
  }
}
