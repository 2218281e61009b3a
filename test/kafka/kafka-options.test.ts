import test from 'ava'
import { Evaq, isEvaqError } from '../../src/index.js'
import { EvacuatingProducer, KAFKA_DEFAULTS, type EvacuatingProducerOptions, type KafkaProducerLike } from '../../src/kafka/index.js'
import { resolveProducerOptions } from '../../src/kafka/producer-options.js'
import { tmpDir } from '../helpers/tmp.js'

/** A kafkajs producer stand-in: option validation only looks at its shape. */
const producer: KafkaProducerLike = {
  connect: async () => {},
  disconnect: async () => {},
  sendBatch: async () => [],
}

async function openEvaq (t: Parameters<typeof tmpDir>[0]): Promise<Evaq> {
  const evaq = await Evaq.open(await tmpDir(t, 'evaq-kafka-options-'))
  t.teardown(() => evaq.close())
  return evaq
}

test('resolveProducerOptions applies KAFKA_DEFAULTS and keeps what is given', async t => {
  const evaq = await openEvaq(t)
  const defaults = resolveProducerOptions({ evaq, producer })
  t.like(defaults, {
    evaq,
    producer,
    await: KAFKA_DEFAULTS.await,
    topic: undefined,
    acks: KAFKA_DEFAULTS.acks,
    timeoutMs: undefined,
    compression: undefined,
    maxBatchCount: KAFKA_DEFAULTS.maxBatchCount,
    maxBatchBytes: KAFKA_DEFAULTS.maxBatchBytes,
    backoff: KAFKA_DEFAULTS.backoff,
    subscriber: KAFKA_DEFAULTS.subscriber,
  })
  t.is(typeof defaults.classify, 'function')
  const classify = (): 'permanent' => 'permanent'
  const given = resolveProducerOptions({
    evaq, producer, await: 'broker', topic: 't', acks: 1, timeoutMs: 1000, compression: 1, maxBatchCount: 5, maxBatchBytes: 100,
    backoff: { initialMs: 10 }, classify, subscriber: 'other',
  })
  t.like(given, { await: 'broker', topic: 't', acks: 1, timeoutMs: 1000, compression: 1, maxBatchCount: 5, maxBatchBytes: 100, classify, subscriber: 'other' })
  // maxMs defaults to the default maxMs, or to initialMs when that is larger.
  t.deepEqual(given.backoff, { initialMs: 10, maxMs: KAFKA_DEFAULTS.backoff.maxMs })
  t.deepEqual(resolveProducerOptions({ evaq, producer, backoff: { initialMs: 10_000 } }).backoff, { initialMs: 10_000, maxMs: 10_000 })
})

test('new EvacuatingProducer() rejects unknown and invalid options with EVAQ_INVALID_ARGUMENT', async t => {
  const evaq = await openEvaq(t)
  const invalid: unknown[] = [
    null,
    'evaq',
    { evaq, producer, topics: 'misspelt' },
    { evaq, producer, unknownOption: 1 },
    { evaq: {}, producer },
    { evaq, producer: {} },
    { evaq, producer, await: 'never' },
    { evaq, producer, topic: '' },
    { evaq, producer, acks: 2 },
    { evaq, producer, timeoutMs: 0 },
    { evaq, producer, compression: 5 },
    { evaq, producer, maxBatchCount: 0 },
    { evaq, producer, maxBatchBytes: 0.5 },
    { evaq, producer, backoff: 5 },
    { evaq, producer, backoff: { initialMs: 100, maxMs: 50 } },
    { evaq, producer, classify: 'permanent' },
    { evaq, producer, subscriber: 1 },
  ]
  for (const options of invalid) {
    const err = t.throws(() => new EvacuatingProducer(options as EvacuatingProducerOptions))
    t.true(isEvaqError(err, 'EVAQ_INVALID_ARGUMENT'), JSON.stringify(options, (k, v) => k === 'evaq' || k === 'producer' ? '…' : v))
  }
  const ep = new EvacuatingProducer({ evaq, producer, topic: 't' })
  t.is(ep.status, 'idle')
  t.is(ep.evaq, evaq)
  t.is(ep.producer, producer)
})

test('send() refuses an unknown option like every options object, and sends nothing', async t => {
  const evaq = await openEvaq(t)
  const ep = new EvacuatingProducer({ evaq, producer, topic: 't' })
  const err = await t.throwsAsync(ep.send({ messages: [{ value: 'x' }], tpoic: 'u' } as never))
  t.true(isEvaqError(err, 'EVAQ_INVALID_ARGUMENT'))
  t.is((await evaq.wal.stats()).count, 0)
})
