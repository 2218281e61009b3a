/**
 * The console shows the tier on object storage beside the disk, in a real browser (headless
 * Chromium through playwright-core) against a real `evaq serve` that offloads to a real
 * S3-compatible server (s3rver on loopback): segments, bytes, uploads, downloads and errors, and
 * the tier's last error while its bucket is gone. Without a tier, nothing of it shows.
 */
import anyTest from 'ava'
import type { Page } from 'playwright-core'
import { send } from '../fixtures/http.js'
import { consoleUrl, newPage, screenshot, startService, useBrowser } from '../helpers/browser.js'
import { requiring } from '../helpers/prerequisites.js'
import { S3Server } from '../helpers/s3.js'
import type { Service } from '../../src/server/serve.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const browser = useBrowser(test)

const BUDGET = 2 * 1024 * 1024

/** Push `count` records of about 1000 bytes (JSON strings, one per NDJSON line). */
function push (s: Service, count: number): Promise<{ status: number }> {
  const lines = Array.from({ length: count }, (_, i) => JSON.stringify(`${i} ${'x'.repeat(990)}`))
  return send(s.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') })
}

async function field (page: Page, name: string): Promise<string> {
  return (await page.locator(`[data-testid=tier] [data-field=${name}]`).textContent()) ?? ''
}

test.serial('the tier beside the disk: segments, bytes, uploads, downloads, errors; its last error while the bucket is gone', async t => {
  const s3 = await S3Server.start(t)
  const s = await startService(t, {
    evaq: { maxDiskBytes: BUDGET, onFull: 'offload', maintenanceIntervalMs: 100, tier: { s3: s3.options('console') } },
  })
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  const tier = page.getByTestId('tier')
  await page.locator('[data-testid=tier][data-failing=false]').waitFor()
  t.is(await field(page, 'segments'), '0 segments')
  t.is(await field(page, 'errors'), '0 errors')

  // Twice the budget: segment files go to the bucket.
  for (let i = 0; i < 8; i++) t.is((await push(s, 500)).status, 201)
  const uploads = (await s.evaq.stats()).tier!.uploads
  t.true(uploads > 0)
  await page.locator('[data-testid=tier] [data-field=uploads]', { hasText: /^[1-9][\d,]* up$/ }).waitFor()
  t.regex(await field(page, 'segments'), /^[1-9][\d,]* segments?$/)
  t.regex(await field(page, 'bytes'), /^[\d.]+ (KiB|MiB)$/)
  t.is(await field(page, 'downloads'), '0 down')
  t.true(await page.locator('[data-testid=tier] [data-field=last-error]').isHidden())
  t.true(await tier.isVisible())
  await screenshot(page, 'tier')

  // The bucket is gone: offloading fails, and the page says so.
  await s3.kill()
  const waiting = Array.from({ length: 6 }, () => push(s, 500).catch(() => ({ status: 0 })))
  await page.locator('[data-testid=tier][data-failing=true]').waitFor()
  const error = page.locator('[data-testid=tier] [data-field=last-error]')
  t.is(await error.textContent(), 'failing: EVAQ_IO')
  t.true(await error.isVisible())
  t.truthy(await error.getAttribute('title'))
  t.regex(await field(page, 'errors'), /^[1-9][\d,]* errors?$/)
  await screenshot(page, 'tier-failing')

  // Back: the waiting pushes are stored, and the error goes.
  await s3.run()
  t.deepEqual((await Promise.all(waiting)).map(r => r.status), Array(6).fill(201))
  await page.locator('[data-testid=tier][data-failing=false]').waitFor()
  t.true(await error.isHidden())
})

test.serial('without a tier, the console shows none', async t => {
  const s = await startService(t)
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await page.locator('[data-testid=status]', { hasText: 'open' }).waitFor()
  await page.locator('[data-testid=disk]', { hasText: /^disk / }).waitFor()
  t.is(await page.getByTestId('tier').count(), 1)
  t.true(await page.getByTestId('tier').isHidden())
})
