/**
 * Who may open the change stream: with a token, the Authorization header or a single-use ticket
 * (`POST /v1/stream-tickets`) for that log and subscriber, within its 30 s; and never a page of
 * another site (the Host and Origin checks, and no cross-site navigation to a stream).
 */
import test, { type ExecutionContext } from 'ava'
import { ManualClock } from '../helpers/clock.js'
import { startServer, type TestServer } from '../fixtures/http.js'
import { openStream, type SseStream } from './sse-client.js'

const TOKEN = 's3cret-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }

async function setUp (t: ExecutionContext, clock = new ManualClock()): Promise<TestServer> {
  const s = await startServer(t, { token: TOKEN, clock })
  for (const name of ['a', 'b']) {
    t.is((await s.json('PUT', `/v1/logs/wal/subscribers/${name}`, {}, AUTH)).status, 201)
  }
  return s
}

async function ticket (s: TestServer, log: string, subscriber: string): Promise<{ ticket: string, expiresAt: number }> {
  const r = await s.json('POST', '/v1/stream-tickets', { log, subscriber }, AUTH)
  if (r.status !== 201) throw new Error(`ticket: ${r.status} ${r.text}`)
  return r.json
}

async function opened (t: ExecutionContext, es: SseStream): Promise<boolean> {
  t.teardown(() => es.close())
  if (es.status === 200) es.close()
  return es.status === 200
}

test('with a token, the stream takes the Authorization header; without it, 401', async t => {
  const s = await setUp(t)
  const none = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream')
  t.is(none.status, 401)
  t.is(none.json.code, 'EVAQ_UNAUTHORIZED')
  const wrong = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', { authorization: 'Bearer nope' })
  t.is(wrong.status, 401)
  t.true(await opened(t, await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', AUTH)))
})

test('a ticket opens the stream of its log and subscriber, once, within its time', async t => {
  const clock = new ManualClock()
  const s = await setUp(t, clock)
  t.is((await s.json('POST', '/v1/stream-tickets', { log: 'wal', subscriber: 'a' })).status, 401, 'a ticket needs the token')
  const unknown = await s.json('POST', '/v1/stream-tickets', { log: 'wal', subscriber: 'nobody' }, AUTH)
  t.is(unknown.status, 404)
  t.is(unknown.json.code, 'EVAQ_NOT_FOUND')
  t.is((await s.json('POST', '/v1/stream-tickets', { log: 'wal' }, AUTH)).status, 400)

  const good = await ticket(s, 'wal', 'a')
  t.regex(good.ticket, /^[A-Za-z0-9_-]{43}$/)
  t.is(good.expiresAt, clock.now() + 30_000)
  t.true(await opened(t, await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${good.ticket}`)))
  const reused = await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${good.ticket}`)
  t.is(reused.status, 401, 'a ticket is good once')
  t.is(reused.json.code, 'EVAQ_UNAUTHORIZED')

  const forA = await ticket(s, 'wal', 'a')
  const other = await openStream(s.url, `/v1/logs/wal/subscribers/b/stream?ticket=${forA.ticket}`)
  t.is(other.status, 401, 'a ticket for another subscriber')
  t.is((await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${forA.ticket}`)).status, 401, 'spent by the refused try')

  const forDlq = await s.json('PUT', '/v1/logs/dlq/subscribers/a', {}, AUTH)
  t.is(forDlq.status, 201)
  const dlqTicket = await ticket(s, 'dlq', 'a')
  t.is((await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${dlqTicket.ticket}`)).status, 401, 'a ticket for another log')

  const late = await ticket(s, 'wal', 'a')
  clock.advance(30_000)
  const expired = await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${late.ticket}`)
  t.is(expired.status, 401, 'an expired ticket')
  const inTime = await ticket(s, 'wal', 'a')
  clock.advance(29_999)
  t.true(await opened(t, await openStream(s.url, `/v1/logs/wal/subscribers/a/stream?ticket=${inTime.ticket}`)), 'a ticket 1 ms before it expires')

  const made = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')
  t.is(made.status, 401, 'a ticket never issued')
  t.is((await s.evaq.wal.stats()).subscribers.find(x => x.name === 'a')!.inFlight, 0)
})

test('a ticket opens only the stream: other routes still need the header', async t => {
  const s = await setUp(t)
  const { ticket: text } = await ticket(s, 'wal', 'a')
  const r = await s.call('GET', `/v1/logs/wal/records?ticket=${text}`)
  t.is(r.status, 401)
  const next = await s.call('POST', `/v1/logs/wal/subscribers/a/next?ticket=${text}`)
  t.is(next.status, 401)
})

test('a page of another site cannot open a stream: not with a ticket, not by a navigation', async t => {
  const s = await setUp(t)
  const { ticket: text } = await ticket(s, 'wal', 'a')
  const path = `/v1/logs/wal/subscribers/a/stream?ticket=${text}`
  const cors = await openStream(s.url, path, { origin: 'http://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors' })
  t.is(cors.status, 403, 'an EventSource of another origin')
  t.is(cors.json.code, 'EVAQ_FORBIDDEN')
  const nav = await openStream(s.url, path, { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' })
  t.is(nav.status, 403, 'a link from another site')
  t.is(nav.json.code, 'EVAQ_FORBIDDEN')
  const sameSite = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', { ...AUTH, 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'navigate' })
  t.is(sameSite.status, 403, 'a link from another origin of the same site, even with the token')
  const rebound = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', { host: 'attacker.example' })
  t.not(rebound.status, 200)
})

test('without a token, a cross-site navigation to a stream is refused too (it would lease records)', async t => {
  const s = await startServer(t)
  await s.json('PUT', '/v1/logs/wal/subscribers/a', {})
  await s.json('POST', '/v1/logs/wal/records', ['aGk='])
  const nav = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' })
  t.is(nav.status, 403)
  const rebound = await openStream(s.url, '/v1/logs/wal/subscribers/a/stream', { host: 'attacker.example:7070' })
  t.is(rebound.status, 421)
  t.is((await s.evaq.wal.stats()).subscribers[0]!.inFlight, 0, 'nothing was leased')
})
