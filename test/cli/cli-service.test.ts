/**
 * The commands of the built `evaq` binary that go with the service: `serve` in a child process,
 * and every operating command both on the directory (--data) and through the service (--url),
 * answering alike; exit codes and --json output parsed.
 */
import test, { type ExecutionContext } from 'ava'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { evaq, serveInBackground, type Run } from '../fixtures/cli.js'
import { send } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

/** A closed queue: WAL 1..3, DLQ 1..2 with errors, parked 1 (from a retry daemon), a subscriber. */
async function fixture (t: ExecutionContext): Promise<string> {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  const q = await Evaq.open(dir, OPTIONS)
  try {
    await q.pushWalMany(['w1', Buffer.from([0, 255, 10]), 'w3'])
    await q.pushRetryItem('poison', { error: { code: 'E_REFUSED', message: 'refused' } })
    const daemon = q.retry(() => { throw Object.assign(new Error('refused'), { retriable: false }) }, { autoStart: false })
    await daemon.tick()
    await daemon.stop()
    await q.pushRetryItem('d2', { error: { code: 'E_DOWN', message: 'down' } })
    await q.pushRetryItem('d3', { error: 'later' })
    const sub = await q.wal.subscribe('reader')
    const batch = await sub.next({ maxCount: 1 })
    await batch!.ack()
  } finally {
    await q.close()
  }
  return dir
}

function ok (t: ExecutionContext, run: Run, what: string): string {
  t.is(run.code, 0, `${what}: exit 0 (stderr: ${run.stderr.slice(0, 300)})`)
  return run.stdout
}

function jsonLines (text: string): any[] {
  return text.split('\n').filter(l => l !== '').map(l => JSON.parse(l))
}

test('serve: the commands answer the same through the service (--url) as on the directory (--data)', async t => {
  const dir = await fixture(t)
  const onDir: Record<string, string> = {}
  const commands: string[][] = [
    ['stats', '--json'],
    ['peek', 'wal', '--json'],
    ['peek', 'dlq', '--json', '--from', '2'],
    ['peek', 'parked', '--json'],
    ['dlq', 'list', '--json', '--max-count', '1'],
    ['parked', 'list', '--json'],
    ['subscribers', '--json'],
    ['subscribers', 'wal', '--json'],
    ['stats'],
    ['peek', 'wal'],
  ]
  for (const c of commands) onDir[c.join(' ')] = ok(t, await evaq([...c, '--data', dir]), `${c.join(' ')} --data`)

  const service = await serveInBackground(t, ['--data', dir])
  t.regex(service.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  for (const c of commands) {
    const viaUrl = ok(t, await evaq([...c, '--url', service.url]), `${c.join(' ')} --url`)
    if (c[0] === 'stats' || c[0] === 'subscribers') {
      // lastActiveAt and ages move with the clock: compare the counts.
      if (c.includes('--json')) t.deepEqual(shape(JSON.parse(viaUrl)), shape(JSON.parse(onDir[c.join(' ')]!)), c.join(' '))
      else {
        const counts = (text: string): string => text.split('\n').map(l => l.split('\t').slice(0, 3).join('\t')).join('\n')
        t.is(counts(viaUrl), counts(onDir[c.join(' ')]!), c.join(' '))
      }
    } else {
      t.is(viaUrl, onDir[c.join(' ')]!, c.join(' '))
    }
  }
  const peek = jsonLines(onDir['peek wal --json']!)
  t.deepEqual(peek.map(r => [r.id, Buffer.from(r.payload, 'base64')]), [[1, Buffer.from('w1')], [2, Buffer.from([0, 255, 10])], [3, Buffer.from('w3')]])
  t.like(jsonLines(onDir['parked list --json']!)[0], { retry: { reason: 'permanent', dlqId: 1, lastError: { message: 'refused' } } })
  t.like(JSON.parse(onDir['subscribers --json']!)[0], { log: 'wal', name: 'reader', ackFloor: 2 })

  // While the service holds the directory, --data goes through it (found in EVAQ-SERVICE) and says so.
  for (const c of commands.filter(c => c[0] !== 'stats' && c[0] !== 'subscribers')) {
    const through = await evaq([...c, '--data', dir])
    t.is(ok(t, through, `${c.join(' ')} --data through the service`), onDir[c.join(' ')]!, c.join(' '))
    t.true(through.stderr.includes(service.url), through.stderr)
  }
  t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })
  t.true(service.logs.some(l => l.msg.startsWith('evaq stopped')), 'it logged its stop')
})

