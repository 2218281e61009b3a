/**
 * The retry daemon draining the DLQ into a flaky HTTP endpoint:
 *
 *   npx tsx examples/retry-daemon.ts
 *   EVAQ_DATA=/tmp/q FAIL_SHARE=0.5 npx tsx examples/retry-daemon.ts
 *
 * A local server answers 503 to a share of the requests (FAIL_SHARE, default 0.3) and 400 to
 * "poison" messages. 200 messages wait in the DLQ; the daemon delivers them with backoff, parks
 * the poison ones at once and whatever still fails after maxAttempts, then the counts are printed.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Evaq, isEvaqError, type ParkedEvent } from '../src/index.js'

const FAIL_SHARE = Number(process.env.FAIL_SHARE ?? 0.3)
const MESSAGES = 200

// ---- the flaky downstream ---------------------------------------------------------------------
const server = { requests: 0, ok: 0, unavailable: 0, rejected: 0 }
const http = createServer((req, res) => {
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (chunk: string) => { body += chunk })
  req.on('end', () => {
    server.requests++
    if (body.includes('poison')) { server.rejected++; res.writeHead(400).end('bad message'); return }
    if (Math.random() < FAIL_SHARE) { server.unavailable++; res.writeHead(503).end('try later'); return }
    server.ok++
    res.writeHead(200).end('ok')
  })
})
http.listen(0, '127.0.0.1')
await once(http, 'listening')
const { port } = http.address() as { port: number }
const url = `http://127.0.0.1:${port}/orders`

// ---- a DLQ with messages whose first delivery failed ------------------------------------------
const dir = process.env.EVAQ_DATA ?? await mkdtemp(join(tmpdir(), 'evaq-retry-example-'))
const evaq = await Evaq.open(dir).catch((err: unknown) => {
  if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
  console.error(`retry-daemon: ${dir} is in use by another process (EVAQ_LOCKED); stop it or set EVAQ_DATA to another directory`)
  process.exit(1)
})
const unavailable = Object.assign(new Error('downstream unavailable'), { code: 'ECONNREFUSED' })
for (let i = 0; i < MESSAGES; i++) {
  const order = JSON.stringify({ order: i, note: i % 50 === 7 ? 'poison' : 'fine' })
  await evaq.pushRetryItem(order, { error: unavailable, attempts: 1, source: { log: 'wal', id: i + 1 } })
}
const before = await evaq.stats()
console.log(`DLQ: ${before.dlq.count} message(s); endpoint ${url} fails ${Math.round(FAIL_SHARE * 100)}% of requests and rejects poison`)

// ---- the daemon --------------------------------------------------------------------------------
class HttpError extends Error {
  constructor (readonly status: number, readonly retriable: boolean) {
    super(`HTTP ${status}`)
  }

  get code (): string { return `HTTP_${this.status}` }
}

const daemon = evaq.retry(async (record, { signal }) => {
  const res = await fetch(url, { method: 'POST', body: record.payload, signal })
  await res.arrayBuffer()
  // 5xx: try again later; 4xx: this message will never go through (parked at once).
  if (!res.ok) throw new HttpError(res.status, res.status >= 500)
}, {
  concurrency: 8,
  rateLimit: { max: 200, intervalMs: 100 },
  maxAttempts: 4,
  backoff: { initialMs: 20, maxMs: 200, multiplier: 2 },
})

const counts = { attempts: 0, succeeded: 0, rescheduled: 0, parked: { permanent: 0, 'max-attempts': 0 } }
daemon.on('retried', () => counts.attempts++)
daemon.on('succeeded', () => counts.succeeded++)
daemon.on('rescheduled', () => counts.rescheduled++)
daemon.on('parked', (e: ParkedEvent) => counts.parked[e.reason]++)

const started = performance.now()
await new Promise<void>(resolve => {
  const check = (): void => {
    if (counts.succeeded + counts.parked.permanent + counts.parked['max-attempts'] === MESSAGES) resolve()
  }
  daemon.on('succeeded', check)
  daemon.on('parked', check)
})
await daemon.stop()
const ms = Math.round(performance.now() - started)

const after = await evaq.stats()
console.log(`drained in ${ms} ms: ${counts.attempts} attempts, ${counts.succeeded} delivered, ${counts.rescheduled} rescheduled, ` +
  `${counts.parked.permanent} parked as permanent (HTTP 400), ${counts.parked['max-attempts']} parked after 4 attempts`)
console.log(`server: ${server.requests} requests, ${server.ok} OK, ${server.unavailable} 503, ${server.rejected} 400`)
console.log(`now: DLQ ${after.dlq.count}, parked ${after.parked.count}`)
for (const r of await evaq.parked.read({ maxCount: 3 })) {
  console.log(`  parked #${r.id} (was DLQ #${r.retry.dlqId ?? '-'}, ${r.retry.reason}, ${r.retry.attempts} attempts, ` +
    `last error ${r.retry.lastError?.code ?? ''}): ${r.payload.toString()}`)
}

// An operator fixed the endpoint for the ones that only ran out of attempts: requeue those, purge the poison.
const parked = await evaq.parked.read({ maxBytes: Infinity, maxCount: Infinity })
const requeued = await evaq.requeueParked(parked.filter(r => r.retry.reason === 'max-attempts').map(r => r.id))
const purged = await evaq.purgeParked(parked.filter(r => r.retry.reason === 'permanent').map(r => r.id))
console.log(`requeued ${requeued.length} to the DLQ (due now, attempts reset), purged ${purged} poison message(s)`)

await evaq.close()
http.close()
if (process.env.EVAQ_DATA === undefined) await rm(dir, { recursive: true, force: true })
