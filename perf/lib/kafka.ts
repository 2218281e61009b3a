/**
 * Kafka scenario: evaq's EvacuatingProducer + kafkajs against plain kafkajs, to the same mock
 * cluster (librdkafka's, three brokers, see test/kafka/mock-cluster.c), with the same messages,
 * in the same run, alternating the order round by round.
 *
 * - Throughput: `callers` concurrent callers each send one message per call until `messages` were
 *   acknowledged. Plain kafkajs: `producer.send()`. evaq with `await: 'broker'`: `send()` resolves
 *   after the broker's ack, like kafkajs. evaq with `await: 'local'`: `send()` resolves once the
 *   message is durable (fsynced); measured until `flush()` says the broker has them all.
 * - Latency: one caller, one message per call, `latencySamples` calls: p50 and p99 per system.
 *
 * Self-contained: `runKafkaBench()` returns the numbers; perf/kafka.ts prints and stores them.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Kafka, logLevel, type Producer } from 'kafkajs'
import { Evaq } from '../../src/index.js'
import { EvacuatingProducer, type AwaitMode } from '../../src/kafka/index.js'
import { MockCluster } from '../../test/kafka/mock-cluster.js'

export interface KafkaBenchOptions {
  /** Messages per throughput measurement. @defaultValue 20000 */
  messages?: number
  /** Concurrent callers in the throughput measurement. @defaultValue 64 */
  callers?: number
  /** Bytes of each message's value (random, incompressible). @defaultValue 256 */
  valueBytes?: number
  /** Distinct keys, used in turn. @defaultValue 100 */
  keys?: number
  /** Rounds; the result is the median round. @defaultValue 3 */
  rounds?: number
  /** Calls per latency measurement. @defaultValue 2000 */
  latencySamples?: number
  /** Progress lines go here. @defaultValue none */
  log?: (line: string) => void
}

export interface Latency { readonly p50Us: number, readonly p99Us: number }

export interface KafkaRound {
  /** Messages per second, acknowledged by the broker. */
  readonly plain: number
  readonly evaqBroker: number
  /** Messages per second until `flush()` resolved; and the rate at which `send()` resolved (durable). */
  readonly evaqLocal: number
  readonly evaqLocalPersisted: number
  readonly latency: { readonly plain: Latency, readonly evaqBroker: Latency, readonly evaqLocal: Latency }
}

export interface KafkaBenchResult {
  readonly scenario: 'kafka'
  readonly date: string
  readonly config: Required<Omit<KafkaBenchOptions, 'log'>> & { readonly brokers: number, readonly partitions: number, readonly durability: 'sync' }
  readonly machine: string
  /** 1, 5 and 15 minute load averages at the start and at the end of the run. */
  readonly loadAverage: readonly number[]
  readonly loadAverageEnd: readonly number[]
  readonly rounds: readonly KafkaRound[]
  /** Medians over the rounds. */
  readonly throughput: {
    readonly plain: number
    readonly evaqBroker: number
    readonly evaqLocal: number
    readonly evaqLocalPersisted: number
    readonly ratioBroker: number
    readonly ratioLocal: number
  }
  readonly latency: {
    readonly plain: Latency
    readonly evaqBroker: Latency
    readonly evaqLocal: Latency
    readonly addedP50UsBroker: number
    readonly addedP50UsLocal: number
  }
}

const BROKERS = 3
const PARTITIONS = 6

