/**
 * The service's Host and Origin checks on real sockets (see docs/security.md): a request that
 * names another host (DNS rebinding) is 421 EVAQ_MISDIRECTED, one a web page of another origin
 * sent is 403 EVAQ_FORBIDDEN, both before the body is read, and neither stores, leases, purges or
 * streams anything. Clients that are not browsers, the service's own origin, and the hosts and
 * origins the operator allowed keep working. (test/server/console-cross-site.test.ts does the same from
 * a real browser.)
 */
import test, { type ExecutionContext } from 'ava'
import { connect } from 'node:net'
import { join } from 'node:path'
import { serve, type ServeOptions, type Service } from '../../src/server/serve.js'
import { send, snapshot, TEST_OPTIONS } from '../fixtures/http.js'
import { serveInBackground } from '../fixtures/cli.js'
import { tmpDir } from '../helpers/tmp.js'

async function start (t: ExecutionContext, options: Partial<ServeOptions> = {}): Promise<Service> {
  const dir = join(await tmpDir(t, 'evaq-security-'), 'q')
  const service = await serve({ dir, port: 0, logLevel: 'silent', evaq: TEST_OPTIONS, ...options })
  t.teardown(() => service.close())
  return service
}

/** One record in the WAL, one in the DLQ, a subscriber `exporter` at the start of the WAL. */
async function seed (s: Service, headers: Record<string, string> = {}): Promise<void> {
  await s.evaq.wal.push(Buffer.from('order 1'))
  await s.evaq.dlq.push(Buffer.from('failed 1'))
  const r = await send(s.url, 'PUT', '/v1/logs/wal/subscribers/exporter', {
    headers: { 'content-type': 'application/json', ...headers },
    body: '{"start":"earliest"}',
  })
  if (r.status !== 201) throw new Error(`subscribe: ${r.status} ${r.text}`)
}

const host = (s: Service): string => new URL(s.url).host
const port = (s: Service): string => new URL(s.url).port

/** What an attacker would do, each with `headers`: push, lease, purge, back up, read. */
async function attacks (s: Service, headers: Record<string, string>): Promise<Array<{ status: number, code: unknown }>> {
  const out = []
  for (const [method, path, type, body] of [
    ['POST', '/v1/logs/wal/records', 'text/plain', 'x'],
    ['POST', '/v1/logs/wal/subscribers/exporter/next', undefined, undefined],
    ['POST', '/v1/logs/wal/subscribers/exporter/next', 'text/plain', ''],
    ['POST', '/v1/dlq/purge', 'application/json', '{"all":true}'],
    ['POST', '/v1/dlq/requeue', 'application/json', '{"all":true}'],
    ['POST', '/v1/backup', undefined, undefined],
    ['GET', '/v1/logs/wal/records', undefined, undefined],
    ['DELETE', '/v1/logs/wal/subscribers/exporter', undefined, undefined],
  ] as const) {
    const h: Record<string, string> = { ...headers }
    if (type !== undefined) h['content-type'] = type
    const r = await send(s.url, method, path, body === undefined ? { headers: h } : { headers: h, body })
    out.push({ status: r.status, code: r.json?.code })
  }
  return out
}

test('DNS rebinding: a request whose Host is another name is 421 EVAQ_MISDIRECTED and changes nothing', async t => {
  const s = await start(t)
  await seed(s)
  const before = await snapshot(s.evaq)
  for (const name of ['attacker.example', `attacker.example:${port(s)}`, 'localhost.attacker.example', '127.0.0.1.nip.io', 'LOCALHOSTX']) {
    const answers = await attacks(s, { Host: name })
    t.deepEqual(answers, answers.map(() => ({ status: 421, code: 'EVAQ_MISDIRECTED' })), name)
  }
  // The public routes too: a rebound page learns nothing, not even that the service runs.
  t.is((await send(s.url, 'GET', '/healthz', { headers: { Host: 'attacker.example' } })).status, 421)
  t.is((await send(s.url, 'GET', '/', { headers: { Host: 'attacker.example' } })).status, 421)
  t.deepEqual(await snapshot(s.evaq), before)
  // The subscriber still gets its record, delivered for the first time.
  const next = await send(s.url, 'POST', '/v1/logs/wal/subscribers/exporter/next')
  t.deepEqual(next.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[1, 1]])
})

