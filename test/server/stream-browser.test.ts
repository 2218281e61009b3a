/**
 * The change stream in a real browser: headless Chromium's `EventSource`, which cannot send an
 * Authorization header, opens the stream of a service with a token through a ticket, receives
 * records pushed before and after it opened, acks them with `fetch`; without a ticket, with a
 * spent one, or from a page of another origin, it gets nothing and nothing is leased.
 */
import anyTest, { type ExecutionContext } from 'ava'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Page } from 'playwright-core'
import { send } from '../fixtures/http.js'
import { newPage, startService, useBrowser } from '../helpers/browser.js'
import type { Service } from '../../src/server/serve.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const TOKEN = 'browser-token'
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
const browser = useBrowser(test)

async function prepare (t: ExecutionContext): Promise<Service> {
  const service = await startService(t, { token: TOKEN })
  t.is((await send(service.url, 'PUT', '/v1/logs/wal/subscribers/web', { headers: AUTH, body: '{"start":"earliest"}' })).status, 201)
  return service
}

async function push (service: Service, ...texts: string[]): Promise<void> {
  const body = JSON.stringify(texts.map(s => Buffer.from(s).toString('base64')))
  if ((await send(service.url, 'POST', '/v1/logs/wal/records', { headers: AUTH, body })).status !== 201) throw new Error('push failed')
}

async function inFlight (service: Service): Promise<number> {
  return (await service.evaq.wal.stats()).subscribers.find(s => s.name === 'web')!.inFlight
}

/** In the page: open an EventSource on `url`, keep its messages in `window.received`, its state in `window.state`. */
async function openEventSource (page: Page, url: string): Promise<void> {
  await page.evaluate(u => {
    // The browser's EventSource (the tests' TypeScript has no DOM types).
    interface Source {
      readyState: number
      onopen: () => void
      onmessage: (e: { lastEventId: string, data: string }) => void
      onerror: () => void
    }
    type Page = { received: Array<{ id: string, data: string }>, state: string, source: Source, EventSource: new (url: string) => Source }
    const w = globalThis as unknown as Page
    w.received = []
    w.state = 'connecting'
    const source = new w.EventSource(u)
    w.source = source
    source.onopen = () => { w.state = 'open' }
    source.onmessage = e => { w.received.push({ id: e.lastEventId, data: e.data }) }
    source.onerror = () => {
      // A refused stream (a 4xx, or another origin's answer without CORS) is not retried: CLOSED.
      if (source.readyState === 2) w.state = 'failed' // CLOSED
    }
  }, url)
}

async function received (page: Page, n: number): Promise<Array<{ id: string, data: string }>> {
  return page.evaluate(async count => {
    const w = globalThis as unknown as { received: Array<{ id: string, data: string }> }
    while (w.received.length < count) await new Promise(resolve => setTimeout(resolve, 20))
    return w.received.slice()
  }, n)
}

async function stateAfterOpen (page: Page): Promise<string> {
  return page.evaluate(async () => {
    const w = globalThis as unknown as { state: string }
    while (w.state === 'connecting') await new Promise(resolve => setTimeout(resolve, 20))
    return w.state
  })
}

async function ticket (page: Page, subscriber = 'web'): Promise<string> {
  return page.evaluate(async ({ token, subscriber }) => {
    const r = await fetch('/v1/stream-tickets', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ log: 'wal', subscriber }),
    })
    if (r.status !== 201) throw new Error(`ticket: ${r.status}`)
    return (await r.json() as { ticket: string }).ticket
  }, { token: TOKEN, subscriber })
}

test('an EventSource opens the stream with a ticket, gets records as they come and acks them', async t => {
  const service = await prepare(t)
  await push(service, 'before 1', 'before 2')
  const page = await newPage(t, browser())
  // A page of the service's own origin that is not the console (no CSP to mind).
  await page.goto(`${service.url}/healthz`)
  const text = await ticket(page)
  await openEventSource(page, `/v1/logs/wal/subscribers/web/stream?ticket=${text}&heartbeatMs=1000`)
  t.is(await stateAfterOpen(page), 'open')
  const first = await received(page, 2)
  await push(service, 'after 3')
  const all = await received(page, 3)
  t.deepEqual(all.map(e => e.id), ['1', '2', '3'])
  const records = all.map(e => JSON.parse(e.data) as { id: number, payload: string, deliveryCount: number })
  t.deepEqual(records.map(r => atobText(r.payload)), ['before 1', 'before 2', 'after 3'])
  t.true(records.every(r => r.deliveryCount === 1))
  t.is(first.length, 2)
  const acked = await page.evaluate(async token => {
    const r = await fetch('/v1/logs/wal/subscribers/web/ack', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ids: [1, 2, 3] }),
    })
    return r.json()
  }, TOKEN)
  t.deepEqual(acked, { acked: 3 })
  t.is(await inFlight(service), 0)
  await page.evaluate(() => { (globalThis as unknown as { source: { close (): void } }).source.close() })
})

test('an EventSource without a ticket, or with a spent one, is refused and leases nothing', async t => {
  const service = await prepare(t)
  await push(service, 'x')
  const page = await newPage(t, browser())
  await page.goto(`${service.url}/healthz`)
  await openEventSource(page, '/v1/logs/wal/subscribers/web/stream')
  t.is(await stateAfterOpen(page), 'failed', 'no ticket: 401')
  const text = await ticket(page)
  await openEventSource(page, `/v1/logs/wal/subscribers/web/stream?ticket=${text}`)
  t.is(await stateAfterOpen(page), 'open')
  await received(page, 1)
  await page.evaluate(() => { (globalThis as unknown as { source: { close (): void } }).source.close() })
  await openEventSource(page, `/v1/logs/wal/subscribers/web/stream?ticket=${text}`)
  t.is(await stateAfterOpen(page), 'failed', 'the ticket was used')
  t.is(await inFlight(service), 1, 'only the stream that opened leased')
})

test('a page of another origin cannot open the stream, even with a valid ticket', async t => {
  const service = await prepare(t)
  await push(service, 'secret')
  // The other origin: a page on another port of 127.0.0.1.
  const other = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>other</title>') })
  await new Promise<void>(resolve => other.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => other.close(() => resolve())))
  // Not newPage: this page's console shows the browser's CORS error, which is expected here.
  const context = await browser().newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  // The ticket was obtained with the token (say, stolen); the page is still another origin.
  const own = await newPage(t, browser())
  await own.goto(`${service.url}/healthz`)
  const text = await ticket(own)
  await page.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`)
  await openEventSource(page, `${service.url}/v1/logs/wal/subscribers/web/stream?ticket=${text}`)
  t.is(await stateAfterOpen(page), 'failed')
  t.deepEqual(await page.evaluate(() => (globalThis as unknown as { received: unknown[] }).received), [])
  t.is(await inFlight(service), 0, 'nothing was leased: the service refused it (403), not only the browser')
})

function atobText (b64: string): string {
  return Buffer.from(b64, 'base64').toString()
}
