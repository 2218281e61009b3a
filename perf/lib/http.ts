/**
 * The HTTP service under load: autocannon against `evaq serve` (durable single-record POSTs, and
 * NDJSON batches of 100 records), beside a no-op fastify server that parses the same request and
 * answers the same shape without storing anything, in the same run. Each server is a child
 * process; autocannon runs here. Self-contained: `runHttpBench()` returns the numbers,
 * `httpTable()` formats them, `writeHttpReadme()` puts the table between perf/README.md's
 * `bench:http` markers.
 *
 * Run as `node --import tsx perf/lib/http.ts --noop-server` this file is the no-op server.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const THIS_FILE = fileURLToPath(import.meta.url)

export interface HttpBenchOptions {
  /** Length of one measurement in seconds, after its warm-up. @defaultValue 10 */
  seconds: number
  /** Warm-up before each measurement, same load, in seconds. @defaultValue 2 */
  warmupSeconds: number
  /** Every scenario runs once per round; odd rounds run them in reverse order. @defaultValue 3 */
  rounds: number
  /** Concurrent HTTP connections (keep-alive, no pipelining). @defaultValue 100 */
  connections: number
  /** Payload of a single-record POST. @defaultValue 1024 */
  payloadBytes: number
  /** Records per NDJSON batch. @defaultValue 100 */
  batchRecords: number
  /** Bytes of one NDJSON line (a JSON object with random text). @defaultValue 256 */
  lineBytes: number
  /**
   * Before each measurement, wait at most this long (seconds) for the machine to go quiet (other
   * processes using < 0.3 CPUs over 1 s); 0 never waits. Linux only. @defaultValue 60
   */
  quietWaitSeconds: number
  /** Progress lines. @defaultValue none */
  log?: (line: string) => void
}

export const HTTP_DEFAULTS: Readonly<Omit<HttpBenchOptions, 'log'>> = Object.freeze({
  seconds: 10,
  warmupSeconds: 2,
  rounds: 3,
  connections: 100,
  payloadBytes: 1024,
  batchRecords: 100,
  lineBytes: 256,
  quietWaitSeconds: 60,
})

/** Busy below this many CPUs (everything on the machine but idle and iowait) counts as quiet. */
const QUIET_CPUS = 0.3

export type ScenarioName = 'noop-single' | 'evaq-single' | 'noop-ndjson' | 'evaq-ndjson'
const SCENARIOS: readonly ScenarioName[] = ['noop-single', 'evaq-single', 'noop-ndjson', 'evaq-ndjson']

export interface ScenarioResult {
  readonly requestsPerSecond: number
  readonly recordsPerSecond: number
  readonly latencyMs: { readonly p50: number, readonly p99: number }
  readonly requests: number
  readonly errors: number
  readonly timeouts: number
  readonly non2xx: number
  /**
   * evaq only: records the service stored (warm-up and measurement) vs records it acknowledged
   * (2xx); the requests in flight when autocannon stops are stored without being counted.
   */
  readonly stored?: number
  readonly acknowledged?: number
  /** How long the measurement waited for a quiet machine, and how busy the machine was then (CPUs). */
  readonly quiet?: { readonly waitedMs: number, readonly busyCpus: number }
}

export interface HttpTarget {
  readonly name: string
  readonly value: number
  readonly baseline: number | undefined
  readonly ratio: number | undefined
  readonly target: string
  readonly met: boolean
}

export interface HttpBenchResult {
  readonly date: string
  readonly machine: { readonly cpus: string, readonly memory: string, readonly os: string, readonly node: string, readonly tmpdir: string }
  readonly options: Omit<HttpBenchOptions, 'log'>
  readonly rounds: ReadonlyArray<Record<ScenarioName, ScenarioResult>>
  /** Medians over the rounds. */
  readonly medians: Record<ScenarioName, ScenarioResult>
  /** Median over the rounds of evaq-single / noop-single requests per second, each pair from one round. */
  readonly singleRatio: number
  readonly targets: readonly HttpTarget[]
  readonly loadAverage: { readonly start: number, readonly end: number }
}

