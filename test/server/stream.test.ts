/**
 * The change stream (`GET /v1/logs/:log/subscribers/:name/stream`) over real sockets with a plain
 * HTTP client: delivery in ID order, acks, redelivery after the lease, the in-flight cap, the
 * socket's backpressure, disconnects and the service's close.
 */
import test from 'ava'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startServer, type TestServer } from '../fixtures/http.js'
import { ManualClock } from '../helpers/clock.js'
import { eventually } from '../helpers/wait.js'
import { eventRecord, openStream, type SseStream } from './sse-client.js'

const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function subscribe (s: TestServer, name: string, body: Record<string, unknown> = {}): Promise<void> {
  const r = await s.json('PUT', `/v1/logs/wal/subscribers/${name}`, { start: 'earliest', ...body })
  if (r.status !== 201 && r.status !== 200) throw new Error(`subscribe: ${r.status} ${r.text}`)
}

async function push (s: TestServer, ...payloads: string[]): Promise<number[]> {
  return (await s.json('POST', '/v1/logs/wal/records', payloads.map(b64))).json.ids
}

async function inFlight (s: TestServer, name: string): Promise<number> {
  return (await s.evaq.wal.stats()).subscribers.find(x => x.name === name)!.inFlight
}

function stream (s: TestServer, name: string, query = ''): Promise<SseStream> {
  return openStream(s.url, `/v1/logs/wal/subscribers/${name}/stream${query}`)
}

test('records pushed before and after the stream opened arrive in ID order, as SSE events', async t => {
  const s = await startServer(t)
  await subscribe(s, 'exporter')
  await push(s, 'one', 'two', 'three')
  const es = await stream(s, 'exporter')
  t.teardown(() => es.close())
  t.is(es.status, 200)
  t.regex(String(es.headers['content-type']), /^text\/event-stream/)
  t.is(es.headers['cache-control'], 'no-cache, no-transform')
  const first = await es.take(3)
  await push(s, 'four')
  await push(s, 'five', 'six')
  const later = await es.take(3)
  const events = [...first, ...later]
  t.deepEqual(events.map(e => e.id), ['1', '2', '3', '4', '5', '6'])
  t.true(events.every(e => e.event === 'message'))
  const records = events.map(eventRecord)
  t.deepEqual(records.map(r => r.id), [1, 2, 3, 4, 5, 6])
  t.deepEqual(records.map(r => Buffer.from(r.payload, 'base64').toString()), ['one', 'two', 'three', 'four', 'five', 'six'])
  t.true(records.every(r => r.deliveryCount === 1 && Number.isSafeInteger(r.pushedAt)))
  t.is(await inFlight(s, 'exporter'), 6, 'each record is leased to the subscriber')
})

test('an acked record is not delivered again; an unacked one comes back after the lease', async t => {
  // The lease follows the queue's clock: the test moves it, so the lease ends when it says.
  const clock = new ManualClock()
  const s = await startServer(t, { evaq: { clock } })
  await subscribe(s, 'slow', { leaseMs: 200 })
  await push(s, 'a', 'b')
  const es = await stream(s, 'slow')
  t.teardown(() => es.close())
  t.deepEqual((await es.take(2)).map(e => e.id), ['1', '2'])
  t.deepEqual((await s.json('POST', '/v1/logs/wal/subscribers/slow/ack', { ids: [1] })).json, { acked: 1 })
  await sleep(400)
  t.is(es.events.length, 2, 'nothing comes back while the lease runs')
  clock.advance(200)
  const again = await es.next()
  t.is(again.id, '2', 'the unacked record is delivered again')
  t.is(eventRecord(again).deliveryCount, 2)
  await s.json('POST', '/v1/logs/wal/subscribers/slow/ack', { ids: [2] })
  clock.advance(1000)
  await sleep(400)
  t.deepEqual(es.events.map(e => e.id), ['1', '2', '2'], 'nothing comes back once both are acked')
  t.is(await inFlight(s, 'slow'), 0)
})

test('an unknown subscriber or log is 404, bad query values 400, as JSON errors', async t => {
  const s = await startServer(t)
  await subscribe(s, 'known')
  await push(s, 'one')
  const unknown = await stream(s, 'nobody')
  t.is(unknown.status, 404)
  t.is(unknown.json.code, 'EVAQ_NOT_FOUND')
  const noLog = await openStream(s.url, '/v1/logs/nolog/subscribers/known/stream')
  t.is(noLog.status, 404)
  t.is(noLog.json.code, 'EVAQ_NOT_FOUND')
  for (const query of ['?maxInFlight=0', '?maxInFlight=10001', '?heartbeatMs=5', '?maxInFlight=-1', '?other=1', '?ticket=a%20b']) {
    const r = await stream(s, 'known', query)
    t.is(r.status, 400, query)
    t.is(r.json.code, 'EVAQ_INVALID_ARGUMENT', query)
  }
  const head = await s.call('HEAD', '/v1/logs/wal/subscribers/known/stream')
  t.is(head.status, 404, 'no HEAD: it would lease records it cannot send')
  t.is(await inFlight(s, 'known'), 0, 'nothing was leased')
})

