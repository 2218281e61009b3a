/**
 * The two Kafka clients the producer tests run with, each set up the same way for a broker on this
 * machine: fail fast, so that outages show within a test's time, and no retries inside the client,
 * as docs/kafka.md recommends (evaq retries).
 *
 * - `kafkajs`: kafkajs's producer.
 * - `confluent`: @confluentinc/kafka-javascript's KafkaJS-compatible producer (librdkafka 2.x
 *   underneath), installed apart in test/kafka/confluent and built from source there by
 *   `npm run test:confluent-install` (see docs/kafka.md).
 */
import type { TestFn } from 'ava'
import { createRequire } from 'node:module'
import type { KafkaProducerLike } from '../../src/kafka/index.js'
import { requiring } from '../helpers/prerequisites.js'
import { kafka } from './kafka-helpers.js'

export const CLIENTS = ['kafkajs', 'confluent'] as const
export type ClientName = typeof CLIENTS[number]

/** Resolves from test/kafka/confluent, where the confluent client is installed. */
const require = createRequire(new URL('./confluent/package.json', import.meta.url))

/**
 * `testOf(client)`: ava's `test` for the tests of `client`. The tests need the mock cluster
 * (gcc, librdkafka-dev), and the confluent ones its client built (test/kafka/confluent); outside
 * CI what is missing skips them, after one loud line (helpers/prerequisites.ts).
 */
export function clientTests<Context> (test: TestFn<Context>, fileUrl: string): (client: ClientName) => TestFn<Context> {
  const kafkajs = requiring(test, fileUrl, 'kafka')
  let confluentTest: TestFn<Context> | undefined
  return client => client === 'kafkajs' ? kafkajs : (confluentTest ??= requiring(test, fileUrl, 'kafka', 'confluent'))
}

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
    throw new Error('The confluent Kafka tests need @confluentinc/kafka-javascript built for this Node in test/kafka/confluent: ' +
      'npm run test:confluent-install (with python3, make, g++, libssl-dev, zlib1g-dev; see docs/kafka.md#clients)', { cause: err })
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
