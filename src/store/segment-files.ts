import { readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError } from '../errors.js'
import { crashPoint } from '../crash-points.js'
import { fsyncPath } from './durable-file.js'
import { createFile, makeDurableDir, reuseFile } from './segment-file-prep.js'
import {
  encodeFrameHeader, frameSpan, FRAME_HEADER_BYTES, type Locator,
} from './frame.js'
import { FrameReader, type ScannedFrame } from './frame-reader.js'
import { packBody, writeCodec, type FrameCodec, type SegmentCompression } from './frame-codec.js'
import type { SegmentTier } from './segment-tier.js'

/**
 * The segment files of one log (storage format 2): where its payload bytes live. LevelDB keeps a
 * Locator per segment; the bytes are frames (frame.ts) appended to numbered files in
 * `<data>/segments/<log>/`, named `<number>.seg` (10 digits), in ID order.
 *
 * Writing. append() places the frames of one flush at the end of the current file with one
 * writev, then fdatasyncs. Placements are issued one after the other, so a file's frames are in
 * the order append() was called, and an append resolves only once every earlier one has
 * resolved: when a frame is acknowledged, every frame before it is durable. So recovery may stop
 * at the first frame that is not whole (scan()), and lose nothing acknowledged.
 *
 * Files are prepared ahead, while the current one fills: a spare (a file whose segments were
 * all deleted, kept for reuse instead of deleted) renamed to a new number, else a new empty file
 * (or, with `preallocate`, one written full of zeros and synced), its directory synced either
 * way. A commit into a reused file overwrites blocks the file system already allocated, and its
 * fdatasync writes the data without committing the file's metadata through the journal (on ext4
 * an fdatasync of a growing file does that too: for 16 KiB payloads in groups of 256 an overwrite
 * measured 2.5x an append). Writing zeros ahead buys the same for a new file, but writes every
 * byte twice while the log grows, and measured slower than appending (perf/spike/README.md): it
 * is off by default. A reused file is renamed to a new number; the frames it still holds carry
 * the old one, so no scan mistakes them for new ones (frame.ts).
 *
 * After an open, or after a failed write, writing starts in a new file: frames a failure or a
 * crash left past the last whole frame of a file are never followed by new ones.
 *
 * Numbers only grow: a new file gets one above every file and spare in the directory. A file is
 * released (release()) only when LevelDB holds no locator into it any more.
 */

export interface SegmentFilesOptions {
  /** Size a file is prepared to (a frame larger than it gets a file of its own size). */
  readonly fileBytes: number
  /** Zero-fill and fsync prepared files, so that commits overwrite allocated blocks. */
  readonly preallocate: boolean
  /** Released files kept for reuse instead of deleted. */
  readonly spares: number
  /** How frame bodies are compressed (frame-codec.ts; 'zstd' where Node lacks it is EVAQ_INVALID_ARGUMENT). @defaultValue 'none' */
  readonly compression?: SegmentCompression
  /** Where sealed files can be offloaded to, and offloaded ones are read from (segment-tier.ts). */
  readonly tier?: SegmentTier
}

export const DEFAULT_SEGMENT_FILE_OPTIONS: SegmentFilesOptions = { fileBytes: 64 * 1024 * 1024, preallocate: false, spares: 2 }

/**
 * The first file a log writes after an open is this size, and each next one twice the last, up
 * to `fileBytes`: a small queue never holds (or, with `preallocate`, writes) a 64 MiB file, a
 * busy one soon gets whole files.
 */
export const FIRST_FILE_BYTES = 1024 * 1024

/** What append() writes: one segment's encoded bytes. */
export interface FrameInput {
  readonly firstId: number
  /** The ID after the segment's last record. */
  readonly end: number
  readonly body: Uint8Array
  readonly flags: number
}

interface OpenFile {
  readonly number: number
  readonly handle: FileHandle
  readonly capacity: number
  /** Where the next frame goes. */
  pos: number
}

const FILE_NAME = /^(\d{10})\.seg$/
const SPARE_NAME = /^spare-(\d{10})\.seg$/
const PADDING = Buffer.alloc(8)

