import { open, type FileHandle } from 'node:fs/promises'
import { EvaqError } from '../errors.js'
import { decodeFrameHeader, frameBody, frameSpan, FRAME_HEADER_BYTES, type Locator } from './frame.js'
import type { Lease, SegmentTier } from './segment-tier.js'

/** Adjacent frames are read together up to this many bytes: sequential reads of a file. */
export const READ_CHUNK_BYTES = 1024 * 1024

/** A frame found by a scan (recovery at open). */
export interface ScannedFrame {
  readonly loc: Locator
  readonly firstId: number
  readonly flags: number
  /** The segment, checked and decoded. */
  readonly body: Buffer
}

/** The file being written: read through its own handle, and only up to `pos`. */
export interface WrittenFile {
  readonly number: number
  readonly handle: FileHandle
  readonly pos: number
}

/**
 * The reads of a log's segment files (segment-files.ts): one handle per file, opened on the first
 * read; every frame read is checked against what LevelDB says is there (frame.ts frameBody), and
 * a missing file is EVAQ_CORRUPTION naming the segment, another failure EVAQ_IO. A file offloaded
 * to the tier (segment-tier.ts) is read from its fetched copy.
 */
export class FrameReader {
  /** Handles for reads, by file number. */
  private readonly readers = new Map<number, Promise<FileHandle>>()
  /** Reads in flight, by file number: a handle retired meanwhile is closed after the last one. */
  private readonly users = new Map<number, number>()
  /** Retired handles waiting for their reads in flight (see retire()). */
  private readonly retired = new Map<number, Promise<FileHandle>>()

  constructor (
    private readonly dir: string,
    private readonly path: (n: number) => string,
    private readonly current: () => WrittenFile | undefined,
    private readonly tier: SegmentTier | undefined = undefined
  ) {}

  /** A file no longer written: its writer's handle serves reads. */
  adopt (n: number, handle: FileHandle): void {
    if (!this.readers.has(n)) this.readers.set(n, Promise.resolve(handle))
  }

  /** Stop reading file `n`: its handle, if one was opened, for the caller to close. */
  take (n: number): Promise<FileHandle> | undefined {
    const h = this.readers.get(n)
    this.readers.delete(n)
    return h
  }

  /**
   * Stop reading file `n` through its local handle (it was offloaded, and is about to be deleted):
   * new reads go to the tier, and the handle is closed once the reads in flight on it are done.
   */
  retire (n: number): void {
    const h = this.readers.get(n)
    if (h === undefined) return
    this.readers.delete(n)
    if ((this.users.get(n) ?? 0) === 0) void h.then(x => x.close()).catch(() => {})
    else this.retired.set(n, h)
  }

  async close (): Promise<void> {
    const handles = [...this.readers.values(), ...this.retired.values()]
    this.readers.clear()
    this.retired.clear()
    for (const h of handles) await h.then(x => x.close()).catch(() => {})
  }

  private reader (n: number): Promise<FileHandle> {
    const current = this.current()
    if (current?.number === n) return Promise.resolve(current.handle)
    let h = this.readers.get(n)
    if (h === undefined) {
      h = open(this.path(n), 'r')
      this.readers.set(n, h)
      h.catch(() => this.readers.delete(n))
    }
    return h
  }

