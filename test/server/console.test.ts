/**
 * The operator console in a real browser (headless Chromium through playwright-core) against a
 * real `evaq serve` per test: depths, rates and lag after pushes, paging through the DLQ, requeue
 * and purge behind a confirmation, parked records, payload formats, the token prompt, and the
 * layout on a phone. Every wait is a locator's (the page's own `data-loads` counter says when it
 * polled again); every assertion is on what the page shows and on what the queue holds.
 * Screenshots go to test/artifacts/console/.
 */
import anyTest from 'ava'
import { copyFile } from 'node:fs/promises'
import type { Page } from 'playwright-core'
import { send } from '../fixtures/http.js'
import { prng } from '../helpers/prng.js'
import { consoleUrl, loadsAfter, newPage, screenshot, startService, useBrowser } from '../helpers/browser.js'
import type { Service } from '../../src/server/serve.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const browser = useBrowser(test)
// One test at a time: together they take as long in all (the browser and the services share the
// cores), and alone each wait is short, with room to spare on a loaded CI machine.

/** Wait until the element(s) of `selector` show exactly `text`. */
async function shows (page: Page, selector: string, text: string): Promise<void> {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`)
  await page.locator(selector, { hasText: exact }).first().waitFor()
}

const depth = (log: string): string => `[data-testid=log-${log}] [data-field=count]`

async function rowIds (page: Page): Promise<number[]> {
  return (await page.locator('[data-testid=records] tbody tr [data-field=id]').allTextContents()).map(Number)
}

async function push (s: Service, log: string, lines: string[]): Promise<number[]> {
  const r = await send(s.url, 'POST', `/v1/logs/${log}/records`, { headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') })
  if (r.status !== 201) throw new Error(`push: ${r.status} ${r.text}`)
  return r.json.ids
}

async function dlqIds (s: Service): Promise<number[]> {
  return (await s.evaq.dlq.read({ maxCount: 10_000 })).map(r => r.id)
}

test.serial('each log\'s depth, bytes and oldest age after pushes; push and drain rates; subscribers with their lag', async t => {
  const s = await startService(t)
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, depth('wal'), '0')
  await shows(page, '[data-testid=status]', 'open')

  await push(s, 'wal', ['{"n":1}', '{"n":2}', '{"n":3}'])
  await push(s, 'dlq', ['"a"', '"b"'])
  await send(s.url, 'PUT', '/v1/logs/wal/subscribers/exporter', { headers: { 'content-type': 'application/json' }, body: '{"start":"earliest"}' })
  await send(s.url, 'POST', '/v1/logs/wal/subscribers/exporter/next', { headers: { 'content-type': 'application/json' }, body: '{"maxCount":1}' })

  await shows(page, depth('wal'), '3')
  await shows(page, depth('dlq'), '2')
  await shows(page, depth('parked'), '0')
  await shows(page, '[data-testid=log-wal] [data-field=bytes]', '21 B')
  await shows(page, '[data-testid=log-dlq] [data-field=bytes]', '6 B')
  await shows(page, '[data-testid=log-parked] [data-field=oldest]', '–')
  t.regex(await page.locator('[data-testid=log-wal] [data-field=oldest]').textContent() ?? '', /^\d+s$/)
  await shows(page, '[data-testid=tab-count-dlq]', '2')
  await shows(page, '[data-subscriber="wal/exporter"] [data-field=lag]', '3')
  t.is((await page.locator('[data-testid=subscribers] tbody tr').count()), 1)

  // 1,000 records in one push, then gone. The page counts the records it saw pushed (the growth of
  // nextId) and leaving (pushed less the growth of the depth) between its polls, since it loaded
  // with the WAL empty; its chart draws them per second of the service's clock.
  const card = page.getByTestId('log-wal')
  await page.locator('[data-testid=log-wal][data-pushed="3"]').waitFor()
  const ids = await push(s, 'wal', Array.from({ length: 1000 }, (_, i) => String(i)))
  // (A poll during the push sees its IDs before its records, which reads as records leaving until
  // the next poll; the totals settle.)
  await page.locator('[data-testid=log-wal][data-pushed="1003"][data-drained="0"]').waitFor()
  t.true(Number(await card.locator('svg.chart').getAttribute('data-max-push')) > 0)
  t.regex(await card.locator('[data-field=push]').textContent() ?? '', /^\d[\d,.]*\/s$/)
  await send(s.url, 'DELETE', '/v1/logs/wal/records', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ids }) })
  await page.locator('[data-testid=log-wal][data-drained="1000"]').waitFor()
  t.is(await card.getAttribute('data-pushed'), '1003')
  t.true(Number(await card.locator('svg.chart').getAttribute('data-max-drain')) > 0)
  await shows(page, depth('wal'), '3')
  await screenshot(page, 'depths')
})

test.serial('pages through the DLQ: 20 records a page, Next and Previous (with the keyboard too)', async t => {
  const s = await startService(t)
  for (let i = 1; i <= 45; i++) {
    await s.evaq.pushRetryItem(JSON.stringify({ order: i }), { error: { code: 'HTTP_503', message: 'upstream unavailable' }, attempts: 1 })
  }
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))

  await shows(page, '[data-testid=page]', 'Page 1 · IDs 1–20 · 45 in the DLQ')
  t.deepEqual(await rowIds(page), Array.from({ length: 20 }, (_, i) => i + 1))
  t.true(await page.locator('#prev').isDisabled())
  await page.locator('#next').click()
  await shows(page, '[data-testid=page]', 'Page 2 · IDs 21–40 · 45 in the DLQ')
  t.deepEqual(await rowIds(page), Array.from({ length: 20 }, (_, i) => i + 21))
  await screenshot(page, 'dlq-page-2')

  await page.locator('#next').focus()
  await page.keyboard.press('Enter')
  await shows(page, '[data-testid=page]', 'Page 3 · IDs 41–45 · 45 in the DLQ')
  t.deepEqual(await rowIds(page), [41, 42, 43, 44, 45])
  t.true(await page.locator('#next').isDisabled())
  // Live updates keep the page: a new record shows up on it, and Next comes back when it overflows.
  await s.evaq.pushRetryItem('{"order":46}')
  await shows(page, '[data-testid=page]', 'Page 3 · IDs 41–46 · 46 in the DLQ')
  t.deepEqual(await rowIds(page), [41, 42, 43, 44, 45, 46])
  t.true(await page.locator('#next').isDisabled())
  for (let i = 47; i <= 61; i++) await s.evaq.pushRetryItem(JSON.stringify({ order: i }))
  await shows(page, '[data-testid=page]', 'Page 3 · IDs 41–60 · 61 in the DLQ')
  t.true(await page.locator('#next').isEnabled())
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'Page 2 · IDs 21–40 · 61 in the DLQ')
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'Page 1 · IDs 1–20 · 61 in the DLQ')
  t.true(await page.locator('#prev').isDisabled())
})

test.serial('requeue one DLQ record: Escape and Cancel change nothing; OK moves it to the WAL and it leaves the page', async t => {
  const s = await startService(t)
  for (let i = 1; i <= 5; i++) await s.evaq.pushRetryItem(`payload ${i}`, { error: 'timeout' })
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, depth('dlq'), '5')
  const dialog = page.getByTestId('confirm')

  await page.locator('tr[data-id="3"] [data-action=requeue]').click()
  await dialog.waitFor()
  t.regex(await dialog.locator('h2').textContent() ?? '', /\b3\b/, 'the dialog names the record')
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  await page.locator('tr[data-id="3"] [data-action=requeue]').click()
  await dialog.waitFor()
  await dialog.locator('#confirm-cancel').click()
  await dialog.waitFor({ state: 'hidden' })
  await loadsAfter(page)
  t.deepEqual(await rowIds(page), [1, 2, 3, 4, 5])
  t.deepEqual(await dlqIds(s), [1, 2, 3, 4, 5], 'nothing moved')
  t.is((await s.evaq.wal.stats()).count, 0)

  await page.locator('tr[data-id="3"] [data-action=requeue]').click()
  await dialog.waitFor()
  await screenshot(page, 'requeue-confirm')
  await dialog.locator('#confirm-ok').click()
  await page.locator('tr[data-id="3"]').waitFor({ state: 'detached' })
  await shows(page, depth('dlq'), '4')
  await shows(page, depth('wal'), '1')
  t.deepEqual(await rowIds(page), [1, 2, 4, 5])
  t.deepEqual(await dlqIds(s), [1, 2, 4, 5])
  t.deepEqual((await s.evaq.wal.read()).map(r => r.payload.toString()), ['payload 3'])
  // The keyboard stays in the table: on the same button of the row that took its place.
  await page.locator('[data-key="requeue:4"]:focus').waitFor()
  await screenshot(page, 'requeued')
})

test.serial('an action on a record someone else removed meanwhile reports the error code and shows the DLQ as it is (live updates paused)', async t => {
  const s = await startService(t)
  for (let i = 1; i <= 3; i++) await s.evaq.pushRetryItem(`r${i}`)
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await page.locator('tr[data-id="2"]').waitFor()
  await page.locator('#live').click()
  await page.locator('#live[aria-pressed="false"]').waitFor()
  await page.locator('main:not([aria-busy])').waitFor()
  const loads = await page.locator('body').getAttribute('data-loads')
  await s.evaq.doneRetryItems([2])
  // Paused: no poll, so the row is still there to click.
  t.is(await page.locator('body').getAttribute('data-loads'), loads)
  await page.locator('tr[data-id="2"] [data-action=requeue]').click()
  await page.locator('#confirm-ok').click()
  await page.locator('[data-testid=notice][data-kind=error]', { hasText: 'EVAQ_NOT_FOUND' }).waitFor()
  await page.locator('tr[data-id="2"]').waitFor({ state: 'detached' })
  t.deepEqual(await rowIds(page), [1, 3])
  t.deepEqual(await dlqIds(s), [1, 3], 'nothing else moved')
  t.is(await page.locator('[data-testid=notice][data-kind=error]').count(), 1, 'the error stays after the refresh')
  t.is((await s.evaq.wal.stats()).count, 0)
  await screenshot(page, 'gone')
})

test.serial('purge with confirmation: one record with the keyboard, then all; Cancel keeps them', async t => {
  const s = await startService(t)
  for (let i = 1; i <= 4; i++) await s.evaq.pushRetryItem(`p${i}`)
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, depth('dlq'), '4')
  const dialog = page.getByTestId('confirm')

  // Keyboard only: the dialog opens on Cancel; Tab to the purge button, Enter.
  await page.locator('[data-key="purge:1"]').focus()
  await page.keyboard.press('Enter')
  await dialog.waitFor()
  await page.locator('#confirm-cancel:focus').waitFor()
  await page.keyboard.press('Tab')
  await page.locator('#confirm-ok:focus').waitFor()
  await page.keyboard.press('Enter')
  await page.locator('tr[data-id="1"]').waitFor({ state: 'detached' })
  t.deepEqual(await dlqIds(s), [2, 3, 4])

  await page.locator('#purge-all').click()
  await dialog.waitFor()
  t.regex(await dialog.locator('h2').textContent() ?? '', /\b3\b/, 'the dialog says how many')
  await dialog.locator('#confirm-cancel').click()
  await dialog.waitFor({ state: 'hidden' })
  await loadsAfter(page)
  t.deepEqual(await dlqIds(s), [2, 3, 4], 'Cancel purged nothing')
  t.deepEqual(await rowIds(page), [2, 3, 4])

  await page.locator('#purge-all').click()
  await dialog.waitFor()
  await dialog.locator('#confirm-ok').click()
  await page.getByTestId('records-empty').waitFor()
  await shows(page, depth('dlq'), '0')
  t.deepEqual(await rowIds(page), [])
  t.deepEqual(await dlqIds(s), [])
  t.is((await s.evaq.wal.stats()).count, 0, 'purged, not requeued')
  t.true(await page.locator('#purge-all').isDisabled(), 'nothing left to purge')
  await screenshot(page, 'purged')
})

test.serial('parked records: attempts, last error and reason; requeue all parked puts them back in the DLQ', async t => {
  const s = await startService(t)
  for (const p of ['x1', 'x2', 'x3']) await s.evaq.pushRetryItem(p)
  const daemon = s.evaq.retry(() => { throw Object.assign(new Error('schema rejected'), { code: 'E_SCHEMA', retriable: false }) }, { autoStart: false })
  await daemon.tick()
  await daemon.stop()
  t.is((await s.evaq.parked.stats()).count, 3)

  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, '[data-testid=tab-count-parked]', '3')
  await page.locator('#show-parked').click()
  await shows(page, '#requeue-all', 'Requeue all parked')
  await page.locator('[data-testid=records] tbody tr').nth(2).waitFor()
  t.is(await page.locator('[data-testid=records] tbody tr').count(), 3)
  for (const reason of await page.locator('[data-testid=records] [data-field=reason]').allTextContents()) t.is(reason, 'permanent')
  for (const attempts of await page.locator('[data-testid=records] [data-field=attempts]').allTextContents()) t.is(attempts, '1')
  for (const error of await page.locator('[data-testid=records] [data-field=error] strong').allTextContents()) t.is(error.trim(), 'E_SCHEMA')
  await screenshot(page, 'parked')

  // One, then the rest.
  const [first] = await rowIds(page)
  await page.locator(`[data-key="requeue:${first}"]`).click()
  await page.locator('#confirm-ok').click()
  await page.locator(`tr[data-id="${first}"]`).waitFor({ state: 'detached' })
  await shows(page, depth('parked'), '2')
  await shows(page, depth('dlq'), '1')
  t.is((await s.evaq.parked.stats()).count, 2)

  await page.locator('#requeue-all').click()
  await page.getByTestId('confirm').waitFor()
  await page.locator('#confirm-ok').click()
  await page.getByTestId('records-empty').waitFor()
  await shows(page, depth('parked'), '0')
  await shows(page, depth('dlq'), '3')
  t.is((await s.evaq.parked.stats()).count, 0)
  t.deepEqual((await s.evaq.dlq.read()).map(r => [r.payload.toString(), r.retry.attempts]).sort(), [['x1', 0], ['x2', 0], ['x3', 0]])
})

test.serial('payloads as text, hex and JSON; the record dialog shows the retry state, closes with Escape and gives the focus back', async t => {
  const s = await startService(t)
  await s.evaq.pushRetryItem('{"order":42,"sku":"A-1"}', { error: { code: 'HTTP_503', message: 'Service Unavailable' }, attempts: 2 })
  await s.evaq.pushRetryItem(Buffer.from([0, 1, 2, 255, 104, 105]))
  await s.evaq.pushRetryItem('plain <b>text</b>')
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  const payload = (id: number): string => `tr[data-id="${id}"] [data-field=payload] code`

  await shows(page, payload(1), '{"order":42,"sku":"A-1"}')
  await shows(page, payload(3), 'plain <b>text</b>')
  t.is(await page.locator('[data-testid=records] b').count(), 0, 'payloads are text, never markup')
  t.is(await page.locator(payload(2)).textContent(), '\u00b7\u00b7\u00b7\ufffdhi', 'control bytes as ·, invalid UTF-8 as U+FFFD')

  await page.getByLabel('Hex').check()
  await shows(page, payload(2), '00 01 02 ff 68 69')
  await shows(page, payload(1), '7b 22 6f 72 64 65 72 22 3a 34 32 2c 22 73 6b 75 22 3a 22 41 2d 31 22 7d')

  await page.getByLabel('JSON').check()
  await shows(page, payload(1), '{"order":42,"sku":"A-1"}')
  t.is(await page.locator('tr[data-id="1"] .note').count(), 0)
  t.is(await page.locator('tr[data-id="3"] .note').count(), 1, 'not JSON: marked')
  await shows(page, '[data-testid=records] tr[data-id="1"] [data-field=attempts]', '2')
  await shows(page, '[data-testid=records] tr[data-id="1"] [data-field=next]', 'due')

  await page.locator('[data-key="view:1"]').focus()
  await page.keyboard.press('Enter')
  const dialog = page.getByTestId('record-dialog')
  await dialog.waitFor()
  t.is(await page.locator('#record-payload').textContent(), '{\n  "order": 42,\n  "sku": "A-1"\n}')
  const terms = await dialog.locator('dt').all()
  const fields = Object.fromEntries(await Promise.all(terms.map(async dt =>
    [await dt.textContent(), await dt.locator('xpath=following-sibling::dd[1]').textContent()])))
  t.is(fields.Attempts, '2')
  t.is(fields['Last error'], 'HTTP_503: Service Unavailable')
  t.regex(fields['Next attempt'] ?? '', /^\d{4}-\d\d-\d\dT.*\(due\)$/)
  await screenshot(page, 'record-dialog')
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  await page.locator('[data-key="view:1"]:focus').waitFor()
})

test.serial('with a token: a prompt; a wrong token is refused, the right one is accepted and kept for the tab only', async t => {
  const token = 'console-s3cret'
  const s = await startService(t, { token })
  await s.evaq.pushWal('kept')
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  const dialog = page.getByTestId('token-dialog')
  await dialog.waitFor()
  await shows(page, '[data-testid=status]', 'token needed')
  t.is(await page.locator(depth('wal')).textContent(), '', 'no data without the token')

  await page.locator('#token-input').fill('wrong')
  await page.keyboard.press('Enter')
  await page.getByTestId('token-error').waitFor()
  t.true(await dialog.isVisible(), 'still asking')
  t.is(await page.locator(depth('wal')).textContent(), '')
  await screenshot(page, 'token-refused')

  await page.locator('#token-input').fill(token)
  await page.locator('#token-submit').click()
  await dialog.waitFor({ state: 'hidden' })
  await shows(page, depth('wal'), '1')
  await shows(page, '[data-testid=status]', 'open')
  t.is(await page.evaluate('sessionStorage.getItem("evaq.token")'), token)

  // A reload in the same tab keeps it; another context (another tab's session) asks again.
  await page.reload()
  await shows(page, depth('wal'), '1')
  t.false(await dialog.isVisible())
  const other = await newPage(t, browser())
  await other.goto(consoleUrl(s))
  await other.getByTestId('token-dialog').waitFor()

  // Forgetting it asks again at once; Escape closes the prompt and leaves a way back to it.
  await page.locator('#signout').click()
  await dialog.waitFor()
  t.is(await page.evaluate('sessionStorage.getItem("evaq.token")'), null)
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  await page.getByTestId('banner').waitFor()
  await page.locator('#signin').click()
  await dialog.waitFor()
})

test.serial('on a phone (390×844): one column, no sideways scrolling, every record action reachable', async t => {
  const s = await startService(t)
  for (let i = 1; i <= 3; i++) {
    await s.evaq.pushRetryItem(JSON.stringify({ order: i, note: 'a fairly long payload that would not fit a narrow column' }),
      { error: { code: 'ECONNRESET', message: 'socket hang up while talking to the downstream service' } })
  }
  await s.evaq.pushWal('w')
  await send(s.url, 'PUT', '/v1/logs/wal/subscribers/exporter', { headers: { 'content-type': 'application/json' }, body: '{}' })
  const page = await newPage(t, browser(), { width: 390, height: 844 })
  await page.goto(consoleUrl(s))
  await shows(page, depth('dlq'), '3')
  await page.locator('tr[data-id="3"]').waitFor()
  t.true(Number(await page.evaluate('document.documentElement.scrollWidth')) <= 390, 'no horizontal scroll')
  const cards = await Promise.all(['wal', 'dlq', 'parked'].map(log => page.getByTestId(`log-${log}`).boundingBox()))
  t.is(new Set(cards.map(b => b?.x)).size, 1, 'the log cards are in one column')
  for (const action of ['view', 'requeue', 'purge']) {
    const box = await page.locator(`[data-key="${action}:3"]`).boundingBox()
    t.true(box !== null && box.x >= 0 && box.x + box.width <= 390, `${action} is on screen`)
  }
  await screenshot(page, 'phone')
  await page.screenshot({ path: new URL('../artifacts/console/phone-full.png', import.meta.url).pathname, fullPage: true })
})

test.serial('a populated console at 1280×800 (the README\'s screenshot: EVAQ_UPDATE_SCREENSHOT=1 writes docs/console.png)', async t => {
  const s = await startService(t)
  const random = prng(9)
  const order = (n: number): string => JSON.stringify({
    type: 'order.created',
    orderId: `ord_${(48_210 + n).toString(36)}`,
    customer: `cus_${Math.floor(random() * 1e6).toString(36)}`,
    total: Math.round(random() * 50_000) / 100,
    currency: 'EUR',
  })

  // Parked: rejected for good by the downstream.
  for (let i = 0; i < 4; i++) await s.evaq.pushRetryItem(order(i), { attempts: 3 + i, source: { log: 'wal', id: 100 + i } })
  const reject = s.evaq.retry(() => {
    throw Object.assign(new Error('422 Unprocessable Entity: currency EUR not enabled for merchant'), { code: 'HTTP_422', retriable: false })
  }, { autoStart: false })
  await reject.tick()
  await reject.stop()
  // The DLQ: failures the daemon will try again, scheduled minutes ahead.
  const failures = [
    { code: 'HTTP_503', message: 'POST /v2/charges: 503 Service Unavailable' },
    { code: 'ECONNRESET', message: 'socket hang up (billing.internal:443)' },
    { code: 'HTTP_429', message: 'rate limited: retry after 30 s' },
    { code: 'ETIMEDOUT', message: 'no answer within 10000 ms' },
  ]
  for (let i = 0; i < 37; i++) await s.evaq.pushRetryItem(order(10 + i), { attempts: Math.floor(random() * 4), source: { log: 'wal', id: 200 + i } })
  const fail = s.evaq.retry(record => {
    const failure = failures[record.id % failures.length]!
    throw Object.assign(new Error(failure.message), { code: failure.code })
  }, { autoStart: false, backoff: { initialMs: 60_000, maxMs: 3_600_000 }, random })
  await fail.tick()
  await fail.stop()

  // The WAL: traffic, a consumer that keeps up and one that lags.
  const exporter = await s.evaq.wal.subscribe('kafka-exporter', { start: 'earliest' })
  await s.evaq.wal.subscribe('audit-archive', { start: 'earliest' })
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, depth('dlq'), '37')
  for (let round = 0; round < 24; round++) {
    const n = 40 + Math.floor(random() * 160 * (1 + Math.sin(round / 3)))
    await s.evaq.wal.pushMany(Array.from({ length: n }, (_, i) => order(1000 + round * 1000 + i)))
    const batch = await exporter.next({ maxCount: Math.floor(n * (0.7 + random() * 0.5)) })
    if (batch !== undefined && batch.records.length > 0) {
      await exporter.ack(batch.records.map(r => r.id))
      await s.evaq.removeWal(batch.records.slice(0, Math.floor(batch.records.length * 0.8)).map(r => r.id))
    }
    await loadsAfter(page)
  }
  await loadsAfter(page)
  const stats = await s.evaq.stats()
  await shows(page, depth('wal'), stats.wal.count.toLocaleString('en-US'))
  await shows(page, depth('parked'), '4')
  t.is(await page.locator('[data-testid=subscribers] tbody tr').count(), 2)
  t.deepEqual(await rowIds(page), (await s.evaq.dlq.read({ maxCount: 20 })).map(r => r.id))
  await page.mouse.move(0, 0)
  const path = await screenshot(page, 'readme')
  if (process.env.EVAQ_UPDATE_SCREENSHOT === '1') {
    await copyFile(path, new URL('../../docs/console.png', import.meta.url))
    t.log('wrote docs/console.png')
  }
})
