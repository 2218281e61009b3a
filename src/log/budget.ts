import { readdir, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError } from '../errors.js'
import type { FullPolicy } from '../options.js'
import type { Admission, Log } from './log.js'
import { waitForRoom, type Waiter } from './space-waiters.js'

export interface BudgetOptions {
  readonly maxDiskBytes: number | undefined
  readonly minFreeDiskBytes: number
  readonly onFull: FullPolicy
}

export interface FullEvent {
  /** Which bound was hit. */
  readonly reason: 'maxDiskBytes' | 'minFreeDiskBytes'
  /** Bytes the data directory occupies (measured, plus what was written since). */
  readonly usedBytes: number
  /** Bytes free on the filesystem (measured, less what was written since). */
  readonly freeBytes: number
}


/**
 * The disk budget of one data directory. Usage is what the directory really occupies (the sum of
 * its files, measured every maintenance tick and after compactions) plus the payload bytes
 * admitted since the last measurement, so a burst between two measurements cannot run past the
 * bound by more than one batch. LevelDB frees the space of deleted records only when it compacts
 * them, which evaq asks for as soon as the budget is short.
 */
export class DiskBudget implements Admission {
  private measuredBytes = 0
  private _freeBytes = Infinity
  private admittedSince = 0
  private full: FullEvent | undefined
  private readonly waiters: Waiter[] = []
  private measuring: Promise<void> | undefined
  private making: Promise<void> = Promise.resolve()

  constructor (
    private readonly dir: string,
    private readonly options: BudgetOptions,
    private readonly logs: () => readonly Log[],
    private readonly events: { full (e: FullEvent): void, drain (): void },
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
    const shortage = this.shortage(bytes) ?? this.describe('maxDiskBytes')
    this.setFull(shortage)
    switch (this.options.onFull) {
      case 'reject':
        throw new EvaqError('EVAQ_AT_CAPACITY', `The data directory is at its budget (${shortage.reason}: ${shortage.usedBytes} bytes used, ${shortage.freeBytes} free)`)
      case 'drop-oldest': {
        const made = this.making.then(() => this.makeRoom(log, bytes))
        this.making = made.catch(() => {})
        return made
      }
      default:
        return this.wait(bytes, signal)
    }
  }

  /** Which bound `bytes` more would cross, if any. */
  private shortage (bytes: number): FullEvent | undefined {
    const { maxDiskBytes, minFreeDiskBytes } = this.options
    if (maxDiskBytes !== undefined && this.usedBytes + bytes > maxDiskBytes) return this.describe('maxDiskBytes')
    if (minFreeDiskBytes > 0 && this._freeBytes - this.admittedSince - bytes < minFreeDiskBytes) return this.describe('minFreeDiskBytes')
    return undefined
  }

  private describe (reason: FullEvent['reason']): FullEvent {
    return { reason, usedBytes: this.usedBytes, freeBytes: Math.max(0, this._freeBytes - this.admittedSince) }
  }

  private setFull (event: FullEvent): void {
    if (this.full !== undefined) return
    this.full = event
    this.events.full(event)
  }

  private wait (bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const waiting = waitForRoom(this.waiters, bytes, signal, 'disk space')
    if (!signal?.aborted) void this.tick()
    return waiting
  }

  /** Drop the oldest segments of `log` until `bytes` fit (compacting so the disk really frees). */
  private async makeRoom (log: Log, bytes: number): Promise<void> {
    for (;;) {
      const shortage = this.shortage(bytes)
      if (shortage === undefined) { this.admittedSince += bytes; this.maybeDrained(); return }
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
   * Measure the directory and the filesystem, then admit what now fits. While the budget is short
   * it first compacts what was deleted, so that LevelDB gives the space back.
   */
  tick (): Promise<void> {
    if (!this.limited) return Promise.resolve()
    this.measuring ??= (async () => {
      try {
        if (this.full !== undefined) for (const log of this.logs()) await log.compact()
        await this.measure()
        while (this.waiters.length > 0 && this.shortage(this.waiters[0]!.bytes) === undefined) {
          const w = this.waiters.shift()!
          this.admittedSince += w.bytes
          w.resolve()
        }
        this.maybeDrained()
      } finally {
        this.measuring = undefined
      }
    })()
    return this.measuring
  }

  private maybeDrained (): void {
    if (this.full !== undefined && this.waiters.length === 0 && this.shortage(0) === undefined) {
      this.full = undefined
      this.events.drain()
    }
  }

  /**
   * Measure the filesystem's free space and, under `maxDiskBytes`, the directory's size: the
   * free-space floor alone needs only `statfs`, not a `stat` of every table file.
   */
  async measure (): Promise<void> {
    const admitted = this.admittedSince
    const [used, free] = await Promise.all([
      this.options.maxDiskBytes === undefined ? undefined : directoryBytes(this.dir),
      freeBytes(this.dir),
    ])
    if (used !== undefined) this.measuredBytes = used
    this._freeBytes = free
    // What was admitted while measuring may or may not be in the measurement: count it.
    this.admittedSince -= admitted
  }

  /** Reject everyone waiting (used when the queue closes). */
  rejectAll (err: EvaqError): void {
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

async function directoryBytes (dir: string): Promise<number> {
  const files = (await readdir(dir, { withFileTypes: true })).filter(entry => entry.isFile())
  // One stat per file, all at once (libuv's pool runs them in parallel): a large queue has
  // hundreds of table files.
  const sizes = await Promise.all(files.map(entry => stat(join(dir, entry.name)).then(s => s.size, () => 0)))
  // (A file LevelDB deleted while we looked occupies nothing: its size counts as 0.)
  return sizes.reduce((a, b) => a + b, 0)
}

async function freeBytes (dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

