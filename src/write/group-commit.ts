import PQueue from 'p-queue'
import { EvaqError } from '../errors.js'

/**
 * The write buffer. Pushes get their IDs at once, in call order, and wait here until a flush
 * committed them. A flush takes what is buffered (up to `maxBatchBytes` / `maxBatchCount`, at
 * least one entry) and hands it to `commit`; up to `flushWorkers` flushes are in flight. While
 * they are, new pushes accumulate, so batches grow with load by themselves (group commit).
 */

export interface Entry {
  readonly firstId: number
  readonly payloads: readonly Buffer[]
  readonly extras: readonly (Buffer | undefined)[] | undefined
  readonly bytes: number
  resolve (): void
  reject (err: unknown): void
}

export interface GroupCommitOptions {
  maxBatchBytes: number
  maxBatchCount: number
  lingerMs: number
  flushWorkers: number
  maxBufferedBytes: number
}

export type CommitFn = (entries: readonly Entry[]) => Promise<void>

interface SpaceWaiter {
  bytes: number
  /** Admit the waiting push; it gets its IDs only now, so IDs follow admission order. */
  enter (): void
  fail (err: EvaqError): void
}

export class GroupCommit {
  private nextId: number
  private buffer: Entry[] = []
  private bufferedCount = 0
  private bufferedOnlyBytes = 0
  /** Bytes buffered or in flight: what `maxBufferedBytes` bounds. */
  private heldBytes = 0
  private readonly inflight = new Set<Entry[]>()
  private readonly workers: PQueue
  private readonly waiters: SpaceWaiter[] = []
  private scheduled = false
  private lingerTimer: NodeJS.Timeout | undefined
  private lingerStart = 0
  private idle: Array<() => void> = []

  constructor (
    private readonly options: GroupCommitOptions,
    nextId: number,
    private readonly commit: CommitFn,
    private readonly onCommitted: () => void,
  ) {
    this.nextId = nextId
    this.workers = new PQueue({ concurrency: options.flushWorkers })
  }

  /** The next ID this buffer will issue. */
  get next (): number {
    return this.nextId
  }

  /** Highest ID such that every ID at or below it was committed (or failed for good). */
  get watermark (): number {
    let low = this.buffer.length > 0 ? this.buffer[0]!.firstId : this.nextId
    for (const entries of this.inflight) {
      const first = entries[0]!.firstId
      if (first < low) low = first
    }
    return low - 1
  }

  /** Whether `id` was issued but its flush has not completed yet. */
  isPending (id: number): boolean {
    if (id >= this.nextId) return false
    if (this.buffer.length > 0 && id >= this.buffer[0]!.firstId) return true
    for (const entries of this.inflight) {
      const last = entries[entries.length - 1]!
      if (id >= entries[0]!.firstId && id < last.firstId + last.payloads.length) return true
    }
    return false
  }

  get pendingBytes (): number {
    return this.heldBytes
  }

  /**
   * Queue payloads; resolves with the first ID once all are committed. Waits for space when the
   * buffer is full; `signal` aborts that wait (nothing is written then).
   */
  push (payloads: readonly Buffer[], bytes: number, extras: readonly (Buffer | undefined)[] | undefined, signal: AbortSignal | undefined): Promise<number> {
    if (this.waiters.length > 0 || (this.heldBytes > 0 && this.heldBytes + bytes > this.options.maxBufferedBytes)) {
      return this.waitForSpace(bytes, signal, () => this.admit(payloads, bytes, extras))
    }
    return this.admit(payloads, bytes, extras)
  }

  private admit (payloads: readonly Buffer[], bytes: number, extras: readonly (Buffer | undefined)[] | undefined): Promise<number> {
    const firstId = this.nextId
    this.nextId += payloads.length
    this.heldBytes += bytes
    return new Promise<number>((resolve, reject) => {
      this.buffer.push({ firstId, payloads, extras, bytes, resolve: () => resolve(firstId), reject })
      this.bufferedCount += payloads.length
      this.bufferedOnlyBytes += bytes
      this.schedule()
    })
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
    // setImmediate lets every push made in this turn of the event loop join the same flush.
    setImmediate(() => {
      this.scheduled = false
      this.pump()
    })
  }

  private pump (): void {
    while (this.buffer.length > 0 && this.inflight.size < this.options.flushWorkers) {
      if (this.options.lingerMs > 0 && !this.full()) {
        const now = Date.now()
        if (this.lingerTimer === undefined) {
          this.lingerStart = now
          this.lingerTimer = setTimeout(() => { this.lingerTimer = undefined; this.lingerStart = -Infinity; this.pump() }, this.options.lingerMs)
          return
        }
        if (now - this.lingerStart < this.options.lingerMs) return
      }
      if (this.lingerTimer !== undefined) { clearTimeout(this.lingerTimer); this.lingerTimer = undefined }
      this.flushOne()
    }
  }

  private full (): boolean {
    return this.bufferedOnlyBytes >= this.options.maxBatchBytes || this.bufferedCount >= this.options.maxBatchCount
  }

  private flushOne (): void {
    let bytes = 0
    let count = 0
    let n = 0
    while (n < this.buffer.length) {
      const e = this.buffer[n]!
      if (n > 0 && (bytes + e.bytes > this.options.maxBatchBytes || count + e.payloads.length > this.options.maxBatchCount)) break
      bytes += e.bytes
      count += e.payloads.length
      n++
    }
    const entries = this.buffer.splice(0, n)
    this.bufferedOnlyBytes -= bytes
    this.bufferedCount -= count
    this.inflight.add(entries)
    void this.workers.add(async () => {
      let error: unknown
      try {
        await this.commit(entries)
      } catch (err) {
        error = err
      }
      this.inflight.delete(entries)
      this.heldBytes -= bytes
      for (const e of entries) {
        if (error === undefined) e.resolve()
        else e.reject(error)
      }
      this.onCommitted()
      this.admitWaiters()
      if (this.buffer.length > 0) this.schedule()
      this.checkIdle()
    })
  }

  /** Resolves once everything buffered, waiting or in flight has been committed or failed. */
  drain (): Promise<void> {
    if (this.isIdle()) return Promise.resolve()
    if (this.lingerTimer !== undefined) { clearTimeout(this.lingerTimer); this.lingerTimer = undefined; this.lingerStart = -Infinity; this.schedule() }
    return new Promise(resolve => this.idle.push(resolve))
  }

  private isIdle (): boolean {
    return this.buffer.length === 0 && this.inflight.size === 0 && this.waiters.length === 0
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
