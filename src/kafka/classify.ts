/**
 * Which send failures leave messages in the WAL and which move a message to the DLQ.
 *
 * Two clients report what the broker answered:
 * - kafkajs: a `KafkaJSProtocolError` with the Kafka error's `type` (`MESSAGE_TOO_LARGE`), numeric
 *   `code` (10) and `retriable` flag; after its own retries it wraps the last error as `cause` of
 *   a `KafkaJSNumberOfRetriesExceeded` or `KafkaJSNonRetriableError`, which are themselves
 *   `retriable: false` whatever the cause was. So the wrapper's flag says nothing: the first
 *   protocol error in the `cause` chain decides.
 * - @confluentinc/kafka-javascript (KafkaJS-compatible API over librdkafka): a `KafkaJSError` (or
 *   a subclass) whose `code` is librdkafka's: the Kafka error code when the broker answered (> 0),
 *   a negative code for librdkafka's own errors (`ERR__MSG_TIMED_OUT` -192, `ERR__TRANSPORT`
 *   -195, `ERR__STATE` -172, …); its `type` is librdkafka's name (`ERR_MSG_SIZE_TOO_LARGE`) and its
 *   `retriable` is false on every error (1.x copies a property librdkafka's errors do not have), so
 *   neither is used: the Kafka code is looked up in kafka-errors.ts, the table of kafkajs's names
 *   and flags. A message produce() refuses at once (larger than the client's message.max.bytes)
 *   comes as a plain librdkafka error (`origin`, numeric `code`), read the same way.
 *
 * - A broker answer marked not retriable is **permanent**: the broker refused the request for
 *   what it carries (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_TOPIC_EXCEPTION,
 *   TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED, INVALID_RECORD, INVALID_TIMESTAMP,
 *   INVALID_REQUIRED_ACKS, UNSUPPORTED_FOR_MESSAGE_FORMAT, POLICY_VIOLATION, …). Sending the same
 *   bytes again gets the same answer.
 * - Everything else is **retriable**: retriable broker answers (LEADER_NOT_AVAILABLE,
 *   NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, UNKNOWN_TOPIC_OR_PARTITION,
 *   NOT_ENOUGH_REPLICAS, …), Kafka codes the table does not know, and every error that is not a
 *   broker's answer: connection refused or closed, request and delivery timeouts, a disconnected
 *   producer, SASL failures, metadata not loaded, librdkafka's local errors. These say nothing
 *   about the message, so it stays in the WAL.
 */
import { KAFKA_ERROR_CODES } from './kafka-errors.js'

/** How the producer treats a failed send: keep the messages in the WAL, or dead-letter them. */
export type KafkaErrorClass = 'retriable' | 'permanent'

interface ErrorLike {
  readonly name?: unknown
  readonly type?: unknown
  readonly code?: unknown
  readonly message?: unknown
  readonly retriable?: unknown
  readonly origin?: unknown
  readonly errno?: unknown
  readonly cause?: unknown
}

/**
 * An error of librdkafka, as @confluentinc/kafka-javascript reports it: its name (`ERR_…`) as
 * `type` (a number, ERR_UNKNOWN, for a code librdkafka has no name for), or a plain librdkafka
 * error (`origin`, `errno`).
 */
function isLibrdkafkaError (e: ErrorLike): boolean {
  if (typeof e.code !== 'number') return false
  if (typeof e.type === 'string') return e.type.startsWith('ERR_')
  return typeof e.type === 'number' || (typeof e.origin === 'string' && typeof e.errno === 'number')
}

/** The first broker answer (a kafkajs protocol error, or a librdkafka error with a Kafka code) in `err`'s cause chain. */
export function protocolError (err: unknown): { type: string, code: number, retriable: boolean, message: string } | undefined {
  let e = err as ErrorLike | undefined
  for (let depth = 0; e != null && typeof e === 'object' && depth < 8; depth++, e = e.cause as ErrorLike | undefined) {
    const message = typeof e.message === 'string' ? e.message : ''
    if (isLibrdkafkaError(e)) {
      const code = e.code as number
      // librdkafka's own errors (negative codes) are no broker answer.
      if (code <= 0) continue
      const known = KAFKA_ERROR_CODES.get(code)
      return { type: known?.type ?? `KAFKA_ERROR_${code}`, code, retriable: known?.retriable ?? true, message }
    }
    if (typeof e.type === 'string' && typeof e.code === 'number') {
      return { type: e.type, code: e.code, retriable: e.retriable !== false, message }
    }
  }
  return undefined
}

/** The default classification; see the module comment. */
export function classifyKafkaError (err: unknown): KafkaErrorClass {
  const protocol = protocolError(err)
  return protocol !== undefined && !protocol.retriable ? 'permanent' : 'retriable'
}

/**
 * The error a dead-lettered message is stored with. Its `code` is the Kafka error's type as
 * kafkajs names it (`MESSAGE_TOO_LARGE`), whichever client reported it; the message adds Kafka's
 * numeric code. An error that is
 * no broker answer (a custom `classify` made it permanent) keeps its own string `code`, or its
 * `name`.
 */
export function deadLetterError (err: unknown): { code: string, message: string } {
  const protocol = protocolError(err)
  if (protocol !== undefined) return { code: protocol.type, message: `${protocol.message} (Kafka error code ${protocol.code})` }
  const e = (err ?? {}) as ErrorLike
  const message = typeof e.message === 'string' ? e.message : String(err)
  if (typeof e.code === 'string' && e.code.length > 0) return { code: e.code, message }
  return { code: typeof e.name === 'string' && e.name.length > 0 ? e.name : 'Error', message }
}
