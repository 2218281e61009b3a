import { readdir, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError } from '../errors.js'
import { FILE_LOGS, SEGMENTS_DIR } from '../schema.js'
import type { FullPolicy } from '../options.js'
import type { Admission, Log } from './log.js'
import type { Offloader } from './offloader.js'
import { waitForRoom, type Waiter } from './space-waiters.js'

export interface BudgetOptions {
  readonly maxDiskBytes: number | undefined
  readonly minFreeDiskBytes: number
  readonly onFull: FullPolicy
  /** How often a push waiting for space re-measures the filesystem, in ms. */
  readonly maintenanceIntervalMs: number
}

export interface FullEvent {
  /** Which bound was hit. */
  readonly reason: 'maxDiskBytes' | 'minFreeDiskBytes'
  /** Bytes the data directory occupies (measured, plus what was written since). */
  readonly usedBytes: number
  /** Bytes free on the filesystem (measured, less what was written since). */
  readonly freeBytes: number
  /**
   * Under `onFull: 'offload'`, when offloading to the tier fails: its last error. Pushes wait
   * (as under 'backpressure') until the bucket takes files again or acks free room.
   */
  readonly tier?: { readonly code: string, readonly message: string }
}

/**
 * The disk budget of one data directory. Usage is what the directory really occupies (the sum of
 * its files, measured every maintenance tick and after compactions) plus the payload bytes
 * admitted since the last measurement, so a burst between two measurements cannot run past the
 * bound by more than one batch. LevelDB frees the space of deleted records only when it compacts
 * them, which evaq asks for as soon as the budget is short.
 *
 * While a push waits, the budget re-measures every `maintenanceIntervalMs` on a timer of its own,
 * so that space freed outside evaq (another file deleted) lets waiting pushes in within one
 * interval, however long the other upkeep of that round (retention, compactions) takes. The budget
 * stays full (`isFull`, and no `drain` event) until the smallest push it refused or held back
 * would fit again, not merely until a zero-byte push would.
 */
export class DiskBudget implements Admission {
  private measuredBytes = 0
  private _freeBytes = Infinity
  private admittedSince = 0
  private full: FullEvent | undefined
  /** The smallest push refused or held back since the budget became full. */
  private needed = 0
  private readonly waiters: Waiter[] = []
  private ticking: Promise<void> | undefined
  private refreshing: Promise<void> | undefined
  /** The last measurement: measurements run one at a time (each subtracts what was admitted before it). */
  private measured: Promise<void> = Promise.resolve()
  /** Re-measures while pushes wait. */
  private timer: NodeJS.Timeout | undefined
  private making: Promise<void> = Promise.resolve()
  /** Under `onFull: 'offload'`: moves sealed segment files to the tier (offloader.ts). */
  offloader: Offloader | undefined

  constructor (
    private readonly dir: string,
    private readonly options: BudgetOptions,
    private readonly logs: () => readonly Log[],
    private readonly events: { full (e: FullEvent): void, drain (): void }
  ) {}

  get limited (): boolean {
    return this.options.maxDiskBytes !== undefined || this.options.minFreeDiskBytes > 0
  }

  /** Bytes the directory occupies, as last measured plus what was admitted since (under `maxDiskBytes`). */
  get usedBytes (): number {
    return this.measuredBytes + this.admittedSince
  }

  /** Bytes the directory occupies: the budget's running figure under `maxDiskBytes`, else measured now. */
  async currentUsedBytes (): Promise<number> {
    return this.options.maxDiskBytes === undefined ? directoryBytes(this.dir) : this.usedBytes
  }

  /** Bytes free on the filesystem, as last measured less what was admitted since. */
  get freeBytes (): number {
    return this._freeBytes - this.admittedSince
  }

  get isFull (): boolean {
    return this.full !== undefined
  }

