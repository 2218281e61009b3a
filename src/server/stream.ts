import type { ServerResponse } from 'node:http'
import { errorReply } from './http-errors.js'
import { READ_DEFAULTS, READ_LIMITS } from './params.js'
import type { QueueService } from './queue-service.js'
import { recordJson } from './record-json.js'

/**
 * The change stream of one subscriber, as Server-Sent Events: it leases records with the same
 * `next` the `POST …/next` route uses, in a loop, and writes each as an event. Acks go over the
 * `POST …/ack` route, as for `next`; a record not acked within the subscriber's lease is
 * delivered again, to this stream or any other client of the subscriber.
 *
 * Flow control, so that a slow or stalled client cannot make the service lease without bound:
 * - no lease while the socket's buffer is over its high-water mark (`write()` returned false):
 *   the next lease waits for `drain`;
 * - at most `maxInFlight` records leased by this stream and neither acked, nacked nor past their
 *   lease; the stream waits for acks (or lease ends) before it leases more.
 *
 * The stream ends when the client goes away or the service stops. Records leased but not written
 * then are not given back early: like any unacked record they come back after the lease.
 */

export const STREAM_DEFAULTS = Object.freeze({
  /** Records leased by one stream and not yet acked, nacked or expired, at most. */
  maxInFlight: 1000,
  /** A comment line this often keeps proxies and load balancers from closing an idle stream. */
  heartbeatMs: 15_000,
})

export const STREAM_LIMITS = Object.freeze({
  maxInFlight: READ_LIMITS.maxCount,
  heartbeatMs: { min: 100, max: 300_000 },
})

export interface StreamOptions {
  readonly maxInFlight: number
  readonly heartbeatMs: number
}

/** Response headers of a stream: no caching, no buffering by proxies (nginx reads `X-Accel-Buffering`). */
export const STREAM_HEADERS = Object.freeze({
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
})

/** The leases this stream holds: record ID → when the lease ends (the queue's clock). */
class Leases {
  private readonly until = new Map<number, number>()

  add (id: number, expiresAt: number): void {
    // A redelivery to this stream renews the entry (a Map keeps the first insertion's place).
    this.until.delete(id)
    this.until.set(id, expiresAt)
  }

  settle (ids: readonly number[]): void {
    for (const id of ids) this.until.delete(id)
  }

  /** Leases still running at `now` (ended ones are dropped: their records are due again). */
  count (now: number): number {
    for (const [id, end] of this.until) if (end <= now) this.until.delete(id)
    return this.until.size
  }

  /** When the first running lease ends, or Infinity. */
  firstEnd (): number {
    let first = Infinity
    for (const end of this.until.values()) first = Math.min(first, end)
    return first
  }
}

/** One SSE event of a record: `id:` its ID, `data:` its JSON (the payload in base64). */
export function recordEvent (record: Parameters<typeof recordJson>[0]): string {
  return `id: ${record.id}\ndata: ${JSON.stringify(recordJson(record))}\n\n`
}

/**
 * Run the stream of `subscriber` of `log` on `res` (headers not sent yet) until the client goes
 * away or the service stops; resolves once it ended and let go of every timer and listener.
 */
export async function runStream (service: QueueService, log: string, subscriber: string, res: ServerResponse, options: StreamOptions): Promise<void> {
  const gone = new AbortController()
  const onClose = (): void => { gone.abort() }
  res.once('close', onClose)
  const ended = AbortSignal.any([gone.signal, service.stopSignal])
  const leases = new Leases()
  let wake: (() => void) | undefined
  const offSettled = service.onSettled(log, subscriber, ids => { leases.settle(ids); wake?.() })
  const heartbeat = setInterval(() => { if (!res.destroyed && !res.writableNeedDrain) res.write(': keep-alive\n\n') }, options.heartbeatMs)
  const clock = service.evaq.options.clock
  res.writeHead(200, STREAM_HEADERS)
  // A first comment sends the headers now: the client sees the stream open before any record.
  res.write(`: evaq stream of ${log} for ${subscriber}\n\n`)
  /** Wait for `event` of `res`, a wake-up, `ms` or the end of the stream, whichever comes first. */
  const pause = (event: 'drain' | 'settled', ms: number): Promise<void> => new Promise(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      res.off('drain', done)
      ended.removeEventListener('abort', done)
      wake = undefined
      resolve()
    }
    const timer = setTimeout(done, Math.max(1, ms))
    if (event === 'drain') res.once('drain', done)
    else wake = done
    ended.addEventListener('abort', done, { once: true })
    if (ended.aborted) done()
  })
  let end: { code: string, message: string } | undefined
  try {
    while (!ended.aborted) {
      if (res.writableNeedDrain) {
        await pause('drain', options.heartbeatMs)
        continue
      }
      const room = options.maxInFlight - leases.count(clock.now())
      if (room <= 0) {
        // Acks (through the service) wake it; otherwise the first lease to end frees room.
        await pause('settled', Math.min(options.heartbeatMs, leases.firstEnd() - clock.now()))
        continue
      }
      let records
      let leaseMs
      try {
        leaseMs = await service.leaseMs(log, subscriber)
        records = await service.next(log, subscriber, {
          maxCount: Math.min(room, READ_DEFAULTS.maxCount),
          maxBytes: READ_DEFAULTS.maxBytes,
          waitMs: READ_LIMITS.waitMs,
          signal: gone.signal,
        })
      } catch (err) {
        if (!ended.aborted) end = errorReply(err).body
        break
      }
      // Gone while the lease ran: what was leased comes back after the lease, like any unacked record.
      if (ended.aborted || records.length === 0) continue
      const expiresAt = clock.now() + leaseMs
      let text = ''
      for (const r of records) {
        leases.add(r.id, expiresAt)
        text += recordEvent(r)
      }
      res.write(text)
    }
    if (end === undefined && service.stopSignal.aborted && !gone.signal.aborted) end = { code: 'EVAQ_CLOSED', message: 'The service is shutting down' }
  } finally {
    clearInterval(heartbeat)
    offSettled()
    res.off('close', onClose)
    if (!gone.signal.aborted) {
      // An `end` event says why the service ended the stream; a client that goes away gets none.
      res.end(end === undefined ? undefined : `event: end\ndata: ${JSON.stringify({ code: end.code, message: end.message })}\n\n`)
    }
  }
}
