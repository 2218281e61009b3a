/**
 * 2,000 random requests against a running service (fast-check): random methods, routes, log and
 * subscriber names (some past the router's limit), query strings, content types, tokens, origins,
 * hosts and bodies. None may get a 5xx or crash the server; every error is `{ code, message }`
 * with the status of its code in the error table.
 */
import test from 'ava'
import fc from 'fast-check'
import { ERROR_CODES } from '../../src/index.js'
import { send, startServer } from '../fixtures/http.js'

const TOKEN = 'fuzz-token'

const badNumber = fc.constantFrom('-1', '1.5', '9007199254740993', 'abc', '9'.repeat(500), '', '1e3', '0x1f', 'NaN', '%00', '01', ' 7')
const goodNumber = fc.integer({ min: 0, max: 20 }).map(String)
const name = fc.oneof(
  { arbitrary: fc.constantFrom('wal', 'dlq', 'parked', 's1'), weight: 4 },
  { arbitrary: fc.constantFrom('queue', 'WAL', 'a'.repeat(65), '..', '%2e%2e', '%00', '%F0%9F%92%A5', 'x.y'), weight: 1 },
  { arbitrary: fc.string({ minLength: 0, maxLength: 12 }).map(s => encodeURIComponent(s)), weight: 1 }
)
const query = fc.dictionary(
  fc.constantFrom('from', 'maxBytes', 'maxCount', 'waitMs', 'other', 'from[]'),
  // waitMs stays tiny so that long polls on an empty log end at once.
  fc.oneof(goodNumber, badNumber, fc.string({ maxLength: 8 })),
  { maxKeys: 4 }
).map(q => {
  const entries = Object.entries(q).map(([k, v]) => [k, k === 'waitMs' && /^[0-9]+$/.test(v) ? String(Number(v) % 3) : v] as const)
  return entries.length === 0 ? '' : `?${entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`
})
const path = fc.oneof(
  fc.tuple(name, query).map(([log, q]) => `/v1/logs/${log}/records${q}`),
  fc.tuple(name, name, fc.constantFrom('', '/next', '/ack', '/nack', '/other', '/')).map(([log, sub, suffix]) => `/v1/logs/${log}/subscribers/${sub}${suffix}`),
  fc.tuple(name).map(([log]) => `/v1/logs/${log}/subscribers`),
  fc.tuple(fc.constantFrom('/v1/dlq', '/v1/parked', '/v1/logs/wal/records', '/v1/logs/dlq/records'), query).map(([p, q]) => `${p}${q}`),
  fc.constantFrom('/v1/dlq/requeue', '/v1/dlq/purge', '/v1/parked/requeue', '/v1/parked/purge', '/v1/stats', '/metrics', '/healthz', '/readyz',
    '/v1/subscribers', '/', '/v1', '/v1/logs', '//v1//stats', '/v1/logs/wal/records/1', '/v1/backup', '/v1/overview', '/v1/logs/dlq/previews',
    '/console/app.js', '/console/../package.json'),
  fc.string({ maxLength: 30 }).map(s => `/${encodeURIComponent(s)}`),
  // Past the router's parameter limit, and malformed escapes: errors fastify answers before routing.
  fc.constantFrom(`/v1/logs/${'a'.repeat(300)}/records`, `/v1/logs/wal/subscribers/${'s'.repeat(250)}/next`, '/v1/logs/%zz/records', '/console/%',
    '/v1/logs/wal/subscribers/%E0%A4%A/ack')
)
const id = fc.oneof(
  fc.integer({ min: 1, max: 30 }),
  fc.constantFrom(0, -1, 1.5, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e300),
  fc.string({ maxLength: 5 }),
  fc.constant(null)
)
const body = fc.oneof(
  fc.constant(undefined),
  fc.record({ ids: fc.array(id, { maxLength: 5 }) }, { requiredKeys: [] }).map(b => JSON.stringify(b)),
  fc.record({
    ids: fc.array(id, { maxLength: 3 }),
    all: fc.oneof(fc.constant(true), fc.boolean(), fc.string()),
    delayMs: fc.integer({ min: -5, max: 5 }),
  }, { requiredKeys: [] }).map(b => JSON.stringify(b)),
  fc.record({
    maxCount: fc.integer({ min: -2, max: 5 }),
    maxBytes: fc.integer({ min: -2, max: 100 }),
    start: fc.oneof(fc.constantFrom('earliest', 'latest', 'middle'), fc.integer({ min: -1, max: 9 })),
    leaseMs: fc.integer({ min: -1, max: 100_000 }),
  }, { requiredKeys: [] }).map(b => JSON.stringify(b)),
  fc.array(fc.oneof(fc.base64String({ maxLength: 12 }), fc.string({ maxLength: 6 }), fc.integer()), { maxLength: 4 }).map(a => JSON.stringify(a)),
  fc.jsonValue({ maxDepth: 3 }).map(v => JSON.stringify(v)),
  fc.array(fc.oneof(fc.jsonValue({ maxDepth: 2 }).map(v => JSON.stringify(v)), fc.string({ maxLength: 10 })), { maxLength: 5 }).map(lines => lines.join('\n')),
  fc.uint8Array({ maxLength: 64 }).map(a => Buffer.from(a)),
  fc.string({ maxLength: 40 })
)
const contentType = fc.constantFrom(undefined, 'application/json', 'application/x-ndjson', 'application/octet-stream', 'text/plain', 'text/csv',
  'application/json; charset=latin1', 'multipart/form-data', 'application/*', '', ';;;')