export function segmentFileName (n: number): string {
  return `${String(n).padStart(10, '0')}.seg`
}

export class SegmentFiles {
  /** Files that hold (or held) frames, ascending. */
  private readonly numbers: number[]
  private readonly spareNames: string[]
  private highest: number
  private current: OpenFile | undefined
  private next: Promise<OpenFile> | undefined
  /** The size of the last file prepared (files grow from FIRST_FILE_BYTES to fileBytes). */
  private lastCapacity = 0
  /** Reads, through a handle per file. */
  private readonly frames: FrameReader
  /** The last placement: the next one starts after it. */
  private placed: Promise<unknown> = Promise.resolve()
  /** The last append: the next one resolves after it. */
  private durable: Promise<unknown> = Promise.resolve()
  /** The ID after the last record placed in each file by this process (see placedEnd). */
  private readonly placedEnds = new Map<number, number>()
  /** Files appended to without a sync since the last sync(). */
  private readonly unsynced = new Set<FileHandle>()
  /**
   * Appends placed whose frames are not known to be synced: first ID, by placement number. Their
   * first IDs ascend in insertion order (each starts at or above placedEndId), so the oldest entry
   * holds the lowest; an append that goes back below is kept apart, in `unsyncedAgain`.
   */
  private readonly unsyncedFirst = new Map<number, number>()
  private readonly unsyncedAgain = new Map<number, number>()
  private placements = 0
  /** The ID after the last record placed by this process. */
  private placedEndId = 0
  /** The first write that failed: appends fail until reset(). */
  failed: EvaqError | undefined
  private closed = false
  /** Whether the directory exists (it is created, durably, with the first file). */
  private dirReady: boolean
  /** The codec new frames are written with (reads follow each frame's own). */
  private readonly codec: FrameCodec
  /** Where each file retired by this process ends (the bytes an offload uploads). */
  private readonly sealedSizes = new Map<number, number>()
  readonly tier: SegmentTier | undefined

  private constructor (readonly dir: string, readonly options: SegmentFilesOptions, numbers: number[], spares: string[], dirReady: boolean) {
    this.dirReady = dirReady
    this.tier = options.tier
    this.frames = new FrameReader(dir, n => this.path(n), () => this.current, options.tier)
    this.codec = writeCodec(options.compression ?? 'none')
    this.numbers = numbers
    this.spareNames = spares
    const spareNumbers = spares.map(s => Number(SPARE_NAME.exec(s)![1]))
    this.highest = Math.max(0, ...numbers, ...spareNumbers)
  }

  /** Open the segment files in `dir`. Nothing is written (nor `dir` created) until append(). */
  static async open (dir: string, options: SegmentFilesOptions = DEFAULT_SEGMENT_FILE_OPTIONS): Promise<SegmentFiles> {
    return SegmentFiles.list(dir, options, true)
  }

  /**
   * Open the segment files in `dir` for reads only (check, backup of a closed directory): unlike
   * open(), nothing in `dir` is touched, not even the preparations a crash left.
   */
  static async openReadOnly (dir: string): Promise<SegmentFiles> {
    const files = await SegmentFiles.list(dir, DEFAULT_SEGMENT_FILE_OPTIONS, false)
    files.failed = new EvaqError('EVAQ_INVALID_ARGUMENT', `The segment files in ${dir} are open for reads only`)
    return files
  }

  private static async list (dir: string, options: SegmentFilesOptions, tidy: boolean): Promise<SegmentFiles> {
    let names: string[]
    let exists = true
    try {
      names = await readdir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      names = []
      exists = false
    }
    const local = names.map(n => FILE_NAME.exec(n)).filter(m => m !== null).map(m => Number(m[1]))
    const spares = names.filter(n => SPARE_NAME.test(n)).sort()
    // Preparations a crash interrupted: never used (a file is renamed into place only when ready).
    if (tidy) for (const n of names) if (n.endsWith('.tmp')) await rm(join(dir, n), { force: true })
    // Offloaded files count as present (a local copy a crash left of one is gone: SegmentTier.load).
    const numbers = [...new Set([...local, ...options.tier?.remote.keys() ?? []])].sort((a, b) => a - b)
    return new SegmentFiles(dir, options, numbers, spares, exists)
  }

