/**
 * Fault injection for object storage tests: an HTTP proxy on 127.0.0.1 in front of an S3Server,
 * in the test's own process, with a fault the test switches on and off. Bodies are streamed both
 * ways (segment objects are up to 64 MiB), and the proxy counts requests by method so that a test
 * can tell how often the SDK really asked.
 *
 * Faults:
 * - `{ status, code }`: answer with an S3 XML error (the request body is read and dropped; nothing
 *   reaches the server).
 * - `{ delayMs }`: hold the request that long, then forward it (a slow or stuck server).
 * - `{ cutAfterBytes }`: forward, and once that many request-body bytes went through destroy both
 *   connections (a server dying mid-upload: s3rver keeps what it got). With `ack`, the client's
 *   connection is kept instead: the rest of its body is read and dropped and it gets a 200 with
 *   `ack.etag`, as a server (or a box in between) that took a truncated body for a whole one would.
 * - `{ stallEveryBytes, stallMs }`: forward, with both bodies (the upload's and the answer's) held
 *   for `stallMs` after every `stallEveryBytes` bytes (a slow link: it takes long, but moves).
 * - `{ flipByteAt }`: forward, with the request body's byte at that offset flipped (damage in
 *   transit, which s3rver does not notice: it checks no checksum).
 * `method` limits a fault to one HTTP method, `times` to the next so many requests it applies to.
 */
import { once } from 'node:events'
import { Transform } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer, request as forward, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ExecutionContext } from 'ava'
import type { S3Options } from '../../src/store/s3-bucket.js'
import type { S3Server } from './s3.js'

export type FaultKind =
  | { readonly status: 500 | 503 | 403, readonly code: 'InternalError' | 'SlowDown' | 'AccessDenied' }
  | { readonly delayMs: number }
  | { readonly cutAfterBytes: number, readonly ack?: { readonly etag: string } }
  | { readonly stallEveryBytes: number, readonly stallMs: number }
  | { readonly flipByteAt: number }

export type Fault = FaultKind & {
  /** Only requests with this method (e.g. 'PUT'); others pass untouched. */
  readonly method?: string
  /** Only the next so many requests the fault applies to; then it is switched off. */
  readonly times?: number
}

export class S3Proxy {
  /** Requests received, by method (`GET`, `PUT`, …), faulted ones included. */
  readonly requests: Record<string, number> = {}
  /** Request-body bytes passed on to the server so far (e.g. to kill it mid-upload). */
  bodyBytes = 0
  private current: Fault | undefined
  private applied = 0
  private readonly timers = new Set<NodeJS.Timeout>()

  private constructor (private readonly http: Server, readonly server: S3Server) {}