// ---- payloads ---------------------------------------------------------------------------------

/** Distinct random payloads, handed out in turn (LevelDB's Snappy would shrink one repeated payload). */
function pool (count: number, make: () => Buffer): () => Buffer {
  const list = Array.from({ length: count }, make)
  let i = 0
  return () => {
    const p = list[i]!
    i = (i + 1) % count
    return p
  }
}

function ndjsonBatches (records: number, lineBytes: number): () => Buffer {
  const line = (): string => {
    const text = randomBytes(Math.ceil(lineBytes * 0.75)).toString('base64')
    const head = '{"event":"evacuated","data":"'
    return `${head}${text.slice(0, Math.max(1, lineBytes - head.length - 2))}"}`
  }
  return pool(64, () => Buffer.from(Array.from({ length: records }, line).join('\n') + '\n'))
}

// ---- servers ------------------------------------------------------------------------------------

interface Server {
  readonly url: string
  readonly child: ChildProcess
  stop (): Promise<void>
}

function startChild (args: readonly string[], listening: (line: Record<string, unknown>) => string | undefined): Promise<Server> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<void>(_resolve => child.once('exit', () => _resolve()))
    let err = ''
    child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
    let started = false
    createInterface({ input: child.stdout! }).on('line', line => {
      if (started) return
      let parsed: Record<string, unknown>
      try { parsed = JSON.parse(line) as Record<string, unknown> } catch { return }
      const url = listening(parsed)
      if (url === undefined) return
      started = true
      resolve({
        url,
        child,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
          await exited
        },
      })
    })
    child.once('exit', code => { if (!started) reject(new Error(`server exited (${String(code)}) before listening: ${err.slice(0, 2000)}`)) })
  })
}

async function startEvaq (dir: string, bodyLimit: number): Promise<Server> {
  const args = ['src/cli/main.ts', 'serve', '--data', dir, '--port', '0', '--body-limit', String(bodyLimit)]
  return startChild(args, l => l.msg === 'evaq listening' ? l.url as string : undefined)
}

function startNoop (bodyLimit: number): Promise<Server> {
  return startChild([THIS_FILE, '--noop-server', String(bodyLimit)], l => l.msg === 'noop listening' ? l.url as string : undefined)
}

/**
 * The baseline: fastify with the same framework settings, content-type parsers and route shape as
 * the service, answering `201 { ids }` without storing anything (the NDJSON parser splits lines
 * and checks that each is JSON, like the service's).
 */
async function noopServer (bodyLimit: number): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false, bodyLimit })
  let next = 1
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => { done(null, [body]) })
  app.addContentTypeParser('application/x-ndjson', { parseAs: 'buffer' }, (_req, body, done) => {
    const lines = (body as Buffer).toString('utf8').split('\n').filter(l => l.trim() !== '')
    for (const l of lines) JSON.parse(l)
    done(null, lines)
  })
  app.post<{ Params: { log: string } }>('/v1/logs/:log/records', {
    schema: {
      params: { type: 'object', properties: { log: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } }, required: ['log'] },
      response: { 201: { type: 'object', properties: { ids: { type: 'array', items: { type: 'integer' } } } } },
    },
  }, async (request, reply) => {
    const count = (request.body as unknown[]).length
    const ids = Array.from({ length: count }, () => next++)
    return reply.code(201).send({ ids })
  })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  console.log(JSON.stringify({ msg: 'noop listening', url }))
  process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
}

// ---- a quiet machine ----------------------------------------------------------------------------

async function cpuTimes (): Promise<{ busy: number, total: number } | undefined> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    return { busy: total - v[3]! - v[4]!, total }
  } catch {
    return undefined
  }
}

