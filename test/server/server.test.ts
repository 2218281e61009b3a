/**
 * The HTTP API over real sockets (port 0): every route, and every kind of bad request answered
 * with its 4xx code and `{ code, message }`, nothing stored changed, and the server still serving.
 */
import test, { type ExecutionContext } from 'ava'
import { connect } from 'node:net'
import { ERROR_CODES } from '../../src/index.js'
import { send, snapshot, startServer, type Reply, type TestServer } from '../fixtures/http.js'
import { eventually } from '../helpers/wait.js'

const MAX_SAFE_PLUS_2 = '9007199254740993'
const BAD_IDS_TEXT = ['-1', '1.5', MAX_SAFE_PLUS_2, 'abc', '9'.repeat(500), '', '1e3', '0x10', ' 1', '01']

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64')

/** A 4xx answer in the JSON error shape, with the status of its code in the error table. */
function isError (t: ExecutionContext, r: Reply, status: number, code: string, what: string): void {
  t.is(r.status, status, `${what}: status (body ${r.text.slice(0, 200)})`)
  t.is(r.json?.code, code, `${what}: code`)
  t.is(typeof r.json?.message, 'string', `${what}: message`)
  t.is<number, number>(ERROR_CODES[code as keyof typeof ERROR_CODES].status, status, `${what}: the status is the code's status in the table`)
  t.regex(String(r.headers['content-type']), /^application\/json/, `${what}: JSON`)
}

/** Run bad requests; assert that nothing stored changed and that the server still serves. */
async function unchanged (t: ExecutionContext, s: TestServer, bad: () => Promise<void>, headers: Record<string, string> = {}): Promise<void> {
  const before = await snapshot(s.evaq)
  await bad()
  t.deepEqual(await snapshot(s.evaq), before, 'nothing stored changed')
  t.is((await s.call('GET', '/healthz')).status, 200, 'the server still serves')
  t.is((await s.call('GET', '/v1/logs/wal/records', { headers })).status, 200, 'and reads')
}

async function seed (s: TestServer): Promise<number[]> {
  const r = await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: '{"n":1}\n{"n":2}\n{"n":3}\n' })
  return r.json.ids
}

// ---- pushing ------------------------------------------------------------------------------------

test('POST records: a raw body is one record, byte for byte (binary and text/plain)', async t => {
  const s = await startServer(t)
  const binary = Buffer.from([0, 255, 254, 128, 10, 13, 0])
  const r1 = await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: binary })
  t.is(r1.status, 201)
  t.deepEqual(r1.json, { ids: [1] })
  const r2 = await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'ünïcödé\nline two' })
  t.deepEqual(r2.json, { ids: [2] })
  const empty = await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: '' })
  t.deepEqual(empty.json, { ids: [3] }, 'an empty body is one empty record')
  const records = await s.evaq.wal.read()
  t.deepEqual(records.map(r => r.id), [1, 2, 3])
  t.true(records[0]!.payload.equals(binary))
  t.is(records[1]!.payload.toString(), 'ünïcödé\nline two')
  t.is(records[2]!.payload.length, 0)
})

test('POST records: NDJSON is one record per line, in one atomic write; CRLF and blank lines', async t => {
  const s = await startServer(t)
  const r = await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: '{"a":1}\r\n\n"text"\n[1,2]\n  \n42' })
  t.is(r.status, 201)
  t.deepEqual(r.json, { ids: [1, 2, 3, 4] })
  t.deepEqual((await s.evaq.wal.read()).map(x => x.payload.toString()), ['{"a":1}', '"text"', '[1,2]', '42'])
})

test('POST records: a JSON array of base64 strings is many records; [] pushes nothing', async t => {
  const s = await startServer(t)
  const payloads = [Buffer.from('one'), Buffer.from([0, 1, 2, 3]), Buffer.alloc(0)]
  const r = await s.json('POST', '/v1/logs/wal/records', payloads.map(p => p.toString('base64')))
  t.is(r.status, 201)
  t.deepEqual(r.json, { ids: [1, 2, 3] })
  const stored = await s.evaq.wal.read()
  t.deepEqual(stored.map(x => x.payload), payloads)
  t.deepEqual((await s.json('POST', '/v1/logs/wal/records', [])).json, { ids: [] })
  t.is((await s.evaq.wal.stats()).count, 3)
})

test('POST records to the DLQ; parked takes no pushes (400)', async t => {
  const s = await startServer(t)
  t.deepEqual((await s.json('POST', '/v1/logs/dlq/records', [b64('failed')])).json, { ids: [1] })
  const [record] = await s.evaq.dlq.read()
  t.is(record!.payload.toString(), 'failed')
  t.is(record!.retry.attempts, 0)
  await unchanged(t, s, async () => {
    isError(t, await s.json('POST', '/v1/logs/parked/records', [b64('x')]), 400, 'EVAQ_INVALID_ARGUMENT', 'push to parked')
  })
})

