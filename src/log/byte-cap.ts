import { EvaqError } from '../errors.js'
import type { FullPolicy } from '../options.js'
import type { Admission, Log } from './log.js'
import { waitForRoom, type Waiter } from './space-waiters.js'

/**
 * The byte cap of one log (`retention.<log>.maxBytes`): live payload bytes plus those pushed and
 * not yet committed may not pass it. A push that would pass it waits, fails or drops the log's
 * oldest segments, per the log's policy (the same three as the disk budget), and then goes on to
 * the disk budget. Drops are counted and reported like every other drop.
 */
export class ByteCap implements Admission {
  private readonly waiters: Waiter[] = []
  private making: Promise<void> = Promise.resolve()

  constructor (
    private readonly log: () => Log,
    readonly maxBytes: number,
    readonly policy: FullPolicy,
    private readonly next: Admission
  ) {}

  private over (bytes: number): number {
    const log = this.log()
    return log.liveBytes + log.bufferedBytes + bytes - this.maxBytes
  }

  admit (log: Log, bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined {
    if (this.waiters.length === 0 && this.over(bytes) <= 0) return this.next.admit(log, bytes, signal)
    if (bytes > this.maxBytes || this.policy === 'reject') {
      const held = log.liveBytes + log.bufferedBytes
      throw new EvaqError('EVAQ_AT_CAPACITY', `${log.name} holds ${held} bytes; ${bytes} more would pass its maxBytes (${this.maxBytes})`)
    }
    if (this.policy === 'drop-oldest') {
      const made = this.making.then(() => this.dropFor(bytes))
      this.making = made.catch(() => {})
      return made.then(() => this.next.admit(log, bytes, signal))
    }
    return this.wait(bytes, signal).then(() => this.next.admit(log, bytes, signal))
  }

  /** Drop the oldest segments until `bytes` more fit (or nothing committed is left to drop). */
  private async dropFor (bytes: number): Promise<void> {
    const log = this.log()
    for (let over = this.over(bytes); over > 0 && log.liveBytes > 0; over = this.over(bytes)) {
      const dropped = await log.dropOldest(over)
      if (dropped.records === 0) return
    }
  }

  private wait (bytes: number, signal: AbortSignal | undefined): Promise<void> {
    return waitForRoom(this.waiters, bytes, signal, "room under the log's maxBytes")
  }

  /**
   * Admit waiting pushes that fit now, in order; with drop-oldest, enforce the cap on what is
   * stored (after the cap was lowered across a restart). Runs at every maintenance round and
   * after removals through the queue.
   */
  async recheck (): Promise<void> {
    if (this.policy === 'drop-oldest' && this.over(0) > 0) {
      const made = this.making.then(() => this.dropFor(0))
      this.making = made.catch(() => {})
      await made
    }
    // A released push enters the write buffer a few microtasks later: count it meanwhile.
    let released = 0
    while (this.waiters.length > 0 && this.over(this.waiters[0]!.bytes + released) <= 0) {
      const w = this.waiters.shift()!
      released += w.bytes
      w.resolve()
    }
  }

  /** Reject everyone waiting (used when the queue closes). */
  rejectAll (err: EvaqError): void {
    for (const w of this.waiters.splice(0)) w.reject(err)
  }
}