/** CPUs busy on the whole machine over the next second (undefined where /proc/stat is missing). */
async function machineBusy (): Promise<number | undefined> {
  const a = await cpuTimes()
  await new Promise(resolve => setTimeout(resolve, 1000))
  const b = await cpuTimes()
  if (a === undefined || b === undefined || b.total === a.total) return undefined
  return (b.busy - a.busy) / (b.total - a.total) * os.cpus().length
}

/**
 * Wait until the machine is quiet (this harness and its idle server use next to nothing while it
 * waits), at most `maxSeconds`. Absolute numbers on a shared machine drift with other load; ratios
 * measured side by side hold better, and waiting keeps both sides of a ratio comparable.
 */
async function waitQuiet (maxSeconds: number): Promise<{ waitedMs: number, busyCpus: number }> {
  const started = performance.now()
  let busy = 0
  for (;;) {
    busy = (await machineBusy()) ?? 0
    if (busy < QUIET_CPUS || performance.now() - started >= maxSeconds * 1000) break
  }
  return { waitedMs: Math.round(performance.now() - started), busyCpus: Number(busy.toFixed(2)) }
}

// ---- measurement --------------------------------------------------------------------------------

function cannon (url: string, options: HttpBenchOptions, seconds: number, type: string, body: () => Buffer): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/v1/logs/wal/records`,
    connections: options.connections,
    duration: seconds,
    timeout: 30,
    requests: [{
      method: 'POST',
      headers: { 'content-type': type },
      setupRequest: request => ({ ...request, body: body() }),
    }],
  })
}

async function scenario (name: ScenarioName, options: HttpBenchOptions): Promise<ScenarioResult> {
  const ndjson = name.endsWith('ndjson')
  const body = ndjson ? ndjsonBatches(options.batchRecords, options.lineBytes) : pool(1024, () => randomBytes(options.payloadBytes))
  const type = ndjson ? 'application/x-ndjson' : 'application/octet-stream'
  const perRequest = ndjson ? options.batchRecords : 1
  const bodyLimit = 8 * 1024 * 1024
  const dir = name.startsWith('evaq') ? await mkdtemp(path.join(os.tmpdir(), 'evaq-bench-http-')) : undefined
  const server = dir === undefined ? await startNoop(bodyLimit) : await startEvaq(dir, bodyLimit)
  try {
    const quiet = options.quietWaitSeconds > 0 ? await waitQuiet(options.quietWaitSeconds) : undefined
    const warm = await cannon(server.url, options, options.warmupSeconds, type, body)
    const r = await cannon(server.url, options, options.seconds, type, body)
    let stored: number | undefined
    if (dir !== undefined) {
      const stats = await fetch(`${server.url}/v1/stats`).then(res => res.json()) as { wal: { count: number } }
      stored = stats.wal.count
    }
    const requestsPerSecond = r['2xx'] / r.duration
    return {
      requestsPerSecond: Math.round(requestsPerSecond),
      recordsPerSecond: Math.round(requestsPerSecond * perRequest),
      latencyMs: { p50: r.latency.p50, p99: r.latency.p99 },
      requests: r.requests.total,
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
      ...(stored === undefined ? {} : { stored, acknowledged: (warm['2xx'] + r['2xx']) * perRequest }),
      ...(quiet === undefined ? {} : { quiet }),
    }
  } finally {
    await server.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  }
}

function median (values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

function medianResult (list: readonly ScenarioResult[]): ScenarioResult {
  return {
    requestsPerSecond: Math.round(median(list.map(r => r.requestsPerSecond))),
    recordsPerSecond: Math.round(median(list.map(r => r.recordsPerSecond))),
    latencyMs: { p50: median(list.map(r => r.latencyMs.p50)), p99: median(list.map(r => r.latencyMs.p99)) },
    requests: Math.round(median(list.map(r => r.requests))),
    errors: list.reduce((n, r) => n + r.errors, 0),
    timeouts: list.reduce((n, r) => n + r.timeouts, 0),
    non2xx: list.reduce((n, r) => n + r.non2xx, 0),
  }
}

/** Run every scenario `rounds` times and return the numbers, the medians and the targets. */
export async function runHttpBench (partial: Partial<HttpBenchOptions> = {}): Promise<HttpBenchResult> {
  const options: HttpBenchOptions = { ...HTTP_DEFAULTS, ...partial }
  const log = options.log ?? (() => {})
  const loadStart = os.loadavg()[0]!
  const rounds: Array<Record<ScenarioName, ScenarioResult>> = []
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? SCENARIOS : [...SCENARIOS].reverse()
    const results = {} as Record<ScenarioName, ScenarioResult>
    for (const name of order) {
      const r = await scenario(name, options)
      results[name] = r
      const quietText = r.quiet === undefined
        ? ''
        : ` (waited ${(r.quiet.waitedMs / 1000).toFixed(0)} s for < ${QUIET_CPUS} busy CPUs: ${r.quiet.busyCpus})`
      const storedText = r.stored === undefined ? '' : `, stored ${r.stored} of ${r.acknowledged} acknowledged`
      log(`round ${round + 1}/${options.rounds} ${name}${quietText}: ` +
        `${r.requestsPerSecond.toLocaleString('en-US')} req/s, ${r.recordsPerSecond.toLocaleString('en-US')} rec/s, ` +
        `p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, errors ${r.errors}, non-2xx ${r.non2xx}${storedText}`)
      // Requests in flight when autocannon stops (one per connection, per run) are stored but not counted.
      const inFlight = 2 * options.connections * (name.endsWith('ndjson') ? options.batchRecords : 1)
      if (r.stored !== undefined && (r.stored < r.acknowledged! || r.stored > r.acknowledged! + inFlight)) {
        throw new Error(`${name}: the service acknowledged ${r.acknowledged} records but stored ${r.stored}`)
      }
    }
    rounds.push(results)
  }
  const medians = Object.fromEntries(SCENARIOS.map(n => [n, medianResult(rounds.map(r => r[n]))])) as Record<ScenarioName, ScenarioResult>
  const singleRatio = median(rounds.map(r => r['evaq-single'].requestsPerSecond / r['noop-single'].requestsPerSecond))
  const cpus = os.cpus()
  const targets: HttpTarget[] = [
    {
      name: `Durable NDJSON batches of ${options.batchRecords}: records/s`,
      value: medians['evaq-ndjson'].recordsPerSecond,
      baseline: undefined,
      ratio: undefined,
      target: '≥ 100,000 records/s',
      met: medians['evaq-ndjson'].recordsPerSecond >= 100_000,
    },
    {
      name: 'Durable single-record POST: evaq serve vs no-op fastify, requests/s',
      value: medians['evaq-single'].requestsPerSecond,
      baseline: medians['noop-single'].requestsPerSecond,
      ratio: singleRatio,
      target: '≥ 0.5×',
      met: singleRatio >= 0.5,
    },
  ]
  return {
    date: new Date().toISOString().slice(0, 10),
    machine: {
      cpus: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown'}`,
      memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
      tmpdir: os.tmpdir(),
    },
    options: {
      seconds: options.seconds,
      warmupSeconds: options.warmupSeconds,
      rounds: options.rounds,
      connections: options.connections,
      payloadBytes: options.payloadBytes,
      batchRecords: options.batchRecords,
      lineBytes: options.lineBytes,
      quietWaitSeconds: options.quietWaitSeconds,
    },
    rounds,
    medians,
    singleRatio,
    targets,
    loadAverage: { start: loadStart, end: os.loadavg()[0]! },
  }
}