function shape (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shape)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    if (k === 'lastActiveAt' || k === 'oldestUnackedAgeMs' || k === 'usedBytes') continue
    out[k] = shape(v)
  }
  return out
}

test('dlq and parked requeue and purge, through the service and on the directory; unknown IDs exit 1 and change nothing', async t => {
  for (const mode of ['--data', '--url'] as const) {
    const dir = await fixture(t)
    const service = mode === '--url' ? await serveInBackground(t, ['--data', dir]) : undefined
    const target = [mode, service?.url ?? dir]
    const missing = await evaq(['dlq', 'requeue', '2', '99', ...target])
    t.is(missing.code, 1, `${mode}: unknown ID`)
    t.true(missing.stderr.includes('EVAQ_NOT_FOUND'), missing.stderr)
    t.deepEqual(jsonLines(ok(t, await evaq(['dlq', 'list', '--json', ...target]), 'list')).map(r => r.id), [2, 3], `${mode}: nothing moved`)
    for (const bad of [['dlq', 'requeue'], ['dlq', 'purge', '--all', '2'], ['dlq', 'purge', 'x'], ['dlq', 'purge', '-1'], ['parked', 'frob'], ['dlq']]) {
      const run = await evaq([...bad, ...target])
      t.is(run.code, 2, `${mode}: ${bad.join(' ')} (stderr ${run.stderr.slice(0, 200)})`)
    }

    t.deepEqual(JSON.parse(ok(t, await evaq(['dlq', 'requeue', '2', '--json', ...target]), 'requeue')), { ids: [4] }, `${mode}: DLQ 2 back in the WAL as 4`)
    t.deepEqual(JSON.parse(ok(t, await evaq(['dlq', 'purge', '--all', '--json', ...target]), 'purge')), { purged: 1 })
    const parked = jsonLines(ok(t, await evaq(['parked', 'list', '--json', ...target]), 'parked list'))
    t.is(parked.length, 1)
    const requeued = JSON.parse(ok(t, await evaq(['parked', 'requeue', String(parked[0].id), '--json', ...target]), 'parked requeue'))
    t.is(requeued.ids.length, 1)
    const dlq = jsonLines(ok(t, await evaq(['dlq', 'list', '--json', ...target]), 'dlq list'))
    t.deepEqual(dlq.map(r => [r.id, Buffer.from(r.payload, 'base64').toString(), r.retry.attempts]), [[requeued.ids[0], 'poison', 0]])
    t.deepEqual(JSON.parse(ok(t, await evaq(['parked', 'purge', '--all', '--json', ...target]), 'parked purge')), { purged: 0 })
    t.regex(ok(t, await evaq(['dlq', 'purge', String(requeued.ids[0]), ...target]), 'text'), /^purged 1 record/)
    const wal = jsonLines(ok(t, await evaq(['peek', 'wal', '--json', ...target]), 'peek'))
    t.deepEqual(wal.map(r => Buffer.from(r.payload, 'base64').toString('latin1')), ['w1', '\u0000\u00ff\n', 'w3', 'd2'])
    if (service !== undefined) t.is((await service.stop()).code, 0)
  }
})