test('POST records: malformed bodies are 400, unknown content types 415, and nothing is stored', async t => {
  const s = await startServer(t)
  await seed(s)
  const post = (type: string | undefined, body: string | Buffer | undefined): Promise<Reply> =>
    s.call('POST', '/v1/logs/wal/records', { headers: type === undefined ? {} : { 'content-type': type }, ...(body === undefined ? {} : { body }) })
  await unchanged(t, s, async () => {
    for (const [body, what] of [
      ['{"ids": [1', 'truncated JSON'],
      ['[1, 2]', 'an array of numbers'],
      ['{"payload":"aGk="}', 'an object'],
      ['["aGk=", "not base64!"]', 'a non-base64 item'],
      ['["aGk"]', 'unpadded base64'],
      ['"aGk="', 'a bare string'],
      ['null', 'null'],
      ['{"__proto__": {"x": 1}}', 'prototype poisoning'],
      ['', 'an empty JSON body'],
    ] as const) {
      isError(t, await post('application/json', body), 400, 'EVAQ_INVALID_ARGUMENT', what)
    }
    for (const [body, what] of [
      ['{"a":1}\nnot json\n', 'a line that is not JSON'],
      ['{"a":1}\n{"b":', 'a truncated last line'],
      [Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 'invalid UTF-8'],
    ] as const) {
      isError(t, await post('application/x-ndjson', body), 400, 'EVAQ_INVALID_ARGUMENT', `NDJSON: ${what}`)
    }
    for (const type of ['text/csv', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'image/png']) {
      isError(t, await post(type, 'a,b'), 415, 'EVAQ_UNSUPPORTED_MEDIA_TYPE', type)
    }
    isError(t, await post(undefined, 'no content type'), 415, 'EVAQ_UNSUPPORTED_MEDIA_TYPE', 'a body without a content type')
    isError(t, await post(undefined, undefined), 415, 'EVAQ_UNSUPPORTED_MEDIA_TYPE', 'no body at all')
  })
})

test('a body over the limit is 413 before it is read (Content-Length) or as soon as it passes it (chunked); nothing stored', async t => {
  const s = await startServer(t, { evaq: { maxPayloadBytes: 64 * 1024 } })
  await seed(s)
  await unchanged(t, s, async () => {
    const big = Buffer.alloc(64 * 1024 + 1, 0x61)
    isError(t, await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: big }),
      413, 'EVAQ_TOO_LARGE', 'Content-Length over the limit')
    isError(t, await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: Buffer.alloc(200 * 1024, 0x20) }),
      413, 'EVAQ_TOO_LARGE', 'NDJSON over the limit')
    isError(t, await s.json('DELETE', '/v1/logs/wal/records', { ids: Array.from({ length: 20_000 }, (_, i) => i + 1) }),
      413, 'EVAQ_TOO_LARGE', 'a JSON body over the limit')
    // Chunked: no Content-Length, and the client would go on sending 64 MiB; the server answers
    // after the limit and closes the connection instead of reading the rest.
    const answer = await chunkedUpload(s.url, 64 * 1024 * 1024)
    t.is(answer.status, 413)
    t.is(answer.code, 'EVAQ_TOO_LARGE')
    t.true(answer.sentBytes < 64 * 1024 * 1024, `the server did not read the whole body (the client sent ${answer.sentBytes} bytes)`)
  })
  // Exactly at the limit is fine.
  t.is((await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(64 * 1024) })).status, 201)
})

/** Stream a chunked body of up to `total` bytes until the server answers. */
function chunkedUpload (url: string, total: number): Promise<{ status: number, code: string | undefined, sentBytes: number }> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(url)
    const socket = connect(Number(port), '127.0.0.1')
    let sent = 0
    let answer = ''
    let done = false
    const chunk = Buffer.alloc(64 * 1024, 0x62)
    const finish = (): void => {
      if (done) return
      done = true
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
      const body = answer.slice(answer.indexOf('\r\n\r\n') + 4)
      let code: string | undefined
      try { code = (JSON.parse(body) as { code?: string }).code } catch {}
      socket.destroy()
      resolve({ status, code, sentBytes: sent })
    }
    socket.on('data', d => {
      answer += d.toString('latin1')
      const head = answer.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(answer)?.[1]
      if (head >= 0 && length !== undefined && answer.length >= head + 4 + Number(length)) finish()
    })
    socket.on('close', finish)
    socket.on('error', err => { if (answer === '') reject(err); else finish() })
    socket.on('connect', () => {
      socket.write('POST /v1/logs/wal/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n')
      const pump = (): void => {
        while (sent < total) {
          if (done) return
          sent += chunk.length
          if (!socket.write(`${chunk.length.toString(16)}\r\n`) || !socket.write(chunk) || !socket.write('\r\n')) {
            socket.once('drain', pump)
            return
          }
        }
        if (!done) socket.write('0\r\n\r\n')
      }
      pump()
    })
  })
}

