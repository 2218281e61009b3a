/**
 * Spike (throwaway): where a format-2 log gets its next segment file from. One file is always
 * being prepared ahead in the background, so that a group commit rarely waits for one.
 *
 *   append    an empty file: frames extend it (every fdatasync also commits the new size and
 *             blocks through the ext4 journal)
 *   prealloc  zero-filled to `fileBytes` and fsynced: frames overwrite blocks whose metadata is durable
 *   sparse    ftruncate'd to `fileBytes` (a hole, NOT fallocate: Node has none): blocks are
 *             allocated by the frames' writes, like append
 *   recycle   a retired file (all its records gone) renamed to the new number and overwritten;
 *             frames carry the file's generation (its number) so recovery tells old bytes from new
 */
import { open, rename, type FileHandle } from 'node:fs/promises'
import path from 'node:path'

export type FileMode = 'append' | 'prealloc' | 'sparse' | 'recycle'

export interface SegFile {
  readonly number: number
  readonly handle: FileHandle
  readonly capacity: number
  /** Frames written into it whose fdatasync has not returned yet. */
  unsynced: number
  sealed: boolean
}

const ZEROS = Buffer.alloc(1 << 20)

export const fileName = (dir: string, n: number): string => path.join(dir, `${String(n).padStart(8, '0')}.evs`)

export async function syncDir (dir: string): Promise<void> {
  const h = await open(dir, 'r')
  try { await h.sync() } finally { await h.close() }
}

async function zeroFill (handle: FileHandle, bytes: number): Promise<void> {
  for (let at = 0; at < bytes; at += ZEROS.byteLength) await handle.write(ZEROS, 0, Math.min(ZEROS.byteLength, bytes - at), at)
  await handle.datasync()
}

export class FileSource {
  private number = 0
  private ahead: Promise<SegFile> | undefined
  /** recycle: retired files, oldest first. */
  private readonly free: number[] = []
  /** recycle: files that had to be preallocated because none was free (the log grew). */
  grown = 0

  constructor (readonly dir: string, readonly mode: FileMode, readonly fileBytes: number, private readonly ring = 3) {}

  /** recycle: the files a queue whose consumer keeps up would have retired (setup, not timed). */
  async init (): Promise<void> {
    if (this.mode === 'recycle') {
      for (let i = 0; i < this.ring; i++) {
        const n = ++this.number
        const h = await open(fileName(this.dir, n), 'w')
        await zeroFill(h, this.fileBytes)
        await h.close()
        this.free.push(n)
      }
      await syncDir(this.dir)
    }
    this.ahead = this.prepare()
  }

  /** The prepared file; starts preparing the one after it. */
  async take (): Promise<SegFile> {
    const file = await this.ahead!
    this.ahead = this.prepare()
    return file
  }

  /** A file whose frames are all synced and will not be written again. */
  async retire (file: SegFile): Promise<void> {
    await file.handle.close()
    if (this.mode === 'recycle') this.free.push(file.number)
  }

  async close (): Promise<void> {
    const f = await this.ahead?.catch(() => undefined)
    await f?.handle.close()
  }

  private async prepare (): Promise<SegFile> {
    const n = ++this.number
    const name = fileName(this.dir, n)
    let handle: FileHandle
    if (this.mode === 'recycle' && this.free.length > 0) {
      await rename(fileName(this.dir, this.free.shift()!), name)
      handle = await open(name, 'r+')
    } else {
      if (this.mode === 'recycle') this.grown++
      handle = await open(name, 'w')
      if (this.mode === 'prealloc' || this.mode === 'recycle') await zeroFill(handle, this.fileBytes)
      else if (this.mode === 'sparse') { await handle.truncate(this.fileBytes); await handle.sync() }
    }
    await syncDir(this.dir)
    return { number: n, handle, capacity: this.fileBytes, unsynced: 0, sealed: false }
  }
}
