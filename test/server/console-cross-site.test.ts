/**
 * What a web page can make the operator's browser do to a service on loopback, in a real browser
 * (headless Chromium through playwright-core): a page of another origin sends the "simple"
 * requests a browser sends without asking first (`fetch` in `no-cors` mode, forms with
 * `enctype="text/plain"`, images), and a page whose name was rebound to 127.0.0.1 (Chromium's
 * host resolver rules stand in for the attacker's DNS) sends same-origin requests. Every one is
 * refused, and the real API shows that nothing was stored, leased, purged or streamed.
 */
import anyTest, { type ExecutionContext } from 'ava'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type Page } from 'playwright-core'
import { send } from '../fixtures/http.js'
import { chromiumPath, startService } from '../helpers/browser.js'
import type { Service } from '../../src/server/serve.js'
import { requiring } from '../helpers/prerequisites.js'

const test = requiring(anyTest, import.meta.url, 'chromium')

let browser: Browser | undefined
test.before(async () => {
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-dev-shm-usage',
      '--host-resolver-rules=MAP rebound.test 127.0.0.1',
    ],
  })
})
test.after.always(async () => { await browser?.close() })

async function newPage (t: ExecutionContext): Promise<Page> {
  const context = await browser!.newContext()
  context.setDefaultTimeout(30_000)
  t.teardown(() => context.close())
  return context.newPage()
}

/**
 * The attacker's page: every simple request it can send to `target`, then `document.title` is
 * `done` once each has been answered (a fetch settled, a form's frame loaded, an image failed).
 */
function attackerPage (target: string): string {
  const forms = [
    // Body `x=y\r\n`, Content-Type text/plain: one record.
    ['records', '/v1/logs/wal/records', '<input name="x" value="y">'],
    // No fields: an empty text/plain body, the lease of the next records.
    ['next', '/v1/logs/wal/subscribers/exporter/next', ''],
    // Body `{"all":true,"x":"="}`: JSON in a text/plain form.
    ['purge', '/v1/dlq/purge', '<input name=\'{"all":true,"x":"\' value=\'"}\'>'],
  ]
  return `<!doctype html><title>attacker</title>
${forms.map(([name, path, fields]) => `<iframe name="f-${name!}"></iframe>` +
  `<form id="${name!}" method="POST" enctype="text/plain" target="f-${name!}" action="${target}${path!}">${fields!}</form>`).join('\n')}
<script>
const target = ${JSON.stringify(target)}
const post = (path, init = {}) => fetch(target + path, { method: 'POST', mode: 'no-cors', ...init }).catch(() => {})
const pending = [
  post('/v1/logs/wal/records', { headers: { 'content-type': 'text/plain' }, body: 'from fetch' }),
  post('/v1/logs/wal/subscribers/exporter/next'),
  post('/v1/logs/wal/subscribers/exporter/next', { headers: { 'content-type': 'text/plain' }, body: '' }),
  post('/v1/dlq/purge', { headers: { 'content-type': 'text/plain' }, body: '{"all":true}' }),
  post('/v1/backup'),
  ...['/v1/logs/wal/records?waitMs=0', '/v1/stats'].map(path => new Promise(done => {
    const img = new Image(); img.onload = img.onerror = done; img.src = target + path
  })),
  ...${JSON.stringify(forms.map(f => f[0]))}.map(name => new Promise(done => {
    document.querySelector('iframe[name="f-' + name + '"]').addEventListener('load', done, { once: true })
    document.getElementById(name).submit()
  })),
]
Promise.all(pending).then(() => { document.title = 'done' })
</script>`
}

/** Requests the attacker page sends: 5 fetches, 2 images, 3 forms. */
const ATTACKS = 10

async function attackerServer (t: ExecutionContext, target: string): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(attackerPage(target))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  return String((server.address() as AddressInfo).port)
}

/** A record in the WAL, one in the DLQ, and a subscriber `exporter` at the start of the WAL. */
async function seed (s: Service): Promise<void> {
  await s.evaq.wal.push(Buffer.from('order 1'))
  await s.evaq.dlq.push(Buffer.from('failed 1'))
  const r = await send(s.url, 'PUT', '/v1/logs/wal/subscribers/exporter', { headers: { 'content-type': 'application/json' }, body: '{"start":"earliest"}' })
  if (r.status !== 201) throw new Error(`subscribe: ${r.status} ${r.text}`)
}

/** Responses the service counted, by status, leaving out the test's own calls. */
async function responses (s: Service): Promise<Map<string, number>> {
  const text = (await send(s.url, 'GET', '/metrics')).text
  const out = new Map<string, number>()
  for (const m of text.matchAll(/^evaq_http_responses_total\{([^}]*)\} (\d+)/gm)) {
    if (/route="\/(metrics|healthz)"|method="PUT"/.test(m[1]!)) continue
    const status = /status="(\d+)"/.exec(m[1]!)![1]!
    out.set(status, (out.get(status) ?? 0) + Number(m[2]))
  }
  return out
}

/** Nothing was stored, purged or leased: the WAL and DLQ hold their one record each, and the subscriber gets its record for the first time. */
async function untouched (t: ExecutionContext, s: Service): Promise<void> {
  t.is((await s.evaq.wal.stats()).count, 1)
  t.is((await s.evaq.dlq.stats()).count, 1)
  const next = await send(s.url, 'POST', '/v1/logs/wal/subscribers/exporter/next')
  t.deepEqual(next.json.records.map((r: { id: number, deliveryCount: number }) => [r.id, r.deliveryCount]), [[1, 1]])
}

for (const [kind, name] of [['same-site (another port of 127.0.0.1)', '127.0.0.1'], ['cross-site (localhost)', 'localhost']] as const) {
  test.serial(`a page of another origin, ${kind}: no-cors fetches, text/plain forms and images are refused (403) and change nothing`, async t => {
    const s = await startService(t)
    await seed(s)
    const port = await attackerServer(t, s.url)
    const page = await newPage(t)
    await page.goto(`http://${name}:${port}/`)
    await page.waitForFunction('document.title === "done"')
    // Every request reached the service (none was blocked by the browser itself) and was refused.
    t.deepEqual([...await responses(s)], [['403', ATTACKS]])
    await untouched(t, s)
  })
}

test.serial('DNS rebinding: a page whose name now points at 127.0.0.1 is its own origin, and is refused (421)', async t => {
  const s = await startService(t)
  await seed(s)
  const page = await newPage(t)
  // The attacker's name, rebound to the service's address and port: the browser sees one origin.
  const rebound = `http://rebound.test:${new URL(s.url).port}`
  const first = await page.goto(`${rebound}/`)
  t.is(first?.status(), 421)
  // A string, not a function: the test's compiler would add helpers the page does not have.
  const answers = await page.evaluate(`(async () => {
    const call = async (method, path, body) => {
      const r = await fetch(path, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body }) })
      return r.status + ' ' + (await r.json()).code
    }
    return [
      await call('POST', '/v1/dlq/purge', '{"all":true}'),
      await call('POST', '/v1/logs/wal/records', '["eA=="]'),
      await call('POST', '/v1/logs/wal/subscribers/exporter/next', '{}'),
      await call('GET', '/v1/logs/wal/records'),
      await call('POST', '/v1/backup'),
    ]
  })()`) as string[]
  t.deepEqual(answers, Array(5).fill('421 EVAQ_MISDIRECTED'))
  await untouched(t, s)
})