  /**
   * Number new files above `n` too: the counters' tail names a file that may be gone (all its
   * records deleted), and a new file must never take a number a scan starts from.
   */
  numberAbove (n: number): void {
    this.highest = Math.max(this.highest, n)
  }

  /** The numbers of the files holding frames, ascending (the one being written included). */
  get files (): readonly number[] {
    return this.numbers
  }

  /** The file being written and where its next frame goes, if writing has started. */
  get position (): { file: number, offset: number } | undefined {
    return this.current === undefined ? undefined : { file: this.current.number, offset: this.current.pos }
  }

  path (n: number): string {
    return join(this.dir, segmentFileName(n))
  }

  /**
   * Append `frames` (one flush) and make them durable. Resolves with each frame's locator once
   * they and every frame appended before them are synced; rejects with EVAQ_IO (and every later
   * append too, until reset()) when a write or a sync fails: the frames may or may not be stored.
   */
  append (frames: readonly FrameInput[], sync = true): Promise<Locator[]> {
    if (this.closed) return Promise.reject(new EvaqError('EVAQ_CLOSED', 'The segment files are closed'))
    if (this.failed !== undefined) return Promise.reject(this.failed)
    const n = ++this.placements
    const placement = this.placed.then(() => this.place(frames, n))
    this.placed = placement.then(() => {}, () => {})
    const earlier = this.durable
    const done = (async () => {
      let placed: Awaited<typeof placement>
      try {
        placed = await placement
      } catch (err) {
        this.synced(n)
        throw err
      }
      const { locators, handles, again } = placed
      crashPoint('frame-append:written')
      // IDs placed before (a flush written again after LevelDB refused its batch) are synced
      // whatever the durability: syncedBelow must stay below every frame not synced.
      try {
        if (sync || again) {
          try {
            await Promise.all(handles.map(h => h.datasync()))
          } catch (err) {
            throw this.fail(err, 'Syncing a segment file failed')
          }
        } else {
          for (const h of handles) this.unsynced.add(h)
        }
      } finally {
        // Synced, or failed (its pushes fail, and no locator will name its frames).
        if (sync || again) this.synced(n)
      }
      // In order: an earlier append that failed fails this one (a scan stops at its frames).
      await earlier
      crashPoint('frame-append:synced')
      return locators
    })()
    this.durable = done.catch(() => { throw this.failed ?? new EvaqError('EVAQ_IO', 'An earlier append failed') })
    this.durable.catch(() => {})
    return done
  }

  /** fdatasync what was appended without a sync (see append); EVAQ_IO like append when it fails. */
  async sync (): Promise<void> {
    await this.placed
    const through = this.placements
    const handles = [...this.unsynced]
    this.unsynced.clear()
    try {
      await Promise.all(handles.map(h => h.datasync()))
    } catch (err) {
      throw this.fail(err, 'Syncing a segment file failed')
    }
    for (const n of this.unsyncedFirst.keys()) {
      if (n > through) break
      this.unsyncedFirst.delete(n)
    }
  }

  /** Append `n` is synced, or failed (no locator will name its frames). */
  private synced (n: number): void {
    this.unsyncedFirst.delete(n)
    this.unsyncedAgain.delete(n)
  }

  /**
   * An ID below which every frame this process placed is synced: the first ID of the oldest
   * append not known to be synced, or the ID after the last record placed. A frame placed later
   * starts at or above it too (appends are placed in ID order, and one that goes back below is
   * synced, see append), so any value this ever returned bounds every frame unsynced at a crash
   * from below. Stored with the counters (the largest one LevelDB keeps counts); an open checks
   * the frames of the locators from it on (store/unsynced-frames.ts).
   */
  get syncedBelow (): number {
    let low = Math.min(this.placedEndId, this.unsyncedFirst.values().next().value ?? Infinity)
    for (const first of this.unsyncedAgain.values()) if (first < low) low = first
    return low
  }

