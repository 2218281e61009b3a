/**
 * The tier of one log's segment files on object storage (docs/tier.md): a sealed segment file
 * moves to the bucket whole, byte for byte, as one object, so that the locators LevelDB keeps
 * (file, offset, length) stay valid inside it and every frame keeps its own checksums.
 *
 * Offloading file n (offload()):
 *   1. upload it as `<prefix>/<directory id>/<log>/<n>.seg`, and check that the bucket holds it
 *      whole (its size, and the CRC32 it echoes or the ETag as the MD5);
 *   2. write `<n>.remote` beside the segment files (the object's key, size, CRC32 and MD5), synced;
 *   3. the caller (SegmentFiles.offload) then deletes the local file.
 * A crash before 2 leaves the local file (and perhaps an object nobody names: removed by the
 * sweep); after 2, a verified object (and perhaps the local file too: deleted at the next open).
 * Never neither.
 *
 * Reads of an offloaded file (lease()) fetch the whole object into `cache-<n>.seg` in the same
 * directory (counted in the disk budget), check its size and CRC32 against the marker before any
 * byte of it is used, and keep it while it is read; fetched files are evicted oldest first beyond
 * `cacheBytes`. A fetch of the next offloaded file starts as soon as one is fetched, so a
 * subscriber far behind drains at about the bucket's rate. An object that does not match its
 * marker is EVAQ_CORRUPTION naming the records it holds (and every later read of the file gets
 * the same answer at once); a bucket that cannot be reached, or that does not have the object, is
 * EVAQ_IO (retriable).
 *
 * Deleting (remove()): the object, then the marker. A crash in between deletes the object again
 * (deleting a missing key succeeds).
 */
import { open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crashPoint } from '../crash-points.js'
import { EvaqError } from '../errors.js'
import { fsyncPath, replaceFileDurably } from './durable-file.js'
import { digestFile, type Bucket } from './s3-bucket.js'
import { segmentFileName } from './segment-files.js'

/** What `<n>.remote` records about an offloaded file. */
export interface RemoteFile {
  readonly key: string
  readonly bytes: number
  readonly crc32: number
  readonly md5: string
  /** The first ID in the file, and the ID after its last record (for errors that name them). */
  readonly firstId: number
  readonly end: number
}

/** Counts since the queue opened, and what the bucket holds now. */
export interface TierCounters {
  uploads: number
  uploadedBytes: number
  downloads: number
  downloadedBytes: number
  deletes: number
  errors: number
}

export interface TierEvents {
  offloaded (e: { readonly log: string, readonly file: number, readonly bytes: number, readonly firstId: number, readonly end: number }): void
  fetched (e: { readonly log: string, readonly file: number, readonly bytes: number }): void
  failed (e: { readonly log: string, readonly op: 'offload' | 'fetch' | 'delete' | 'sweep', readonly error: EvaqError }): void
}

const MARKER = /^(\d{10})\.remote$/
const CACHED = /^cache-(\d{10})\.seg(\.tmp)?$/

function markerName (n: number): string {
  return `${String(n).padStart(10, '0')}.remote`
}

/** A fetched copy of an offloaded file, open for reads. */
interface Cached {
  readonly n: number
  readonly ready: Promise<FileHandle>
  bytes: number
  users: number
  evicted: boolean
}

/** A read's hold on a fetched file: release() when done (the file is not evicted meanwhile). */
export interface Lease {
  readonly handle: FileHandle
  release (): void
}

export class SegmentTier {
  /** Offloaded files, by number. */
  readonly remote = new Map<number, RemoteFile>()
  readonly counters: TierCounters = { uploads: 0, uploadedBytes: 0, downloads: 0, downloadedBytes: 0, deletes: 0, errors: 0 }
  /** Fetched files, least recently used first. */
  private readonly cache = new Map<number, Cached>()
  private cachedBytes = 0
  private swept = false
  /** Offloaded files whose object did not match its marker (until the queue is opened again). */
  private readonly damaged = new Map<number, EvaqError>()

  private constructor (
    readonly log: string,
    readonly dir: string,
    readonly bucket: Bucket,
    /** Keys of this log's objects start with this (`<prefix>/<directory id>/<log>`). */
    readonly keyPrefix: string,
    readonly cacheBytes: number,
    private readonly events: TierEvents
  ) {}

  /**
   * The tier of the segment files in `dir`: reads the markers, and removes fetched copies and
   * unfinished markers a previous run left.
   */
  static async load (log: string, dir: string, bucket: Bucket, keyPrefix: string, cacheBytes: number, events: TierEvents): Promise<SegmentTier> {
    const tier = new SegmentTier(log, dir, bucket, keyPrefix, cacheBytes, events)
    await tier.loadMarkers()
    return tier
  }

