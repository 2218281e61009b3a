/**
 * `evaq serve --tier s3://…` from the built binary, a real process on a real socket, against a
 * real S3-compatible server (s3rver on loopback), everything over HTTP: pushed four times past
 * its disk budget, the data directory stays within it, every record reads back byte for byte,
 * a subscriber drains them in ID order with acks, and the bucket prefix is empty afterwards;
 * /metrics counts the uploads. With the bucket gone while pushes wait, /readyz says the tier is
 * why; once it is back, the waiting pushes are stored.
 */
import test, { type ExecutionContext } from 'ava'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { evaq, serveInBackground } from '../fixtures/cli.js'
import { send, type Reply } from '../fixtures/http.js'
import { S3_CREDENTIALS, S3Server } from '../helpers/s3.js'
import { tmpDir } from '../helpers/tmp.js'
import { du, tierPayload } from '../helpers/tier.js'

const BUDGET = 4 * 1024 * 1024
const SIZE = 1000
const BATCH = 200

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

/** Credentials through the AWS SDK's default chain (the environment), never IMDS. */
const ENV = {
  AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_REGION: undefined,
  AWS_PROFILE: undefined,
}

const payload = (i: number): Buffer => tierPayload(i, SIZE)

function json (url: string, method: string, path: string, body: unknown): Promise<Reply> {
  return send(url, method, path, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Push records `from`..`from + count - 1` (by index) in one request. */
async function pushBatch (url: string, from: number, count: number): Promise<number[]> {
  const r = await json(url, 'POST', '/v1/logs/wal/records', Array.from({ length: count }, (_, k) => payload(from + k).toString('base64')))
  if (r.status !== 201) throw new Error(`push: ${r.status} ${r.text.slice(0, 300)}`)
  return r.json.ids
}

function metricValue (text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? undefined : Number(m[1])
}

async function serveTier (t: ExecutionContext, s3: S3Server, dir: string): Promise<string> {
  // Pushes wait as long as the tests may take: a loaded machine slows the offloads (and, in the
  // second test, the bucket's restart), never the test's verdict.
  const service = await serveInBackground(t, [
    '--data', dir, '--tier', 's3://evaq/svc', '--s3-endpoint', s3.endpoint, '--s3-force-path-style',
    '--max-disk-bytes', String(BUDGET), '--min-free-disk-bytes', '0', '--push-timeout', '150s',
  ], ENV)
  return service.url
}

test('serve --tier: four times the budget pushed over HTTP, within it; read back byte for byte, drained in order, the prefix empty after the acks', async t => {
  t.timeout(180_000)
  const s3 = await S3Server.start(t)
  const dir = join(await tmpDir(t, 'evaq-serve-tier-'), 'q')
  const url = await serveTier(t, s3, dir)
  const count = Math.ceil(4 * BUDGET / SIZE)
  let peak = 0
  for (let i = 0; i < count; i += BATCH) {
    const ids = await pushBatch(url, i, Math.min(BATCH, count - i))
    t.is(ids[0], i + 1)
    peak = Math.max(peak, await du(dir))
  }
  t.true(peak <= BUDGET, `the data directory peaked at ${peak} bytes, over its budget of ${BUDGET}`)

  const stats = (await send(url, 'GET', '/v1/stats')).json
  t.is(stats.wal.count, count)
  t.true(stats.tier.segments > 0, 'segment files are in the bucket')
  t.true(stats.tier.uploads > 0)
  t.true((await s3.keys('svc/')).length >= stats.tier.segments)
  const metrics = (await send(url, 'GET', '/metrics')).text
  t.true((metricValue(metrics, 'evaq_tier_uploads_total') ?? 0) > 0, 'the uploads are counted')
  t.true((metricValue(metrics, 'evaq_tier_segments') ?? 0) > 0)
  t.is(metricValue(metrics, 'evaq_tier_failing'), 0)

  // Every record, byte for byte.
  let from = 1
  let read = 0
  for (;;) {
    const r = await send(url, 'GET', `/v1/logs/wal/records?from=${from}&maxCount=2000&maxBytes=4194304`)
    t.is(r.status, 200)
    const records = r.json.records as Array<{ id: number, payload: string }>
    if (records.length === 0) break
    for (const rec of records) {
      if (rec.id !== read + 1 || !Buffer.from(rec.payload, 'base64').equals(payload(read))) {
        t.fail(`record ${rec.id} read where ${read + 1} was due, or changed`)
      }
      read++
    }
    from = records[records.length - 1]!.id + 1
  }
  t.is(read, count)
  t.true(await du(dir) <= BUDGET)

  // Drained by a subscriber in ID order, each batch acknowledged.
  t.is((await json(url, 'PUT', '/v1/logs/wal/subscribers/drain', { start: 'earliest' })).status, 201)
  let expect = 1
  for (;;) {
    const r = await json(url, 'POST', '/v1/logs/wal/subscribers/drain/next', { maxCount: 1000, maxBytes: 4194304 })
    t.is(r.status, 200)
    const records = r.json.records as Array<{ id: number, payload: string }>
    if (records.length === 0) break
    for (const rec of records) {
      if (rec.id !== expect || !Buffer.from(rec.payload, 'base64').equals(payload(expect - 1))) {
        t.fail(`record ${rec.id} delivered where ${expect} was due, or changed`)
      }
      expect++
    }
    t.is((await json(url, 'POST', '/v1/logs/wal/subscribers/drain/ack', { ids: records.map(rec => rec.id) })).status, 200)
  }
  t.is(expect - 1, count)

  // The cleanup (in the service's maintenance) deletes the acknowledged segments' objects.
  for (let waited = 0; waited < 60_000 && (await s3.keys('svc/')).length > 0; waited += 200) await new Promise(resolve => setTimeout(resolve, 200))
  t.deepEqual(await s3.keys('svc/'), [])
  const end = (await send(url, 'GET', '/v1/stats')).json.tier
  t.is(end.segments, 0)
  t.is(end.errors, 0)
  t.is(end.deletes, end.uploads)
})

test('serve --tier: with the bucket gone while pushes wait, /readyz is 503 full naming the tier\'s error; back, the waiting pushes are stored', async t => {
  t.timeout(180_000)
  const s3 = await S3Server.start(t)
  const dir = join(await tmpDir(t, 'evaq-serve-tier-'), 'q')
  const url = await serveTier(t, s3, dir)
  t.deepEqual((await send(url, 'GET', '/readyz')).json, { status: 'open' })
  await s3.kill()
  // Pushes until one waits: the budget is full and nothing can be offloaded.
  const count = Math.ceil(2 * BUDGET / SIZE)
  const pushes: Array<Promise<number[] | string>> = []
  let ready: Reply | undefined
  for (let i = 0; i < count; i += BATCH) {
    pushes.push(pushBatch(url, i, Math.min(BATCH, count - i)).catch((err: Error) => err.message))
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  for (let waited = 0; waited < 60_000; waited += 200) {
    ready = await send(url, 'GET', '/readyz')
    if (ready.json?.details?.tier !== undefined) break
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.is(ready?.status, 503)
  t.like(ready?.json, { code: 'EVAQ_AT_CAPACITY', status: 'full', details: { tier: { code: 'EVAQ_IO' } } })
  t.is(typeof ready?.json.details.tier.message, 'string')
  t.truthy(ready?.headers['retry-after'])
  const stats = (await send(url, 'GET', '/v1/stats')).json
  t.true(stats.tier.errors > 0)
  t.is(stats.tier.lastError.code, 'EVAQ_IO')
  const metrics = (await send(url, 'GET', '/metrics')).text
  t.true((metricValue(metrics, 'evaq_tier_errors_total') ?? 0) > 0)
  t.is(metricValue(metrics, 'evaq_tier_failing'), 1)

  // The bucket is back: the offloader's retry (backoff from 1 s, doubling) frees room.
  await s3.run()
  const answers = await Promise.all(pushes)
  t.deepEqual(answers.filter(a => typeof a === 'string'), [], 'every waiting push is stored')
  const ids = (answers.filter(a => typeof a !== 'string') as number[][]).flat().sort((a, b) => a - b)
  t.deepEqual(ids, Array.from({ length: count }, (_, i) => i + 1))
  for (let waited = 0; waited < 60_000 && (await send(url, 'GET', '/readyz')).status !== 200; waited += 200) {
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.deepEqual((await send(url, 'GET', '/readyz')).json, { status: 'open' })
  t.is((await send(url, 'GET', '/v1/stats')).json.wal.count, count)
})

test('serve --tier usage errors: exit 2 before the directory is touched', async t => {
  const dir = join(await tmpDir(t, 'evaq-serve-tier-'), 'q')
  const cases = [
    ['--tier', 's3://evaq/svc'], // offloading needs --max-disk-bytes
    ['--tier', 'http://evaq/svc', '--max-disk-bytes', String(BUDGET)],
    ['--tier', 's3://E/svc', '--max-disk-bytes', String(BUDGET)],
    ['--tier', 's3://evaq/svc', '--max-disk-bytes', String(BUDGET), '--s3-endpoint', 'ftp://127.0.0.1:1'],
    ['--tier', 's3://evaq/svc', '--max-disk-bytes', String(BUDGET), '--s3-region', 'Not A Region'],
    ['--s3-endpoint', 'http://127.0.0.1:1'], // S3 flags without --tier
    ['--on-full', 'offload', '--max-disk-bytes', String(BUDGET)], // offloading without --tier
  ]
  for (const args of cases) {
    const run = await evaq(['serve', '--port', '0', '--data', dir, ...args], { env: ENV })
    t.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`)
    t.is(run.stdout, '')
    t.true(run.stderr.trimEnd().split('\n').length <= 2, run.stderr)
  }
  await t.throwsAsync(stat(dir), { code: 'ENOENT' })
})
