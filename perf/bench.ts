/**
 * The benchmarks, in one run (see perf/README.md):
 *
 * - the comparison (lib/systems.ts, lib/compare.ts): durable push with 256 callers, one sequential
 *   caller and batches of 1,000; non-durable push; drain. evaq against the disk's limit (Node's fs
 *   overwriting space synced beforehand, one fdatasync per group), a plain file append, raw
 *   classic-level, better-sqlite3, lmdb-js and BullMQ on a private redis-server, at 100 B, 1 KiB
 *   and 16 KiB, in alternating rounds; with each case's write amplification and CPU time;
 * - push-drain (lib/push-drain.ts): pushing and draining together for a minute;
 * - backlog (lib/backlog.ts): open time and RSS from 10^4 to 10^7 records;
 * - with --core (or --only evaq-head-read,evaq-rss-backlog), the subscriber core's once-only scenarios
 *   (lib/core.ts): head reads after a million acks, RSS while a 2 GiB backlog grows;
 * - kafka (lib/kafka.ts, also `npm run bench:kafka` on its own): evaq + kafkajs against plain
 *   kafkajs on librdkafka's mock cluster.
 * - http (lib/http.ts, also `npm run bench:http` on its own): autocannon against `evaq serve`
 *   (single-record and NDJSON batch POSTs) beside a no-op fastify server; "pending" while the
 *   service does not exist.
 * - tier (lib/tier.ts): offload and read-back throughput of the tier on object storage against
 *   s3rver on loopback (not AWS), beside the same pushes and drains on a local queue.
 *
 *   npm run bench            full run (~30 min); writes perf/results/ and perf/README.md
 *   npm run bench:quick      quick run (~2 min, 1 KiB only); prints the tables, writes quick-* files
 *   tsx perf/bench.ts --only push-256 --rounds 1     some scenarios, stdout only (for profiling)
 */
import { existsSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { runBacklog, type BacklogResult } from './lib/backlog.js'
import {
  type Config, cpuMeter, type CpuShare, formatCpu, loadAverage, machine, machineLine, PERF_DIR, type QuietWait, type RunInfo, waitForQuiet,
} from './lib/common.js'
import { matrixRatios, newMatrixState, runMatrixRound, selectedWorkloads, writeMatrixJson } from './lib/compare.js'
import { CORE_IDS, coreRows, type HeadReadResult, printCore, runHeadRead, runRss, type RssResult, writeCore } from './lib/core.js'
import { httpTable, runHttpBench, writeHttpReadme } from './lib/http.js'
import { formatKafka, runKafkaBench, writeKafkaResults } from './lib/kafka.js'
import { formatPushDrain, type PushDrainResult, runPushDrain } from './lib/push-drain.js'
import { type RedisServer, redisVersion, startRedis } from './lib/redis-server.js'
import { printReport, type Results, writeReport } from './lib/report.js'
import { type S3Server, startS3Server } from './lib/s3-server.js'
import { runTier, tierConfig, type TierResult } from './lib/tier.js'
import { printTier, writeTier } from './lib/tier-report.js'
import { WORKLOADS } from './lib/systems.js'

const MiB = 2 ** 20
const ONCE_IDS = ['push-drain', 'backlog', 'http', 'kafka', 'tier', ...CORE_IDS]

interface BenchConfig extends Config {
  readonly pushDrainMs: number
  /** Head reads and the 2 GiB RSS backlog (lib/core.ts): with --core, or when named in --only (they add ~6 min). */
  readonly core: boolean
  readonly quick: boolean
  /** `tier`: rounds when --rounds was given (the tier's own default otherwise, see lib/tier.ts). */
  readonly tierRounds: number | undefined
  /**
   * Whether the tier's result is kept (results/, the README block): in full and quick runs, and in
   * `--only` runs without --rounds, whose tier part is the same as a full run's (its length does
   * not depend on --seconds).
   */
  readonly tierWrites: boolean
}

function parseConfig (): BenchConfig {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      core: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'push-drain-seconds': { type: 'string' },
      only: { type: 'string', multiple: true },
      'head-records': { type: 'string' },
      'head-iterations': { type: 'string' },
      'backlog-mib': { type: 'string' },
      'quiet-wait': { type: 'string' },
    },
    strict: true,
  })
  const quick = values.quick === true
  const base = quick
    ? { durationMs: 1_500, warmupMs: 500, rounds: 1, pushDrainMs: 5_000, headRecords: 100_000, headIterations: 500, backlogBytes: 200 * MiB, quietWaitMs: 0 }
    : {
        durationMs: 3_000,
        warmupMs: 750,
        rounds: 3,
        pushDrainMs: 60_000,
        headRecords: 1_000_000,
        headIterations: 2_000,
        backlogBytes: 2048 * MiB,
        quietWaitMs: 15_000,
      }
  const number = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${raw}`)
    return n
  }
  const nonNegative = (name: string, raw: string): number => {
    const n = Number(raw)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${raw}`)
    return n
  }
  const known = new Set<string>(['compare', ...WORKLOADS.map(w => w.id), ...ONCE_IDS])
  const only = values.only?.flatMap(v => v.split(',')).map(v => {
    if (!known.has(v)) throw new Error(`Unknown scenario ${v}; expected one of ${[...known].join(', ')}`)
    return v
  })
  const custom = values.rounds !== undefined || values.seconds !== undefined || only !== undefined || values['push-drain-seconds'] !== undefined ||
    values['head-records'] !== undefined || values['head-iterations'] !== undefined || values['backlog-mib'] !== undefined
  const durationMs = number('seconds', values.seconds, base.durationMs / 1000) * 1000
  return {
    mode: custom ? 'custom' : quick ? 'quick' : 'full',
    durationMs,
    warmupMs: Math.min(base.warmupMs, durationMs / 4),
    rounds: Math.round(number('rounds', values.rounds, base.rounds)),
    only,
    pushDrainMs: number('push-drain-seconds', values['push-drain-seconds'], base.pushDrainMs / 1000) * 1000,
    core: values.core === true || (only !== undefined && only.some(o => CORE_IDS.includes(o))),
    quick,
    tierRounds: values.rounds === undefined ? undefined : Math.round(number('rounds', values.rounds, 1)),
    tierWrites: values.rounds === undefined,
    headRecords: Math.round(number('head-records', values['head-records'], base.headRecords)),
    headIterations: Math.round(number('head-iterations', values['head-iterations'], base.headIterations)),
    backlogBytes: Math.round(number('backlog-mib', values['backlog-mib'], base.backlogBytes / MiB) * MiB),
    // Custom runs (profiling) do not wait unless asked to.
    quietWaitMs: values['quiet-wait'] !== undefined ? nonNegative('quiet-wait', values['quiet-wait']) * 1000 : custom ? 0 : base.quietWaitMs,
  }
}

/** The installed version of a compared system: the benchmarks' own (perf/node_modules) first, then evaq's (classic-level). */
async function packageVersion (name: string): Promise<string | undefined> {
  for (const dir of [path.join(PERF_DIR, 'node_modules'), path.join(PERF_DIR, '..', 'node_modules')]) {
    try {
      return (JSON.parse(await readFile(path.join(dir, name, 'package.json'), 'utf8')) as { version: string }).version
    } catch {} // not installed there: try the next directory
  }
  return undefined
}

