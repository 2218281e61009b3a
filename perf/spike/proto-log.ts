/**
 * Spike (throwaway): the write path of storage format 2. Pushes are packed into a SegmentBuilder
 * (evaq's codec, one copy of each payload) while the previous group is being written (group
 * commit). A group is one frame in a segment file: pwrite (in order: write k+1 is issued only
 * after write k returned), then fdatasync of the file and, in parallel, an UNSYNCED LevelDB put of
 * the frame's locator (file number, offset, length, count) under the group's first ID. A push
 * resolves only after both returned. After a crash the locators missing from LevelDB are rebuilt
 * from the segment files' tails (see recovery.ts), so a durable push costs one fdatasync.
 *
 * `depth` groups may be in flight: with 2, group k+1 is written while group k's fdatasync runs.
 */
import { ClassicLevel } from 'classic-level'
import { encodeKey, SegmentBuilder } from '../../src/store/codec.js'
import { FileSource, type FileMode, type SegFile } from './files.js'
import { encodeFrame, FRAME_BYTES } from './frame.js'

export interface ProtoOptions {
  readonly mode: FileMode
  readonly depth: number
  readonly fileBytes: number
  readonly maxBatchBytes: number
}

interface Group {
  readonly builder: SegmentBuilder
  readonly waiters: Array<{ resolve: () => void, reject: (err: unknown) => void }>
}

export class ProtoLog {
  private nextId = 1
  private seq = 0
  private pending: Group[] = []
  private inflight = 0
  private scheduled = false
  private writeChain: Promise<unknown> = Promise.resolve()
  private file: SegFile | undefined
  private pos = 0
  private idle: Array<() => void> = []
  /** Frames and records written (mean group size). */
  frames = 0
  records = 0

  private constructor (private readonly files: FileSource, private readonly db: ClassicLevel<Buffer, Buffer>, private readonly options: ProtoOptions) {}

  static async open (dir: string, options: ProtoOptions): Promise<ProtoLog> {
    const db = new ClassicLevel<Buffer, Buffer>(`${dir}/index`, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await db.open()
    const files = new FileSource(dir, options.mode, options.fileBytes)
    await files.init()
    return new ProtoLog(files, db, options)
  }

  get grownFiles (): number {
    return this.files.grown
  }

  push (payload: Uint8Array): Promise<void> {
    return this.pushMany([payload])
  }

  pushMany (payloads: readonly Uint8Array[]): Promise<void> {
    let group = this.pending[this.pending.length - 1]
    if (group === undefined || group.builder.payloadBytes >= this.options.maxBatchBytes) {
      group = { builder: new SegmentBuilder(this.nextId, 64 * 1024), waiters: [] }
      this.pending.push(group)
    }
    this.nextId += payloads.length
    for (const p of payloads) group.builder.append(p)
    const g = group
    return new Promise((resolve, reject) => {
      g.waiters.push({ resolve, reject })
      this.schedule()
    })
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      this.pump()
      if (this.inflight === 0 && this.pending.length === 0) for (const resolve of this.idle.splice(0)) resolve()
    })
  }

  private pump (): void {
    while (this.pending.length > 0 && this.inflight < this.options.depth) void this.flush(this.pending.shift()!)
  }

  private async flush (group: Group): Promise<void> {
    this.inflight++
    const b = group.builder
    let error: unknown
    try {
      const segment = b.finish(Date.now())
      const size = FRAME_BYTES + segment.byteLength
      const placed = this.writeChain.then(() => this.write(b, segment, size))
      this.writeChain = placed.catch(() => {})
      const { file, offset } = await placed
      const locator = Buffer.allocUnsafe(16)
      locator.writeUInt32BE(file.number, 0)
      locator.writeUInt32BE(offset, 4)
      locator.writeUInt32BE(size, 8)
      locator.writeUInt32BE(b.count, 12)
      try {
        await Promise.all([file.handle.datasync(), this.db.put(encodeKey(b.firstId), locator)])
      } finally {
        if (--file.unsynced === 0 && file.sealed) await this.files.retire(file)
      }
      this.frames++
      this.records += b.count
    } catch (err) {
      error = err
    }
    for (const w of group.waiters) error === undefined ? w.resolve() : w.reject(error)
    this.inflight--
    // In a microtask, as evaq's GroupCommit does: the callers just resolved push again first and
    // join the pending group instead of leaving it to be flushed half empty.
    this.schedule()
  }

  /** Place the frame (taking the next file when it does not fit) and pwrite it; runs one at a time. */
  private async write (b: SegmentBuilder, segment: Buffer, size: number): Promise<{ file: SegFile, offset: number }> {
    let file = this.file
    if (file === undefined || this.pos + size > file.capacity) {
      if (file !== undefined) {
        file.sealed = true
        if (file.unsynced === 0) await this.files.retire(file)
      }
      file = this.file = await this.files.take()
      this.pos = 0
      if (size > file.capacity) throw new Error(`A frame of ${size} bytes does not fit in a segment file`)
    }
    // The generation is the file number: a recycled file's old frames carry an older one.
    const header = encodeFrame({ generation: file.number, seq: this.seq++, count: b.count, firstId: b.firstId, length: segment.byteLength }, segment)
    const offset = this.pos
    this.pos += size
    file.unsynced++
    await file.handle.writev([header, segment], offset)
    return { file, offset }
  }

  async close (): Promise<void> {
    if (this.inflight > 0 || this.pending.length > 0) await new Promise<void>(resolve => this.idle.push(resolve))
    if (this.file !== undefined && this.file.unsynced === 0) await this.file.handle.close()
    await this.files.close()
    await this.db.close()
  }
}