test('maxInFlight caps the records leased and not acked; acks make room for more', async t => {
  const s = await startServer(t)
  await subscribe(s, 'capped', { leaseMs: 60_000 })
  await push(s, ...Array.from({ length: 20 }, (_, i) => `r${i + 1}`))
  const es = await stream(s, 'capped', '?maxInFlight=5')
  t.teardown(() => es.close())
  t.deepEqual((await es.take(5)).map(e => e.id), ['1', '2', '3', '4', '5'])
  await sleep(300)
  t.is(es.events.length, 5, 'no more while 5 are in flight')
  t.is(await inFlight(s, 'capped'), 5)
  await s.json('POST', '/v1/logs/wal/subscribers/capped/ack', { ids: [1, 2] })
  t.deepEqual((await es.take(2)).map(e => e.id), ['6', '7'])
  await sleep(200)
  t.is(es.events.length, 7)
  // A nack gives records back too: they come again at once, to this stream.
  await s.json('POST', '/v1/logs/wal/subscribers/capped/nack', { ids: [3] })
  const back = await es.next()
  t.is(back.id, '3')
  t.is(eventRecord(back).deliveryCount, 2)
})

test('heartbeats: comment lines keep an idle stream open', async t => {
  const s = await startServer(t)
  await subscribe(s, 'idle')
  const es = await stream(s, 'idle', '?heartbeatMs=100')
  t.teardown(() => es.close())
  await eventually(() => es.comments.filter(c => c === 'keep-alive').length >= 3)
  t.is(es.events.length, 0)
})

// Serial: it counts the process's timers, which other tests running beside it would add to.
test.serial('a client that goes away frees the stream: no poll left, and its unsent leases come back after the lease', async t => {
  const s = await startServer(t)
  await subscribe(s, 'gone', { leaseMs: 400 })
  const before = process.getActiveResourcesInfo().filter(r => r === 'Timeout').length
  const es = await stream(s, 'gone', '?heartbeatMs=100')
  await push(s, 'x', 'y')
  t.deepEqual((await es.take(2)).map(e => e.id), ['1', '2'])
  await eventually(() => s.service.longPolls === 1)
  es.close()
  await eventually(() => s.service.longPolls === 0)
  await eventually(() => process.getActiveResourcesInfo().filter(r => r === 'Timeout').length <= before)
  // Unacked, the two are delivered again once their lease ends, to the next client.
  const next = await s.json('POST', '/v1/logs/wal/subscribers/gone/next', { waitMs: 5000 })
  t.deepEqual(next.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[1, 2], [2, 2]])
})

const ENDINGS = [
  { why: 'closing the service', code: 'EVAQ_CLOSED', end: (s: TestServer) => s.app.close() },
  {
    why: 'unsubscribing the subscriber', code: 'EVAQ_NOT_FOUND', end: async (s: TestServer) => {
      const r = await s.call('DELETE', '/v1/logs/wal/subscribers/ending')
      if (r.status !== 204) throw new Error(`DELETE answered ${r.status}`)
    },
  },
] as const

for (const ending of ENDINGS) {
  test(`${ending.why} ends the stream with an \`end\` event (${ending.code})`, async t => {
    const s = await startServer(t)
    await subscribe(s, 'ending')
    const es = await stream(s, 'ending')
    await push(s, 'z')
    await es.next()
    const ended = ending.end(s)
    const end = await es.next()
    t.is(end.event, 'end')
    t.is(JSON.parse(end.data).code, ending.code)
    await es.ended
    await ended
  })
}

test('backpressure: a reader that stops reading does not make the service lease every record', async t => {
  const s = await startServer(t)
  await subscribe(s, 'stalled', { leaseMs: 600_000 })
  const total = 2000
  const payload = Buffer.alloc(8 * 1024, 0x61).toString('base64')
  for (let i = 0; i < total; i += 200) {
    t.is((await s.json('POST', '/v1/logs/wal/records', Array.from({ length: 200 }, () => payload))).status, 201)
  }
  // A raw socket that reads the headers and then nothing: the kernel's buffers fill, then Node's.
  const socket = connect(Number(new URL(s.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await new Promise<void>(resolve => {
    socket.once('data', () => { socket.pause(); resolve() })
    socket.write('GET /v1/logs/wal/subscribers/stalled/stream?maxInFlight=10000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  })
  // Wait until the leases stop growing.
  let last = -1
  for (let stable = 0; stable < 5; await sleep(100)) {
    const now = await inFlight(s, 'stalled')
    stable = now === last ? stable + 1 : 0
    last = now
  }
  t.true(last > 0, 'some records were leased')
  t.log(`leased while stalled: ${last} of ${total}`)
  t.true(last < total / 2, `a stalled reader holds ${last} of ${total} records leased, not all`)
  // Reading again, the reader gets every record.
  const last4 = `id: ${total}\n`
  await new Promise<void>(resolve => {
    let tail = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-(chunk.length + last4.length))
      if (tail.includes(last4)) resolve()
    })
    socket.resume()
  })
  t.is(await inFlight(s, 'stalled'), total)
})
