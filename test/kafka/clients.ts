/**
 * The two Kafka clients the producer tests run with, each set up the same way for a broker on this
 * machine: fail fast, so that outages show within a test's time, and no retries inside the client,
 * as docs/kafka.md recommends (evaq retries).
 *
 * - `kafkajs`: kafkajs's producer.
 * - `confluent`: @confluentinc/kafka-javascript's KafkaJS-compatible producer (librdkafka 2.x
 *   underneath, built from source by its install script; see docs/kafka.md).
 */
import { createRequire } from 'node:module'
import type { KafkaProducerLike } from '../../src/kafka/index.js'
import { kafka } from './kafka-helpers.js'

export const CLIENTS = ['kafkajs', 'confluent'] as const
export type ClientName = typeof CLIENTS[number]

const require = createRequire(import.meta.url)

interface ConfluentKafkaJS {
  Kafka: new (config: Record<string, unknown>) => { producer (config?: Record<string, unknown>): KafkaProducerLike }
  logLevel: { NOTHING: number }
}

let confluent: ConfluentKafkaJS | undefined

/**
 * `require(id)` of @confluentinc/kafka-javascript (`id` is the package or one of its files). A
 * native module: when its install script could not build it, say how to build it.
 */
export function requireConfluent (id = '@confluentinc/kafka-javascript'): unknown {
  try {
    return require(id)
  } catch (err) {
    throw new Error('The Kafka tests need @confluentinc/kafka-javascript, a native module built at install: ' +
      'CKJS_LINKING=dynamic npm ci (with python3, make, g++, libssl-dev; see docs/kafka.md#clients)', { cause: err })
  }
}

/** `require('@confluentinc/kafka-javascript').KafkaJS`, loaded on first use. */
function confluentKafkaJS (): ConfluentKafkaJS {
  confluent ??= (requireConfluent() as { KafkaJS: ConfluentKafkaJS }).KafkaJS
  return confluent
}

/**
 * A producer of `client` for `brokers`. librdkafka holds a message while its partition's leader is
 * unreachable for up to `message.timeout.ms` (5 minutes by default): 2 s here, so that an outage
 * fails the produce call (a `retrying` event) as it does with kafkajs.
 */
export function producerFor (client: ClientName, brokers: string[]): KafkaProducerLike {
  if (client === 'kafkajs') return kafka(brokers).producer()
  const { Kafka, logLevel } = confluentKafkaJS()
  return new Kafka({
    kafkaJS: { clientId: 'evaq-test', brokers, logLevel: logLevel.NOTHING, connectionTimeout: 300, requestTimeout: 5000 },
  }).producer({
    kafkaJS: { retry: { retries: 0 } },
    'message.timeout.ms': 2000,
    // librdkafka waits up to 10 s between attempts to reach a broker that was down; 1 s keeps the
    // outage tests' recoveries within seconds.
    'reconnect.backoff.max.ms': 1000,
  })
}
