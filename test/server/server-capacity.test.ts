/**
 * The service at capacity, without a small filesystem: a `minFreeDiskBytes` reserve larger than
 * any disk makes every push find the disk budget full. A push that waits is answered 503
 * EVAQ_AT_CAPACITY with Retry-After after the push timeout (at once with 0) and stores nothing;
 * every EVAQ_AT_CAPACITY answer carries Retry-After; /readyz says `full`.
 * (test/reliability/disk-full-service.test.ts does the same on a real, nearly full tmpfs.)
 */
import test, { type ExecutionContext } from 'ava'
import { join } from 'node:path'
import { Evaq, EvaqError, type EvaqOptions } from '../../src/index.js'
import { EvaqMetrics } from '../../src/metrics.js'
import { createApp } from '../../src/server/app.js'
import { QueueService, type QueueServiceOptions } from '../../src/server/queue-service.js'
import { send, TEST_OPTIONS, type Reply } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

/** No filesystem has this much free: the disk budget is full from the first push. */
const NO_ROOM: EvaqOptions = { minFreeDiskBytes: 2 ** 50 }

async function start (
  t: ExecutionContext,
  evaqOptions: EvaqOptions,
  serviceOptions: QueueServiceOptions
): Promise<{ url: string, evaq: Evaq, service: QueueService }> {
  const dir = join(await tmpDir(t, 'evaq-capacity-'), 'q')
  const evaq = await Evaq.open(dir, { ...TEST_OPTIONS, ...evaqOptions })
  const metrics = new EvaqMetrics(evaq, { processMetrics: false })
  const service = new QueueService(evaq, metrics, serviceOptions)
  const app = await createApp(service, { metrics })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    await app.close()
    metrics.close()
    await evaq.close()
  })
  return { url, evaq, service }
}

const push = (url: string, body: string): Promise<Reply> => send(url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body })

function atCapacity (t: ExecutionContext, r: Reply, what: string): void {
  t.is(r.status, 503, what)
  t.is(r.json.code, 'EVAQ_AT_CAPACITY', what)
  t.regex(String(r.headers['retry-after']), /^[1-9][0-9]*$/, `${what}: Retry-After in seconds`)
}

test('backpressure: a push that waits is answered 503 EVAQ_AT_CAPACITY with Retry-After after the push timeout, storing nothing; ' +
  '/readyz says full', async t => {
  const { url, evaq } = await start(t, { ...NO_ROOM, onFull: 'backpressure', maintenanceIntervalMs: 2500 }, { pushTimeoutMs: 50 })
  const ready = await send(url, 'GET', '/readyz')
  t.is(ready.status, 200, 'ready before any push waited')
  atCapacity(t, await push(url, 'waits'), 'a waiting push')
  const batch = await send(url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: '{"a":1}\n{"b":2}\n' })
  atCapacity(t, batch, 'a waiting batch')
  t.like(await evaq.wal.stats(), { count: 0, nextId: 1 }, 'nothing was stored, no ID was taken')
  const full = await send(url, 'GET', '/readyz')
  atCapacity(t, full, '/readyz')
  t.is(full.json.status, 'full')
  t.is(full.headers['retry-after'], '3', 'Retry-After is the maintenance interval, rounded up to seconds')
})

test('push timeout 0: a push that would wait is answered at once; one that fits is stored', async t => {
  const full = await start(t, { ...NO_ROOM, onFull: 'backpressure' }, { pushTimeoutMs: 0 })
  atCapacity(t, await push(full.url, 'no wait'), 'push timeout 0')
  t.is((await full.evaq.wal.stats()).count, 0)

  const roomy = await start(t, {}, { pushTimeoutMs: 0 })
  const r = await push(roomy.url, 'fits')
  t.is(r.status, 201)
  t.deepEqual(r.json.ids, [1])
})

test('every EVAQ_AT_CAPACITY answer carries Retry-After: the reject policy and a log\'s byte cap too', async t => {
  const rejecting = await start(t, { ...NO_ROOM, onFull: 'reject' }, {})
  atCapacity(t, await push(rejecting.url, 'refused'), "onFull 'reject'")
  t.like((await send(rejecting.url, 'GET', '/readyz')).json, { status: 'full', code: 'EVAQ_AT_CAPACITY' })

  const capped = await start(t, { retention: { wal: { maxBytes: 10, onFull: 'reject' } } }, {})
  atCapacity(t, await push(capped.url, 'more than ten bytes'), "a log's maxBytes")
})

test('pushTimeoutMs must be an integer from 0', async t => {
  const evaq = await Evaq.open(join(await tmpDir(t, 'evaq-capacity-'), 'q'), TEST_OPTIONS)
  t.teardown(() => evaq.close())
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 31]) {
    const err = t.throws(() => new QueueService(evaq, undefined, { pushTimeoutMs: bad }), { instanceOf: EvaqError }, String(bad))
    t.is(err?.code, 'EVAQ_INVALID_ARGUMENT')
  }
})