  private async place (frames: readonly FrameInput[], n: number): Promise<{ locators: Locator[], handles: FileHandle[], again: boolean }> {
    if (this.failed !== undefined) throw this.failed
    const again = frames[0]!.firstId < this.placedEndId
    ;(again ? this.unsyncedAgain : this.unsyncedFirst).set(n, frames[0]!.firstId)
    for (const f of frames) if (f.end > this.placedEndId) this.placedEndId = f.end
    const locators: Locator[] = []
    const handles: FileHandle[] = []
    let file = await this.writable(0)
    let parts: Uint8Array[] = []
    let start = file.pos
    const flush = async (): Promise<void> => {
      if (parts.length === 0) return
      try {
        // A write may be short (the disk filled up in the middle of it, a file grows into new
        // blocks): write the rest, which fails with the error itself (ENOSPC) if it cannot.
        const total = parts.reduce((n, p) => n + p.byteLength, 0)
        let done = (await file.handle.writev(parts, start)).bytesWritten
        if (done < total) {
          const all = Buffer.concat(parts)
          for (let n = done; n < total; n += done) {
            done = (await file.handle.write(all, n, total - n, start + n)).bytesWritten
            if (done === 0) throw new Error(`Wrote ${n} of ${total} bytes, then nothing`)
          }
        }
      } catch (err) {
        throw this.fail(err, `Writing segment file ${file.number} failed`)
      }
      if (!handles.includes(file.handle)) handles.push(file.handle)
      parts = []
    }
    for (const input of frames) {
      const f = { ...input, ...packBody(input.body, this.codec) }
      const span = frameSpan(f.body.byteLength)
      if (file.pos + span > file.capacity) {
        await flush()
        file = await this.writable(span)
        start = file.pos
      }
      parts.push(encodeFrameHeader(file.number, f.firstId, f.body, f.flags, f.codec), f.body)
      const pad = span - FRAME_HEADER_BYTES - f.body.byteLength
      if (pad > 0) parts.push(PADDING.subarray(0, pad))
      locators.push({ file: file.number, offset: file.pos, length: f.body.byteLength })
      this.placedEnds.set(file.number, Math.max(this.placedEnds.get(file.number) ?? 0, f.end))
      file.pos += span
    }
    await flush()
    return { locators, handles, again }
  }

  /** The file to write a frame of `span` bytes to: the current one if it has room, else the next. */
  private async writable (span: number): Promise<OpenFile> {
    const cur = this.current
    if (cur !== undefined && cur.pos + span <= cur.capacity) return cur
    if (cur !== undefined) this.retire(cur)
    let next = await (this.next ?? this.prepare(this.nextCapacity()))
    this.next = undefined
    if (span > next.capacity) {
      // A frame larger than a whole file: the prepared file waits for the next frames.
      this.next = Promise.resolve(next)
      next = await this.prepare(span)
    }
    this.current = next
    this.numbers.push(next.number)
    // Get the file after this one ready while this one fills.
    if (this.next === undefined) {
      const ahead = this.prepare(this.nextCapacity())
      ahead.catch(() => {})
      this.next = ahead
    }
    return next
  }

  private nextCapacity (): number {
    this.lastCapacity = Math.min(this.options.fileBytes, Math.max(FIRST_FILE_BYTES, this.lastCapacity * 2))
    return this.lastCapacity
  }

  /**
   * A file ready for `capacity` bytes of frames: a spare renamed to a new number, or a new file
   * (see segment-file-prep.ts).
   */
  private async prepare (capacity: number): Promise<OpenFile> {
    const number = ++this.highest
    try {
      if (!this.dirReady) {
        await makeDurableDir(this.dir)
        this.dirReady = true
      }
      const spare = await this.takeSpare()
      const { handle, capacity: room } = spare !== undefined
        ? await reuseFile(this.dir, spare, this.path(number), capacity)
        : await createFile(this.dir, this.path(number), capacity, this.options.preallocate)
      if (spare === undefined) crashPoint('segment-file:prepared')
      return { number, handle, capacity: room, pos: 0 }
    } catch (err) {
      throw new EvaqError('EVAQ_IO', `Preparing segment file ${number} in ${this.dir} failed`, { cause: err })
    }
  }

