/**
 * The console's routes over real sockets: the page and its assets (public, with a strict CSP),
 * and the two read routes it needs, `GET /v1/overview` and `GET /v1/logs/:log/previews` (behind
 * the token like the rest of `/v1`), with their bad input answered 4xx and nothing changed.
 */
import test, { type ExecutionContext } from 'ava'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ERROR_CODES } from '../../src/index.js'
import { background, serveInBackground } from '../fixtures/cli.js'
import { send, snapshot, startServer, type Reply, type TestServer } from '../fixtures/http.js'
import { ManualClock } from '../helpers/clock.js'
import { tmpDir } from '../helpers/tmp.js'

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64')

function isError (t: ExecutionContext, r: Reply, status: number, code: string, what: string): void {
  t.is(r.status, status, `${what}: status (body ${r.text.slice(0, 200)})`)
  t.is(r.json?.code, code, `${what}: code`)
  t.is<number, number>(ERROR_CODES[code as keyof typeof ERROR_CODES].status, status, `${what}: the code's status`)
}

async function unchanged (t: ExecutionContext, s: TestServer, bad: () => Promise<void>): Promise<void> {
  const before = await snapshot(s.evaq)
  await bad()
  t.deepEqual(await snapshot(s.evaq), before, 'nothing stored changed')
}

test('GET / is the console page, and its assets are served with their types, a CSP and no caching', async t => {
  const s = await startServer(t)
  const page = await s.call('GET', '/')
  t.is(page.status, 200)
  t.regex(String(page.headers['content-type']), /^text\/html/)
  t.regex(page.text, /<script type="module" src="\/console\/app\.js"><\/script>/)
  const csp = String(page.headers['content-security-policy'])
  t.regex(csp, /default-src 'none'/)
  t.regex(csp, /script-src 'self'/)
  t.notRegex(csp, /unsafe/, 'no inline script, no eval')
  t.is(page.headers['x-content-type-options'], 'nosniff')
  t.is(page.headers['cache-control'], 'no-cache')

  // Every file the page references is served, with its type.
  const files = await readdir(new URL('../../src/server/console/', import.meta.url))
  const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, svg: /^image\/svg\+xml/ }
  for (const file of files.filter(f => f !== 'index.html')) {
    const r = await s.call('GET', `/console/${file}`)
    t.is(r.status, 200, file)
    t.regex(String(r.headers['content-type']), types[file.slice(file.lastIndexOf('.') + 1)]!, file)
  }
  for (const ref of page.text.matchAll(/(?:src|href)="(\/console\/[^"]+)"/g)) t.is((await s.call('GET', ref[1]!)).status, 200, ref[1])
  // The modules import each other by relative path: each import names a file that is served.
  for (const file of files.filter(f => f.endsWith('.js'))) {
    const source = (await s.call('GET', `/console/${file}`)).text
    for (const m of source.matchAll(/from '\.\/([^']+)'/g)) t.true(files.includes(m[1]!), `${file} imports ${m[1]}`)
  }
})

test('only the console\'s own files are served: anything else under /console/ is 404', async t => {
  const s = await startServer(t)
  for (const path of [
    '/console/nope.js',
    '/console/..%2Fapp.ts',
    '/console/%2E%2E%2Fconsole-routes.ts',
    '/console/../app.ts',
    '/console/index.html',
    '/console/',
    '/console/app.js.map',
    '/console/APP.JS',
  ]) {
    const r = await s.call('GET', path)
    isError(t, r, 404, 'EVAQ_NOT_FOUND', path)
  }
})

test('with a token, the page and assets are public (they hold no data) and the data routes are 401 without it', async t => {
  const token = 'console-token'
  const s = await startServer(t, { token })
  t.is((await s.call('GET', '/')).status, 200)
  t.is((await s.call('GET', '/console/app.js')).status, 200)
  for (const path of ['/v1/overview', '/v1/logs/dlq/previews', '/v1/logs/wal/previews?from=1']) {
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Array<Record<string, string>>) {
      isError(t, await s.call('GET', path, { headers }), 401, 'EVAQ_UNAUTHORIZED', `${path} ${JSON.stringify(headers)}`)
    }
    t.is((await s.call('GET', path, { headers: { authorization: `Bearer ${token}` } })).status, 200, path)
  }
})

test('GET /v1/overview: every log\'s counters, its oldest record\'s time and age on the queue\'s clock, subscribers, status and disk', async t => {
  const clock = new ManualClock(1_700_000_000_000)
  const s = await startServer(t, { evaq: { clock } })
  await s.json('POST', '/v1/logs/wal/records', ['a', 'bb', 'ccc'].map(b64))
  clock.set(1_700_000_005_000)
  await s.json('POST', '/v1/logs/wal/records', [b64('dddd')])
  await s.evaq.pushRetryItem('failed', { error: { code: 'E_DOWN', message: 'down' } })
  await s.json('PUT', '/v1/logs/wal/subscribers/exporter', { start: 'earliest' })
  clock.set(1_700_000_065_000)

  const r = await s.call('GET', '/v1/overview')
  t.is(r.status, 200)
  t.is(r.json.status, 'open')
  t.is(r.json.now, 1_700_000_065_000)
  t.is(r.json.disk.full, false)
  t.is(typeof r.json.disk.usedBytes, 'number')
  t.false('maxDiskBytes' in r.json.disk, 'no budget: no maxDiskBytes')
  t.deepEqual(r.json.logs.map((l: { name: string }) => l.name), ['wal', 'dlq', 'parked'])
  const [wal, dlq, parked] = r.json.logs
  t.like(wal, {
    count: 4,
    bytes: 10,
    firstId: 1,
    lastId: 4,
    nextId: 5,
    oldestPushedAt: 1_700_000_000_000,
    oldestAgeMs: 65_000,
    dropped: { records: 0, bytes: 0 },
    quarantined: 0,
  })
  t.is(wal.subscribers.length, 1)
  t.like(wal.subscribers[0], { name: 'exporter', lagRecords: 4, inFlight: 0 })
  t.like(dlq, { count: 1, bytes: 6, firstId: 1, lastId: 1, nextId: 2, oldestPushedAt: 1_700_000_005_000, oldestAgeMs: 60_000 })
  t.like(parked, { count: 0, bytes: 0, nextId: 1, oldestAgeMs: 0, subscribers: [] })
  t.false('oldestPushedAt' in parked, 'an empty log has no oldest record')
  t.false('firstId' in parked)

  // The same numbers as /v1/stats.
  const stats = (await s.call('GET', '/v1/stats')).json
  for (const log of r.json.logs) t.like(stats[log.name], { count: log.count, bytes: log.bytes, nextId: log.nextId })
})

