import { EvaqError } from '../errors.js'

/** What the offloader needs of the disk budget (budget.ts). */
export interface OffloadBudget {
  readonly usedBytes: number
  readonly isFull: boolean
  /** Measure the directory again, then let in the pushes that now fit. */
  recheck (): Promise<void>
}

/** A log whose oldest sealed segment file can move to the tier (SegmentTable.offloadOldest). */
export interface Offloadable {
  offloadOldest (): Promise<number>
}

export interface OffloaderEvents {
  /** An offload failed; it is tried again after `retryInMs`. */
  failed (error: EvaqError, retryInMs: number): void
}

/** Offloading starts when the directory passes this share of `maxDiskBytes`… */
export const OFFLOAD_HIGH_WATER = 0.75
/** …and stops below this share, so that it runs in whole rounds, not one file per push. */
export const OFFLOAD_LOW_WATER = 0.6
/** Backoff between failed offloads: from the maintenance interval, doubling, up to this. */
export const OFFLOAD_MAX_BACKOFF_MS = 60_000

/**
 * Moves the oldest sealed segment files to the tier while the data directory is above its high
 * water mark (`onFull: 'offload'`, docs/tier.md), one file at a time, each freed only once the
 * bucket holds it verified (SegmentFiles.offload). Pushes that find no room meanwhile wait as
 * under `'backpressure'` and are let in as files go. When the bucket fails, the offloader retries
 * with a doubling backoff and reports each failure (the queue's `full` event carries the last
 * error while pushes wait); nothing local is freed until an upload is verified.
 */
export class Offloader {
  private running: Promise<void> | undefined
  private again = false
  private closed = false
  private timer: NodeJS.Timeout | undefined
  private wake: (() => void) | undefined
  /** The last failure, until an offload succeeds again. */
  lastError: EvaqError | undefined
  /** Files offloaded since the queue opened. */
  offloaded = 0

  constructor (
    private readonly budget: OffloadBudget,
    private readonly logs: () => readonly Offloadable[],
    private readonly maxDiskBytes: number,
    private readonly baseBackoffMs: number,
    private readonly events: OffloaderEvents
  ) {}

  get highWaterBytes (): number {
    return Math.floor(this.maxDiskBytes * OFFLOAD_HIGH_WATER)
  }

  get lowWaterBytes (): number {
    return Math.floor(this.maxDiskBytes * OFFLOAD_LOW_WATER)
  }

  /** Start a round if the directory is above the high water mark or pushes wait (nothing if one runs). */
  kick (): void {
    if (this.closed) return
    if (this.running !== undefined) { this.again = true; return }
    if (!this.budget.isFull && this.budget.usedBytes <= this.highWaterBytes) return
    this.running = this.run().finally(() => {
      this.running = undefined
      if (this.again && !this.closed) { this.again = false; this.kick() }
    })
  }

  /** The round under way, if any (tests, close). */
  get idle (): Promise<void> {
    return this.running ?? Promise.resolve()
  }

  private async run (): Promise<void> {
    let backoff = this.baseBackoffMs
    while (!this.closed) {
      if (!this.budget.isFull && this.budget.usedBytes <= this.lowWaterBytes) return
      let freed = 0
      try {
        for (const log of this.logs()) {
          freed = await log.offloadOldest()
          if (freed > 0) break
        }
      } catch (err) {
        const error = err instanceof EvaqError ? err : new EvaqError('EVAQ_IO', 'Offloading a segment file failed', { cause: err })
        this.lastError = error
        this.events.failed(error, backoff)
        await this.sleep(backoff)
        backoff = Math.min(OFFLOAD_MAX_BACKOFF_MS, backoff * 2)
        continue
      }
      this.lastError = undefined
      backoff = this.baseBackoffMs
      // Nothing can go (every sealed file is offloaded, or none is sealed yet): pushes wait as
      // under 'backpressure' until acks free room or a file is sealed.
      if (freed === 0) return
      this.offloaded++
      await this.budget.recheck()
    }
  }

  private async sleep (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      this.wake = resolve
      this.timer = setTimeout(resolve, ms)
      this.timer.unref()
    })
    this.wake = undefined
    this.timer = undefined
  }

  /** Stop: the round under way ends after the file it is on. */
  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.wake?.()
    await this.running?.catch(() => {})
  }
}
