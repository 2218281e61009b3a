/**
 * What differs between the two clients, without a broker: how their errors are classified (with
 * the real error classes of both packages) and what the wrapper passes a confluent-shaped producer.
 * The broker-facing behaviour is tested against the mock cluster in kafka.test.ts,
 * kafka-outage.test.ts and kafka-crash.test.ts.
 */
import test from 'ava'
import { createRequire } from 'node:module'
import { Evaq, isEvaqError } from '../../src/index.js'
import { classifyKafkaError, deadLetterError, EvacuatingProducer, type EvacuatingProducerOptions, type KafkaProducerLike } from '../../src/kafka/index.js'
import { resolveProducerOptions } from '../../src/kafka/producer-options.js'
import { tmpDir } from '../helpers/tmp.js'
import { requiring } from '../helpers/prerequisites.js'
import { requireConfluent } from './clients.js'

const require = createRequire(import.meta.url)

interface ConfluentErrors {
  KafkaJSError: new (e: string, props: { code: number }) => Error
  KafkaJSProtocolError: new (e: string, props: { code: number }) => Error
  KafkaJSConnectionError: new (e: string, props: { code: number }) => Error
}
/** The real client's error classes, loaded by the test that uses them (a native module, built apart). */
function confluentErrors (): { confluent: ConfluentErrors, LibrdKafkaError: new (e: { message: string, code: number }) => Error } {
  return {
    confluent: (requireConfluent() as { KafkaJS: ConfluentErrors }).KafkaJS,
    /** librdkafka's plain error, which produce() throws for a message it refuses at once. */
    LibrdKafkaError: requireConfluent('@confluentinc/kafka-javascript/lib/error.js') as new (e: { message: string, code: number }) => Error,
  }
}
const confluentTest = requiring(test, import.meta.url, 'confluent')
const kafkajs = require('kafkajs') as {
  KafkaJSProtocolError: new (e: { type: string, code: number, retriable: boolean, message: string }) => Error
  KafkaJSNumberOfRetriesExceeded: new (e: Error, meta: { retryCount: number, retryTime: number }) => Error
}

async function openEvaq (t: Parameters<typeof tmpDir>[0]): Promise<Evaq> {
  const evaq = await Evaq.open(await tmpDir(t, 'evaq-kafka-client-'))
  t.teardown(() => evaq.close())
  return evaq
}

confluentTest('confluent errors are classified by their Kafka code (their retriable flag is always false) and dead-lettered under kafkajs\'s names', t => {
  const { confluent, LibrdKafkaError } = confluentErrors()
  const cases: Array<[err: Error, verdict: 'retriable' | 'permanent', code: string]> = [
    [new confluent.KafkaJSProtocolError('Broker: Message size too large', { code: 10 }), 'permanent', 'MESSAGE_TOO_LARGE'],
    [new confluent.KafkaJSProtocolError('Broker: Topic authorization failed', { code: 29 }), 'permanent', 'TOPIC_AUTHORIZATION_FAILED'],
    [new confluent.KafkaJSProtocolError('Broker: Not leader for partition', { code: 6 }), 'retriable', 'NOT_LEADER_FOR_PARTITION'],
    [new confluent.KafkaJSProtocolError('Broker: Not enough in-sync replicas', { code: 19 }), 'retriable', 'NOT_ENOUGH_REPLICAS'],
    [new confluent.KafkaJSError('Local: Message timed out', { code: -192 }), 'retriable', 'KafkaJSError'],
    [new confluent.KafkaJSConnectionError('broker transport failure', { code: -195 }), 'retriable', 'KafkaJSConnectionError'],
    [new confluent.KafkaJSError('Connect has already been called elsewhere.', { code: -172 }), 'retriable', 'KafkaJSError'],
    [new confluent.KafkaJSError('Local: Unknown topic', { code: -188 }), 'retriable', 'KafkaJSError'],
    [new LibrdKafkaError({ message: 'Broker: Message size too large', code: 10 }), 'permanent', 'MESSAGE_TOO_LARGE'],
    [new LibrdKafkaError({ message: 'Broker: Topic authorization failed', code: 29 }), 'permanent', 'TOPIC_AUTHORIZATION_FAILED'],
    [new LibrdKafkaError({ message: 'Local: Queue full', code: -184 }), 'retriable', 'Error'],
    // A Kafka code the table does not know: retriable, the message stays in the WAL.
    [new confluent.KafkaJSProtocolError('Broker: something new', { code: 999 }), 'retriable', 'KAFKA_ERROR_999'],
  ]
  for (const [err, verdict, code] of cases) {
    t.like({ verdict: classifyKafkaError(err), code: deadLetterError(err).code }, { verdict, code }, err.message)
  }
  t.true(cases.every(([err]) => (err as { retriable?: unknown }).retriable !== true), 'confluent 1.x never marks an error retriable')
})

