/**
 * Every error the service sends has evaq's shape, the framework's own included: a JSON body
 * `{ code, message }` whose code is in ERROR_CODES and whose status is that code's. Each case is
 * one the framework (fastify, Node's HTTP server) answers before or around evaq's routes.
 */
import test from 'ava'
import { connect } from 'node:net'
import { ERROR_CODES } from '../../src/index.js'
import { send, startServer, type Reply } from '../fixtures/http.js'

function evaqShape (r: { status: number, headers: Reply['headers'], json: any }): string | undefined {
  const code = r.json?.code as keyof typeof ERROR_CODES | undefined
  if (code === undefined || !(code in ERROR_CODES)) return `no EVAQ_ code: ${JSON.stringify(r.json)}`
  if (ERROR_CODES[code].status !== r.status) return `status ${r.status} is not ${code}'s ${ERROR_CODES[code].status}`
  if (typeof r.json.message !== 'string') return 'no message'
  if (!String(r.headers['content-type']).startsWith('application/json')) return `content-type ${String(r.headers['content-type'])}`
  const extra = Object.keys(r.json).filter(k => !['code', 'message', 'ids', 'status', 'details'].includes(k))
  if (extra.length > 0) return `other fields: ${extra.join(', ')}`
  return undefined
}

function raw (url: string, text: string): Promise<{ status: number, headers: Reply['headers'], json: any }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1')
    let answer = ''
    socket.on('data', d => { answer += d.toString('latin1') })
    socket.on('end', () => {
      const head = answer.slice(0, answer.indexOf('\r\n\r\n'))
      const headers: Record<string, string> = {}
      for (const line of head.split('\r\n').slice(1)) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim()
      let json: unknown
      try { json = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) } catch {}
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), headers, json })
    })
    socket.on('error', reject)
    socket.on('connect', () => socket.write(text))
  })
}

test('the framework\'s own errors are in evaq\'s shape with an EVAQ_ code', async t => {
  const s = await startServer(t, { bodyLimit: 64 })
  const json = { 'content-type': 'application/json' }
  const cases: Array<[string, string, string, { headers?: Record<string, string>, body?: string }]> = [
    ['a path parameter over the router\'s limit (fastify: 414)', 'GET', `/v1/logs/${'a'.repeat(300)}/records`, {}],
    ['a subscriber name over the router\'s limit', 'POST', `/v1/logs/wal/subscribers/${'s'.repeat(201)}/next`, {}],
    ['a malformed escape in a path parameter', 'GET', '/v1/logs/%zz/records', {}],
    ['a malformed escape in a console file name', 'GET', '/console/%E0%A4%A', {}],
    ['an unknown route', 'GET', '/nope', {}],
    ['an unknown method on a known path', 'PATCH', '/v1/stats', {}],
    ['OPTIONS (no CORS)', 'OPTIONS', '/v1/logs/wal/records', { headers: { Origin: s.url, 'Access-Control-Request-Method': 'POST' } }],
    ['malformed JSON', 'POST', '/v1/dlq/purge', { headers: json, body: '{"all":' }],
    ['an empty JSON body', 'POST', '/v1/dlq/purge', { headers: json, body: '' }],
    ['JSON that fails the schema', 'POST', '/v1/dlq/purge', { headers: json, body: '{"all":false}' }],
    ['a body over the limit', 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(65) }],
    ['a content type no route takes', 'POST', '/v1/dlq/purge', { headers: { 'content-type': 'text/csv' }, body: 'a,b' }],
    ['a content type with a bad charset', 'POST', '/v1/dlq/purge', { headers: { 'content-type': 'application/json; charset=latin1' }, body: '{}' }],
    ['a query string that fails the schema', 'GET', '/v1/dlq?from=-1', {}],
    ['another host', 'GET', '/v1/stats', { headers: { Host: 'attacker.example' } }],
    ['another origin', 'POST', '/v1/logs/wal/records', { headers: { Origin: 'http://evil.example', 'content-type': 'text/plain' }, body: 'x' }],
  ]
  for (const [what, method, path, options] of cases) {
    const r = await send(s.url, method, path, options)
    t.true(r.status >= 400, `${what}: ${r.status}`)
    t.is(evaqShape(r), undefined, `${what}: ${r.status} ${r.text.slice(0, 200)}`)
  }
  for (const [what, text] of [
    ['HTTP/1.1 without Host', 'GET /v1/stats HTTP/1.1\r\nConnection: close\r\n\r\n'],
    ['headers over Node\'s limit', `GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`],
    ['a bad Content-Length', 'POST /v1/logs/wal/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n'],
    ['an unknown HTTP method', 'BREW /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'],
  ] as const) {
    const r = await raw(s.url, text)
    t.true(r.status >= 400, `${what}: ${r.status}`)
    t.is(evaqShape(r), undefined, `${what}: ${r.status} ${JSON.stringify(r.json)}`)
  }
  t.is((await s.evaq.wal.stats()).count, 0)
  t.is((await send(s.url, 'GET', '/healthz')).status, 200)
})

test('a 415 lists the content types the route takes; a 413 states the limit and the flag that raises it', async t => {
  const s = await startServer(t, { bodyLimit: 64 })
  const push = await send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'hello' })
  t.is(push.status, 415)
  t.is(push.json.code, 'EVAQ_UNSUPPORTED_MEDIA_TYPE')
  t.deepEqual(push.json.details, { accepted: ['application/octet-stream', 'text/plain', 'application/x-ndjson', 'application/json'] })
  const bare = await send(s.url, 'POST', '/v1/logs/wal/records', { body: 'hello' })
  t.is(bare.status, 415)
  t.deepEqual(bare.json.details, push.json.details, 'a body without a content type: the same list')
  const purge = await send(s.url, 'POST', '/v1/dlq/purge', { headers: { 'content-type': 'text/plain' }, body: 'x' })
  t.is(purge.status, 415)
  t.deepEqual(purge.json.details, { accepted: ['application/json'] }, 'a JSON route lists JSON only')

  const big = await send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(65) })
  t.is(big.status, 413)
  t.is(big.json.code, 'EVAQ_TOO_LARGE')
  t.deepEqual(big.json.details, { limitBytes: 64, flag: '--body-limit', option: 'bodyLimit' })
  const ids = Array.from({ length: 40 }, (_, i) => i + 1)
  const json = await send(s.url, 'POST', '/v1/dlq/purge', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ids }) })
  t.is(json.status, 413)
  t.is(json.json.details.limitBytes, 64)
  t.is((await s.evaq.wal.stats()).count, 0)
})

test('a 413 from the queue\'s own payload limit names maxPayloadBytes, not the body limit', async t => {
  const s = await startServer(t, { bodyLimit: 1024, evaq: { maxPayloadBytes: 100 } })
  const r = await send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(101) })
  t.is(r.status, 413)
  t.is(r.json.code, 'EVAQ_TOO_LARGE')
  t.deepEqual(r.json.details, { limitBytes: 100, option: 'maxPayloadBytes' })
})