  /** The oldest spare, taken out of the list, and its size. */
  private async takeSpare (): Promise<{ name: string, size: number } | undefined> {
    const name = this.spareNames.shift()
    if (name === undefined) return undefined
    const size = (await stat(join(this.dir, name)).catch(() => undefined))?.size ?? 0
    return { name, size }
  }

  private fail (err: unknown, what: string): EvaqError {
    const error = err instanceof EvaqError ? err : new EvaqError('EVAQ_IO', what, { cause: err })
    this.failed ??= error
    return error
  }

  /**
   * Stop writing to the current file: the next frames go to a new one, and this one can be
   * released once nothing in it is live (a log whose records are all gone frees its last file).
   * Waits for appends in flight.
   */
  async seal (): Promise<void> {
    await this.placed
    await this.durable.catch(() => {})
    const cur = this.current
    if (cur === undefined || cur.pos === 0) return
    this.current = undefined
    this.retire(cur)
  }

  /**
   * After a failure: forget it and write the next frames to a new file (frames past the failure
   * in the old one may be torn, and are never followed by new ones). Waits for appends in flight.
   */
  async reset (): Promise<void> {
    await this.placed
    await this.durable.catch(() => {})
    const cur = this.current
    this.current = undefined
    if (cur !== undefined) this.retire(cur)
    this.failed = undefined
    this.durable = Promise.resolve()
  }

  /** A file no longer written: its handle serves reads. */
  private retire (file: OpenFile): void {
    this.sealedSizes.set(file.number, file.pos)
    this.frames.adopt(file.number, file.handle)
  }

  // ---- the tier (segment-tier.ts) ------------------------------------------------------------------

  /** Whether file `n` is offloaded to the tier. */
  isRemote (n: number): boolean {
    return this.tier?.remote.has(n) === true
  }

  /**
   * The files that may be offloaded now, oldest first: sealed (neither written nor about to be),
   * still local, and not while a backup has the files pinned.
   */
  offloadable (): number[] {
    if (this.tier === undefined || this.pinned || this.failed !== undefined) return []
    const writing = this.current?.number
    return this.numbers.filter(n => (writing === undefined || n < writing) && !this.isRemote(n))
  }

  /**
   * Offload file `n` (segment-tier.ts): upload and record it, then delete the local copy. `end`
   * is the ID after its last record. EVAQ_IO when the bucket fails: the file stays local.
   */
  offload (n: number, end: number): Promise<void> {
    const run = this.offloads.get(n) ?? this.offloadOnce(n, end).finally(() => this.offloads.delete(n))
    this.offloads.set(n, run)
    return run
  }

  /** Offloads in flight, by file: a release of the file waits for its offload. */
  private readonly offloads = new Map<number, Promise<void>>()

  private async offloadOnce (n: number, end: number): Promise<void> {
    const tier = this.tier
    if (tier === undefined || !this.offloadable().includes(n)) return
    const path = this.path(n)
    const bytes = this.sealedSizes.get(n) ?? (await stat(path)).size
    const firstId = await this.firstId(n) ?? 0
    await tier.offload(n, path, bytes, firstId, end)
    crashPoint('tier:recorded')
    // The handle about to be closed may still sync the file's last append, or be owed a sync
    // (durability 'none' or an interval): no sync may meet a closed handle.
    await this.durable.catch(() => {})
    if (this.unsynced.size > 0) await this.sync()
    // Reads of n go to the tier from here on; reads in flight finish on the local handle.
    this.frames.retire(n)
    await rm(path, { force: true })
    await fsyncPath(this.dir)
    this.sealedSizes.delete(n)
    crashPoint('tier:freed')
  }

  // ---- reads (frame-reader.ts) -------------------------------------------------------------------

  /** The flags of the frame at `loc` (one read() found intact); 0 when its header no longer is. */
  flagsAt (loc: Locator, firstId: number): Promise<number> {
    return this.frames.flagsAt(loc, firstId)
  }