export async function runKafkaBench (options: KafkaBenchOptions = {}): Promise<KafkaBenchResult> {
  const config = {
    messages: options.messages ?? 20_000,
    callers: options.callers ?? 64,
    valueBytes: options.valueBytes ?? 256,
    keys: options.keys ?? 100,
    rounds: options.rounds ?? 3,
    latencySamples: options.latencySamples ?? 2000,
  }
  const log = options.log ?? (() => {})
  const values = Array.from({ length: 1024 }, () => randomBytes(config.valueBytes))
  const message = (i: number): { key: string, value: Buffer } => ({ key: `k${i % config.keys}`, value: values[i % values.length]! })
  const loadStart = loadavg()
  const cluster = await MockCluster.start({ brokers: BROKERS })
  const rounds: KafkaRound[] = []
  let topicNo = 0
  const freshTopic = async (): Promise<string> => {
    const topic = `bench-${topicNo++}`
    await cluster.createTopic(topic, PARTITIONS)
    return topic
  }
  const kafka = new Kafka({ clientId: 'evaq-bench', brokers: cluster.brokers, logLevel: logLevel.NOTHING })
  try {
    for (let r = 0; r < config.rounds; r++) {
      const order: Array<'plain' | 'broker' | 'local'> = r % 2 === 0 ? ['plain', 'broker', 'local'] : ['local', 'broker', 'plain']
      const out: Partial<Record<'plain' | 'broker' | 'local', { rate: number, persisted?: number, latency: Latency }>> = {}
      for (const system of order) {
        const topic = await freshTopic()
        if (system === 'plain') out.plain = await plainKafka(kafka.producer(), topic, config, message)
        // evaq's producer as its README recommends: no retries inside kafkajs (evaq retries).
        else out[system] = await withEvaq(kafka.producer({ retry: { retries: 0 } }), topic, system, config, message)
        log(`round ${r + 1}/${config.rounds} ${system}: ${Math.round(out[system]!.rate)} msg/s, latency p50 ${out[system]!.latency.p50Us} µs`)
      }
      rounds.push({
        plain: out.plain!.rate,
        evaqBroker: out.broker!.rate,
        evaqLocal: out.local!.rate,
        evaqLocalPersisted: out.local!.persisted!,
        latency: { plain: out.plain!.latency, evaqBroker: out.broker!.latency, evaqLocal: out.local!.latency },
      })
    }
  } finally {
    await cluster.stop()
  }
  const med = (f: (r: KafkaRound) => number): number => median(rounds.map(f))
  const lat = (f: (r: KafkaRound) => Latency): Latency => ({ p50Us: med(r => f(r).p50Us), p99Us: med(r => f(r).p99Us) })
  const latency = { plain: lat(r => r.latency.plain), evaqBroker: lat(r => r.latency.evaqBroker), evaqLocal: lat(r => r.latency.evaqLocal) }
  return {
    scenario: 'kafka',
    date: new Date().toISOString(),
    config: { ...config, brokers: BROKERS, partitions: PARTITIONS, durability: 'sync' },
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
      `${platform()} ${release()}, Node ${process.version}`,
    loadAverage: loadStart.map(x => Math.round(x * 100) / 100),
    loadAverageEnd: loadavg().map(x => Math.round(x * 100) / 100),
    rounds,
    throughput: {
      plain: med(r => r.plain),
      evaqBroker: med(r => r.evaqBroker),
      evaqLocal: med(r => r.evaqLocal),
      evaqLocalPersisted: med(r => r.evaqLocalPersisted),
      // Ratios are medians of per-round ratios: side by side, they hold on a shared machine.
      ratioBroker: med(r => r.evaqBroker / r.plain),
      ratioLocal: med(r => r.evaqLocal / r.plain),
    },
    latency: {
      ...latency,
      addedP50UsBroker: med(r => r.latency.evaqBroker.p50Us - r.latency.plain.p50Us),
      addedP50UsLocal: med(r => r.latency.evaqLocal.p50Us - r.latency.plain.p50Us),
    },
  }
}

type Config = { messages: number, callers: number, latencySamples: number }
type MessageOf = (i: number) => { key: string, value: Buffer }

async function plainKafka (producer: Producer, topic: string, config: Config, message: MessageOf): Promise<{ rate: number, latency: Latency }> {
  await producer.connect()
  try {
    await producer.send({ topic, messages: [message(0)] }) // metadata, connections
    const rate = await closedLoop(config.callers, config.messages, i => producer.send({ topic, messages: [message(i)] }))
    const latency = await sequential(config.latencySamples, i => producer.send({ topic, messages: [message(i)] }))
    return { rate, latency }
  } finally {
    await producer.disconnect()
  }
}

async function withEvaq (
  producer: Producer,
  topic: string,
  mode: AwaitMode,
  config: Config,
  message: MessageOf
): Promise<{ rate: number, persisted: number, latency: Latency }> {
  const dir = await mkdtemp(join(tmpdir(), 'evaq-bench-kafka-'))
  const evaq = await Evaq.open(dir)
  const ep = new EvacuatingProducer({ evaq, producer, topic, await: mode })
  try {
    await ep.start()
    await ep.send({ messages: [message(0)] })
    await ep.flush()
    const started = performance.now()
    const persisted = await closedLoop(config.callers, config.messages, i => ep.send({ messages: [message(i)] }))
    await ep.flush()
    const rate = config.messages / ((performance.now() - started) / 1000)
    const latency = await sequential(config.latencySamples, i => ep.send({ messages: [message(i)] }))
    await ep.flush()
    return { rate: mode === 'local' ? rate : persisted, persisted, latency }
  } finally {
    await ep.stop()
    await evaq.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** `callers` loops calling `op` until `total` calls completed; calls per second. */
async function closedLoop (callers: number, total: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: callers }, async () => {
    for (let i = next++; i < total; i = next++) await op(i)
  }))
  return total / ((performance.now() - started) / 1000)
}

async function sequential (samples: number, op: (i: number) => Promise<unknown>): Promise<Latency> {
  const us = new Float64Array(samples)
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now()
    await op(i)
    us[i] = (performance.now() - t0) * 1000
  }
  us.sort()
  const at = (p: number): number => Math.round(us[Math.min(samples - 1, Math.floor(p * samples))]!)
  return { p50Us: at(0.5), p99Us: at(0.99) }
}