// ---- reading ------------------------------------------------------------------------------------

test('GET records: base64 payloads in ID order, bounded by from, maxBytes and maxCount', async t => {
  const s = await startServer(t)
  const ids = (await s.json('POST', '/v1/logs/wal/records', ['a', 'bb', 'ccc', 'dddd'].map(b64))).json.ids as number[]
  t.deepEqual(ids, [1, 2, 3, 4])
  const all = await s.call('GET', '/v1/logs/wal/records')
  t.is(all.status, 200)
  t.deepEqual(all.json.records.map((r: { id: number, payload: string }) => [r.id, Buffer.from(r.payload, 'base64').toString()]),
    [[1, 'a'], [2, 'bb'], [3, 'ccc'], [4, 'dddd']])
  for (const r of all.json.records) t.is(typeof r.pushedAt, 'number')
  t.deepEqual((await s.call('GET', '/v1/logs/wal/records?from=3')).json.records.map((r: { id: number }) => r.id), [3, 4])
  t.deepEqual((await s.call('GET', '/v1/logs/wal/records?from=2&maxCount=2')).json.records.map((r: { id: number }) => r.id), [2, 3])
  t.deepEqual((await s.call('GET', '/v1/logs/wal/records?maxBytes=0')).json.records.map((r: { id: number }) => r.id), [1], 'at least one record')
  t.deepEqual((await s.call('GET', '/v1/logs/wal/records?maxBytes=3')).json.records.map((r: { id: number }) => r.id), [1, 2])
  t.deepEqual((await s.call('GET', '/v1/logs/wal/records?from=5')).json, { records: [] })
})

test('GET records with waitMs long-polls: it answers as soon as a record is pushed', async t => {
  const s = await startServer(t)
  const polling = s.call('GET', '/v1/logs/wal/records?from=1&waitMs=30000')
  await eventually(() => s.service.longPolls === 1)
  await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: 'wake' })
  const r = await polling
  t.is(r.status, 200)
  t.deepEqual(r.json.records.map((x: { payload: string }) => Buffer.from(x.payload, 'base64').toString()), ['wake'])
})

test('invalid IDs and bounds in query strings are 400, and nothing changes', async t => {
  const s = await startServer(t)
  await seed(s)
  await unchanged(t, s, async () => {
    for (const name of ['from', 'maxBytes', 'maxCount', 'waitMs']) {
      for (const bad of BAD_IDS_TEXT) {
        isError(t, await s.call('GET', `/v1/logs/wal/records?${name}=${encodeURIComponent(bad)}`), 400, 'EVAQ_INVALID_ARGUMENT', `${name}=${bad.slice(0, 20)}`)
      }
    }
    isError(t, await s.call('GET', '/v1/logs/wal/records?maxCount=0'), 400, 'EVAQ_INVALID_ARGUMENT', 'maxCount=0')
    isError(t, await s.call('GET', '/v1/logs/wal/records?maxCount=10001'), 400, 'EVAQ_INVALID_ARGUMENT', 'maxCount over the limit')
    isError(t, await s.call('GET', '/v1/logs/wal/records?waitMs=60001'), 400, 'EVAQ_INVALID_ARGUMENT', 'waitMs over the limit')
    isError(t, await s.call('GET', '/v1/logs/wal/records?from=1&from=2'), 400, 'EVAQ_INVALID_ARGUMENT', 'a repeated parameter')
    isError(t, await s.call('GET', '/v1/logs/wal/records?bogus=1'), 400, 'EVAQ_INVALID_ARGUMENT', 'an unknown parameter')
  })
})

test('log names: unknown is 404, malformed is 400, on every route that takes one', async t => {
  const s = await startServer(t)
  await seed(s)
  await unchanged(t, s, async () => {
    const routes: Array<[string, string, unknown]> = [
      ['GET', '/records', undefined],
      ['POST', '/records', [b64('x')]],
      ['DELETE', '/records', { ids: [1] }],
      ['GET', '/subscribers', undefined],
      ['PUT', '/subscribers/s', {}],
      ['DELETE', '/subscribers/s', undefined],
      ['POST', '/subscribers/s/next', {}],
      ['POST', '/subscribers/s/ack', { ids: [1] }],
      ['POST', '/subscribers/s/nack', { ids: [1] }],
    ]
    for (const [method, suffix, body] of routes) {
      const go = (log: string): Promise<Reply> => body === undefined
        ? s.call(method, `/v1/logs/${log}${suffix}`)
        : s.json(method, `/v1/logs/${log}${suffix}`, body)
      isError(t, await go('queue'), 404, 'EVAQ_NOT_FOUND', `${method} unknown log ${suffix}`)
      isError(t, await go('WAL'), 404, 'EVAQ_NOT_FOUND', `${method} log names are case-sensitive ${suffix}`)
      for (const bad of ['wal.x', 'w%20al', 'w%2Fal', 'a'.repeat(65), '%F0%9F%92%A5', 'wal%00']) {
        isError(t, await go(bad), 400, 'EVAQ_INVALID_ARGUMENT', `${method} malformed log name ${bad} ${suffix}`)
      }
    }
    isError(t, await s.call('GET', '/v1/nothing-here'), 404, 'EVAQ_NOT_FOUND', 'an unknown route')
    isError(t, await s.call('PATCH', '/v1/logs/wal/records'), 404, 'EVAQ_NOT_FOUND', 'an unknown method')
  })
})

