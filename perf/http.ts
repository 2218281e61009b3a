/**
 * `npm run bench:http`: the HTTP service under autocannon beside a no-op fastify server (see
 * perf/lib/http.ts). Prints the table, writes perf/results/<date>-http.json and perf/README.md's
 * `bench:http` block. `--quick`: one short round, written to perf/results/quick-http.json only.
 *
 * Knobs: EVAQ_HTTP_SECONDS, EVAQ_HTTP_WARMUP_SECONDS, EVAQ_HTTP_ROUNDS, EVAQ_HTTP_CONNECTIONS,
 * EVAQ_HTTP_PAYLOAD_BYTES, EVAQ_HTTP_BATCH_RECORDS, EVAQ_HTTP_LINE_BYTES, EVAQ_HTTP_QUIET_WAIT_SECONDS
 * (0: never wait for a quiet machine).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { HTTP_DEFAULTS, httpTable, runHttpBench, writeHttpReadme, type HttpBenchOptions } from './lib/http.js'

const quick = process.argv.includes('--quick')
const env = (name: string, fallback: number): number => {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  const x = Number(v)
  if (!Number.isFinite(x) || x <= 0) throw new Error(`${name} must be a positive number, got ${v}`)
  return x
}
const options: Partial<HttpBenchOptions> = {
  seconds: env('EVAQ_HTTP_SECONDS', quick ? 3 : HTTP_DEFAULTS.seconds),
  warmupSeconds: env('EVAQ_HTTP_WARMUP_SECONDS', quick ? 1 : HTTP_DEFAULTS.warmupSeconds),
  rounds: env('EVAQ_HTTP_ROUNDS', quick ? 1 : HTTP_DEFAULTS.rounds),
  connections: env('EVAQ_HTTP_CONNECTIONS', HTTP_DEFAULTS.connections),
  payloadBytes: env('EVAQ_HTTP_PAYLOAD_BYTES', HTTP_DEFAULTS.payloadBytes),
  batchRecords: env('EVAQ_HTTP_BATCH_RECORDS', HTTP_DEFAULTS.batchRecords),
  lineBytes: env('EVAQ_HTTP_LINE_BYTES', HTTP_DEFAULTS.lineBytes),
  quietWaitSeconds: process.env.EVAQ_HTTP_QUIET_WAIT_SECONDS === '0' ? 0 : env('EVAQ_HTTP_QUIET_WAIT_SECONDS', quick ? 5 : HTTP_DEFAULTS.quietWaitSeconds),
  log: line => console.error(line),
}

const result = await runHttpBench(options)
console.log(httpTable(result))
const results = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results')
await mkdir(results, { recursive: true })
const file = path.join(results, quick ? 'quick-http.json' : `${result.date}-http.json`)
await writeFile(file, JSON.stringify(result, null, 2) + '\n')
console.error(`wrote ${path.relative(process.cwd(), file)}`)
if (!quick) console.error(await writeHttpReadme(result) ? 'updated perf/README.md (bench:http)' : 'perf/README.md has no bench:http markers: not updated')