test('kafkajs errors keep kafkajs\'s own flags and names', t => {
  const tooLarge = new kafkajs.KafkaJSProtocolError({ type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'too large' })
  const notLeader = new kafkajs.KafkaJSProtocolError({ type: 'NOT_LEADER_FOR_PARTITION', code: 6, retriable: true, message: 'not leader' })
  t.is(classifyKafkaError(new kafkajs.KafkaJSNumberOfRetriesExceeded(tooLarge, { retryCount: 0, retryTime: 0 })), 'permanent')
  t.is(classifyKafkaError(new kafkajs.KafkaJSNumberOfRetriesExceeded(notLeader, { retryCount: 0, retryTime: 0 })), 'retriable')
  t.is(deadLetterError(tooLarge).code, 'MESSAGE_TOO_LARGE')
})

/**
 * A test double shaped like @confluentinc/kafka-javascript's KafkaJS producer (a shape test, not
 * a stand-in for the broker): `dependentAdmin()` as the real one has, a `sendBatch` that rejects
 * `acks`, `timeout` and `compression` as the real one does (ERR__INVALID_ARG), and a `connect()`
 * that works once.
 */
function confluentShaped (): KafkaProducerLike & { batches: unknown[], connects: number } {
  // The real client's errors carry librdkafka's code; this test needs no native module.
  const error = (message: string, code: number): Error => Object.assign(new Error(message), { name: 'KafkaJSError', code })
  let state: 'init' | 'connected' | 'disconnected' = 'init'
  const double = {
    batches: [] as unknown[],
    connects: 0,
    dependentAdmin: () => ({}),
    async connect () {
      double.connects++
      if (state !== 'init') throw error('Connect has already been called elsewhere.', -172)
      state = 'connected'
    },
    async disconnect () { state = 'disconnected' },
    async sendBatch (batch: Record<string, unknown>) {
      for (const key of ['acks', 'timeout', 'compression']) {
        if (Object.hasOwn(batch, key)) throw error(`${key} must be set in the producer's config`, -186)
      }
      double.batches.push(batch)
      return []
    },
  }
  return double
}

test('a confluent-shaped producer is detected; acks, timeoutMs and compression are refused as options and per send; ' +
  'its produce calls carry none of them and it is connected once', async t => {
  const evaq = await openEvaq(t)
  const producer = confluentShaped()
  t.is(resolveProducerOptions({ evaq, producer }).client, 'confluent')
  const plain: KafkaProducerLike = { connect: async () => {}, disconnect: async () => {}, sendBatch: async () => [] }
  t.is(resolveProducerOptions({ evaq, producer: plain }).client, 'kafkajs')
  t.is(resolveProducerOptions({ evaq, producer: plain, client: 'confluent' }).client, 'confluent')
  for (const options of [{ acks: -1 }, { timeoutMs: 1000 }, { compression: 1 }, { client: 'other' }]) {
    const err = t.throws(() => new EvacuatingProducer({ evaq, producer, ...options } as EvacuatingProducerOptions))
    t.true(isEvaqError(err, 'EVAQ_INVALID_ARGUMENT'), JSON.stringify(options))
  }
  const ep = new EvacuatingProducer({ evaq, producer, topic: 't', await: 'broker', backoff: { initialMs: 1, maxMs: 5 } })
  t.teardown(() => ep.stop())
  await ep.start()
  t.true(isEvaqError(await t.throwsAsync(ep.send({ messages: [{ value: 'x' }], acks: 1 })), 'EVAQ_INVALID_ARGUMENT'))
  const result = await ep.send({ messages: [{ key: 'k', value: 'v' }] })
  t.deepEqual(result.deadLettered, [])
  t.is(producer.batches.length, 1)
  t.deepEqual(Object.keys(producer.batches[0] as object), ['topicMessages'])
  await ep.stop()
  t.is(producer.connects, 1)
})