  /** Start a proxy in front of `server` for test `t` (closed when the test ends). */
  static async start (t: ExecutionContext, server: S3Server): Promise<S3Proxy> {
    const http = createServer()
    const proxy = new S3Proxy(http, server)
    http.on('request', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res))
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    t.teardown(() => proxy.close())
    return proxy
  }

  get endpoint (): string {
    return `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`
  }

  /** Like S3Server.options, with the endpoint pointing at the proxy. */
  options (prefix = '', more: Partial<S3Options> = {}): S3Options {
    return { ...this.server.options(prefix, more), endpoint: this.endpoint }
  }

  /** What the next matching requests meet; undefined: they pass untouched. */
  get fault (): Fault | undefined {
    return this.current
  }

  set fault (fault: Fault | undefined) {
    this.current = fault
    this.applied = 0
  }

  /** How many requests came in, of `method` or of all methods. */
  count (method?: string): number {
    if (method !== undefined) return this.requests[method] ?? 0
    return Object.values(this.requests).reduce((a, b) => a + b, 0)
  }

  async close (): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer)
    this.http.closeAllConnections()
    await new Promise<void>(resolve => this.http.close(() => resolve()))
  }

  /** The fault this request meets, counted against `times`. */
  private take (method: string): FaultKind | undefined {
    const fault = this.current
    if (fault === undefined || (fault.method !== undefined && fault.method !== method)) return undefined
    this.applied++
    if (fault.times !== undefined && this.applied >= fault.times) this.fault = undefined
    return fault
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET'
    this.requests[method] = (this.requests[method] ?? 0) + 1
    const fault = this.take(method)
    if (fault !== undefined && 'status' in fault) {
      req.resume()
      req.once('end', () => answerError(res, fault.status, fault.code))
    } else if (fault !== undefined && 'delayMs' in fault) {
      req.pause()
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        if (!res.destroyed) this.forward(req, res, undefined)
      }, fault.delayMs)
      this.timers.add(timer)
      res.once('close', () => { clearTimeout(timer); this.timers.delete(timer) })
    } else if (fault !== undefined && ('stallEveryBytes' in fault || 'flipByteAt' in fault)) {
      this.forward(req, res, undefined, fault)
    } else {
      this.forward(req, res, fault)
    }
  }

  /** Pass the request on to the server and its answer back, cutting the body where told. */
  private forward (req: IncomingMessage, res: ServerResponse, cut: { cutAfterBytes: number, ack?: { etag: string } } | undefined,
    change?: { stallEveryBytes: number, stallMs: number } | { flipByteAt: number }): void {
    const slow = change !== undefined && 'stallEveryBytes' in change ? change : undefined
    const flip = change !== undefined && 'flipByteAt' in change ? change.flipByteAt : undefined
    const up = forward({ host: '127.0.0.1', port: this.server.port, method: req.method, path: req.url, headers: req.headers })
    // A server that is gone (killed, or cut off by the fault) is a dead connection to the client too.
    up.on('error', () => { if (cut?.ack === undefined) res.destroy() })
    res.on('close', () => { if (!res.writableFinished) up.destroy() })
    up.on('response', upRes => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      const answer = slow === undefined ? upRes : upRes.pipe(stalling(slow))
      answer.pipe(res)
      upRes.on('error', () => res.destroy())
    })
    const body = slow === undefined ? req : req.pipe(stalling(slow))
    let sent = 0
    let done = false
    body.on('data', (chunk: Buffer) => {
      if (done) return
      if (flip !== undefined && flip >= sent && flip < sent + chunk.byteLength) {
        chunk = Buffer.from(chunk)
        chunk[flip - sent] = chunk[flip - sent]! ^ 0xff
      }
      if (cut !== undefined && sent + chunk.byteLength >= cut.cutAfterBytes) {
        done = true
        up.write(chunk.subarray(0, cut.cutAfterBytes - sent), () => {
          this.bodyBytes += cut.cutAfterBytes - sent
          up.destroy()
          if (cut.ack === undefined) {
            res.destroy()
            return
          }
          req.resume()
          if (req.readableEnded) acknowledge(res, cut.ack.etag)
          else req.once('end', () => acknowledge(res, cut.ack!.etag))
        })
        return
      }
      sent += chunk.byteLength
      this.bodyBytes += chunk.byteLength
      if (!up.write(chunk)) {
        body.pause()
        up.once('drain', () => body.resume())
      }
    })
    body.on('end', () => { if (!done) up.end() })
    req.on('error', () => up.destroy())
    body.resume()
  }
}

function answerError (res: ServerResponse, status: number, code: string): void {
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>Injected by the test proxy</Message><RequestId>s3-proxy</RequestId></Error>`
  res.writeHead(status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-amz-request-id': 's3-proxy',
  })
  res.end(body)
}

function acknowledge (res: ServerResponse, etag: string): void {
  if (res.destroyed) return
  res.writeHead(200, { etag: `"${etag}"`, 'content-length': 0, 'x-amz-request-id': 's3-proxy' })
  res.end()
}

/** A pass-through that waits `stallMs` after every `stallEveryBytes` bytes. */
function stalling ({ stallEveryBytes, stallMs }: { stallEveryBytes: number, stallMs: number }): Transform {
  let since = 0
  return new Transform({
    transform (chunk: Buffer, _enc, done) {
      void (async () => {
        for (let at = 0; at < chunk.byteLength;) {
          const n = Math.min(chunk.byteLength - at, stallEveryBytes - since)
          this.push(chunk.subarray(at, at + n))
          at += n
          since += n
          if (since === stallEveryBytes) {
            since = 0
            await sleep(stallMs)
          }
        }
      })().then(() => done(), done)
    },
  })
}