  /** The markers in `dir`, without a tier (a directory opened without its tier is refused with them). */
  static async markers (dir: string): Promise<number[]> {
    const names = await readdir(dir).catch(() => [] as string[])
    return names.map(n => MARKER.exec(n)).filter(m => m !== null).map(m => Number(m[1])).sort((a, b) => a - b)
  }

  private async loadMarkers (): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[])
    for (const name of names) {
      if (CACHED.test(name)) await rm(join(this.dir, name), { force: true })
    }
    const markers = await SegmentTier.markers(this.dir)
    // Offloaded and recorded, and the crash came before the local copy went: it goes now.
    const leftovers = markers.filter(n => names.includes(segmentFileName(n)))
    for (const n of leftovers) await rm(join(this.dir, segmentFileName(n)), { force: true })
    if (leftovers.length > 0) await fsyncPath(this.dir)
    for (const n of markers) {
      const path = join(this.dir, markerName(n))
      let value: RemoteFile
      try {
        value = JSON.parse(await readFile(path, 'utf8')) as RemoteFile
      } catch (err) {
        throw new EvaqError('EVAQ_CORRUPTION', `The tier marker ${path} cannot be read`, { cause: err })
      }
      if (typeof value.key !== 'string' || !Number.isSafeInteger(value.bytes) || !Number.isSafeInteger(value.crc32) ||
        !Number.isSafeInteger(value.firstId) || !Number.isSafeInteger(value.end)) {
        throw new EvaqError('EVAQ_CORRUPTION', `The tier marker ${path} is not one evaq wrote`)
      }
      this.remote.set(n, value)
    }
  }

  /** Bytes the bucket holds for this log. */
  get remoteBytes (): number {
    let total = 0
    for (const r of this.remote.values()) total += r.bytes
    return total
  }

  objectKey (n: number): string {
    return `${this.keyPrefix}/${segmentFileName(n)}`
  }

  private cachePath (n: number): string {
    return join(this.dir, `cache-${segmentFileName(n)}`)
  }

  /**
   * Upload the first `bytes` bytes of file n (at `path`) and record it as offloaded (steps 1 and 2
   * above). EVAQ_IO when the bucket fails or does not hold exactly what was sent.
   */
  async offload (n: number, path: string, bytes: number, firstId: number, end: number): Promise<void> {
    try {
      await this.sweep()
      const digest = await digestFile(path, bytes)
      const key = this.objectKey(n)
      await this.bucket.putFile(key, path, digest)
      crashPoint('tier:uploaded')
      const record: RemoteFile = { key, bytes, crc32: digest.crc32, md5: digest.md5, firstId, end }
      await replaceFileDurably(join(this.dir, markerName(n)), JSON.stringify(record))
      this.remote.set(n, record)
      this.counters.uploads++
      this.counters.uploadedBytes += bytes
    } catch (err) {
      throw this.failure('offload', err, `Offloading segment file ${n} of ${this.log}`)
    }
    this.events.offloaded({ log: this.log, file: n, bytes, firstId, end })
  }

  /**
   * Delete the objects under this log's key prefix that no marker names (uploads a crash
   * interrupted before their marker): once per open, before the first offload or deletion.
   */
  private async sweep (): Promise<void> {
    if (this.swept) return
    const orphans: string[] = []
    const named = new Set([...this.remote.values()].map(r => r.key))
    for await (const o of this.bucket.list(`${this.keyPrefix}/`)) if (!named.has(o.key)) orphans.push(o.key)
    if (orphans.length > 0) await this.bucket.delete(orphans)
    this.swept = true
  }

  /** Delete offloaded file n: its object, then its marker and any fetched copy. */
  async remove (n: number): Promise<void> {
    const r = this.remote.get(n)
    if (r === undefined) return
    try {
      await this.sweep()
      await this.bucket.delete([r.key])
      crashPoint('tier:deleted')
      await rm(join(this.dir, markerName(n)), { force: true })
      await fsyncPath(this.dir)
    } catch (err) {
      throw this.failure('delete', err, `Deleting offloaded segment file ${n} of ${this.log}`)
    }
    this.remote.delete(n)
    this.counters.deletes++
    const c = this.cache.get(n)
    if (c !== undefined) this.evict(c)
  }

  /**
   * A handle on the fetched copy of offloaded file n, fetched now if need be (EVAQ_IO when the
   * bucket fails, EVAQ_CORRUPTION when the object does not match its marker). Release it after
   * the read.
   */
  async lease (n: number): Promise<Lease> {
    const damaged = this.damaged.get(n)
    if (damaged !== undefined) throw damaged
    let c = this.cache.get(n)
    if (c === undefined || c.evicted) c = this.fetch(n)
    else {
      // Most recently used last.
      this.cache.delete(n)
      this.cache.set(n, c)
    }
    c.users++
    let handle: FileHandle
    try {
      handle = await c.ready
    } catch (err) {
      c.users--
      throw err
    }
    const held = c
    let released = false
    return {
      handle,
      release: () => {
        if (released) return
        released = true
        held.users--
        if (held.evicted && held.users === 0) void this.closeCached(held)
        else this.trim()
      },
    }
  }

  private fetch (n: number): Cached {
    const r = this.remote.get(n)
    if (r === undefined) throw new EvaqError('EVAQ_INTERNAL', `Segment file ${n} of ${this.log} is not offloaded`)
    const path = this.cachePath(n)
    const ready = (async () => {
      const tmp = `${path}.tmp`
      await rm(tmp, { force: true })
      let got
      try {
        got = await this.bucket.getFile(r.key, tmp)
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => {})
        throw this.failure('fetch', err, `Fetching offloaded segment file ${n} of ${this.log}`)
      }
      if (got === undefined) {
        // Most likely the settings point elsewhere (another endpoint, a lifecycle rule): a
        // failure to retry, never a reason to take the records for damaged.
        throw this.failure('fetch', new EvaqError('EVAQ_IO',
          `The object ${r.key} holding records ${r.firstId} to ${r.end - 1} of ${this.log} is not in bucket ${this.bucket.name}`), '')
      }
      if (got.bytes !== r.bytes || got.crc32 !== r.crc32) {
        await rm(tmp, { force: true }).catch(() => {})
        const err = new EvaqError('EVAQ_CORRUPTION', `The object ${r.key} holding records ${r.firstId} to ${r.end - 1} of ${this.log} ` +
          `does not match what was uploaded (${got.bytes} bytes, CRC32 ${got.crc32}; ${r.bytes} bytes, CRC32 ${r.crc32} uploaded)`, { ids: [r.firstId] })
        // Every read of the file meets the same bytes: answered at once from here on.
        this.damaged.set(n, err)
        throw this.failure('fetch', err, '')
      }
      await rename(tmp, path)
      this.counters.downloads++
      this.counters.downloadedBytes += r.bytes
      this.events.fetched({ log: this.log, file: n, bytes: r.bytes })
      return await open(path, 'r')
    })()
    const c: Cached = { n, ready, bytes: r.bytes, users: 0, evicted: false }
    this.cache.set(n, c)
    this.cachedBytes += c.bytes
    ready.then(() => {
      this.trim()
      this.prefetch(n)
    }, () => {
      // Not kept: the next read fetches again.
      if (this.cache.get(n) === c) this.evict(c)
    })
    return c
  }

  /** Start fetching the next offloaded file after n, when the cache has room for it. */
  private prefetch (n: number): void {
    let next: number | undefined
    for (const m of this.remote.keys()) if (m > n && (next === undefined || m < next)) next = m
    if (next === undefined || this.cache.has(next)) return
    if (this.cachedBytes + this.remote.get(next)!.bytes > this.cacheBytes) return
    const c = this.fetch(next)
    c.ready.catch(() => {})
  }

  /** Evict fetched files nobody reads, oldest first, until the cache is within its bytes. */
  private trim (): void {
    for (const c of [...this.cache.values()]) {
      if (this.cachedBytes <= this.cacheBytes) return
      if (c.users === 0) this.evict(c)
    }
  }

  private evict (c: Cached): void {
    if (c.evicted) return
    c.evicted = true
    if (this.cache.get(c.n) === c) this.cache.delete(c.n)
    this.cachedBytes -= c.bytes
    if (c.users === 0) void this.closeCached(c)
  }

  private async closeCached (c: Cached): Promise<void> {
    const h = await c.ready.catch(() => undefined)
    await h?.close().catch(() => {})
    // A newer fetch of the same file may own the path by now.
    if (!this.cache.has(c.n)) await rm(this.cachePath(c.n), { force: true }).catch(() => {})
  }

  /** Bytes of fetched files in the directory now. */
  get cacheUsedBytes (): number {
    return this.cachedBytes
  }

  private failure (op: 'offload' | 'fetch' | 'delete' | 'sweep', err: unknown, what: string): EvaqError {
    const error = err instanceof EvaqError ? err : new EvaqError('EVAQ_IO', `${what} failed`, { cause: err })
    this.counters.errors++
    this.events.failed({ log: this.log, op, error })
    return error
  }

  /** Close every fetched file (the queue closes; the bucket's client is the store's to close). */
  async close (): Promise<void> {
    const all = [...this.cache.values()]
    for (const c of all) this.evict(c)
    for (const c of all) await this.closeCached(c)
  }
}