function median (values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const ratio = (r: number): string => `${r.toFixed(2)}×`

/** The result as a Markdown table and a line saying how it was measured (for perf/README.md and perf/results). */
export function formatKafka (r: KafkaBenchResult): string {
  const { throughput: t, latency: l, config: c } = r
  const rows = [
    '| comparison (A vs B), same mock cluster, same messages | A | B | A / B |',
    '| --- | ---: | ---: | ---: |',
    `| Throughput, ${c.callers} callers, acked by the broker: evaq (\`await: 'broker'\`) vs plain kafkajs ` +
      `| ${int(t.evaqBroker)} msg/s | ${int(t.plain)} msg/s | ${ratio(t.ratioBroker)} |`,
    `| Throughput, ${c.callers} callers, until \`flush()\`: evaq (\`await: 'local'\`) vs plain kafkajs ` +
      `| ${int(t.evaqLocal)} msg/s | ${int(t.plain)} msg/s | ${ratio(t.ratioLocal)} |`,
    "| `send()` resolving once durable: evaq (`await: 'local'`, fsynced) vs plain kafkajs acked " +
      `| ${int(t.evaqLocalPersisted)} msg/s | ${int(t.plain)} msg/s | ${ratio(t.evaqLocalPersisted / t.plain)} |`,
    `| Latency p50, one caller: evaq (\`await: 'broker'\`) vs plain kafkajs (added: ${int(l.addedP50UsBroker)} µs) ` +
      `| ${int(l.evaqBroker.p50Us)} µs | ${int(l.plain.p50Us)} µs | ${ratio(l.evaqBroker.p50Us / l.plain.p50Us)} |`,
    "| Latency p99, one caller: evaq (`await: 'broker'`) vs plain kafkajs " +
      `| ${int(l.evaqBroker.p99Us)} µs | ${int(l.plain.p99Us)} µs | ${ratio(l.evaqBroker.p99Us / l.plain.p99Us)} |`,
    `| Latency p50, one caller: evaq (\`await: 'local'\`, durable) vs plain kafkajs acked (added: ${int(l.addedP50UsLocal)} µs) ` +
      `| ${int(l.evaqLocal.p50Us)} µs | ${int(l.plain.p50Us)} µs | ${ratio(l.evaqLocal.p50Us / l.plain.p50Us)} |`,
  ]
  const note = `Measured ${r.date.slice(0, 10)} on ${r.machine}; ` +
    `librdkafka's mock cluster (${c.brokers} brokers in one process on this machine), a topic of ${c.partitions} partitions, acks -1; ` +
    `${int(c.messages)} messages of ${c.valueBytes} B (random) over ${c.keys} keys per throughput measurement, ` +
    `${int(c.latencySamples)} sequential calls per latency measurement, one message per call; ` +
    "evaq with durability 'sync' (an fsync per group commit); " +
    `medians of ${c.rounds} alternating rounds (ratios: medians of per-round ratios). ` +
    `Load average (1, 5, 15 min) ${r.loadAverage.join(', ')} at the start and ${r.loadAverageEnd.join(', ')} at the end: ` +
    'the machine was shared with other work, which moves absolute numbers more than the ratios measured side by side. ' +
    'Generated by `npm run bench:kafka`.'
  return `${rows.join('\n')}\n\n${note}\n`
}

/**
 * Write a result where `npm run bench` and `npm run bench:kafka` keep it: quick runs to
 * results/quick-kafka.json; full runs to results/<date>-kafka.json, results/kafka.md and the
 * block between the bench:kafka markers of perf/README.md. Returns what it wrote, one line each.
 */
export async function writeKafkaResults (result: KafkaBenchResult, quick: boolean): Promise<string[]> {
  const perf = dirname(dirname(fileURLToPath(import.meta.url)))
  const results = join(perf, 'results')
  const readmeFile = join(perf, 'README.md')
  const start = '<!-- bench:kafka:start -->'
  const end = '<!-- bench:kafka:end -->'
  await mkdir(results, { recursive: true })
  if (quick) {
    await writeFile(join(results, 'quick-kafka.json'), JSON.stringify(result, null, 2) + '\n')
    return ['wrote perf/results/quick-kafka.json']
  }
  const table = formatKafka(result)
  const json = join(results, `${result.date.slice(0, 10)}-kafka.json`)
  await writeFile(json, JSON.stringify(result, null, 2) + '\n')
  await writeFile(join(results, 'kafka.md'), `# Kafka: evaq + kafkajs vs plain kafkajs\n\n${table}`)
  const out = [`wrote ${json} and perf/results/kafka.md`]
  const readme = await readFile(readmeFile, 'utf8')
  // The markers on lines of their own (+ 1: past the newline; 0 when missing): the prose names them too.
  const from = readme.indexOf(`\n${start}\n`) + 1
  const to = readme.indexOf(`\n${end}`, from) + 1
  if (from > 0 && to > from) {
    await writeFile(readmeFile, `${readme.slice(0, from + start.length)}\n${table}${readme.slice(to)}`)
    out.push('updated perf/README.md (bench:kafka block)')
  }
  return out
}