  admit (log: Log, bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined {
    if (!this.limited) return undefined
    if (this.waiters.length === 0 && this.shortage(bytes) === undefined) {
      this.admittedSince += bytes
      return undefined
    }
    const shortage = this.shortage(bytes) ?? this.describe(this.options.maxDiskBytes === undefined ? 'minFreeDiskBytes' : 'maxDiskBytes')
    this.setFull(shortage, bytes)
    switch (this.options.onFull) {
      case 'reject': {
        const { reason, usedBytes, freeBytes } = shortage
        throw new EvaqError('EVAQ_AT_CAPACITY', `The data directory is at its budget (${reason}: ${usedBytes} bytes used, ${freeBytes} free)`)
      }
      case 'drop-oldest': {
        const made = this.making.then(() => this.makeRoom(log, bytes))
        this.making = made.catch(() => {})
        return made
      }
      case 'offload': {
        const waiting = this.wait(bytes, signal)
        this.offloader?.kick()
        return waiting
      }
      default:
        return this.wait(bytes, signal)
    }
  }

  /** Which bound `bytes` more would cross, if any. */
  private shortage (bytes: number): FullEvent | undefined {
    const { maxDiskBytes, minFreeDiskBytes } = this.options
    if (maxDiskBytes !== undefined && this.usedBytes + bytes > this.wall(maxDiskBytes)) return this.describe('maxDiskBytes')
    if (minFreeDiskBytes > 0 && this._freeBytes - this.admittedSince - bytes < minFreeDiskBytes) return this.describe('minFreeDiskBytes')
    return undefined
  }

  /**
   * Where pushes stop under `maxDiskBytes`. Admissions count payload bytes, and what a record
   * adds besides (its frame's header, its index entry) shows only at the next measurement: under
   * 'offload', which runs at the wall for as long as the bucket is slower than the pushes, the
   * wall stands 1/32 below the budget so that the directory itself stays within it.
   */
  private wall (maxDiskBytes: number): number {
    return this.options.onFull === 'offload' ? maxDiskBytes - Math.floor(maxDiskBytes / 32) : maxDiskBytes
  }

  private describe (reason: FullEvent['reason']): FullEvent {
    const failed = this.offloader?.lastError
    return {
      reason,
      usedBytes: this.usedBytes,
      freeBytes: Math.max(0, this._freeBytes - this.admittedSince),
      ...(failed === undefined ? {} : { tier: { code: failed.code, message: failed.message } }),
    }
  }

  /**
   * Offloading failed (offloader.ts): while pushes wait, say so again with the tier's error, so
   * that a `full` event tells why the queue holds pushes back although it offloads.
   */
  tierFailed (): void {
    if (this.full === undefined) return
    this.full = this.describe(this.full.reason)
    this.events.full(this.full)
  }

  /** Measure, then let in the waiting pushes that fit (the offloader, after each file). */
  recheck (): Promise<void> {
    return this.refresh()
  }

  private setFull (event: FullEvent, bytes: number): void {
    if (this.full !== undefined) {
      this.needed = Math.min(this.needed, bytes)
      return
    }
    this.full = event
    this.needed = bytes
    this.events.full(event)
  }

  private wait (bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const waiting = waitForRoom(this.waiters, bytes, signal, 'disk space')
    if (signal?.aborted === true) return waiting
    if (this.timer === undefined) {
      this.timer = setInterval(() => { void this.refresh().catch(() => {}) }, this.options.maintenanceIntervalMs)
      this.timer.unref()
    }
    void this.tick().catch(() => {})
    return waiting
  }

  /** Drop the oldest segments of `log` until `bytes` fit (compacting so the disk really frees). */
  private async makeRoom (log: Log, bytes: number): Promise<void> {
    for (;;) {
      const shortage = this.shortage(bytes)
      if (shortage === undefined) { this.maybeDrained(); this.admittedSince += bytes; return }
      const over = shortage.reason === 'maxDiskBytes'
        ? this.usedBytes + bytes - this.options.maxDiskBytes!
        : this.options.minFreeDiskBytes - (this._freeBytes - this.admittedSince - bytes)
      const dropped = await log.dropOldest(Math.max(over, bytes))
      if (dropped.records === 0 && log.liveBytes === 0) {
        throw new EvaqError('EVAQ_AT_CAPACITY', `Nothing is left to drop in ${log.name} and the data directory is still over its budget (${shortage.reason})`)
      }
      await log.compact()
      await this.measure()
    }
  }

  /**
   * Measure the directory and the filesystem, then admit what now fits. While the budget is still
   * short it then compacts what was deleted, so that LevelDB gives the space back, and measures
   * again.
   */
  tick (): Promise<void> {
    if (!this.limited) return Promise.resolve()
    this.ticking ??= (async () => {
      try {
        await this.refresh()
        if (this.full === undefined) return
        for (const log of this.logs()) await log.compact()
        await this.refresh()
      } finally {
        this.ticking = undefined
      }
    })()
    return this.ticking
  }

  /** Measure, then admit the waiting pushes that fit, in order. Never waits for a compaction. */
  private refresh (): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        await this.measure()
        while (this.waiters.length > 0 && this.shortage(this.waiters[0]!.bytes) === undefined) {
          const w = this.waiters.shift()!
          this.admittedSince += w.bytes
          w.resolve()
        }
        this.maybeDrained()
      } finally {
        if (this.waiters.length === 0) this.stopTimer()
        this.refreshing = undefined
      }
    })()
    return this.refreshing
  }

  private stopTimer (): void {
    if (this.timer === undefined) return
    clearInterval(this.timer)
    this.timer = undefined
  }

  private maybeDrained (): void {
    if (this.full !== undefined && this.waiters.length === 0 && this.shortage(this.needed) === undefined) {
      this.full = undefined
      this.needed = 0
      this.events.drain()
    }
  }

  /**
   * Measure the filesystem's free space and, under `maxDiskBytes`, the directory's size: the
   * free-space floor alone needs only `statfs`, not a `stat` of every table file.
   */
  measure (): Promise<void> {
    const run = this.measured.then(() => this.measureOnce())
    this.measured = run.catch(() => {})
    return run
  }

  private async measureOnce (): Promise<void> {
    const admitted = this.admittedSince
    // Admitted and still in the write buffers: not on disk yet, so not in the measurement.
    const buffered = this.logs().reduce((n, log) => n + log.bufferedBytes, 0)
    const [used, free] = await Promise.all([
      this.options.maxDiskBytes === undefined ? undefined : directoryBytes(this.dir),
      freeBytes(this.dir),
    ])
    if (used !== undefined) this.measuredBytes = used
    this._freeBytes = free
    // What was admitted while measuring may or may not be in the measurement: count it. So are
    // the bytes that were buffered when it started (counted twice if written meanwhile: the
    // budget errs on the full side).
    this.admittedSince = this.admittedSince - admitted + buffered
    this.offloader?.kick()
  }

  /** Reject everyone waiting (used when the queue closes). */
  rejectAll (err: EvaqError): void {
    this.stopTimer()
    for (const w of this.waiters.splice(0)) w.reject(err)
  }
}

/** Bytes in LevelDB's write-ahead log files: opening the database turns them into a table. */
export async function levelLogBytes (dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir)) {
    if (!entry.endsWith('.log')) continue
    try { total += (await stat(join(dir, entry))).size } catch { /* rotated away meanwhile */ }
  }
  return total
}

/** Bytes of the files in `dir`, and in the segment files' directories below it. */
async function directoryBytes (dir: string): Promise<number> {
  const files = (await readdir(dir, { withFileTypes: true })).filter(entry => entry.isFile()).map(entry => join(dir, entry.name))
  for (const log of FILE_LOGS) {
    const sub = join(dir, SEGMENTS_DIR, log)
    const names = await readdir(sub).catch(() => [] as string[])
    files.push(...names.map(name => join(sub, name)))
  }
  // One stat per file, all at once (libuv's pool runs them in parallel): a large queue has
  // hundreds of table files.
  const sizes = await Promise.all(files.map(path => stat(path).then(s => s.size, () => 0)))
  // (A file LevelDB deleted while we looked occupies nothing: its size counts as 0.)
  return sizes.reduce((a, b) => a + b, 0)
}

async function freeBytes (dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}
