import test from 'ava'
import fc from 'fast-check'
import { isEvaqError } from '../../src/index.js'
import { classifyKafkaError, deadLetterError } from '../../src/kafka/classify.js'
import { checkMessage, decodeKafkaRecord, decodeRecord, encodeRecord, existingEvaqId } from '../../src/kafka/record.js'

const bytes = fc.uint8Array({ maxLength: 64 }).map(a => Buffer.from(a))
const text = fc.string({ maxLength: 32 })
const message = fc.record({
  key: fc.option(fc.oneof(bytes, text), { nil: undefined }),
  value: fc.oneof(bytes, text, fc.constant(null)),
  partition: fc.option(fc.integer({ min: 0, max: 0x7FFF_FFFF }), { nil: undefined }),
  headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }),
    fc.oneof(bytes, text, fc.array(fc.oneof(bytes, text), { minLength: 1, maxLength: 3 }))), { nil: undefined }),
  timestamp: fc.option(fc.oneof(fc.nat().map(String), fc.nat()), { nil: undefined }),
}, { requiredKeys: ['value'] })

const asBuffer = (v: Buffer | string): Buffer => typeof v === 'string' ? Buffer.from(v) : v

test('a message survives encode and decode: topic, acks, key, value, partition, headers (in order, repeated names), timestamp', t => {
  fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.constantFrom(undefined, -1, 0, 1), message, fc.nat(), (topic, acks, m, now) => {
    const decoded = decodeKafkaRecord(encodeRecord(topic, acks, checkMessage(m, 'm', now)))
    t.is(decoded.topic, topic)
    t.is(decoded.acks, acks)
    t.deepEqual(decoded.message.key, m.key === undefined || m.key === null ? null : asBuffer(m.key))
    t.deepEqual(decoded.message.value, m.value === null ? null : asBuffer(m.value))
    t.is(decoded.message.partition, m.partition)
    t.is(decoded.message.timestamp, String(m.timestamp ?? now))
    const expected = Object.create(null) as Record<string, Buffer | Buffer[]>
    for (const [name, v] of Object.entries(m.headers ?? {})) {
      const list = (Array.isArray(v) ? v : [v]).map(asBuffer)
      expected[name] = list.length === 1 ? list[0]! : list
    }
    t.deepEqual({ ...decoded.message.headers }, { ...expected })
  }), { numRuns: 300 })
})

test('decoding anything else is EVAQ_CORRUPTION, never a wrong message', t => {
  const good = encodeRecord('t', undefined, checkMessage({ key: 'k', value: 'v', headers: { h: 'x' } }, 'm', 1))
  for (const bad of [Buffer.alloc(0), Buffer.from('hello world'), good.subarray(0, good.byteLength - 1), Buffer.concat([good, Buffer.from([0])])]) {
    const err = t.throws(() => decodeRecord(bad))
    t.true(isEvaqError(err, 'EVAQ_CORRUPTION'))
  }
  const versioned = Buffer.from(good)
  versioned[2] = 9
  t.true(isEvaqError(t.throws(() => decodeRecord(versioned)), 'EVAQ_CORRUPTION'))
})

test('malformed messages are EVAQ_INVALID_ARGUMENT', t => {
  const cases: unknown[] = [
    null, 'text', [], { key: 'k' }, { value: 1 }, { value: 'v', key: 5 }, { value: 'v', partition: -1 }, { value: 'v', partition: 1.5 },
    { value: 'v', headers: { h: 5 } }, { value: 'v', headers: [] }, { value: 'v', timestamp: 'yesterday' }, { value: 'v', timestamp: -1 },
    { value: 'v', extra: true },
  ]
  for (const c of cases) t.true(isEvaqError(t.throws(() => checkMessage(c, 'm', 0)), 'EVAQ_INVALID_ARGUMENT'), JSON.stringify(c))
})

test('an evaq-id header already on a message is found (a resend from the DLQ keeps its identity)', t => {
  t.is(existingEvaqId(checkMessage({ value: 'v', headers: { 'evaq-id': 'abc:7' } }, 'm', 0).headers), 'abc:7')
  t.is(existingEvaqId(checkMessage({ value: 'v' }, 'm', 0).headers), undefined)
})

/** Errors shaped as kafkajs makes them (see node_modules/kafkajs/src/errors.js). */
function protocol (type: string, code: number, retriable: boolean): Error {
  return Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type, code, retriable })
}
function wrapped (name: string, cause: unknown): Error {
  return Object.assign(new Error(name), { name, retriable: false, cause })
}

test('classification: broker refusals are permanent, everything else keeps the messages in the WAL', t => {
  t.is(classifyKafkaError(protocol('MESSAGE_TOO_LARGE', 10, false)), 'permanent')
  t.is(classifyKafkaError(wrapped('KafkaJSNonRetriableError', protocol('INVALID_TOPIC_EXCEPTION', 17, false))), 'permanent')
  t.is(classifyKafkaError(protocol('TOPIC_AUTHORIZATION_FAILED', 29, false)), 'permanent')
  // kafkajs gives up on a retriable error with a non-retriable wrapper: the cause decides.
  t.is(classifyKafkaError(wrapped('KafkaJSNumberOfRetriesExceeded', protocol('LEADER_NOT_AVAILABLE', 5, true))), 'retriable')
  const refused = Object.assign(new Error('refused'), { name: 'KafkaJSConnectionError', code: 'ECONNREFUSED', retriable: true })
  t.is(classifyKafkaError(wrapped('KafkaJSNumberOfRetriesExceeded', refused)), 'retriable')
  t.is(classifyKafkaError(Object.assign(new Error('x'), { name: 'KafkaJSNonRetriableError', retriable: false })), 'retriable')
  t.is(classifyKafkaError(new TypeError('x')), 'retriable')
  t.is(classifyKafkaError(undefined), 'retriable')
})

test('a dead-lettered message is stored with the Kafka error type as its code', t => {
  t.like(deadLetterError(wrapped('KafkaJSNonRetriableError', protocol('MESSAGE_TOO_LARGE', 10, false))), { code: 'MESSAGE_TOO_LARGE' })
  t.like(deadLetterError(Object.assign(new Error('x'), { code: 'MY_CODE' })), { code: 'MY_CODE' })
  t.like(deadLetterError(new RangeError('x')), { code: 'RangeError' })
})
