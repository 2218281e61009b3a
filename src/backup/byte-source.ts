import type { FileHandle } from 'node:fs/promises'
import { EvaqError } from '../errors.js'

/**
 * The bytes of an archive, read front to back: a local file (FileBytes), or chunks arriving from
 * elsewhere (ChunkBytes: an object in a bucket, or an archive being uploaded and checked on the
 * way). The archive reader needs nothing more, so it reads all of them the same way.
 */
export interface ByteSource {
  /** The archive's size when known up front (a file, an object); undefined for a stream. */
  readonly size: number | undefined
  /** Offset of the next byte read() returns. */
  readonly position: number
  /** The next `n` bytes, or undefined when the archive ends first. */
  read (n: number): Promise<Buffer | undefined>
  /** Whether every byte was read. */
  atEnd (): Promise<boolean>
  close (): Promise<void>
}

/** Bytes read from the file at a time. */
const READ_BYTES = 1024 * 1024

/** A file read front to back, in chunks. */
export class FileBytes implements ByteSource {
  private chunk = Buffer.alloc(0)
  private at = 0
  position = 0
  private filePosition = 0

  constructor (private readonly handle: FileHandle, readonly size: number) {}

  async read (n: number): Promise<Buffer | undefined> {
    if (this.position + n > this.size) return undefined
    const available = this.chunk.byteLength - this.at
    if (n <= available) {
      const out = this.chunk.subarray(this.at, this.at + n)
      this.at += n
      this.position += n
      return out
    }
    if (n - available <= READ_BYTES / 2) {
      // Small: refill, keeping what is left of the chunk in front.
      const size = Math.min(Math.max(READ_BYTES, n), this.size - this.position)
      const next = Buffer.allocUnsafe(size)
      this.chunk.copy(next, 0, this.at)
      await this.fill(next, available)
      this.chunk = next
      this.at = 0
      return this.read(n)
    }
    // Large: read straight into the result.
    const out = Buffer.allocUnsafe(n)
    this.chunk.copy(out, 0, this.at)
    await this.fill(out, available)
    this.chunk = Buffer.alloc(0)
    this.at = 0
    this.position += n
    return out
  }

  private async fill (buf: Buffer, from: number): Promise<void> {
    for (let off = from; off < buf.byteLength;) {
      const { bytesRead } = await this.handle.read(buf, off, buf.byteLength - off, this.filePosition)
      if (bytesRead === 0) throw new EvaqError('EVAQ_IO', 'The archive file shrank while it was read')
      off += bytesRead
      this.filePosition += bytesRead
    }
  }

  atEnd (): Promise<boolean> {
    return Promise.resolve(this.position >= this.size)
  }

  async close (): Promise<void> {
    await this.handle.close().catch(() => {})
  }
}

/**
 * Bytes arriving as chunks of any size. The end of the chunks is the end of the archive, whatever
 * `size` said: a source that delivers fewer bytes reads as an archive cut short, one that
 * delivers more as bytes after its summary.
 */
export class ChunkBytes implements ByteSource {
  private readonly it: AsyncIterator<Uint8Array>
  private parts: Buffer[] = []
  /** Bytes held in `parts` (the first one from `at`). */
  private held = 0
  private at = 0
  private ended = false
  position = 0
  readonly size: number | undefined

  constructor (chunks: AsyncIterable<Uint8Array>, size?: number) {
    this.it = chunks[Symbol.asyncIterator]()
    this.size = size
  }

  /** Pull chunks until `n` bytes are held; false when the chunks end first. */
  private async fill (n: number): Promise<boolean> {
    while (this.held < n) {
      if (this.ended) return false
      const next = await this.it.next()
      if (next.done === true) {
        this.ended = true
        return false
      }
      const chunk = next.value
      if (chunk.byteLength === 0) continue
      this.parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      this.held += chunk.byteLength
    }
    return true
  }

  async read (n: number): Promise<Buffer | undefined> {
    if (!await this.fill(n)) return undefined
    let out: Buffer
    const first = this.parts[0]
    if (first !== undefined && first.byteLength - this.at >= n) {
      out = first.subarray(this.at, this.at + n)
      this.at += n
    } else {
      out = Buffer.allocUnsafe(n)
      let off = 0
      while (off < n) {
        const part = this.parts[0]!
        const take = Math.min(n - off, part.byteLength - this.at)
        part.copy(out, off, this.at, this.at + take)
        off += take
        this.at += take
        if (this.at === part.byteLength) {
          this.parts.shift()
          this.at = 0
        }
      }
    }
    if (this.parts.length > 0 && this.at === this.parts[0]!.byteLength) {
      this.parts.shift()
      this.at = 0
    }
    this.held -= n
    this.position += n
    return out
  }

  async atEnd (): Promise<boolean> {
    return !await this.fill(1)
  }

  async close (): Promise<void> {
    this.parts = []
    this.held = 0
    if (!this.ended) {
      this.ended = true
      await this.it.return?.(undefined).catch(() => {})
    }
  }
}