test('tail prints records as they are pushed, from the next one, and stops after --count', async t => {
  const dir = await fixture(t)
  const service = await serveInBackground(t, ['--data', dir])
  let done = false
  const tail = evaq(['tail', 'wal', '--url', service.url, '--count', '3', '--json']).finally(() => { done = true })
  // tail starts at the next ID when it starts: push one record at a time until it has printed three.
  const seen: number[] = []
  for (let i = 0; i < 5000; i++) {
    if (done) break
    const r = await send(service.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: `t${i}` })
    seen.push(...r.json.ids as number[])
  }
  const run = await tail
  const printed = jsonLines(ok(t, run, 'tail'))
  t.is(printed.length, 3)
  t.deepEqual(printed.map(r => r.id), [printed[0].id, printed[0].id + 1, printed[0].id + 2], 'consecutive, in ID order')
  t.true(printed.every(r => r.id >= 4), 'only records pushed after it started (the fixture has 1..3)')
  t.deepEqual(printed.map(r => Buffer.from(r.payload, 'base64').toString()), printed.map(r => `t${seen.indexOf(r.id)}`))

  // --from replays: the fixture's records first.
  const replay = jsonLines(ok(t, await evaq(['tail', 'wal', '--url', service.url, '--from', '1', '--count', '2', '--json']), 'tail --from'))
  t.deepEqual(replay.map(r => r.id), [1, 2])
})

test('export and import: NDJSON round trip through files and pipes, --data and --url; a bad line imports nothing', async t => {
  const dir = await fixture(t)
  const root = await tmpDir(t, 'evaq-cli-svc-')
  const file = join(root, 'wal.ndjson')
  const exported = ok(t, await evaq(['export', 'wal', '--data', dir, '--out', file]), 'export --out')
  t.regex(exported, /^exported 3 record\(s\) of wal to /)
  const lines = jsonLines(await readFile(file, 'utf8'))
  t.deepEqual(lines.map(r => r.id), [1, 2, 3])
  t.is(ok(t, await evaq(['export', 'wal', '--data', dir]), 'export to stdout'), await readFile(file, 'utf8'), 'stdout carries the same lines')
  t.is((await evaq(['export', 'wal', '--data', dir, '--out', file])).code, 2, 'an existing file is not overwritten (EVAQ_INVALID_ARGUMENT)')
  t.is((await evaq(['export', 'wal', '--data', dir, '--format', 'csv'])).code, 2)

  // Import into a new directory (created), from the file.
  const copy = join(root, 'copy')
  t.deepEqual(JSON.parse(ok(t, await evaq(['import', 'wal', '--data', copy, '--in', file, '--json']), 'import')), { imported: 3, firstId: 1, lastId: 3 })
  // And through a service, from stdin, into its DLQ.
  const service = await serveInBackground(t, ['--data', copy])
  const imported = await evaq(['import', 'dlq', '--url', service.url, '--json'], { input: await readFile(file) })
  t.deepEqual(JSON.parse(ok(t, imported, 'import stdin')), { imported: 3, firstId: 1, lastId: 3 })
  const back = jsonLines(ok(t, await evaq(['export', 'dlq', '--url', service.url]), 'export --url'))
  t.deepEqual(back.map(r => r.payload), lines.map(r => r.payload), 'payloads survive the round trip byte for byte')

  // A file with a bad line: checked whole first, nothing imported, exit 2.
  const bad = join(root, 'bad.ndjson')
  await writeFile(bad, `${lines[0] === undefined ? '' : JSON.stringify(lines[0])}\n{"payload":"not base64!"}\n`)
  const refused = await evaq(['import', 'wal', '--url', service.url, '--in', bad])
  t.is(refused.code, 2)
  t.true(refused.stderr.includes('EVAQ_INVALID_ARGUMENT'))
  t.like(JSON.parse(ok(t, await evaq(['stats', '--url', service.url, '--json']), 'stats')), { wal: { count: 3 } })
  t.is((await evaq(['import', 'parked', '--url', service.url], { input: `${JSON.stringify(lines[0])}\n` })).code, 2, 'parked takes no pushes')
})

