/**
 * The console stops polling while its tab is hidden and polls again at once when it is shown, in
 * a real browser (headless Chromium through playwright-core) against a real `evaq serve`. The
 * page's visibility is set from the test (document.visibilityState and the visibilitychange event,
 * as a browser does when the tab goes to the background), and the requests to `/v1/overview` are
 * counted where the browser sends them.
 */
import anyTest from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Page } from 'playwright-core'
import { consoleUrl, loadsAfter, newPage, startService, useBrowser } from '../helpers/browser.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const browser = useBrowser(test)

/** Count the page's requests to the overview. */
function countOverviews (page: Page): () => number {
  let n = 0
  page.on('request', request => { if (new URL(request.url()).pathname === '/v1/overview') n++ })
  return () => n
}

/** Make the page hidden or visible, as switching tabs does. */
async function setVisibility (page: Page, state: 'hidden' | 'visible'): Promise<void> {
  await page.evaluate(`(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => '${state}' })
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => ${state === 'hidden'} })
    document.dispatchEvent(new Event('visibilitychange'))
  })()`)
}

test.serial('a hidden tab does not poll; shown again, it polls at once and goes on polling', async t => {
  const s = await startService(t)
  const page = await newPage(t, browser())
  const overviews = countOverviews(page)
  await page.goto(consoleUrl(s)) // polls every 200 ms
  await loadsAfter(page, 3)
  t.true(overviews() >= 3)

  await setVisibility(page, 'hidden')
  // A poll under way when the tab was hidden finishes; none follows it.
  await page.locator('main:not([aria-busy])').waitFor()
  await sleep(300)
  const hiddenAt = overviews()
  const loads = await page.locator('body').getAttribute('data-loads')
  await s.evaq.pushWal('while hidden')
  await sleep(2_000) // ten polling intervals
  t.is(overviews(), hiddenAt, 'no request while hidden')
  t.is(await page.locator('body').getAttribute('data-loads'), loads)
  t.is(await page.locator('[data-testid=log-wal] [data-field=count]').textContent(), '0', 'not refreshed while hidden')

  await setVisibility(page, 'visible')
  await page.locator('[data-testid=log-wal] [data-field=count]', { hasText: /^1$/ }).waitFor()
  await loadsAfter(page, 3)
  t.true(overviews() >= hiddenAt + 4, 'polling again')
})

test.serial('shown again, the page polls at once rather than at its next interval (here a minute away)', async t => {
  const s = await startService(t)
  const page = await newPage(t, browser())
  const overviews = countOverviews(page)
  await page.goto(`${s.url}/?refresh=60000`)
  await page.locator('body[data-loads="1"]').waitFor()
  await page.locator('main:not([aria-busy])').waitFor()
  const before = overviews()
  await setVisibility(page, 'hidden')
  await s.evaq.pushWal('while hidden')
  await setVisibility(page, 'visible')
  const shownAt = performance.now()
  await page.locator('[data-testid=log-wal] [data-field=count]', { hasText: /^1$/ }).waitFor()
  t.true(performance.now() - shownAt < 20_000, 'well before the next interval')
  t.is(overviews(), before + 1)

  // Live off: being shown does not poll either.
  await page.locator('#live').click()
  await page.locator('#live[aria-pressed="false"]').waitFor()
  const paused = overviews()
  await setVisibility(page, 'hidden')
  await setVisibility(page, 'visible')
  await sleep(500)
  t.is(overviews(), paused)
})
