export {
  EvacuatingProducer, KAFKA_DEFAULTS, NOT_A_KAFKA_RECORD, type EvacuatingProducerOptions, type EvacuatingProducerEvents,
  type EvacuatingProducerStats, type EvacuatingProducerStatus, type AwaitMode, type SendOptions, type SendResult,
  type DeadLetteredMessage, type SentEvent, type RetryingEvent, type KafkaProducerLike,
} from './evacuating-producer.js'
export { classifyKafkaError, deadLetterError, type KafkaErrorClass } from './classify.js'
export { decodeKafkaRecord, EVAQ_ID_HEADER, type KafkaMessage, type KafkaHeaders, type KafkaRecord } from './record.js'
export { IDENTITY_FILE } from './identity.js'
