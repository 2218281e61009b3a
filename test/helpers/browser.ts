/**
 * The console's browser tests: one headless Chromium per test file (Debian's `chromium`, driven
 * by playwright-core, so no browser is downloaded), a fresh context per test, and a real `evaq`
 * service in a fresh temp directory per test.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecutionContext, TestFn } from 'ava'
import { chromium, type Browser, type Page } from 'playwright-core'
import { serve, type Service } from '../../src/server/serve.js'
import type { EvaqOptions } from '../../src/index.js'
import { chromiumPath as findChromium } from './prerequisites.js'
import { tmpDir } from './tmp.js'

export const ARTIFACTS = new URL('../artifacts/console/', import.meta.url)

/** Where Chromium is: `$CHROMIUM`, else Debian's and other usual places. */
export function chromiumPath (): string {
  const found = findChromium()
  if (found === undefined) throw new Error('No Chromium: apt-get install -y chromium (.ci/run does), or set CHROMIUM')
  return found
}

/**
 * Launch one browser for the tests of a file (before all of them), closed after them. Returns a
 * getter, since the browser exists only once `test.before` ran.
 */
export function useBrowser (test: TestFn): () => Browser {
  let browser: Browser | undefined
  test.before(async () => {
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
    })
  })
  test.after.always(async () => { await browser?.close() })
  return () => {
    if (browser === undefined) throw new Error('the browser is not launched yet')
    return browser
  }
}

export interface Viewport { width: number, height: number }

/** A page in a fresh context (its own sessionStorage), closed when the test ends. */
export async function newPage (t: ExecutionContext, browser: Browser, viewport: Viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme: 'light', reducedMotion: 'reduce', locale: 'en-US', timezoneId: 'UTC' })
  // Locators wait this long at most: ample for a page that polls every 200 ms even on a loaded
  // CI machine, and a failing test still fails well before ava's 2-minute timeout.
  context.setDefaultTimeout(30_000)
  t.teardown(() => context.close())
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', err => errors.push(err.message))
  page.on('console', message => { if (message.type() === 'error') errors.push(message.text()) })
  t.teardown(() => {
    // A script error or a console error (a CSP violation, a 5xx) fails the test. A 4xx is the
    // browser's note on an answer the page handles (a refused token, a record already gone); the
    // tests assert what the page does with it.
    const unexpected = errors.filter(e => !/the server responded with a status of 4\d\d/.test(e))
    if (unexpected.length > 0) throw new Error(`the page logged errors: ${unexpected.join(' | ')}`)
  })
  return page
}

/** Save a screenshot as a test artefact: test/artifacts/console/NAME.png. */
export async function screenshot (page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true })
  const path = join(ARTIFACTS.pathname, `${name}.png`)
  await page.screenshot({ path, fullPage: false })
  return path
}

/** A running `evaq serve` (the real service: serve(), port 0) on a fresh directory. */
export async function startService (t: ExecutionContext, options: { token?: string, evaq?: EvaqOptions } = {}): Promise<Service> {
  const dir = join(await tmpDir(t, 'evaq-console-'), 'data')
  const service = await serve({
    dir,
    port: 0,
    logLevel: 'silent',
    evaq: { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, ...options.evaq },
    ...(options.token === undefined ? {} : { token: options.token }),
  })
  t.teardown(() => service.close())
  return service
}

/** The console of `service`, polling every 200 ms. */
export function consoleUrl (service: Service): string {
  return `${service.url}/?refresh=200`
}

/**
 * Wait until the page completed `n` more loads (polls) than it had: what it shows is then at least
 * that fresh. (A locator, not `waitForFunction`: the console's CSP forbids the eval that needs.)
 */
export async function loadsAfter (page: Page, n = 1): Promise<void> {
  for (let i = 0; i < n; i++) {
    const seen = await page.locator('body').getAttribute('data-loads') ?? ''
    await page.locator(`body:not([data-loads="${seen}"])[data-loads]`).waitFor({ state: 'attached' })
  }
}