// ---- removing -----------------------------------------------------------------------------------

test('DELETE records is atomic: one unknown ID (404, with the IDs) removes nothing; then all go', async t => {
  const s = await startServer(t)
  await seed(s)
  await unchanged(t, s, async () => {
    const r = await s.json('DELETE', '/v1/logs/wal/records', { ids: [1, 2, 99] })
    isError(t, r, 404, 'EVAQ_NOT_FOUND', 'an unknown ID')
    t.deepEqual(r.json.ids, [99])
  })
  t.deepEqual((await s.json('DELETE', '/v1/logs/wal/records', { ids: [3, 1] })).json, { removed: 2 })
  t.deepEqual((await s.evaq.wal.read()).map(r => r.id), [2])
  t.deepEqual((await s.json('DELETE', '/v1/logs/wal/records', { ids: [] })).json, { removed: 0 })
})

test('DELETE records with invalid IDs or bodies is 400, a body that is not JSON is 415; nothing changes', async t => {
  const s = await startServer(t)
  await seed(s)
  await unchanged(t, s, async () => {
    for (const raw of ['-1', '0', '1.5', '9007199254740992', MAX_SAFE_PLUS_2, '"abc"', '"1"', '9'.repeat(500), 'null', 'true', '[1]', '{}']) {
      isError(t, await s.call('DELETE', '/v1/logs/wal/records', { headers: { 'content-type': 'application/json' }, body: `{"ids":[1,${raw}]}` }),
        400, 'EVAQ_INVALID_ARGUMENT', `ids with ${raw.slice(0, 20)}`)
    }
    for (const body of ['{"ids":1}', '{"ids":"1"}', '{}', '[]', '{"ids":[1],"extra":true}', '{"ids":[1]', 'null']) {
      isError(t, await s.call('DELETE', '/v1/logs/wal/records', { headers: { 'content-type': 'application/json' }, body }),
        400, 'EVAQ_INVALID_ARGUMENT', `body ${body}`)
    }
    isError(t, await s.call('DELETE', '/v1/logs/wal/records'), 400, 'EVAQ_INVALID_ARGUMENT', 'no body')
    isError(t, await s.call('DELETE', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: '1' }),
      415, 'EVAQ_UNSUPPORTED_MEDIA_TYPE', 'text/plain')
    isError(t, await s.call('DELETE', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: '1' }),
      415, 'EVAQ_UNSUPPORTED_MEDIA_TYPE', 'NDJSON')
  })
})

test('concurrent removes of one ID: exactly one succeeds, the others are 404', async t => {
  const s = await startServer(t)
  await seed(s)
  const answers = await Promise.all(Array.from({ length: 16 }, () => s.json('DELETE', '/v1/logs/wal/records', { ids: [2] })))
  t.is(answers.filter(r => r.status === 200).length, 1)
  for (const r of answers.filter(r => r.status !== 200)) isError(t, r, 404, 'EVAQ_NOT_FOUND', 'the losers')
  t.deepEqual((await s.evaq.wal.read()).map(r => r.id), [1, 3])
  // Overlapping sets: atomic each, so a set that lost one of its IDs removed nothing.
  const sets = await Promise.all([s.json('DELETE', '/v1/logs/wal/records', { ids: [1, 3] }), s.json('DELETE', '/v1/logs/wal/records', { ids: [3] })])
  const won = sets.filter(r => r.status === 200)
  t.is(won.length, 1)
  t.deepEqual((await s.evaq.wal.read()).map(r => r.id), won[0] === sets[0] ? [] : [1])
})

// ---- subscribers --------------------------------------------------------------------------------