test('serve refuses a non-loopback address without a token; with a token, --url needs it (flag or EVAQ_TOKEN)', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  const refused = await evaq(['serve', '--data', dir, '--host', '0.0.0.0', '--port', '0'])
  t.is(refused.code, 2)
  t.true(refused.stderr.includes('EVAQ_INVALID_ARGUMENT'), refused.stderr)
  for (const bad of [['--port', '70000'], ['--port', 'x'], ['--log-level', 'loud'], ['--durability', 'sometimes'], ['extra']]) {
    t.is((await evaq(['serve', '--data', dir, ...bad])).code, 2, bad.join(' '))
  }
  t.is((await evaq(['serve', '--data'])).code, 2, '--data needs a value')

  const service = await serveInBackground(t, ['--data', dir], { EVAQ_TOKEN: 'tok-123' })
  const anonymous = await evaq(['stats', '--url', service.url])
  t.is(anonymous.code, 1)
  t.true(anonymous.stderr.includes('EVAQ_UNAUTHORIZED'), anonymous.stderr)
  t.is((await evaq(['stats', '--url', service.url, '--token', 'wrong'])).code, 1)
  ok(t, await evaq(['stats', '--url', service.url, '--token', 'tok-123']), '--token')
  ok(t, await evaq(['stats', '--url', service.url], { env: { EVAQ_TOKEN: 'tok-123' } }), 'EVAQ_TOKEN')
  t.is((await send(service.url, 'GET', '/readyz')).status, 200, '/readyz needs no token')

  const down = await evaq(['stats', '--url', 'http://127.0.0.1:1'])
  t.is(down.code, 1, 'a service that is not there')
  t.true(down.stderr.includes('EVAQ_IO'))
  for (const args of [
    ['check', '--url', service.url],
    ['repair', '--url', service.url, '--backup', dir],
    ['stats', '--data', dir, '--url', service.url],
    ['stats', '--url', 'not a url'],
    ['peek', 'wal', '--data', dir, '--token'],
  ]) {
    t.is((await evaq(args)).code, 2, args.join(' '))
  }
})

test('serve: --min-free-disk-bytes, --on-full and --push-timeout set the disk budget; ' +
  'a push that finds no room is answered 503 EVAQ_AT_CAPACITY with Retry-After, /readyz says full', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  for (const bad of [
    ['--on-full', 'sometimes'],
    ['--push-timeout', '5m'],
    ['--push-timeout', '-1'],
    ['--min-free-disk-bytes', 'lots'],
    ['--min-free-disk-bytes', '1000'],
    ['--max-disk-bytes', '1k'],
  ]) {
    const run = await evaq(['serve', '--data', dir, '--port', '0', ...bad])
    t.is(run.code, 2, bad.join(' '))
    t.true(run.stderr.includes('EVAQ_INVALID_ARGUMENT') || run.stderr.includes('--on-full'), `${bad.join(' ')}: ${run.stderr.slice(0, 200)}`)
  }
  // A reserve no filesystem has: every push finds the budget full.
  const reserve = String(2 ** 50)
  const cases: Array<{ flags: string[], what: string }> = [
    { flags: ['--push-timeout', '0.2s'], what: 'backpressure (the default) waits --push-timeout' },
    { flags: ['--on-full', 'reject', '--push-timeout', '30s'], what: 'reject answers at once' },
  ]
  for (const { flags, what } of cases) {
    const service = await serveInBackground(t, ['--data', dir, '--min-free-disk-bytes', reserve, ...flags])
    const r = await send(service.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: 'no room' })
    t.is(r.status, 503, what)
    t.is(r.json.code, 'EVAQ_AT_CAPACITY', what)
    t.regex(String(r.headers['retry-after']), /^[1-9][0-9]*$/, what)
    const ready = await send(service.url, 'GET', '/readyz')
    t.is(ready.status, 503, what)
    t.like(ready.json, { status: 'full', code: 'EVAQ_AT_CAPACITY' }, what)
    const stats = JSON.parse(ok(t, await evaq(['stats', '--url', service.url, '--json']), 'stats'))
    t.like(stats, { wal: { count: 0 }, disk: { full: true } }, `${what}: nothing stored`)
    t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })
  }
})

test('SIGTERM and SIGINT: serve finishes, flushes, closes and exits 0; a restart finds every acknowledged record', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  let service = await serveInBackground(t, ['--data', dir])
  const ids: number[] = []
  for (let i = 0; i < 20; i++) {
    const r = await send(service.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: `{"i":${i}}\n{"j":${i}}\n` })
    ids.push(...r.json.ids)
  }
  t.deepEqual(await service.stop('SIGINT'), { code: 0, signal: null })
  t.deepEqual(service.logs.map(l => l.msg).filter(m => m.startsWith('evaq ')),
    ['evaq listening', 'evaq received a signal', 'evaq stopping: finishing requests in flight', 'evaq stopped: queue flushed and closed'])
  service = await serveInBackground(t, ['--data', dir])
  const r = await send(service.url, 'GET', '/v1/logs/wal/records?maxCount=100')
  t.deepEqual(r.json.records.map((x: { id: number }) => x.id), ids)
  t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })
})

