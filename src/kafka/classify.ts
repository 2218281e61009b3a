/**
 * Which send failures leave messages in the WAL and which move a message to the DLQ.
 *
 * kafkajs reports what the broker answered as a `KafkaJSProtocolError` with the Kafka error's
 * `type` (`MESSAGE_TOO_LARGE`), numeric `code` (10) and `retriable` flag; after its own retries
 * it wraps the last error as `cause` of a `KafkaJSNumberOfRetriesExceeded` or
 * `KafkaJSNonRetriableError`, which are themselves `retriable: false` whatever the cause was. So
 * the wrapper's flag says nothing: the first protocol error in the `cause` chain decides.
 *
 * - A protocol error kafkajs marks `retriable: false` is **permanent**: the broker refused the
 *   request for what it carries (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE,
 *   INVALID_TOPIC_EXCEPTION, TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED,
 *   INVALID_RECORD, INVALID_TIMESTAMP, INVALID_REQUIRED_ACKS, UNSUPPORTED_FOR_MESSAGE_FORMAT,
 *   POLICY_VIOLATION, …). Sending the same bytes again gets the same answer.
 * - Everything else is **retriable**: retriable protocol errors (LEADER_NOT_AVAILABLE,
 *   NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, UNKNOWN_TOPIC_OR_PARTITION,
 *   NOT_ENOUGH_REPLICAS, …) and every error that is not a broker's answer: connection refused or
 *   closed, request timeouts, a disconnected producer, SASL failures, metadata not loaded. These
 *   say nothing about the message, so it stays in the WAL.
 */

/** How the producer treats a failed send: keep the messages in the WAL, or dead-letter them. */
export type KafkaErrorClass = 'retriable' | 'permanent'

interface ErrorLike {
  readonly name?: unknown
  readonly type?: unknown
  readonly code?: unknown
  readonly message?: unknown
  readonly retriable?: unknown
  readonly cause?: unknown
}

/** The first broker answer (a kafkajs protocol error) in `err`'s cause chain. */
export function protocolError (err: unknown): { type: string, code: number, retriable: boolean, message: string } | undefined {
  let e = err as ErrorLike | undefined
  for (let depth = 0; e != null && typeof e === 'object' && depth < 8; depth++, e = e.cause as ErrorLike | undefined) {
    if (typeof e.type === 'string' && typeof e.code === 'number') {
      return { type: e.type, code: e.code, retriable: e.retriable !== false, message: typeof e.message === 'string' ? e.message : '' }
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
 * kafkajs names it (`MESSAGE_TOO_LARGE`); the message adds Kafka's numeric code. An error that is
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