test('subscribers: create, resume, next (leases), ack, nack and redelivery, list, delete', async t => {
  const s = await startServer(t)
  await seed(s)
  const created = await s.json('PUT', '/v1/logs/wal/subscribers/exporter', { start: 'earliest', leaseMs: 60_000, maxDeliveries: 5 })
  t.is(created.status, 201)
  t.like(created.json, { log: 'wal', name: 'exporter', ackFloor: 1, inFlight: 0, leaseMs: 60_000, maxDeliveries: 5 })
  const resumed = await s.call('PUT', '/v1/logs/wal/subscribers/exporter')
  t.is(resumed.status, 200)
  t.like(resumed.json, { leaseMs: 60_000, maxDeliveries: 5 }, 'resuming without a body keeps the limits')

  const first = await s.json('POST', '/v1/logs/wal/subscribers/exporter/next', { maxCount: 2 })
  t.is(first.status, 200)
  t.deepEqual(first.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[1, 1], [2, 1]])
  t.is(Buffer.from(first.json.records[0].payload, 'base64').toString(), '{"n":1}')
  t.deepEqual((await s.json('POST', '/v1/logs/wal/subscribers/exporter/ack', { ids: [1] })).json, { acked: 1 })
  t.deepEqual((await s.json('POST', '/v1/logs/wal/subscribers/exporter/nack', { ids: [2] })).json, { nacked: 1 })
  const again = await s.call('POST', '/v1/logs/wal/subscribers/exporter/next')
  t.deepEqual(again.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[2, 2], [3, 1]],
    'the nacked record first, delivered again')
  t.deepEqual((await s.json('POST', '/v1/logs/wal/subscribers/exporter/ack', { ids: [2, 3] })).json, { acked: 2 })
  t.deepEqual((await s.json('POST', '/v1/logs/wal/subscribers/exporter/next', { waitMs: 0 })).json, { records: [] })

  const list = await s.call('GET', '/v1/logs/wal/subscribers')
  t.is(list.json.subscribers.length, 1)
  t.like(list.json.subscribers[0], { log: 'wal', name: 'exporter', ackFloor: 4, inFlight: 0, lagRecords: 0 })
  t.deepEqual((await s.call('GET', '/v1/subscribers')).json.subscribers.map((x: { log: string, name: string }) => [x.log, x.name]), [['wal', 'exporter']])

  const gone = await s.call('DELETE', '/v1/logs/wal/subscribers/exporter')
  t.is(gone.status, 204)
  await unchanged(t, s, async () => {
    isError(t, await s.call('DELETE', '/v1/logs/wal/subscribers/exporter'), 404, 'EVAQ_NOT_FOUND', 'delete twice')
    isError(t, await s.json('POST', '/v1/logs/wal/subscribers/exporter/next', {}), 404, 'EVAQ_NOT_FOUND', 'next after delete')
    isError(t, await s.json('POST', '/v1/logs/wal/subscribers/nobody/ack', { ids: [1] }), 404, 'EVAQ_NOT_FOUND', 'ack of an unknown subscriber')
  })
})

test('subscribers: next long-polls until a push; acks of records never delivered are 404; bad bodies 400', async t => {
  const s = await startServer(t)
  t.is((await s.json('PUT', '/v1/logs/wal/subscribers/tail', { start: 'latest' })).status, 201)
  const polling = s.json('POST', '/v1/logs/wal/subscribers/tail/next', { waitMs: 30_000 })
  await eventually(() => s.service.longPolls === 1)
  await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: 'news' })
  const r = await polling
  t.deepEqual(r.json.records.map((x: { id: number }) => x.id), [1])
  await unchanged(t, s, async () => {
    const e = await s.json('POST', '/v1/logs/wal/subscribers/tail/ack', { ids: [1, 7] })
    isError(t, e, 404, 'EVAQ_NOT_FOUND', 'ack of a record never delivered')
    isError(t, await s.json('POST', '/v1/logs/wal/subscribers/tail/nack', { ids: [7] }), 404, 'EVAQ_NOT_FOUND', 'nack without a lease')
    for (const body of [{ waitMs: -1 }, { waitMs: 60_001 }, { maxCount: 0 }, { maxBytes: 1.5 }, { bogus: 1 }, [1]]) {
      isError(t, await s.json('POST', '/v1/logs/wal/subscribers/tail/next', body), 400, 'EVAQ_INVALID_ARGUMENT', `next ${JSON.stringify(body)}`)
    }
    for (const body of [{ start: 'middle' }, { start: -1 }, { leaseMs: 0 }, { maxDeliveries: 1.5 }, { other: 1 }]) {
      isError(t, await s.json('PUT', '/v1/logs/wal/subscribers/other', body), 400, 'EVAQ_INVALID_ARGUMENT', `subscribe ${JSON.stringify(body)}`)
    }
    for (const name of ['a%20b', 'a'.repeat(129), 'x%2Fy', 'é']) {
      isError(t, await s.call('PUT', `/v1/logs/wal/subscribers/${name}`), 400, 'EVAQ_INVALID_ARGUMENT', `subscriber name ${name.slice(0, 20)}`)
    }
    isError(t, await s.json('POST', '/v1/logs/wal/subscribers/tail/ack', { ids: ['1'] }), 400, 'EVAQ_INVALID_ARGUMENT', 'string IDs are not coerced')
  })
})