/*
 * "evaq listening" is what a supervisor, a script or a test waits for before it may stop the
 * service; it used to be logged before the signal handlers were in place, so a SIGTERM sent the
 * moment it appeared killed the process (exit by the signal, not 0) about one time in four on a
 * loaded machine. No timing here: each stop is sent as soon as the line is read.
 */
test('a SIGTERM sent the moment "evaq listening" is logged stops the service cleanly (exit 0), every time', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  const outcomes: Array<{ code: number | null, signal: NodeJS.Signals | null }> = []
  for (let i = 0; i < 8; i++) {
    const service = await serveInBackground(t, ['--data', dir])
    outcomes.push(await service.stop('SIGTERM'))
  }
  t.deepEqual(outcomes, Array.from({ length: 8 }, () => ({ code: 0, signal: null })))
})

test('SIGTERM under load: requests in flight finish, later ones are refused, and every acknowledged push is there after a restart', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-svc-'), 'q')
  let service = await serveInBackground(t, ['--data', dir])
  const acknowledged: number[] = []
  const outcomes = new Map<string, number>()
  let signal: () => void = () => {}
  const fifty = new Promise<void>(resolve => { signal = resolve })
  const push = (i: number): ReturnType<typeof send> =>
    send(service.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: `p${i}` })
  const pushes = Array.from({ length: 400 }, (_, i) => push(i).then(r => {
    const key = r.status === 201 ? '201' : `${r.status} ${String(r.json?.code)}`
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
    if (r.status === 201) acknowledged.push(...r.json.ids as number[])
    if (acknowledged.length >= 50) signal()
  }, (err: NodeJS.ErrnoException) => {
    const key = `connection ${err.code ?? err.message}`
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
  }))
  await fifty
  const stopped = service.stop('SIGTERM')
  await Promise.all(pushes)
  t.deepEqual(await stopped, { code: 0, signal: null })
  t.log(Object.fromEntries(outcomes))
  for (const key of outcomes.keys()) t.true(key === '201' || key === '503 EVAQ_CLOSED' || /^connection (ECONNREFUSED|ECONNRESET|socket hang up)$/.test(key), `an answer a client can act on: ${key}`)
  service = await serveInBackground(t, ['--data', dir])
  const stored = new Set<number>()
  for (let from = 0; ;) {
    const page = (await send(service.url, 'GET', `/v1/logs/wal/records?from=${from}&maxCount=10000`)).json.records as Array<{ id: number }>
    if (page.length === 0) break
    for (const r of page) stored.add(r.id)
    from = page[page.length - 1]!.id + 1
  }
  t.deepEqual(acknowledged.filter(id => !stored.has(id)), [], 'every acknowledged push survived the stop')
  t.is((await service.stop()).code, 0)
})

test('bench: pushes to a fresh temporary queue and prints the rate and latency; bad flags exit 2', async t => {
  const parent = await tmpDir(t, 'evaq-cli-svc-')
  const run = await evaq(['bench', '--dir', parent, '--seconds', '1', '--concurrency', '8', '--size', '100', '--json'])
  const result = JSON.parse(ok(t, run, 'bench'))
  t.like(result, { concurrency: 8, payloadBytes: 100, durability: 'sync' })
  t.true(result.records > 0 && result.recordsPerSecond > 0)
  t.true(result.latencyMs.p50 > 0 && result.latencyMs.p99 >= result.latencyMs.p50)
  t.deepEqual(await import('node:fs/promises').then(fs => fs.readdir(parent)), [], 'the temporary queue is removed')
  for (const bad of [['--seconds', '0'], ['--concurrency', 'many'], ['--durability', 'x'], ['--size', '-1']]) {
    t.is((await evaq(['bench', ...bad])).code, 2, bad.join(' '))
  }
})