test('a request a web page of another origin sent is 403 EVAQ_FORBIDDEN and changes nothing: Origin, Origin: null, Sec-Fetch-Site', async t => {
  const s = await start(t)
  await seed(s)
  const before = await snapshot(s.evaq)
  for (const headers of [
    { Origin: 'http://evil.example' },
    { Origin: 'null' },
    // Another port of the same host is another origin (the same site).
    { Origin: `http://127.0.0.1:${Number(port(s)) + 1}` },
    { Origin: `http://localhost:${Number(port(s)) + 1}`, 'Sec-Fetch-Site': 'same-site' },
    // The right host under another scheme's default port is not the service's own origin either.
    { Origin: 'http://127.0.0.1' },
    // A GET without Origin (an image, a script tag) says where it came from in Sec-Fetch-Site.
    { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors' },
    { 'Sec-Fetch-Site': 'same-site', 'Sec-Fetch-Mode': 'no-cors' },
    // A form posted cross-site is a navigation, with an Origin.
    { Origin: 'http://evil.example', 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate' },
  ] as Array<Record<string, string>>) {
    const answers = await attacks(s, headers)
    t.deepEqual(answers, answers.map(() => ({ status: 403, code: 'EVAQ_FORBIDDEN' })), JSON.stringify(headers))
  }
  t.deepEqual(await snapshot(s.evaq), before)
  const next = await send(s.url, 'POST', '/v1/logs/wal/subscribers/exporter/next')
  t.deepEqual(next.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[1, 1]])
})

test('the refusal comes before the body is read: a huge declared body is answered at once and the connection closed', async t => {
  const s = await start(t)
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port(s)), '127.0.0.1')
    let text = ''
    socket.on('data', d => { text += d.toString('latin1') })
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
    // Headers only: the 1 GiB body never comes, so an answer proves it was not waited for.
    socket.on('connect', () => socket.write(`POST /v1/logs/wal/records HTTP/1.1\r\nHost: ${host(s)}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: ${2 ** 30}\r\n\r\n`))
  })
  t.regex(answer, /^HTTP\/1\.1 403 /)
  t.regex(answer, /\r\nconnection: close\r\n/i)
  t.is(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).code, 'EVAQ_FORBIDDEN')
  t.is((await s.evaq.wal.stats()).count, 0)
})