// ---- DLQ and parked -----------------------------------------------------------------------------

test('DLQ: list with the error and retry state, requeue to the WAL, purge', async t => {
  const s = await startServer(t)
  for (const p of ['d1', 'd2', 'd3', 'd4']) await s.evaq.pushRetryItem(p, { error: { code: 'E_DOWN', message: 'downstream' } })
  const list = await s.call('GET', '/v1/dlq')
  t.deepEqual(list.json.records.map((r: { id: number }) => r.id), [1, 2, 3, 4])
  t.like(list.json.records[0], { error: { code: 'E_DOWN', message: 'downstream' }, retry: { attempts: 0 } })
  t.deepEqual((await s.call('GET', '/v1/logs/dlq/records?from=3')).json.records.map((r: { id: number }) => r.id), [3, 4])

  await unchanged(t, s, async () => {
    isError(t, await s.json('POST', '/v1/dlq/requeue', { ids: [1, 42] }), 404, 'EVAQ_NOT_FOUND', 'requeue of an unknown ID')
    isError(t, await s.json('POST', '/v1/dlq/purge', { ids: [42] }), 404, 'EVAQ_NOT_FOUND', 'purge of an unknown ID')
    for (const body of [{}, { ids: [1], all: true }, { all: false }, { ids: [-1] }, { ids: [1.5] }]) {
      isError(t, await s.json('POST', '/v1/dlq/requeue', body), 400, 'EVAQ_INVALID_ARGUMENT', `requeue ${JSON.stringify(body)}`)
    }
  })
  const requeued = await s.json('POST', '/v1/dlq/requeue', { ids: [2, 1] })
  t.deepEqual(requeued.json, { ids: [1, 2] }, 'new WAL IDs, in DLQ order')
  t.deepEqual((await s.evaq.wal.read()).map(r => r.payload.toString()), ['d1', 'd2'])
  t.deepEqual((await s.json('POST', '/v1/dlq/purge', { ids: [3] })).json, { purged: 1 })
  t.deepEqual((await s.json('POST', '/v1/dlq/requeue', { all: true })).json, { ids: [3] })
  t.is((await s.evaq.dlq.stats()).count, 0)
  await s.evaq.pushRetryItem('d5')
  t.deepEqual((await s.json('POST', '/v1/dlq/purge', { all: true })).json, { purged: 1 })
  t.deepEqual((await s.evaq.wal.read()).map(r => r.payload.toString()), ['d1', 'd2', 'd4'])
})

test('parked: list with the history, requeue to the DLQ, purge', async t => {
  const s = await startServer(t)
  for (const p of ['p1', 'p2', 'p3']) await s.evaq.pushRetryItem(p)
  const daemon = s.evaq.retry(() => { throw Object.assign(new Error('rejected'), { retriable: false }) }, { autoStart: false })
  const stopWatching = s.metrics.watchRetryDaemon(daemon)
  await daemon.tick()
  await daemon.stop()
  stopWatching()
  const list = await s.call('GET', '/v1/parked')
  // The daemon works with concurrency: records are parked in any order.
  const byPayload = new Map<string, { id: number, retry: Record<string, unknown> }>(
    list.json.records.map((r: { payload: string, id: number, retry: Record<string, unknown> }) => [Buffer.from(r.payload, 'base64').toString(), r]))
  t.deepEqual([...byPayload.keys()].sort(), ['p1', 'p2', 'p3'])
  t.like(byPayload.get('p1')!.retry, { reason: 'permanent', attempts: 1, dlqId: 1 })
  const ids = ['p1', 'p2', 'p3'].map(p => byPayload.get(p)!.id)

  await unchanged(t, s, async () => {
    isError(t, await s.json('POST', '/v1/parked/requeue', { ids: [ids[0], 999] }), 404, 'EVAQ_NOT_FOUND', 'requeue of an unknown parked ID')
    isError(t, await s.json('POST', '/v1/parked/purge', { ids: [999] }), 404, 'EVAQ_NOT_FOUND', 'purge of an unknown parked ID')
    isError(t, await s.json('DELETE', '/v1/logs/parked/records', { ids: [999] }), 404, 'EVAQ_NOT_FOUND', 'DELETE of an unknown parked ID')
  })
  const requeued = await s.json('POST', '/v1/parked/requeue', { ids: [ids[0]] })
  t.is(requeued.status, 200)
  t.is(requeued.json.ids.length, 1)
  const dlq = await s.evaq.dlq.read()
  t.deepEqual(dlq.map(r => [r.id, r.payload.toString(), r.retry.attempts]), [[requeued.json.ids[0], 'p1', 0]])
  t.deepEqual((await s.json('POST', '/v1/parked/purge', { ids: [ids[1]] })).json, { purged: 1 })
  t.deepEqual((await s.json('POST', '/v1/parked/purge', { all: true })).json, { purged: 1 })
  t.is((await s.evaq.parked.stats()).count, 0)
  const metrics = (await s.call('GET', '/metrics')).text
  t.is(metricValue(metrics, 'evaq_retry_attempts_total', { outcome: 'parked' }), 3)
  t.is(metricValue(metrics, 'evaq_parked_total', { reason: 'permanent' }), 3)
  t.is(metricValue(metrics, 'evaq_requeued_total', { from: 'parked' }), 1)
})

