/**
 * A clock the test moves by hand, for evaq's `clock: { now }` option: due times, backoff and
 * rates then depend on what the test sets, never on how long the machine took.
 */
export class ManualClock {
  /** The time `now()` answers, in ms since the epoch; the test sets or advances it. */
  t: number

  /** `start` defaults to a fixed moment (2023-11-14), so that the times a test sees are the same on every run. */
  constructor (start = 1_700_000_000_000) {
    this.t = start
  }

  /** An arrow, so that the queue may call it detached from the clock. */
  readonly now = (): number => this.t

  set (ms: number): void {
    this.t = ms
  }

  advance (ms: number): void {
    this.t += ms
  }
}
