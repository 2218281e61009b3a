import { EvaqError } from '../errors.js'
import { HEADER_BYTES, INDEX_ENTRY_BYTES, SegmentBuilder } from '../store/codec.js'

/**
 * The write buffer. Pushes get their IDs at once, in call order, and their payloads are copied
 * straight into the segment being built (see SegmentBuilder). A flush takes the oldest segments
 * (at least one, up to about `maxBatchBytes`) and hands them to `commit`; up to `flushWorkers`
 * flushes are in flight. While they are, new pushes fill the next segment, so segments grow with
 * load by themselves (group commit).
 */

/**
 * A burst is split (see GroupCommit.splits) only into parts of at least this many payload bytes:
 * below it the writer is bound by its CPU per flush, not by the disk, and more flushes cost more.
 */
const SPLIT_MIN_BYTES = 64 * 1024

export interface PendingSegment {
  readonly builder: SegmentBuilder
  /** Per-record extras (the DLQ's error), by ID. */
  readonly extras: Array<[id: number, value: Buffer]>
  /** Pushes whose last record is in this segment: they resolve when it is committed. */
  readonly waiters: Waiter[]
  /** A pushMany continues into the next segment: both must be written in one batch. */
  joinNext: boolean
  sealed: boolean
  /** Closed early to split a burst (GroupCommit.splits): flushed apart from what follows it. */
  split?: boolean
  /**
   * What commits this segment instead of the log's own write (a move: the removal from the source
   * log, staged into the same batch). Such a segment holds one push (one record, or the page of a
   * multi-record move, whatever its size) and is flushed alone, so that a move that cannot happen
   * fails no other push.
   */
  readonly carrier?: unknown
}

interface Waiter {
  readonly firstId: number
  resolve (firstId: number): void
  reject (err: unknown): void
}

export interface GroupCommitOptions {
  maxBatchBytes: number
  maxBatchCount: number
  lingerMs: number
  flushWorkers: number
  maxBufferedBytes: number
}

/**
 * A commit may throw this when it wrote nothing and the segments should be written again once
 * `until` settles: LevelDB refused the batch before writing any of it, or the database was being
 * repaired. The buffer puts the segments back in ID order and flushes them again; their pushes
 * neither resolve nor fail meanwhile. (The commit function is what waits for `until`.)
 */
export class CommitLater extends EvaqError {
  constructor (readonly until: Promise<void>, message: string, cause?: unknown) {
    super('EVAQ_IO', message, { cause })
  }
}

export type CommitFn = (segments: readonly PendingSegment[]) => Promise<void>

interface SpaceWaiter {
  bytes: number
  /** Admit the waiting push; it gets its IDs only now, so IDs follow admission order. */
  enter (): void
  fail (err: EvaqError): void
}

export class GroupCommit {
  private nextId: number
  /** Segments not yet handed to a flush, oldest first; the last one may still be filling. */
  private queue: PendingSegment[] = []
  private queuedBytes = 0
  /** Moving averages of the payload bytes and record counts of flushed segments. */
  private recentSegmentBytes = 0
  private recentSegmentCount = 0
  /** The payload bytes the last pump found queued while no flush was in flight (a burst). */
  private lastBurst = 0
  /** Bytes buffered or in flight: what `maxBufferedBytes` bounds. */
  private heldBytes = 0
  private readonly inflight = new Set<readonly PendingSegment[]>()
  private readonly waiters: SpaceWaiter[] = []
  private scheduled = false
  private lingerTimer: NodeJS.Timeout | undefined
  private lingerDone = false
  private idle: Array<() => void> = []

  constructor (
    private readonly options: GroupCommitOptions,
    nextId: number,
    private readonly commit: CommitFn,
    private readonly onCommitted: () => void
  ) {
    this.nextId = nextId
  }

  /** Payload bytes buffered or being written. */
  get bufferedBytes (): number {
    return this.heldBytes
  }

  /** The next ID this buffer will issue. */
  get next (): number {
    return this.nextId
  }

  /** Highest ID such that every ID at or below it was committed (or failed for good). */
  get watermark (): number {
    let low = this.queue.length > 0 ? this.queue[0]!.builder.firstId : this.nextId
    for (const segments of this.inflight) {
      const first = segments[0]!.builder.firstId
      if (first < low) low = first
    }
    return low - 1
  }

  /** Whether `id` was issued but its flush has not completed yet. */
  isPending (id: number): boolean {
    if (id >= this.nextId) return false
    if (this.queue.length > 0 && id >= this.queue[0]!.builder.firstId) return true
    for (const segments of this.inflight) {
      const last = segments[segments.length - 1]!.builder
      if (id >= segments[0]!.builder.firstId && id < last.firstId + last.count) return true
    }
    return false
  }