async function main (): Promise<void> {
  const config = parseConfig()
  const selected = (id: string): boolean => config.only === undefined || config.only.includes(id)
  const facts = machine()
  const startedAt = new Date()
  const loadBefore = loadAverage()
  const workloads = selectedWorkloads(config)
  const needsRedis = workloads.some(w => w.workload.systems.some(s => s.needsRedis === true))

  // The comparison's lengths and payloads; scenarios run once (--only tier, push-drain, …) describe themselves.
  console.log(workloads.length === 0
    ? `evaq benchmark (${config.mode}): ${config.only?.join(', ') ?? ''}`
    : `evaq benchmark (${config.mode}): ${config.durationMs / 1000} s per measurement after ${config.warmupMs / 1000} s warm-up, ` +
      `${config.rounds} round(s); payloads ${config.mode === 'quick' ? '1 KiB' : '100 B, 1 KiB and 16 KiB'}`)
  console.log(machineLine(facts) + (facts.disk === undefined ? '' : `, disk ${facts.disk}`))
  console.log(`load average ${loadBefore.join(', ')}`)
  if (loadBefore[0]! / facts.cpuCount > 0.75) {
    console.log(`WARNING: the 1-minute load average is ${loadBefore[0]} on ${facts.cpuCount} CPUs; the numbers will be noisy`)
  }

  const root = await mkdtemp(path.join(os.tmpdir(), 'evaq-bench-'))
  let redis: RedisServer | undefined
  let s3: S3Server | undefined
  const onSignal = (): void => {
    if (redis !== undefined) process.kill(redis.pid, 'SIGKILL')
    if (s3 !== undefined) process.kill(s3.pid, 'SIGKILL')
    rmSync(root, { recursive: true, force: true })
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const state = newMatrixState()
  const pending: string[] = []
  const httpExists = existsSync(path.join(PERF_DIR, 'lib', 'http.ts')) && existsSync(path.join(PERF_DIR, '..', 'src', 'server'))
  if (!httpExists && selected('http')) {
    pending.push('http: pending — `evaq serve` does not exist yet; autocannon against it (single-record and NDJSON batch POSTs) ' +
      'beside a no-op server on the same framework will run here once it does.')
  }
  if (needsRedis) {
    if (redisVersion() === undefined) {
      const line = 'bullmq: skipped — redis-server is not installed (Debian: apt-get install -y redis-server); the other baselines run.'
      console.log(line)
      pending.push(line)
      state.skipped.set('bullmq', 'redis-server not installed')
    } else {
      redis = await startRedis(root)
      console.log(`redis-server ${redis.version} on 127.0.0.1:${redis.port} (pid ${redis.pid}, its own config and directory in ${root})`)
    }
  }
  console.log()

  const loadDuring: Array<[number, number]> = [[0, loadBefore[0]!]]
  const loadTimer = setInterval(() => loadDuring.push([Math.round((Date.now() - startedAt.getTime()) / 1000), loadAverage()[0]!]), 10_000)
  loadTimer.unref()
  const cpu: Record<string, Array<CpuShare & { readonly before: QuietWait }>> = {}
  /** Wait for a quiet machine (see --quiet-wait), then run and record the CPU use (redis-server's counts as ours). */
  const metered = async <T>(id: string, run: () => Promise<T>): Promise<[T, CpuShare]> => {
    const before = await waitForQuiet(config.quietWaitMs)
    const stop = cpuMeter()
    const result = await run()
    const share = stop()
    const list = cpu[id] ??= []
    list.push({ ...share, before })
    return [result as T, { ...share, before } as CpuShare]
  }
  const makeDir = async (name: string): Promise<string> => {
    const dir = path.join(root, name)
    await mkdir(dir)
    return dir
  }
  const removeDir = (dir: string): Promise<void> => rm(dir, { recursive: true, force: true })

  let pushDrain: PushDrainResult | undefined
  let backlog: BacklogResult | undefined
  let head: HeadReadResult | undefined
  let rss: RssResult | undefined
  let tier: TierResult | undefined
  try {
    if (workloads.length > 0) {
      for (let round = 0; round < config.rounds; round++) await runMatrixRound(round, config, state, metered, makeDir, removeDir, redis)
    }
    if (redis !== undefined) {
      await redis.stop()
      redis = undefined
    }
    if (selected('push-drain')) {
      const dir = await makeDir('push-drain')
      let share: CpuShare
      [pushDrain, share] = await metered('push-drain', () => runPushDrain(dir, config, config.pushDrainMs))
      await removeDir(dir)
      console.log(`push-drain ${formatPushDrain(pushDrain)} ${formatCpu(share)}`)
    }
    if (selected('backlog')) {
      const dir = await makeDir('backlog')
      let share: CpuShare
      [backlog, share] = await metered('backlog', () => runBacklog(dir, config))
      await removeDir(dir)
      console.log(`backlog ${formatCpu(share)} (own includes the child processes)`)
    }
    if (httpExists && selected('http')) {
      // The service's own harness (lib/http.ts, `npm run bench:http`), run here so that it shares
      // this run's machine state; it waits for a quiet machine by itself.
      const quick = config.mode === 'quick'
      const [result, share] = await metered('http', () => runHttpBench({
        ...(quick ? { seconds: 3, warmupSeconds: 1, rounds: 1 } : {}),
        quietWaitSeconds: config.quietWaitMs / 1000,
        log: line => console.log(`http ${line}`),
      }))
      console.log(httpTable(result))
      console.log(`http ${formatCpu(share)} (own includes the servers, child processes)`)
      if (config.mode !== 'custom') {
        const file = path.join(PERF_DIR, 'results', quick ? 'quick-http.json' : `${result.date}-http.json`)
        await writeFile(file, JSON.stringify(result, null, 2) + '\n')
        if (!quick && await writeHttpReadme(result)) console.log('updated perf/README.md (http block)')
      }
    }
    if (selected('kafka')) {
      // evaq + kafkajs against plain kafkajs on librdkafka's mock cluster (lib/kafka.ts, also
      // `npm run bench:kafka`). Its launcher needs gcc and librdkafka-dev: without them, one line.
      const quick = config.mode === 'quick'
      try {
        const [result, share] = await metered('kafka', () => runKafkaBench({
          messages: quick ? 5000 : 20_000,
          rounds: quick ? 1 : 3,
          latencySamples: quick ? 500 : 2000,
          log: line => console.log(`kafka ${line}`),
        }))
        console.log(formatKafka(result))
        console.log(`kafka ${formatCpu(share)} (own includes the mock cluster)`)
        if (config.mode !== 'custom') for (const line of await writeKafkaResults(result, quick)) console.log(`kafka ${line}`)
      } catch (err) {
        console.log(`kafka: skipped — ${(err as Error).message.split('\n')[0]} (needs gcc and librdkafka-dev: apt-get install gcc librdkafka-dev)`)
      }
    }
    if (selected('tier')) {
      // The tier on object storage against s3rver on loopback (lib/tier.ts): not AWS.
      s3 = await startS3Server(root)
      console.log(`tier: s3rver ${s3.version ?? '?'} on 127.0.0.1:${s3.port} (pid ${s3.pid}, its directory in ${root}; a local JS server, not AWS)`)
      tier = await runTier(root, s3, tierConfig(config.quick, config.tierRounds), metered, line => console.log(`tier ${line}`))
      await s3.stop()
      s3 = undefined
    }
    if (config.core && selected('evaq-head-read')) {
      let share: CpuShare
      [head, share] = await metered('evaq-head-read', () => runHeadRead(root, config))
      console.log(`evaq-head-read ${formatCpu(share)}`)
    }
    if (config.core && selected('evaq-rss-backlog')) {
      let share: CpuShare
      [rss, share] = await metered('evaq-rss-backlog', () => runRss(root, config))
      console.log(`evaq-rss-backlog ${formatCpu(share)} (own includes the child processes)`)
    }
  } finally {
    clearInterval(loadTimer)
    if (redis !== undefined) await redis.stop().catch(() => process.kill(redis!.pid, 'SIGKILL'))
    if (s3 !== undefined) await s3.stop().catch(() => process.kill(s3!.pid, 'SIGKILL'))
    await rm(root, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  const versions = {
    node: process.version,
    classicLevel: await packageVersion('classic-level'),
    betterSqlite3: await packageVersion('better-sqlite3'),
    lmdb: await packageVersion('lmdb'),
    bullmq: await packageVersion('bullmq'),
    ioredis: await packageVersion('ioredis'),
    redisServer: redisVersion(),
  }
  const results: Results = { state, ratios: matrixRatios(state), pushDrain, backlog, pending, versions }
  printReport(results)
  const rows = coreRows({ head, rss })
  printCore(rows)
  if (tier !== undefined) {
    console.log()
    printTier(tier)
  }
  console.log()

  const info: RunInfo = { config, machine: facts, startedAt, finishedAt: new Date(), loadBefore, loadAfter: loadAverage(), loadDuring, cpu }
  const files = await writeMatrixJson(info, state, results.ratios, versions)
  if (files.length > 0) console.log(`wrote ${files.map(f => path.relative(process.cwd(), f)).join(', ')}`)
  await writeReport(info, results)
  await writeCore(info, { head, rss }, rows)
  if (tier !== undefined && config.tierWrites) for (const line of await writeTier(tier, info, config.quick)) console.log(line)
}

await main()
