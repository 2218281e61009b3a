/**
 * A plain Server-Sent Events client over node:http for the stream tests: it parses events and
 * comments as they arrive, and hands them out one at a time (or answers the JSON error of a
 * stream that did not open).
 */
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'

export interface SseEvent {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

export interface SseStream {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  /** The JSON body of an answer that is not a stream (an error). */
  readonly json: any
  /** Every event so far, in order. */
  readonly events: SseEvent[]
  /** Every comment line so far (heartbeats), without the colon. */
  readonly comments: string[]
  /** Resolves when the response ended or the connection closed. */
  readonly ended: Promise<void>
  readonly res: IncomingMessage
  /** The next event not handed out yet; rejects after `timeoutMs`. */
  next (timeoutMs?: number): Promise<SseEvent>
  /** `n` more events. */
  take (n: number, timeoutMs?: number): Promise<SseEvent[]>
  /** Close the connection (the client goes away). */
  close (): void
}

/** Open `path` of the service at `url` as a stream. */
export function openStream (url: string, path: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method: 'GET', headers: { accept: 'text/event-stream', ...headers }, agent: false }, res => {
      const events: SseEvent[] = []
      const comments: string[] = []
      let handed = 0
      let waiter: (() => void) | undefined
      let buffer = ''
      let text = ''
      const ended = new Promise<void>(resolve => {
        res.once('end', resolve)
        res.once('close', resolve)
        res.once('error', () => resolve())
      })
      const sse = String(res.headers['content-type']).startsWith('text/event-stream')
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        if (!sse) { text += chunk; return }
        buffer += chunk
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let id: string | undefined
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim())
            else if (line.startsWith('id: ')) id = line.slice(4)
            else if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length > 0) events.push({ id, event, data: data.join('\n') })
        }
        waiter?.()
      })
      void ended.then(() => waiter?.())
      const next = async (timeoutMs = 10_000): Promise<SseEvent> => {
        const deadline = Date.now() + timeoutMs
        while (handed >= events.length) {
          if (res.destroyed || res.complete) throw new Error(`the stream ended after ${events.length} event(s)`)
          const left = deadline - Date.now()
          if (left <= 0) throw new Error(`no event within ${timeoutMs} ms (${events.length} so far)`)
          await new Promise<void>(resolve => {
            const timer = setTimeout(() => { waiter = undefined; resolve() }, left)
            waiter = () => { clearTimeout(timer); waiter = undefined; resolve() }
          })
        }
        return events[handed++]!
      }
      if (!sse) {
        res.on('end', () => {
          let json: unknown
          try { json = JSON.parse(text) } catch {}
          resolve({ status: res.statusCode!, headers: res.headers, json, events, comments, ended, res, next, take: async () => [], close: () => req.destroy() })
        })
        return
      }
      resolve({
        status: res.statusCode!,
        headers: res.headers,
        json: undefined,
        events,
        comments,
        ended,
        res,
        next,
        take: async (n, timeoutMs) => {
          const out: SseEvent[] = []
          for (let i = 0; i < n; i++) out.push(await next(timeoutMs))
          return out
        },
        close: () => req.destroy(),
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** The record of an event. */
export function eventRecord (e: SseEvent): { id: number, payload: string, pushedAt: number, deliveryCount: number } {
  return JSON.parse(e.data)
}