  /**
   * A handle on file `n` for one read, held until release(): the file's own, or the fetched copy
   * of an offloaded one. A missing file (not offloaded) is EVAQ_CORRUPTION naming `firstId`.
   */
  private async hold (n: number, firstId: number): Promise<Lease> {
    const current = this.current()
    if (current?.number === n) return { handle: current.handle, release: () => {} }
    if (this.tier?.remote.has(n) === true && !this.readers.has(n)) return this.tier.lease(n)
    let handle: FileHandle
    try {
      handle = await this.reader(n)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // Offloaded while the file was being opened.
        if (this.tier?.remote.has(n) === true) return this.tier.lease(n)
        throw new EvaqError('EVAQ_CORRUPTION', `Segment file ${n} of segment ${firstId} is missing from ${this.dir}`, { ids: [firstId], cause: err })
      }
      throw new EvaqError('EVAQ_IO', `Opening segment file ${n} failed`, { cause: err })
    }
    this.users.set(n, (this.users.get(n) ?? 0) + 1)
    let released = false
    return {
      handle,
      release: () => {
        if (released) return
        released = true
        const left = this.users.get(n)! - 1
        if (left > 0) { this.users.set(n, left); return }
        this.users.delete(n)
        const retired = this.retired.get(n)
        if (retired !== undefined) {
          this.retired.delete(n)
          void retired.then(x => x.close()).catch(() => {})
        }
      },
    }
  }

  /** The flags of the frame at `loc` (one read() found intact); 0 when its header no longer is. */
  async flagsAt (loc: Locator, firstId: number): Promise<number> {
    const buf = await this.readBytes(loc.file, loc.offset, FRAME_HEADER_BYTES, firstId)
    return decodeFrameHeader(buf, 0, loc.file)?.flags ?? 0
  }

  /** The body of segment `firstId` at `loc`, checked (EVAQ_CORRUPTION when damaged or missing). */
  async read (loc: Locator, firstId: number): Promise<Buffer> {
    const [body] = await this.readRun([{ loc, firstId }])
    return body!
  }

  /**
   * The bodies of segments that follow each other in their files, read with as few reads as
   * possible (one per READ_CHUNK_BYTES of adjacent frames): a subscriber far behind reads its
   * files sequentially. Each body is checked like read().
   */
  async readRun (segments: ReadonlyArray<{ loc: Locator, firstId: number }>): Promise<Buffer[]> {
    const out: Buffer[] = []
    let i = 0
    while (i < segments.length) {
      const first = segments[i]!.loc
      let end = first.offset + frameSpan(first.length)
      let j = i + 1
      while (j < segments.length) {
        const loc = segments[j]!.loc
        if (loc.file !== first.file || loc.offset !== end || end - first.offset >= READ_CHUNK_BYTES) break
        end += frameSpan(loc.length)
        j++
      }
      const buf = await this.readBytes(first.file, first.offset, end - first.offset, segments[i]!.firstId)
      for (let k = i; k < j; k++) {
        const { loc, firstId } = segments[k]!
        out.push(frameBody(buf, loc.offset - first.offset, loc, firstId))
      }
      i = j
    }
    return out
  }

  /**
   * readRun(), with each segment's own outcome: its body, or the EVAQ_CORRUPTION that names it
   * (damaged, or its file missing). When the run fails, its segments are read one by one to tell
   * which; any other error (EVAQ_IO, EVAQ_UNSUPPORTED_FORMAT) is thrown.
   */
  async readEach (segments: ReadonlyArray<{ loc: Locator, firstId: number }>): Promise<Array<Buffer | EvaqError>> {
    try {
      return await this.readRun(segments)
    } catch {
      const out: Array<Buffer | EvaqError> = []
      for (const { loc, firstId } of segments) {
        try {
          out.push(await this.read(loc, firstId))
        } catch (err) {
          if (!(err instanceof EvaqError) || err.code !== 'EVAQ_CORRUPTION') throw err
          out.push(err)
        }
      }
      return out
    }
  }

  private async readBytes (file: number, offset: number, length: number, firstId: number): Promise<Buffer> {
    const { handle, release } = await this.hold(file, firstId)
    const buf = Buffer.allocUnsafe(length)
    let got = 0
    try {
      while (got < length) {
        const { bytesRead } = await handle.read(buf, got, length - got, offset + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
    } catch (err) {
      throw new EvaqError('EVAQ_IO', `Reading segment file ${file} failed`, { cause: err })
    } finally {
      release()
    }
    return got === length ? buf : buf.subarray(0, got)
  }

  /** The size of file `n` (the frames placed so far, for the one being written); undefined when it is missing. */
  private async size (n: number): Promise<number | undefined> {
    const current = this.current()
    if (current?.number === n) return current.pos
    const remote = this.tier?.remote.get(n)
    if (remote !== undefined && !this.readers.has(n)) return remote.bytes
    let handle: FileHandle
    try {
      handle = await this.reader(n)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return remote?.bytes
      throw new EvaqError('EVAQ_IO', `Opening segment file ${n} failed`, { cause: err })
    }
    return (await handle.stat()).size
  }

  /**
   * The whole frames from `from` on, in order, through `numbers` (the files from `from.file` on): in each file up to the
   * first frame that is not whole and current (zeros, an older file's frame, a torn write), then
   * from the start of the next file. Recovery indexes what LevelDB lost from here (see open).
   */
  async * scan (numbers: readonly number[], from: { file: number, offset: number }): AsyncGenerator<ScannedFrame> {
    for (const n of numbers) {
      // In the file being written, up to the frames placed so far.
      const size = await this.size(n)
      if (size === undefined) continue
      let pos = n === from.file ? from.offset : 0
      let buf: Buffer = Buffer.alloc(0)
      let bufAt = pos
      const ensure = async (at: number, length: number): Promise<boolean> => {
        if (at + length > size) return false
        if (at >= bufAt && at + length <= bufAt + buf.byteLength) return true
        const want = Math.min(size - at, Math.max(length, READ_CHUNK_BYTES))
        buf = await this.readBytes(n, at, want, -1)
        bufAt = at
        return buf.byteLength >= length
      }
      for (;;) {
        if (!await ensure(pos, FRAME_HEADER_BYTES)) break
        const h = decodeFrameHeader(buf, pos - bufAt, n)
        if (h === undefined) break
        const span = frameSpan(h.bodyLength)
        if (!await ensure(pos, FRAME_HEADER_BYTES + h.bodyLength)) break
        const loc = { file: n, offset: pos, length: h.bodyLength }
        let body: Buffer
        try {
          body = Buffer.from(frameBody(buf, pos - bufAt, loc, h.firstId))
        } catch (err) {
          // Intact, in a codec this Node cannot decode: the scan cannot go on without losing it.
          if (err instanceof EvaqError && err.code === 'EVAQ_UNSUPPORTED_FORMAT') throw err
          break
        }
        yield { loc, firstId: h.firstId, flags: h.flags, body }
        pos += span
      }
    }
  }

  /**
   * What file `n` starts with: 'empty' (zeros, or a frame of an earlier file it was reused from:
   * a file prepared but never written), 'frames' (a whole frame of its own), or 'damaged'.
   */
  async classify (n: number): Promise<'empty' | 'frames' | 'damaged'> {
    const head = await this.readBytes(n, 0, FRAME_HEADER_BYTES, -1)
    if (head.byteLength < FRAME_HEADER_BYTES || head.every(b => b === 0)) return 'empty'
    if (decodeFrameHeader(head, 0, n) !== undefined) return 'frames'
    // A whole header naming another file: the file was reused and not written since.
    const named = head.readUInt32BE(8)
    return named !== n && decodeFrameHeader(head, 0, named) !== undefined ? 'empty' : 'damaged'
  }

  /** The first ID of file `n`'s first frame, from its header alone (one small read), if that is intact. */
  async firstId (n: number): Promise<number | undefined> {
    const head = await this.readBytes(n, 0, FRAME_HEADER_BYTES, -1)
    return decodeFrameHeader(head, 0, n)?.firstId
  }
}
