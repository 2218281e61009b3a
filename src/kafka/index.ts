/**
 * `evaq/kafka`: the Kafka producer. A subpath of its own, so that the types and code of
 * `import { Evaq } from 'evaq'` do not include the Kafka wrapper (kafkajs is an optional peer
 * dependency; nothing here loads it or @confluentinc/kafka-javascript: the producer takes a producer instance of either).
 */
export { EvacuatingProducer } from './evacuating-producer.js'
export { KAFKA_DEFAULTS, type EvacuatingProducerOptions, type AwaitMode, type KafkaProducerLike } from './producer-options.js'
export type { KafkaClient } from './client.js'
export type {
  EvacuatingProducerEvents, EvacuatingProducerStats, EvacuatingProducerStatus, SendOptions, SendResult, DeadLetteredMessage, SentEvent, RetryingEvent,
} from './producer-types.js'
export { NOT_A_KAFKA_RECORD } from './drainer.js'
export { classifyKafkaError, deadLetterError, type KafkaErrorClass } from './classify.js'
export { decodeKafkaRecord, EVAQ_ID_HEADER, type KafkaMessage, type KafkaHeaders, type KafkaRecord } from './record.js'
export { IDENTITY_FILE } from './identity.js'