// ---- stats, metrics, health ---------------------------------------------------------------------

function metricValue (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = (m[2] ?? '').split(',').filter(x => x !== '')
    if (want.every(w => have.includes(w)) && have.length === want.length) return Number(m[3])
  }
  return undefined
}

test('GET /v1/stats, /metrics (evaq_ names), /healthz and /readyz', async t => {
  const s = await startServer(t)
  await seed(s)
  await s.json('PUT', '/v1/logs/wal/subscribers/reader', {})
  await s.json('POST', '/v1/logs/wal/subscribers/reader/next', { maxCount: 1 })
  await s.json('POST', '/v1/logs/wal/subscribers/reader/ack', { ids: [1] })
  await s.json('DELETE', '/v1/logs/wal/records', { ids: [1] })

  const stats = await s.call('GET', '/v1/stats')
  t.is(stats.status, 200)
  t.like(stats.json, { status: 'open', wal: { count: 2, firstId: 2, nextId: 4 }, dlq: { count: 0 }, parked: { count: 0 }, disk: { full: false } })
  t.like(stats.json.wal.subscribers[0], { name: 'reader', ackFloor: 2 })

  const metrics = await s.call('GET', '/metrics')
  t.is(metrics.status, 200)
  t.regex(String(metrics.headers['content-type']), /^text\/plain/)
  for (const line of metrics.text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    t.true(line.startsWith('evaq_'), `every metric is prefixed evaq_: ${line}`)
  }
  t.is(metricValue(metrics.text, 'evaq_records', { log: 'wal' }), 2)
  t.is(metricValue(metrics.text, 'evaq_records', { log: 'parked' }), 0)
  t.is(metricValue(metrics.text, 'evaq_pushes_total', { log: 'wal' }), 3)
  t.is(metricValue(metrics.text, 'evaq_removals_total', { log: 'wal' }), 1)
  t.is(metricValue(metrics.text, 'evaq_acks_total', { log: 'wal', subscriber: 'reader' }), 1)
  t.is(metricValue(metrics.text, 'evaq_deliveries_total', { log: 'wal', subscriber: 'reader' }), 1)
  t.is(metricValue(metrics.text, 'evaq_subscriber_lag_records', { log: 'wal', subscriber: 'reader' }), 2, 'records 2 and 3')
  t.is(metricValue(metrics.text, 'evaq_push_duration_seconds_count', { log: 'wal' }), 1, 'one push request')
  t.is(metricValue(metrics.text, 'evaq_fsync_records_sum', { log: 'wal' }), 3, 'every WAL record was written by a synced flush')
  t.true((metricValue(metrics.text, 'evaq_flush_duration_seconds_count', { log: 'wal' }) ?? 0) >= 1, 'flushes are timed')
  t.is(metricValue(metrics.text, 'evaq_status', { status: 'open' }), 1)
  t.true((metricValue(metrics.text, 'evaq_disk_free_bytes') ?? 0) > 0)
  t.true((metricValue(metrics.text, 'evaq_oldest_record_age_seconds', { log: 'wal' }) ?? -1) >= 0)
  for (const name of ['evaq_bytes', 'evaq_compactions_total', 'evaq_dropped_records_total', 'evaq_redeliveries_total', 'evaq_http_responses_total']) {
    t.regex(metrics.text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`)
  }

  t.deepEqual((await s.call('GET', '/healthz')).json, { status: 'ok' })
  t.deepEqual((await s.call('GET', '/readyz')).json, { status: 'open' })
})

// ---- auth ---------------------------------------------------------------------------------------

test('with a token, every route but /healthz and /readyz needs it: missing or wrong is 401 and changes nothing', async t => {
  const token = 's3cret-token'
  const s = await startServer(t, { token })
  const auth = { authorization: `Bearer ${token}` }
  t.is((await s.call('POST', '/v1/logs/wal/records', { headers: { ...auth, 'content-type': 'application/octet-stream' }, body: 'ok' })).status, 201)
  const routes: Array<[string, string, unknown]> = [
    ['GET', '/v1/logs/wal/records', undefined],
    ['POST', '/v1/logs/wal/records', [b64('x')]],
    ['DELETE', '/v1/logs/wal/records', { ids: [1] }],
    ['GET', '/v1/subscribers', undefined],
    ['GET', '/v1/logs/wal/subscribers', undefined],
    ['PUT', '/v1/logs/wal/subscribers/s', {}],
    ['DELETE', '/v1/logs/wal/subscribers/s', undefined],
    ['POST', '/v1/logs/wal/subscribers/s/next', {}],
    ['POST', '/v1/logs/wal/subscribers/s/ack', { ids: [1] }],
    ['POST', '/v1/logs/wal/subscribers/s/nack', { ids: [1] }],
    ['GET', '/v1/dlq', undefined],
    ['POST', '/v1/dlq/requeue', { all: true }],
    ['POST', '/v1/dlq/purge', { all: true }],
    ['GET', '/v1/parked', undefined],
    ['POST', '/v1/parked/requeue', { all: true }],
    ['POST', '/v1/parked/purge', { all: true }],
    ['GET', '/v1/stats', undefined],
    ['GET', '/metrics', undefined],
    ['GET', '/v1/no-such-route', undefined],
  ]
  await unchanged(t, s, async () => {
    for (const [method, path, body] of routes) {
      for (const headers of [
        {},
        { authorization: 'Bearer wrong' },
        { authorization: `Bearer ${token}x` },
        { authorization: token },
        { authorization: `Basic ${token}` },
        { authorization: 'Bearer ' },
      ] as Array<Record<string, string>>) {
        const r = body === undefined ? await s.call(method, path, { headers }) : await s.json(method, path, body, headers)
        isError(t, r, 401, 'EVAQ_UNAUTHORIZED', `${method} ${path} with ${JSON.stringify(headers)}`)
        t.regex(String(r.headers['www-authenticate']), /^Bearer/)
      }
    }
    // An unauthenticated oversized body is refused for the token, before it is read.
    isError(t, await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(9 * 1024 * 1024) }),
      401, 'EVAQ_UNAUTHORIZED', 'oversized and unauthenticated')
  }, auth)
  t.is((await s.call('GET', '/healthz')).status, 200)
  t.is((await s.call('GET', '/readyz')).status, 200)
  t.is((await s.call('GET', '/v1/stats', { headers: { authorization: `bearer ${token}` } })).status, 200, 'the scheme is case-insensitive')
  t.is((await s.call('GET', '/metrics', { headers: auth })).status, 200)
})

test('the service refuses to bind a non-loopback address without a token', async t => {
  const { serve } = await import('../../src/server/serve.js')
  const { tmpDir } = await import('../helpers/tmp.js')
  const dir = await tmpDir(t, 'evaq-http-')
  for (const host of ['0.0.0.0', '::']) {
    const err = await t.throwsAsync(serve({ dir, host, port: 0, logLevel: 'silent' }))
    t.is((err as { code?: string }).code, 'EVAQ_INVALID_ARGUMENT', host)
  }
  const s = await serve({ dir, host: '127.0.0.1', port: 0, logLevel: 'silent', evaq: { minFreeDiskBytes: 0 } })
  t.teardown(() => s.close())
  t.regex(s.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.is((await send(s.url, 'GET', '/readyz')).status, 200)
})

// ---- malformed HTTP and shutdown ------------------------------------------------------------------

test('malformed HTTP gets a JSON 400 and the connection closes; the server keeps serving', async t => {
  const s = await startServer(t)
  await seed(s)
  await unchanged(t, s, async () => {
    for (const raw of [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      'POST /v1/logs/wal/records HTTP/1.1\r\nContent-Length: abc\r\n\r\n',
      'GET /v1/stats HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
    ]) {
      const answer = await rawRequest(s.url, raw)
      t.regex(answer, /^HTTP\/1\.1 400 /, JSON.stringify(raw))
      t.is(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).code, 'EVAQ_INVALID_ARGUMENT')
    }
  })
})

function rawRequest (url: string, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1')
    let answer = ''
    socket.on('data', d => { answer += d.toString('latin1') })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
    socket.on('connect', () => socket.write(raw))
  })
}

test('closing the app ends long polls at once (empty answers), finishes requests in flight, then refuses new ones', async t => {
  const s = await startServer(t)
  await s.json('PUT', '/v1/logs/wal/subscribers/w', {})
  const polls = [s.json('POST', '/v1/logs/wal/subscribers/w/next', { waitMs: 60_000 }), s.call('GET', '/v1/logs/wal/records?from=1&waitMs=60000')]
  await eventually(() => s.service.longPolls === 2)
  await s.app.close()
  for (const r of await Promise.all(polls)) t.deepEqual([r.status, r.json], [200, { records: [] }])
  t.is(s.evaq.status, 'open', 'the app does not close the queue: its owner does')
  await t.throwsAsync(send(s.url, 'GET', '/healthz'), { code: 'ECONNREFUSED' })
})