const authorization = fc.oneof(
  { arbitrary: fc.constant(`Bearer ${TOKEN}`), weight: 9 },
  { arbitrary: fc.constantFrom(undefined, 'Bearer nope', TOKEN, 'Basic Zm9vOmJhcg==', `Bearer ${TOKEN} `), weight: 1 }
)
// Mostly none: else a page of another origin, or a rebound name (403 and 421).
const site = fc.oneof(
  { arbitrary: fc.constant({}), weight: 9 },
  { arbitrary: fc.constantFrom<Record<string, string>>({ origin: 'http://evil.example' }, { origin: 'null' }, { host: 'attacker.example' }, { 'sec-fetch-site': 'cross-site' }), weight: 1 }
)
const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'GET', 'POST')

test('2,000 random requests: no 5xx, every error in the JSON shape with its code\'s status, and the server keeps serving', async t => {
  const s = await startServer(t, { token: TOKEN })
  await s.json('PUT', '/v1/logs/wal/subscribers/s1', {}, { authorization: `Bearer ${TOKEN}` })
  await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${TOKEN}` }, body: '1\n2\n3\n' })
  const seen = new Map<number, number>()
  await fc.assert(fc.asyncProperty(method, path, contentType, authorization, body, site, async (m, p, type, auth, b, from) => {
    const headers: Record<string, string> = { ...from }
    if (type !== undefined) headers['content-type'] = type
    if (auth !== undefined) headers.authorization = auth
    const hasBody = b !== undefined && m !== 'GET' && m !== 'HEAD'
    const r = await send(s.url, m, p, hasBody ? { headers, body: b } : { headers })
    seen.set(r.status, (seen.get(r.status) ?? 0) + 1)
    if (r.status >= 500) return false
    if (r.status >= 400 && m !== 'HEAD') {
      const code = r.json?.code as keyof typeof ERROR_CODES | undefined
      if (code === undefined || !(code in ERROR_CODES) || ERROR_CODES[code].status !== r.status || typeof r.json.message !== 'string') return false
    }
    return true
  }), { numRuns: 2000 })
  t.log(`statuses: ${[...seen].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}×${v}`).join(', ')}`)
  t.true((seen.get(200) ?? 0) + (seen.get(201) ?? 0) > 0, 'some requests were valid')
  t.is((await send(s.url, 'GET', '/healthz')).status, 200)
  t.is((await send(s.url, 'GET', '/readyz')).status, 200)
  t.is(s.evaq.status, 'open')
})
