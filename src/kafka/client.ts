/**
 * The two Kafka clients the producer wraps, and what differs between them for the wrapper.
 *
 * - `'kafkajs'`: kafkajs's `kafka.producer()`. `sendBatch` takes `acks`, `timeout` and
 *   `compression` per call; `connect()` can be called again after a failure or a `disconnect()`.
 * - `'confluent'`: the KafkaJS-compatible producer of `@confluentinc/kafka-javascript`
 *   (`new (require('@confluentinc/kafka-javascript').KafkaJS.Kafka)(…).producer()`). Its
 *   `sendBatch` rejects a call that names `acks`, `timeout` or `compression` (they belong to the
 *   producer's config); `connect()` works once per instance (librdkafka reconnects to the brokers
 *   by itself; a second `connect()` fails with ERR__STATE), so a producer instance serves one
 *   `start()`…`stop()`, and one whose `connect()` failed cannot be used again.
 */
export type KafkaClient = 'kafkajs' | 'confluent'

/**
 * The client a producer instance belongs to. The confluent producer has `dependentAdmin()`, which
 * kafkajs's producer has not; pass the `client` option when a proxy or wrapper hides it.
 */
export function detectClient (producer: object): KafkaClient {
  return typeof (producer as { dependentAdmin?: unknown }).dependentAdmin === 'function' ? 'confluent' : 'kafkajs'
}

/** Whether the client takes `acks`, `timeout` and `compression` in each `sendBatch` call. */
export function takesRequestSettings (client: KafkaClient): boolean {
  return client === 'kafkajs'
}

/** Whether `connect()` may be called again on the same producer instance (after a failure or a disconnect). */
export function reconnects (client: KafkaClient): boolean {
  return client === 'kafkajs'
}
