/**
 * The Kafka scenario on its own (perf/lib/kafka.ts): evaq + kafkajs against plain kafkajs on a
 * librdkafka mock cluster. Needs gcc and librdkafka-dev (the launcher is built on first use).
 *
 *   npm run bench:kafka            3 rounds; prints the table, writes perf/results/<date>-kafka.json,
 *                                  perf/results/kafka.md and the README block (bench:kafka)
 *   npm run bench:kafka -- --quick one short round; prints the table, writes perf/results/quick-kafka.json
 *
 * Knobs: EVAQ_KAFKA_MESSAGES, EVAQ_KAFKA_CALLERS, EVAQ_KAFKA_VALUE_BYTES, EVAQ_KAFKA_ROUNDS,
 * EVAQ_KAFKA_LATENCY_SAMPLES.
 */
import { parseArgs } from 'node:util'
import { formatKafka, runKafkaBench, writeKafkaResults } from './lib/kafka.js'

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } })
const quick = args.quick === true
const env = (name: string, fallback: number): number => {
  const v = process.env[name]
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`)
  return n
}

const result = await runKafkaBench({
  messages: env('EVAQ_KAFKA_MESSAGES', quick ? 5000 : 20_000),
  callers: env('EVAQ_KAFKA_CALLERS', 64),
  valueBytes: env('EVAQ_KAFKA_VALUE_BYTES', 256),
  rounds: env('EVAQ_KAFKA_ROUNDS', quick ? 1 : 3),
  latencySamples: env('EVAQ_KAFKA_LATENCY_SAMPLES', quick ? 500 : 2000),
  log: line => console.error(line),
})
console.log(formatKafka(result))
for (const line of await writeKafkaResults(result, quick)) console.log(line)
