import { EvaqError } from '../errors.js'
import type { DeadLetteredMessage } from './producer-types.js'

/** What became of one message: the broker acknowledged it, it went to the DLQ, or it left the WAL otherwise. */
export type Outcome = { kind: 'sent' } | { kind: 'dead', message: DeadLetteredMessage } | { kind: 'dropped' }

/** What a `send()` with `await: 'broker'` resolves with besides its IDs. */
export interface Settled {
  readonly deadLettered: DeadLetteredMessage[]
  readonly dropped: number[]
}

/** One `send()` waiting for the outcome of each of its messages. */
interface Waiter extends Settled {
  remaining: number
  resolve (): void
  reject (err: unknown): void
}

/**
 * The outcome of each message a `send()` with `await: 'broker'` waits for. The drainer can send a
 * message before its `send()` got the WAL IDs back from the push: while sends are registering,
 * outcomes of IDs nobody waits for yet are kept until they do.
 */
export class Outcomes {
  private readonly waiters = new Map<number, Waiter>()
  /** Sends registering their waiters; outcomes that arrive before are kept until they do. */
  private registering = 0
  private readonly early = new Map<number, Outcome>()

  /** A send begins pushing messages whose outcomes it will wait for: call `wait()` or `abandon()` next. */
  expect (): void {
    this.registering++
  }

  /** The push of an `expect()`ed send failed: it waits for nothing. */
  abandon (): void {
    this.doneRegistering()
  }

  /**
   * Wait for the outcome of every ID (after `expect()`): resolves once each was sent, moved to the
   * DLQ or dropped, and rejects with `rejectAll()`'s error.
   */
  wait (ids: readonly number[]): Promise<Settled> {
    const deadLettered: DeadLetteredMessage[] = []
    const dropped: number[] = []
    const done = new Promise<Settled>((resolve, reject) => {
      const waiter: Waiter = { remaining: ids.length, deadLettered, dropped, resolve: () => resolve({ deadLettered, dropped }), reject }
      for (const id of ids) {
        const outcome = this.early.get(id)
        if (outcome === undefined) { this.waiters.set(id, waiter); continue }
        this.early.delete(id)
        apply(waiter, id, outcome)
      }
      if (waiter.remaining === 0) waiter.resolve()
    })
    this.doneRegistering()
    return done
  }

  /** Report what became of the message `id`. */
  settle (id: number, outcome: Outcome): void {
    const waiter = this.waiters.get(id)
    if (waiter !== undefined) {
      this.waiters.delete(id)
      apply(waiter, id, outcome)
      if (waiter.remaining === 0) waiter.resolve()
    } else if (this.registering > 0) {
      this.early.set(id, outcome)
    }
  }

  /** The WAL dropped `firstId..lastId` (retention, a full disk): awaited messages among them are settled as dropped. */
  dropRange (firstId: number, lastId: number): void {
    for (const id of [...this.waiters.keys()]) {
      if (id >= firstId && id <= lastId) this.settle(id, { kind: 'dropped' })
    }
  }

  /** The producer stops: every waiting `send()` rejects with EVAQ_CLOSED (its messages stay in the WAL). */
  rejectAll (): void {
    const waiters = new Set(this.waiters.values())
    this.waiters.clear()
    const err = new EvaqError('EVAQ_CLOSED', 'The producer stopped before the broker acknowledged every message; the rest is in the WAL')
    for (const w of waiters) w.reject(err)
  }

  private doneRegistering (): void {
    if (--this.registering === 0) this.early.clear()
  }
}

function apply (waiter: Waiter, id: number, outcome: Outcome): void {
  waiter.remaining--
  if (outcome.kind === 'dead') waiter.deadLettered.push(outcome.message)
  else if (outcome.kind === 'dropped') waiter.dropped.push(id)
}