// ---- report -------------------------------------------------------------------------------------

const n = (x: number): string => Math.round(x).toLocaleString('en-US')

/** The results as a Markdown table with a line on how they were measured. */
export function httpTable (r: HttpBenchResult): string {
  const m = r.medians
  const o = r.options
  const row = (name: string, s: ScenarioResult): string =>
    `| ${name} | ${n(s.requestsPerSecond)} | ${n(s.recordsPerSecond)} | ${s.latencyMs.p50} ms | ${s.latencyMs.p99} ms | ${s.errors} | ${s.non2xx} |`
  const lines = [
    '| scenario | requests/s | records/s | p50 | p99 | errors | non-2xx |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row(`no-op fastify, single ${o.payloadBytes} B POST`, m['noop-single']),
    row(`\`evaq serve\`, single ${o.payloadBytes} B POST, durable`, m['evaq-single']),
    row(`no-op fastify, NDJSON batch of ${o.batchRecords} × ${o.lineBytes} B`, m['noop-ndjson']),
    row(`\`evaq serve\`, NDJSON batch of ${o.batchRecords} × ${o.lineBytes} B, durable`, m['evaq-ndjson']),
    '',
    '| target | value | baseline | ratio | target | met? |',
    '| --- | ---: | ---: | ---: | :---: | :---: |',
    ...r.targets.map(t => {
      const baseline = t.baseline === undefined ? '—' : n(t.baseline)
      const ratio = t.ratio === undefined ? '—' : `${t.ratio.toFixed(2)}×`
      return `| ${t.name} | ${n(t.value)} | ${baseline} | ${ratio} | ${t.target} | ${t.met ? 'yes' : 'NO'} |`
    }),
    '',
    `Measured ${r.date} with \`npm run bench:http\` on ${r.machine.cpus}, ${r.machine.memory} RAM, ${r.machine.os}, ` +
    `Node ${r.machine.node}, data in ${r.machine.tmpdir}; ` +
    `autocannon with ${o.connections} keep-alive connections in the harness process, each server a child process; ` +
    `medians of ${o.rounds} alternating rounds of ${o.seconds} s after ${o.warmupSeconds} s of warm-up; ` +
    'durability `sync` (every acknowledged request fsynced). ' +
    `Load average ${r.loadAverage.start.toFixed(2)} at the start, ${r.loadAverage.end.toFixed(2)} at the end. ` +
    `${quietLine(r)}The ratio is the median of per-round ratios.`,
  ]
  return lines.join('\n')
}

