/**
 * Evacuating Kafka producer: every message is persisted in evaq's WAL before kafkajs sends it,
 * removed once the broker acknowledged it, kept through outages and crashes; what the broker
 * refuses goes to the DLQ, where the retry daemon tries it again.
 *
 *   KAFKA_BROKERS=127.0.0.1:9092 npx tsx examples/kafka-producer.ts [count]
 *
 * - KAFKA_BROKERS: comma-separated bootstrap brokers (default 127.0.0.1:9092)
 * - KAFKA_TOPIC: the topic (default evaq-example)
 * - EVAQ_DATA: the queue's directory (default ./data-kafka; kept between runs)
 *
 * Stop the brokers while it runs and it keeps accepting messages (they wait in the WAL); kill it
 * with kill -9 and run it again: what the WAL holds is sent first. See docs/kafka.md.
 */
import { Kafka, logLevel } from 'kafkajs'
import { Evaq, isEvaqError } from '../src/index.js'
import { decodeKafkaRecord, EvacuatingProducer } from '../src/kafka/index.js'

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')
const topic = process.env.KAFKA_TOPIC ?? 'evaq-example'
const dir = process.env.EVAQ_DATA ?? './data-kafka'
const count = Number(process.argv[2] ?? 10_000)

const evaq = await Evaq.open(dir).catch((err: unknown) => {
  if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
  console.error(`kafka-producer: ${dir} is in use by another process (EVAQ_LOCKED); stop it or set EVAQ_DATA to another directory`)
  process.exit(1)
})
// No retries inside kafkajs: evaq retries, in order (see the guarantees in docs/kafka.md).
const kafka = new Kafka({ clientId: 'evaq-example', brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 } })
const kafkaProducer = kafka.producer()
const producer = new EvacuatingProducer({ evaq, producer: kafkaProducer, topic })

producer.on('retrying', e => {
  const err = e.error as { name?: string, cause?: { name?: string, type?: string } }
  const why = [err.name, err.cause?.type ?? err.cause?.name].filter(Boolean).join(': ')
  if (e.count === 0) console.log(`  cannot connect (${why}); messages wait in the WAL, the producer keeps trying`)
  else console.log(`  sending failed (${why}); these ${e.count} messages and everything behind them wait in the WAL; next attempt in ${e.delayMs} ms`)
})
producer.on('deadLettered', e => console.log(`  the broker refused message ${e.id} (${e.code}); it is DLQ record ${e.dlqId}`))

await producer.start()
const before = await producer.stats()
console.log(`${dir}: ${before.inWal} messages left in the WAL by an earlier run are sent first (identity ${await producer.evaqId()})`)

// The retry daemon takes over what the broker refused: it resends with kafkajs directly (not through
// the WAL, so that a message refused again is parked instead of circling), with its first evaq-id.
const daemon = evaq.retry(async record => {
  const { topic, acks, message } = decodeKafkaRecord(record.payload)
  await kafkaProducer.send({ topic, messages: [message], ...(acks === undefined ? {} : { acks }) })
}, { maxAttempts: 3, backoff: { initialMs: 1000 } })
daemon.on('parked', e => console.log(`  DLQ record ${e.id} parked after ${e.attempts} attempts (${e.reason})`))

const started = performance.now()
const perSend = 100
for (let i = 0; i < count; i += perSend) {
  const n = Math.min(perSend, count - i)
  // Resolves once the messages are durable on disk, whether or not Kafka is up.
  await producer.send({
    messages: Array.from({ length: n }, (_, j) => ({
      key: `customer-${(i + j) % 50}`,
      value: JSON.stringify({ order: i + j, at: new Date().toISOString() }),
    })),
  })
}
console.log(`${count} messages persisted in ${(performance.now() - started).toFixed(0)} ms (durable on disk, whether or not Kafka is up)`)
// One message larger than a broker's default message.max.bytes (1 MiB): refused, dead-lettered,
// and it does not hold up the messages behind it.
await producer.send({ messages: [{ key: 'oversized', value: Buffer.alloc(2 * 1024 * 1024, 1) }, { key: 'after', value: 'still delivered' }] })

await producer.flush({ timeoutMs: 10 * 60_000 })
const stats = await producer.stats()
console.log(`all acknowledged by the broker ${(performance.now() - started).toFixed(0)} ms after the first send`)
console.log(`sent ${stats.sent} (resent ${stats.resent}), dead-lettered ${stats.deadLettered}, ` +
  `failed attempts ${stats.failedAttempts}, left in the WAL ${stats.inWal}`)

await daemon.stop()
await producer.stop()
const { dlq, parked } = await evaq.stats()
console.log(`DLQ: ${dlq.count} waiting for a retry, ${parked.count} parked`)
await evaq.close()