test('clients that are not browsers, the service\'s own origin, loopback names, IP addresses and tunnels keep working', async t => {
  const s = await start(t)
  let pushed = 0
  const push = async (headers: Record<string, string>): Promise<void> => {
    const r = await send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain', ...headers }, body: 'ok' })
    t.is(r.status, 201, JSON.stringify(headers))
    pushed++
  }
  await push({}) // curl, SDKs, the CLI: no Origin, no Sec-Fetch-*
  await push({ Origin: s.url }) // the console, same origin
  await push({ Host: `LocalHost:${port(s)}`, Origin: `http://localhost:${port(s)}`, 'Sec-Fetch-Site': 'same-origin' })
  await push({ 'Sec-Fetch-Site': 'same-origin' })
  await push({ 'Sec-Fetch-Site': 'none' }) // typed into the address bar, a bookmark
  for (const name of [`localhost:${port(s)}`, 'localhost', `[::1]:${port(s)}`, `127.0.0.1:${port(s)}`, '127.0.0.1', '10.1.2.3:80', 'LocalHost']) {
    await push({ Host: name })
  }
  // An SSH tunnel (ssh -L 9000:localhost:PORT): the browser's origin is the tunnel's end.
  await push({ Host: 'localhost:9000', Origin: 'http://localhost:9000' })
  // A link from another site to the console (or any GET) is a top-level navigation: the answer
  // goes to the user, not to the page that linked.
  for (const path of ['/', '/v1/stats']) {
    const r = await send(s.url, 'GET', path, { headers: { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate', 'Sec-Fetch-Dest': 'document' } })
    t.is(r.status, 200, path)
  }
  // HTTP/1.0 needs no Host; HTTP/1.1 without one is a malformed request, in evaq's shape.
  const raw = (text: string): Promise<string> => new Promise((resolve, reject) => {
    const socket = connect(Number(port(s)), '127.0.0.1')
    let answer = ''
    socket.on('data', d => { answer += d.toString('latin1') })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
    socket.on('connect', () => socket.write(text))
  })
  t.regex(await raw('GET /healthz HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /)
  const noHost = await raw('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n')
  t.regex(noHost, /^HTTP\/1\.1 400 /)
  t.is(JSON.parse(noHost.slice(noHost.indexOf('\r\n\r\n') + 4)).code, 'EVAQ_INVALID_ARGUMENT')
  t.is((await s.evaq.wal.stats()).count, pushed)
})

test('allowedHosts and allowedOrigins let the named ones through, and only them', async t => {
  const s = await start(t, { allowedHosts: ['evaq.internal', 'Queue.Example.'], allowedOrigins: ['https://console.example', 'http://tools.example:8080/'] })
  await seed(s, { Host: 'evaq.internal:7070' })
  const push = (headers: Record<string, string>): Promise<number> =>
    send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain', ...headers }, body: 'x' }).then(r => r.status)
  t.is(await push({ Host: 'evaq.internal' }), 201)
  t.is(await push({ Host: 'EVAQ.internal:443' }), 201)
  t.is(await push({ Host: 'queue.example' }), 201)
  t.is(await push({ Host: 'queue.example.:80' }), 201)
  t.is(await push({ Host: 'evaq.internal', Origin: 'https://evaq.internal' }), 201) // a TLS proxy that keeps Host
  t.is(await push({ Origin: 'https://console.example' }), 201) // a proxy that rewrites Host
  t.is(await push({ Origin: 'http://tools.example:8080', 'Sec-Fetch-Site': 'cross-site' }), 201)
  t.is(await push({ Host: 'other.internal' }), 421)
  t.is(await push({ Host: 'evaq.internal.attacker.example' }), 421)
  t.is(await push({ Origin: 'http://console.example' }), 403)
  t.is(await push({ Origin: 'https://console.example:8443' }), 403)
  t.is(await push({ Origin: 'http://tools.example' }), 403)
  t.is((await s.evaq.wal.stats()).count, 1 + 7)
})

test('allowedHosts `*` turns the Host check off; the Origin check stays', async t => {
  const s = await start(t, { allowedHosts: ['*'] })
  t.is((await send(s.url, 'GET', '/v1/stats', { headers: { Host: 'anything.example' } })).status, 200)
  t.is((await send(s.url, 'GET', '/v1/stats', { headers: { Host: 'anything.example', Origin: 'http://anything.example' } })).status, 200)
  t.is((await send(s.url, 'GET', '/v1/stats', { headers: { Origin: 'http://evil.example' } })).status, 403)
})

test('with a token: the Origin check stays (before the token\'s); Host is checked only when allowedHosts names hosts', async t => {
  const token = 'sekrit'
  const auth = { authorization: `Bearer ${token}` }
  const s = await start(t, { token })
  await seed(s, auth)
  const before = await snapshot(s.evaq)
  // A page that somehow holds the token still cannot use it from another origin.
  const answers = await attacks(s, { ...auth, Origin: 'http://evil.example' })
  t.deepEqual(answers, answers.map(() => ({ status: 403, code: 'EVAQ_FORBIDDEN' })))
  t.deepEqual(await snapshot(s.evaq), before)
  // Every data route needs the token, which a browser never sends on its own: any name serves
  // (a service on 0.0.0.0 is reached by whatever names its clients use).
  t.is((await send(s.url, 'GET', '/v1/stats', { headers: { ...auth, Host: 'evaq.svc.cluster.local:7070' } })).status, 200)
  t.is((await send(s.url, 'GET', '/v1/stats', { headers: { Host: 'evaq.svc.cluster.local:7070' } })).status, 401)

  const pinned = await start(t, { token, allowedHosts: ['evaq.internal'] })
  t.is((await send(pinned.url, 'GET', '/v1/stats', { headers: { ...auth, Host: 'evaq.internal' } })).status, 200)
  t.is((await send(pinned.url, 'GET', '/v1/stats', { headers: { ...auth, Host: 'localhost' } })).status, 200)
  t.is((await send(pinned.url, 'GET', '/v1/stats', { headers: { ...auth, Host: 'other.example' } })).status, 421)
})

test('bad allowedHosts and allowedOrigins are EVAQ_INVALID_ARGUMENT before anything is opened', async t => {
  const dir = join(await tmpDir(t, 'evaq-security-'), 'q')
  for (const options of [
    { allowedHosts: ['evaq.internal:7070'] },
    { allowedHosts: ['http://evaq.internal'] },
    { allowedHosts: [''] },
    { allowedOrigins: ['evaq.internal'] },
    { allowedOrigins: ['https://console.example/path'] },
    { allowedOrigins: ['ftp://console.example'] },
    { allowedOrigins: ['*'] },
    { allowedOrigins: ['null'] },
  ]) {
    const err = await t.throwsAsync(serve({ dir, port: 0, logLevel: 'silent', evaq: TEST_OPTIONS, ...options }))
    t.is((err as { code?: string }).code, 'EVAQ_INVALID_ARGUMENT', JSON.stringify(options))
  }
})

test('evaq serve --allowed-host and --allowed-origin (repeatable) reach the service', async t => {
  const dir = join(await tmpDir(t, 'evaq-security-'), 'q')
  const s = await serveInBackground(t, ['--data', dir, '--allowed-host', 'evaq.internal', '--allowed-host', 'queue.internal', '--allowed-origin', 'https://console.example'])
  const get = (headers: Record<string, string>): Promise<number> => send(s.url, 'GET', '/v1/stats', { headers }).then(r => r.status)
  t.is(await get({ Host: 'evaq.internal' }), 200)
  t.is(await get({ Host: 'queue.internal' }), 200)
  t.is(await get({ Host: 'attacker.example' }), 421)
  t.is(await get({ Origin: 'https://console.example' }), 200)
  t.is(await get({ Origin: 'http://evil.example' }), 403)
})