  /** The body of segment `firstId` at `loc`, checked (EVAQ_CORRUPTION when damaged or missing). */
  read (loc: Locator, firstId: number): Promise<Buffer> {
    return this.frames.read(loc, firstId)
  }

  /** The bodies of segments that follow each other in their files, checked (FrameReader.readRun). */
  readRun (segments: ReadonlyArray<{ loc: Locator, firstId: number }>): Promise<Buffer[]> {
    return this.frames.readRun(segments)
  }

  /** The bodies of segments, or the EVAQ_CORRUPTION naming each one that cannot be read (FrameReader.readEach). */
  readEach (segments: ReadonlyArray<{ loc: Locator, firstId: number }>): Promise<Array<Buffer | EvaqError>> {
    return this.frames.readEach(segments)
  }

  /** The whole frames from `from` on, in order, through the files after it (FrameReader.scan). */
  scan (from: { file: number, offset: number }): AsyncGenerator<ScannedFrame> {
    return this.frames.scan(this.numbers.filter(x => x >= from.file), from)
  }

  /** What file `n` starts with (FrameReader.classify). */
  classify (n: number): Promise<'empty' | 'frames' | 'damaged'> {
    return this.frames.classify(n)
  }

  /** The first ID of file `n`'s first frame, from its header alone, if that is intact. */
  firstId (n: number): Promise<number | undefined> {
    // An offloaded file's marker knows it: no fetch for one header.
    const remote = this.tier?.remote.get(n)
    return remote === undefined ? this.frames.firstId(n) : Promise.resolve(remote.firstId)
  }

  /**
   * The ID after the last record this process placed in file `n` (0 if none): set when the frame
   * is placed, before its append resolves, so a file is never taken for empty while frames are
   * being written to it.
   */
  placedEnd (n: number): number {
    return this.placedEnds.get(n) ?? 0
  }

  // ---- release ----------------------------------------------------------------------------------

  /** Readers (backups) that need every file kept as it is: see pin(). */
  private pins = 0

  /**
   * Keep every file until unpin(): a backup reads the frames its LevelDB snapshot locates, which
   * may lie in files the floor has passed since (SegmentTable.releaseFiles waits while pinned).
   * Counted: each pin() needs its unpin().
   */
  pin (): void {
    this.pins++
  }

  unpin (): void {
    if (this.pins > 0) this.pins--
  }

  /** Whether a reader has pinned the files (see pin()). */
  get pinned (): boolean {
    return this.pins > 0
  }

  /**
   * File `n` holds no live segment any more (LevelDB has no locator into it): keep it as a spare
   * for reuse, or delete it. The directory is synced, so a crash never brings it back under its
   * number. The file being written is never released.
   */
  async release (n: number): Promise<void> {
    if (this.current?.number === n) return
    await this.offloads.get(n)?.catch(() => {})
    const at = this.numbers.indexOf(n)
    if (at < 0) return
    if (this.isRemote(n)) {
      // Its object goes first (EVAQ_IO when the bucket fails: the file stays, released later).
      await this.tier!.remove(n)
      this.numbers.splice(this.numbers.indexOf(n), 1)
      this.placedEnds.delete(n)
      return
    }
    this.numbers.splice(at, 1)
    this.sealedSizes.delete(n)
    this.placedEnds.delete(n)
    const h = await this.frames.take(n)?.catch(() => undefined)
    if (h !== undefined) {
      this.unsynced.delete(h)
      await h.close().catch(() => {})
    }
    crashPoint('segment-file:release')
    if (this.spareNames.length < this.options.spares) {
      const name = `spare-${segmentFileName(n)}`
      await rename(this.path(n), join(this.dir, name))
      this.spareNames.push(name)
    } else {
      await rm(this.path(n), { force: true })
    }
    await fsyncPath(this.dir)
  }

  /** Wait for appends in flight, then close every handle. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.placed
    await this.durable.catch(() => {})
    const next = await this.next?.catch(() => undefined)
    this.next = undefined
    await this.frames.close()
    await this.tier?.close()
    await this.current?.handle.close().catch(() => {})
    this.current = undefined
    await next?.handle.close().catch(() => {})
  }
}