  /**
   * Queue payloads; resolves with the first ID once all are committed. Waits for space when the
   * buffer is full; `signal` aborts that wait (nothing is written then).
   */
  push (
    payloads: readonly Uint8Array[],
    bytes: number,
    extras: readonly (Buffer | undefined)[] | undefined,
    signal: AbortSignal | undefined,
    carrier?: unknown
  ): Promise<number> {
    if (this.waiters.length > 0 || (this.heldBytes > 0 && this.heldBytes + bytes > this.options.maxBufferedBytes)) {
      return this.waitForSpace(bytes, signal, () => this.admit(payloads, bytes, extras, carrier))
    }
    return this.admit(payloads, bytes, extras, carrier)
  }

  private admit (payloads: readonly Uint8Array[], bytes: number, extras: readonly (Buffer | undefined)[] | undefined, carrier: unknown): Promise<number> {
    const firstId = this.nextId
    this.nextId += payloads.length
    this.heldBytes += bytes
    this.queuedBytes += bytes
    let segment = this.queue[this.queue.length - 1]
    if (carrier !== undefined) {
      if (segment !== undefined) segment.sealed = true
      segment = this.newSegment(firstId, bytes + payloads.length * 8, carrier)
    }
    for (let i = 0; i < payloads.length; i++) {
      const p = payloads[i]!
      // A carried push stays in its one segment: its batch is the move's one write.
      if (carrier === undefined && (segment === undefined || segment.sealed || !this.fits(segment.builder, p.byteLength))) {
        if (segment !== undefined && !segment.sealed) {
          segment.sealed = true
          if (i > 0) segment.joinNext = true
        }
        segment = this.newSegment(firstId + i, p.byteLength)
      }
      segment!.builder.append(p)
      const x = extras?.[i]
      if (x !== undefined) segment!.extras.push([firstId + i, x])
    }
    const last = segment!
    if (carrier !== undefined) last.sealed = true
    if (last.builder.count >= this.options.maxBatchCount || last.builder.payloadBytes >= this.options.maxBatchBytes) last.sealed = true
    else if (carrier === undefined && this.splits(last)) last.sealed = last.split = true
    return new Promise<number>((resolve, reject) => {
      last.waiters.push({ firstId, resolve, reject })
      this.schedule()
    })
  }

  /**
   * Whether to close `segment` early so that the pushes of one burst go out as several flushes in
   * flight at once. Callers in a closed loop (each pushes again once its push resolved) all wake
   * up when a flush completes and push in the same turn: without a split, that burst is one flush,
   * the other workers stay idle, and the writer alternates between building and waiting for the
   * disk. Split into up to `flushWorkers` parts, the second part is written while the first one's
   * fdatasync runs, and its callers come back at other times, which keeps the flushes overlapping.
   */
  private splits (segment: PendingSegment): boolean {
    const workers = this.options.flushWorkers
    if (workers < 2 || this.inflight.size > 0 || this.queue.length >= workers) return false
    return segment.builder.payloadBytes >= Math.max(SPLIT_MIN_BYTES, this.lastBurst / workers)
  }

  private fits (builder: SegmentBuilder, bytes: number): boolean {
    return builder.count < this.options.maxBatchCount &&
      (builder.count === 0 || builder.payloadBytes + bytes <= this.options.maxBatchBytes)
  }

  private newSegment (firstId: number, firstBytes: number, carrier?: unknown): PendingSegment {
    // Size the buffer and the index like the last segments, so that they rarely grow (each growth
    // is a copy and garbage): under steady load consecutive segments are alike. A full segment
    // holds maxBatchBytes of payloads and then its index (recentSegmentBytes counts both): a cap
    // of maxBatchBytes alone made finish() copy every full segment into a larger buffer.
    const records = Math.min(this.options.maxBatchCount, Math.ceil(this.recentSegmentCount * 1.25))
    const expected = Math.max(firstBytes, Math.min(this.options.maxBatchBytes + records * INDEX_ENTRY_BYTES, this.recentSegmentBytes * 1.25))
    const hint = expected + HEADER_BYTES + 1024
    const segment: PendingSegment = carrier === undefined
      ? { builder: new SegmentBuilder(firstId, hint, records), extras: [], waiters: [], joinNext: false, sealed: false }
      : { builder: new SegmentBuilder(firstId, firstBytes + HEADER_BYTES + 64), extras: [], waiters: [], joinNext: false, sealed: false, carrier }
    this.queue.push(segment)
    return segment
  }

