/**
 * The service with a tier on object storage (a real s3rver on loopback): its metrics exist (at
 * zero before anything moved) only when the queue has a tier, and `/v1/stats` and the console's
 * `/v1/overview` carry `tier`. (Offloading through `evaq serve --tier`: test/cli/serve-tier.test.ts.)
 */
import test from 'ava'
import { S3Server } from '../helpers/s3.js'
import { startServer } from '../fixtures/http.js'

const TIER_METRICS = ['evaq_tier_segments', 'evaq_tier_bytes', 'evaq_tier_cached_bytes', 'evaq_tier_failing', 'evaq_tier_uploads_total',
  'evaq_tier_uploaded_bytes_total', 'evaq_tier_downloads_total', 'evaq_tier_downloaded_bytes_total', 'evaq_tier_deletes_total', 'evaq_tier_errors_total']

function value (text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? undefined : Number(m[1])
}

test('without a tier: no evaq_tier_ metrics, no tier in stats or the overview', async t => {
  const s = await startServer(t)
  const metrics = (await s.call('GET', '/metrics')).text
  t.notRegex(metrics, /evaq_tier_/)
  t.false('tier' in (await s.call('GET', '/v1/stats')).json)
  t.false('tier' in (await s.call('GET', '/v1/overview')).json)
})

test('with a tier: every evaq_tier_ metric at zero before anything moved; stats and the overview carry tier', async t => {
  const s3 = await S3Server.start(t)
  const s = await startServer(t, { evaq: { maxDiskBytes: 4 * 1024 * 1024, onFull: 'offload', tier: { s3: s3.options('m') } } })
  await s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: 'x' })
  const metrics = (await s.call('GET', '/metrics')).text
  for (const name of TIER_METRICS) {
    t.regex(metrics, new RegExp(`^# TYPE ${name} (gauge|counter)$`, 'm'), name)
    t.is(value(metrics, name), 0, name)
  }
  const zero = { segments: 0, bytes: 0, uploads: 0, downloads: 0, deletes: 0, errors: 0, cachedBytes: 0 }
  t.like((await s.call('GET', '/v1/stats')).json.tier, zero)
  const overview = (await s.call('GET', '/v1/overview')).json
  t.deepEqual(overview.tier, zero)
})
