import { createHash, randomBytes } from 'node:crypto'
import { EvaqError } from '../errors.js'

/**
 * Short-lived, single-use tickets that open one subscriber's stream without an `Authorization`
 * header: a browser's `EventSource` cannot send one. A client that holds the token asks for a
 * ticket (`POST /v1/stream-tickets`) and puts it in the stream's URL (`?ticket=`). A ticket opens
 * the stream of the log and subscriber it names, once, before it expires; a URL that leaks into a
 * log or a browser's history is then worth nothing.
 *
 * Tickets live in memory: a restart of the service voids them, as it ends the streams. They are
 * kept by the SHA-256 of their text, so the lookup's timing says nothing about a live ticket.
 */

/** How long a ticket is good for, in ms. */
export const TICKET_TTL_MS = 30_000
/** Tickets outstanding at most: past it, issuing one is 503 EVAQ_AT_CAPACITY until some expire or are used. */
export const MAX_TICKETS = 10_000

interface Entry {
  readonly log: string
  readonly subscriber: string
  readonly expiresAt: number
}

export interface StreamTicket {
  /** The ticket, 32 random bytes in base64url. */
  readonly ticket: string
  /** When it stops opening the stream, in ms since the epoch (of the service's clock). */
  readonly expiresAt: number
}

export class StreamTickets {
  private readonly entries = new Map<string, Entry>()

  /** @param now - the clock of expiry (injected by tests). */
  constructor (private readonly now: () => number, readonly ttlMs = TICKET_TTL_MS, private readonly max = MAX_TICKETS) {}

  /** A new ticket for the stream of `subscriber` of `log`. */
  issue (log: string, subscriber: string): StreamTicket {
    const now = this.now()
    if (this.entries.size >= this.max) this.prune(now)
    if (this.entries.size >= this.max) {
      throw new EvaqError('EVAQ_AT_CAPACITY', `${this.max} stream tickets are outstanding; use or let some expire (${this.ttlMs} ms) first`)
    }
    const ticket = randomBytes(32).toString('base64url')
    const expiresAt = now + this.ttlMs
    this.entries.set(digest(ticket), { log, subscriber, expiresAt })
    return { ticket, expiresAt }
  }

  /**
   * Use a ticket for the stream of `subscriber` of `log`: EVAQ_UNAUTHORIZED unless it was issued
   * for them, is unused and has not expired. A ticket is spent by any attempt, a refused one too,
   * so it cannot be tried against other streams.
   */
  redeem (ticket: string, log: string, subscriber: string): void {
    const k = digest(ticket)
    const entry = this.entries.get(k)
    this.entries.delete(k)
    if (entry === undefined) throw new EvaqError('EVAQ_UNAUTHORIZED', 'Unknown or used stream ticket (get one with POST /v1/stream-tickets)')
    if (entry.expiresAt <= this.now()) throw new EvaqError('EVAQ_UNAUTHORIZED', 'The stream ticket expired (get a new one with POST /v1/stream-tickets)')
    if (entry.log !== log || entry.subscriber !== subscriber) {
      throw new EvaqError('EVAQ_UNAUTHORIZED', 'The stream ticket is for another log or subscriber')
    }
  }

  /** Tickets outstanding (expired ones included until pruned). */
  get size (): number {
    return this.entries.size
  }

  private prune (now: number): void {
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k)
  }
}

function digest (ticket: string): string {
  return createHash('sha256').update(ticket, 'utf8').digest('base64')
}