test('GET /v1/logs/:log/previews: pages of records with the payload cut to previewBytes, the full size, and the retry state', async t => {
  const s = await startServer(t)
  const big = Buffer.alloc(5000, 0x61)
  for (let i = 1; i <= 5; i++) {
    await s.evaq.pushRetryItem(i === 3 ? big : `payload ${i}`, { error: { code: 'HTTP_503', message: `attempt ${i} failed` }, attempts: i })
  }

  const first = await s.call('GET', '/v1/logs/dlq/previews?maxCount=2')
  t.is(first.status, 200)
  t.deepEqual(first.json.records.map((r: { id: number }) => r.id), [1, 2])
  t.like(first.json.records[0], {
    id: 1,
    size: 9,
    preview: b64('payload 1'),
    error: { code: 'HTTP_503', message: 'attempt 1 failed' },
    retry: { attempts: 1, lastError: { code: 'HTTP_503', message: 'attempt 1 failed' } },
  })
  t.is(typeof first.json.records[0].retry.nextAttemptAt, 'number')
  t.is(typeof first.json.records[0].pushedAt, 'number')

  const next = await s.call('GET', '/v1/logs/dlq/previews?from=3&maxCount=2&previewBytes=16')
  t.deepEqual(next.json.records.map((r: { id: number }) => r.id), [3, 4])
  t.like(next.json.records[0], { id: 3, size: 5000, preview: b64(big.subarray(0, 16)) })
  t.like(next.json.records[1], { id: 4, size: 9, preview: b64('payload 4') })
  t.like((await s.call('GET', '/v1/logs/dlq/previews?from=3&maxCount=1')).json.records[0],
    { size: 5000, preview: b64(big.subarray(0, 1024)) }, 'previewBytes defaults to 1 KiB')
  t.like((await s.call('GET', '/v1/logs/dlq/previews?from=5&previewBytes=0')).json.records[0], { id: 5, size: 9, preview: '' })
  t.deepEqual((await s.call('GET', '/v1/logs/dlq/previews?from=6')).json, { records: [] })
  t.deepEqual((await s.call('GET', '/v1/logs/parked/previews')).json, { records: [] })

  // The WAL: no retry state.
  await s.json('POST', '/v1/logs/wal/records', [b64('w')])
  const wal = (await s.call('GET', '/v1/logs/wal/previews')).json.records
  t.is(wal.length, 1)
  t.false('retry' in wal[0])
})

test('GET /v1/logs/:log/previews: bad bounds and names are 400 or 404, and nothing changes', async t => {
  const s = await startServer(t)
  await s.evaq.pushRetryItem('x')
  await unchanged(t, s, async () => {
    for (const q of [
      'maxCount=0', 'maxCount=1001', 'previewBytes=65537', 'from=-1', 'from=1.5', 'from=9007199254740993',
      'maxCount=abc', 'from=1&from=2', 'bogus=1', 'waitMs=10', 'maxBytes=1',
    ]) {
      isError(t, await s.call('GET', `/v1/logs/dlq/previews?${q}`), 400, 'EVAQ_INVALID_ARGUMENT', q)
    }
    isError(t, await s.call('GET', '/v1/logs/queue/previews'), 404, 'EVAQ_NOT_FOUND', 'an unknown log')
    isError(t, await s.call('GET', '/v1/logs/wal.x/previews'), 400, 'EVAQ_INVALID_ARGUMENT', 'a malformed log name')
    isError(t, await s.call('POST', '/v1/overview'), 404, 'EVAQ_NOT_FOUND', 'POST /v1/overview')
    isError(t, await s.call('GET', '/v1/overview?x=1'), 400, 'EVAQ_INVALID_ARGUMENT', 'a query on /v1/overview')
  })
  t.is((await s.call('GET', '/v1/logs/dlq/previews?maxCount=1000&previewBytes=65536')).status, 200, 'the limits themselves are fine')
})

test('the console\'s files are served the same from the built binary (dist/, copied by the build) and from src/ through tsx (npm start)', async t => {
  const dir = new URL('../../src/server/console/', import.meta.url)
  const files = await readdir(dir)
  const root = await tmpDir(t, 'evaq-console-bin-')
  const built = await serveInBackground(t, ['--data', join(root, 'built')])
  const source = await background(t, process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', '--data', join(root, 'source')])
  for (const service of [built, source]) {
    for (const file of files) {
      const r = await send(service.url, 'GET', file === 'index.html' ? '/' : `/console/${file}`)
      t.is(r.status, 200, `${service.url} ${file}`)
      t.is(r.text, await readFile(new URL(file, dir), 'utf8'), `${file} as in src/server/console`)
    }
  }
  t.is((await built.stop()).code, 0)
  t.is((await source.stop()).code, 0)
})
