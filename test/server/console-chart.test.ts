/**
 * The console's rate charts in a real browser (headless Chromium through playwright-core): a y
 * axis of records per second with rounded ticks, and a time axis that ends "now". Known samples
 * are drawn by the page's own chart module; and, against a real `evaq serve` whose clock the test
 * moves, a known push rate shows on the WAL card's chart.
 */
import anyTest from 'ava'
import { ManualClock } from '../helpers/clock.js'
import { consoleUrl, newPage, screenshot, startService, useBrowser } from '../helpers/browser.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

const browser = useBrowser(test)

interface Drawn {
  y: Array<{ text: string, y: number }>
  x: Array<{ text: string, x: number }>
  push: string
  drain: string
}

/** Draw `samples` with the page's chart.js into a new chart and read back its ticks and lines. */
function drawScript (samples: Array<{ push: number, drain: number, at: number, seconds?: number }>, windowMs: number, now: number): string {
  return `import('/console/chart.js').then(m => {
    const svg = m.rateChart('test chart')
    document.body.append(svg)
    m.drawRates(svg, ${JSON.stringify(samples)}, { windowMs: ${windowMs}, now: ${now} })
    const texts = sel => [...svg.querySelectorAll(sel + ' text')]
    return {
      y: texts('.y-ticks').map(t => ({ text: t.textContent, y: Number(t.getAttribute('y')) })),
      x: texts('.x-ticks').map(t => ({ text: t.textContent, x: Number(t.getAttribute('x')) })),
      push: svg.querySelector('.line.push').getAttribute('points'),
      drain: svg.querySelector('.line.drain').getAttribute('points'),
    }
  })`
}

test.serial('the chart module: y ticks in records per second rounded above the highest rate, a time axis to "now", samples placed by time', async t => {
  const s = await startService(t)
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  const now = 1_700_000_000_000

  // Highest 730/s: ticks every 200/s up to 800/s; two minutes back, every 30 s.
  const a = await page.evaluate(drawScript([
    { push: 999_999, drain: 0, at: now - 121_000 }, // older than the window: left out, and not in the scale
    { push: 120, drain: 30, at: now - 60_000 },
    { push: 730, drain: 0, at: now - 30_000 },
    { push: 400, drain: 650, at: now },
  ], 120_000, now)) as Drawn
  t.deepEqual(a.y.map(l => l.text), ['0/s', '200/s', '400/s', '600/s', '800/s'])
  t.deepEqual(a.x.map(l => l.text), ['now', '-30 s', '-60 s', '-90 s', '-2 min'])
  const points = (p: string): number[][] => p.split(' ').map(xy => xy.split(',').map(Number))
  // 0 at the bottom, 800 at the top, evenly; "now" at the right, -2 min at the left.
  const ys = a.y.map(l => l.y)
  t.true(ys.every((y, i) => i === 0 || y < ys[i - 1]!), 'higher ticks higher up')
  const yOf = (v: number): number => ys[0]! - (ys[0]! - ys.at(-1)!) * v / 800
  const xs = a.x.map(l => l.x)
  const xOf = (agoMs: number): number => xs[0]! - (xs[0]! - xs.at(-1)!) * agoMs / 120_000
  const push = points(a.push)
  t.is(push.length, 3)
  for (const [[x, y], [agoMs, v]] of push.map((p, i) => [p, [[60_000, 120], [30_000, 730], [0, 400]][i]!] as const)) {
    t.true(Math.abs(x! - xOf(agoMs!)) < 0.2, `x of ${v}/s`)
    t.true(Math.abs(y! - yOf(v!)) < 0.2, `y of ${v}/s`)
  }
  t.true(Math.abs(points(a.drain)[2]![1]! - yOf(650)) < 0.2)

  // Thousands and a 12-second window (the tests' polling); an idle chart still has a scale.
  // A sample with its span is a step over it: the rate between two polls.
  const b = await page.evaluate(drawScript([{ push: 1200, drain: 90, at: now - 4000, seconds: 2 }], 12_000, now)) as Drawn
  t.deepEqual(b.y.map(l => l.text), ['0/s', '500/s', '1k/s', '1.5k/s'])
  t.deepEqual(b.x.map(l => l.text), ['now', '-5 s', '-10 s'])
  const [b0, b1] = points(b.push)
  t.true(Math.abs(b0![1]! - b1![1]!) < 0.01, 'level')
  t.true(Math.abs((b1![0]! - b0![0]!) - (b.x[0]!.x - b.x.at(-1)!.x) * 2 / 10) < 0.2, '2 s wide on a 10 s scale')
  const c = await page.evaluate(drawScript([], 600_000, now)) as Drawn
  t.deepEqual(c.y.map(l => l.text), ['0/s', '0.25/s', '0.5/s', '0.75/s', '1/s'])
  t.deepEqual(c.x.map(l => l.text), ['now', '-5 min', '-10 min'])
  const d = await page.evaluate(drawScript([{ push: 2_400_000, drain: 0, at: now }], 3_600_000, now)) as Drawn
  t.deepEqual(d.y.map(l => l.text), ['0/s', '1M/s', '2M/s', '3M/s'])
  t.deepEqual(d.x.map(l => l.text), ['now', '-15 min', '-30 min', '-45 min', '-60 min'])
})

test.serial('a known push rate on the WAL card: 300 records over 2 s of the service\'s clock read 150/s, on a 0–150/s scale', async t => {
  const clock = new ManualClock()
  const s = await startService(t, { evaq: { clock } })
  const page = await newPage(t, browser())
  await page.goto(consoleUrl(s))
  const card = page.getByTestId('log-wal')
  const chart = card.locator('svg.chart')
  // The first poll is the baseline; the clock stands still, so later polls add no sample.
  await chart.locator('.y-ticks text').first().waitFor()
  t.deepEqual(await chart.locator('.y-ticks text').allTextContents(), ['0/s', '0.25/s', '0.5/s', '0.75/s', '1/s'])
  t.deepEqual(await chart.locator('.x-ticks text').allTextContents(), ['now', '-5 s', '-10 s'], 'the tests poll every 200 ms: 60 samples are 12 s')

  await s.evaq.wal.pushMany(Array.from({ length: 300 }, (_, i) => `r${i}`))
  clock.advance(2000)
  await page.locator('[data-testid=log-wal][data-pushed="300"]').waitFor()
  await page.locator('[data-testid=log-wal] svg.chart[data-y-ticks="0/s|50/s|100/s|150/s"]').waitFor()
  t.deepEqual(await chart.locator('.y-ticks text').allTextContents(), ['0/s', '50/s', '100/s', '150/s'])
  t.is(await chart.getAttribute('data-max-push'), '150')
  t.is(await card.locator('[data-field=push]').textContent(), '150/s')
  t.regex(await chart.getAttribute('aria-label') ?? '', /records per second.*150\/s pushed/)
  await screenshot(page, 'chart')
})