  private waitForSpace (bytes: number, signal: AbortSignal | undefined, admit: () => Promise<number>): Promise<number> {
    if (signal?.aborted === true) return Promise.reject(aborted(signal))
    return new Promise<number>((resolve, reject) => {
      const waiter: SpaceWaiter = {
        bytes,
        enter: () => { signal?.removeEventListener('abort', onAbort); resolve(admit()) },
        fail: (err) => { signal?.removeEventListener('abort', onAbort); reject(err) },
      }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(aborted(signal!))
        this.admitWaiters()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  private admitWaiters (): void {
    while (this.waiters.length > 0) {
      const w = this.waiters[0]!
      if (this.heldBytes > 0 && this.heldBytes + w.bytes > this.options.maxBufferedBytes) return
      this.waiters.shift()
      w.enter()
    }
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    // A microtask, not setImmediate: every push made synchronously or in the promise
    // continuations already queued (all the callers a completed flush just woke up) still joins
    // the same segment, and a lone push does not wait for a turn of the event loop.
    queueMicrotask(() => {
      this.scheduled = false
      this.pump()
    })
  }

  private pump (): void {
    if (this.inflight.size === 0 && this.queue.length > 0) {
      let bytes = 0
      for (const s of this.queue) bytes += s.builder.payloadBytes
      this.lastBurst = bytes
    }
    while (this.queue.length > 0 && this.inflight.size < this.options.flushWorkers) {
      if (this.options.lingerMs > 0 && !this.lingerDone && this.queue.length === 1 && !this.queue[0]!.sealed) {
        this.lingerTimer ??= setTimeout(() => { this.lingerTimer = undefined; this.lingerDone = true; this.pump() }, this.options.lingerMs)
        return
      }
      if (this.lingerTimer !== undefined) { clearTimeout(this.lingerTimer); this.lingerTimer = undefined }
      this.lingerDone = false
      this.flushOne()
    }
  }

  private flushOne (): void {
    // Take whole groups of joined segments until about maxBatchBytes, at least one group.
    let n = 0
    let bytes = 0
    while (n < this.queue.length) {
      // A split part goes out alone while another worker is idle to take what follows it.
      if (n > 0 && (bytes >= this.options.maxBatchBytes || (this.queue[n - 1]!.split === true && this.inflight.size + 1 < this.options.flushWorkers))) break
      // A carried segment is committed by its carrier, alone.
      if (this.queue[n]!.carrier !== undefined) {
        if (n === 0) { this.queue[0]!.sealed = true; bytes += this.queue[0]!.builder.payloadBytes; n = 1 }
        break
      }
      do {
        const s = this.queue[n++]!
        s.sealed = true
        bytes += s.builder.payloadBytes
      } while (this.queue[n - 1]!.joinNext && n < this.queue.length)
    }
    const segments = this.queue.splice(0, n)
    this.queuedBytes -= bytes
    for (const s of segments) {
      this.recentSegmentBytes += (s.builder.payloadBytes + s.builder.count * INDEX_ENTRY_BYTES - this.recentSegmentBytes) / 4
      this.recentSegmentCount += (s.builder.count - this.recentSegmentCount) / 4
    }
    this.inflight.add(segments)
    void this.write(segments, bytes)
  }

  /** One flush in flight: at most `flushWorkers` run at once, as pump() starts one only below that. */
  private async write (segments: readonly PendingSegment[], bytes: number): Promise<void> {
    let error: unknown
    try {
      await this.commit(segments)
    } catch (err) {
      error = err
    }
    this.inflight.delete(segments)
    if (error instanceof CommitLater) {
      this.requeue(segments, bytes)
      return
    }
    this.heldBytes -= bytes
    for (const s of segments) {
      for (const w of s.waiters) {
        if (error === undefined) w.resolve(w.firstId)
        else w.reject(error)
      }
    }
    this.onCommitted()
    this.admitWaiters()
    if (this.queue.length > 0) this.schedule()
    this.checkIdle()
  }

  /** Put segments a commit did not write back in the queue, in ID order, to be flushed again. */
  private requeue (segments: readonly PendingSegment[], bytes: number): void {
    const first = segments[0]!.builder.firstId
    let at = 0
    while (at < this.queue.length && this.queue[at]!.builder.firstId < first) at++
    this.queue.splice(at, 0, ...segments)
    this.queuedBytes += bytes
    this.schedule()
  }

  /** Resolves once everything buffered, waiting or in flight has been committed or failed. */
  drain (): Promise<void> {
    if (this.isIdle()) return Promise.resolve()
    if (this.lingerTimer !== undefined) { clearTimeout(this.lingerTimer); this.lingerTimer = undefined; this.lingerDone = true; this.schedule() }
    return new Promise(resolve => this.idle.push(resolve))
  }

  private isIdle (): boolean {
    return this.queue.length === 0 && this.inflight.size === 0 && this.waiters.length === 0
  }

  private checkIdle (): void {
    if (!this.isIdle()) return
    const idle = this.idle
    this.idle = []
    for (const resolve of idle) resolve()
  }

  /** Reject everyone still waiting for space (used when the log closes). */
  rejectWaiters (err: EvaqError): void {
    for (const w of this.waiters.splice(0)) w.fail(err)
    this.checkIdle()
  }
}

function aborted (signal: AbortSignal): EvaqError {
  return new EvaqError('EVAQ_ABORTED', 'The push was aborted while waiting for buffer space', { cause: signal.reason })
}