function quietLine (r: HttpBenchResult): string {
  const all = r.rounds.flatMap(round => Object.values(round)).map(x => x.quiet).filter(q => q !== undefined)
  if (all.length === 0) return ''
  const waited = all.filter(q => q.waitedMs > 1500).length
  const loud = all.filter(q => q.busyCpus >= QUIET_CPUS).length
  const loudText = loud > 0 ? `, ${loud} started on a busy machine (up to ${Math.max(...all.map(q => q.busyCpus)).toFixed(2)} CPUs)` : ''
  return `Before each measurement the run waited (up to ${r.options.quietWaitSeconds} s) for the machine to use < ${QUIET_CPUS} CPUs: ` +
    `${waited} of ${all.length} measurements had to wait${loudText}. `
}

const START = '<!-- bench:http:start -->'
const END = '<!-- bench:http:end -->'

/** Put the table between the `bench:http` markers of perf/README.md; false when the markers are missing. */
export async function writeHttpReadme (r: HttpBenchResult, readme = path.join(ROOT, 'perf', 'README.md')): Promise<boolean> {
  const text = await readFile(readme, 'utf8')
  // The markers on lines of their own (+ 1: past the newline; 0 when missing): the prose names them too.
  const a = text.indexOf(`\n${START}\n`) + 1
  const b = text.indexOf(`\n${END}`, a) + 1
  if (a === 0 || b < a) return false
  await writeFile(readme, `${text.slice(0, a + START.length)}\n${httpTable(r)}\n${text.slice(b)}`)
  return true
}

if (process.argv[1] === THIS_FILE && process.argv[2] === '--noop-server') {
  await noopServer(Number(process.argv[3] ?? 8 * 1024 * 1024))
}
