/**
 * The console's WAL view in a real browser (headless Chromium through playwright-core) against a
 * real `evaq serve` per test: records by ID (jump, pages forward and back, also across gaps left
 * by removed records), their fields and payload previews, finding text in the shown page, and
 * where each subscriber stands (its ack floor and cursor marked in the list).
 */
import anyTest from 'ava'
import type { Page } from 'playwright-core'
import { consoleUrl, loadsAfter, newPage, screenshot, startService, useBrowser } from '../helpers/browser.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const browser = useBrowser(test)

/** Wait until the element(s) of `selector` show exactly `text`. */
async function shows (page: Page, selector: string, text: string): Promise<void> {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`)
  await page.locator(selector, { hasText: exact }).first().waitFor()
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

async function rowIds (page: Page): Promise<number[]> {
  return (await page.locator('[data-testid=wal-records] tbody tr[data-id]:not([hidden]) [data-field=id]').allTextContents()).map(Number)
}

async function jump (page: Page, id: number): Promise<void> {
  await page.getByTestId('jump-id').fill(String(id))
  await page.getByTestId('jump-id').press('Enter')
}

test.serial('WAL records by ID: fields and previews, pages forward and back, a jump to an ID and back from it across a gap, find in the page', async t => {
  const s = await startService(t)
  // IDs 1–60, `order N`; 7 is binary. 30–39 are removed: a gap in the IDs.
  const payloads: Array<string | Buffer> = range(1, 60).map(i => `order ${i}`)
  payloads[6] = Buffer.from([0, 1, 2, 255, 104, 105])
  t.deepEqual(await s.evaq.wal.pushMany(payloads), range(1, 60))
  await s.evaq.removeWal(range(30, 39))
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await shows(page, '[data-testid=tab-count-wal]', '50')
  await page.locator('#show-wal').click()
  await page.locator('#show-wal[aria-pressed="true"]').waitFor()
  t.true(await page.locator('#bulk').isHidden(), 'no requeue or purge of the WAL')
  t.true(await page.getByTestId('records').isHidden())

  await shows(page, '[data-testid=page]', 'Page 1 · IDs 1–20 · 50 in the WAL')
  t.deepEqual(await rowIds(page), range(1, 20))
  const row = (id: number): string => `[data-testid=wal-records] tr[data-id="${id}"]`
  t.is(await page.locator(`${row(12)} [data-field=payload] code`).textContent(), 'order 12')
  t.is(await page.locator(`${row(12)} [data-field=size]`).textContent(), '8 B')
  t.regex(await page.locator(`${row(12)} td[data-at]`).textContent() ?? '', /^\d+s ago$/)
  t.regex(await page.locator(`${row(12)} td[data-at]`).getAttribute('title') ?? '', /^\d{4}-\d\d-\d\dT/)
  t.is(await page.locator(`${row(7)} [data-field=payload] code`).textContent(), '\u00b7\u00b7\u00b7\ufffdhi', 'binary: control bytes as ·')
  await page.getByLabel('Hex').check()
  await shows(page, `${row(7)} [data-field=payload] code`, '00 01 02 ff 68 69')
  await page.getByLabel('Text').check()
  t.true(await page.locator('#prev').isDisabled())

  // Forward: the page after the gap is still 20 records.
  await page.locator('#next').click()
  await shows(page, '[data-testid=page]', 'Page 2 · IDs 21–50 · 50 in the WAL')
  t.deepEqual(await rowIds(page), [...range(21, 29), ...range(40, 50)])
  await page.locator('#next').click()
  await shows(page, '[data-testid=page]', 'Page 3 · IDs 51–60 · 50 in the WAL')
  t.true(await page.locator('#next').isDisabled())
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'Page 2 · IDs 21–50 · 50 in the WAL')

  // A jump: the page from that ID; back from it, the 20 records before it (across the gap).
  await jump(page, 45)
  await shows(page, '[data-testid=page]', 'IDs 45–60 · 50 in the WAL')
  t.deepEqual(await rowIds(page), range(45, 60))
  t.true(await page.locator('#next').isDisabled())
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'IDs 15–44 · 50 in the WAL')
  t.deepEqual(await rowIds(page), [...range(15, 29), ...range(40, 44)])
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'IDs 1–20 · 50 in the WAL')
  t.true(await page.locator('#prev').isDisabled(), 'at the first record')
  await page.locator('#next').click()
  await shows(page, '[data-testid=page]', 'IDs 21–50 · 50 in the WAL')

  // Into the gap, and past the end.
  await jump(page, 33)
  await shows(page, '[data-testid=page]', 'IDs 40–59 · 50 in the WAL')
  await jump(page, 1000)
  await shows(page, '[data-testid=records-empty]', 'No WAL records from ID 1000.')
  t.deepEqual(await rowIds(page), [])
  await page.locator('#prev').click()
  await shows(page, '[data-testid=page]', 'IDs 41–60 · 50 in the WAL')

  // Find: the rows of the page whose payload has the text; the service is not searched.
  await page.getByTestId('find').fill('ORDER 5')
  await shows(page, '[data-testid=find-count]', '10 of 20 on this page')
  t.deepEqual(await rowIds(page), range(50, 59))
  await loadsAfter(page, 2)
  t.deepEqual(await rowIds(page), range(50, 59), 'still filtered after polls')
  await page.getByTestId('find').fill('')
  await page.locator('[data-testid=find-count]:empty').waitFor({ state: 'attached' })
  t.deepEqual(await rowIds(page), range(41, 60))

  // A new record makes a next page; View opens it.
  t.true(await page.locator('#next').isDisabled())
  await s.evaq.wal.pushMany(['order 61'])
  await page.locator('#next:enabled').click()
  await shows(page, '[data-testid=page]', 'IDs 61–61 · 51 in the WAL')
  await page.locator('[data-key="view:61"]').click()
  await shows(page, '#record-title', 'WAL record 61')
  t.is(await page.locator('#record-payload').textContent(), 'order 61')
  await page.keyboard.press('Escape')
  await screenshot(page, 'wal')
})

test.serial('each subscriber\'s position on the WAL: ack floor and cursor marked in the list, each record\'s delivery, a way to its first unacked', async t => {
  const s = await startService(t)
  await s.evaq.wal.pushMany(range(1, 30).map(i => `r${i}`))
  // exporter: 1–10 delivered, 1–5 acked (so 6–10 in flight); audit: nothing delivered.
  const exporter = await s.evaq.wal.subscribe('exporter', { start: 'earliest' })
  const batch = await exporter.next({ maxCount: 10 })
  t.deepEqual(batch?.records.map(r => r.id), range(1, 10))
  await exporter.ack(range(1, 5))
  await s.evaq.wal.subscribe('audit', { start: 'earliest' })

  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  await page.locator('#show-wal').click()
  await shows(page, '[data-testid=page]', 'Page 1 · IDs 1–20 · 30 in the WAL')

  // The marks sit right before the first record at or above each position.
  const marker = (name: string): string => `[data-testid=wal-records] tr.marker[data-marker="${name}"]`
  await page.locator(marker('exporter:acked')).waitFor()
  t.is(await page.locator(`${marker('exporter:acked')} + tr`).getAttribute('data-id'), '6')
  t.regex(await page.locator(marker('exporter:acked')).textContent() ?? '', /exporter: acked below ID 6 · 5 in flight/)
  t.is(await page.locator(`${marker('exporter:delivered')} + tr`).getAttribute('data-id'), '11')
  t.regex(await page.locator(marker('exporter:delivered')).textContent() ?? '', /exporter: delivered below ID 11/)
  t.is(await page.locator(marker('audit:acked')).count(), 0, 'audit acked nothing: no mark above the first record')
  const order = await page.locator('[data-testid=wal-records] tbody tr').evaluateAll(rows =>
    rows.map(r => r.getAttribute('data-marker') ?? r.getAttribute('data-id')))
  t.deepEqual(order, [...range(1, 5).map(String), 'exporter:acked', ...range(6, 10).map(String), 'exporter:delivered', ...range(11, 20).map(String)])

  const chip = (id: number, name: string): string => `[data-testid=wal-records] tr[data-id="${id}"] .chip[data-sub="${name}"]`
  t.is(await page.locator(chip(3, 'exporter')).getAttribute('data-state'), 'acked')
  t.is(await page.locator(chip(8, 'exporter')).getAttribute('data-state'), 'delivered')
  t.is(await page.locator(chip(15, 'exporter')).getAttribute('data-state'), 'pending')
  t.is(await page.locator(chip(3, 'audit')).getAttribute('data-state'), 'pending')
  t.regex(await page.locator('[data-testid=positions] [data-position=exporter]').textContent() ?? '',
    /acked below ID 6 · delivered below ID 11 · 5 in flight · lag 25/)
  await screenshot(page, 'wal-positions')

  // The marks follow the subscriber: acks move the floor, a lease moves the cursor.
  await exporter.ack(range(6, 10))
  await page.locator(`${marker('exporter:acked')}:has-text("acked below ID 11, nothing in flight")`).waitFor()
  t.is(await page.locator(`${marker('exporter:acked')} + tr`).getAttribute('data-id'), '11')
  t.is(await page.locator(marker('exporter:delivered')).count(), 0)
  t.is(await page.locator(chip(8, 'exporter')).getAttribute('data-state'), 'acked')

  // "Show" goes to the subscriber's first unacked record, its mark at the top of the page.
  const next = await exporter.next({ maxCount: 15 })
  await exporter.ack(next!.records.map(r => r.id))
  await page.locator('[data-testid=positions] [data-position=exporter]', { hasText: 'acked below ID 26' }).waitFor()
  await page.locator('[data-jump=exporter]').click()
  await shows(page, '[data-testid=page]', 'IDs 26–30 · 30 in the WAL')
  const top = await page.locator('[data-testid=wal-records] tbody tr').first()
  t.is(await top.getAttribute('data-marker'), 'exporter:acked')
  // At the end of the log, a subscriber that took everything is marked after the last record.
  await exporter.ack((await exporter.next({ maxCount: 10 }))!.records.map(r => r.id))
  await page.locator(`${marker('exporter:acked')}[data-before="end"]`).waitFor()
  t.is(await page.locator('[data-testid=wal-records] tbody tr').last().getAttribute('data-marker'), 'exporter:acked')
})
