import anyTest from 'ava'
import { Evaq, isEvaqError, type EvaqOptions } from '../../src/index.js'
import { decodeKafkaRecord, EvacuatingProducer, EVAQ_ID_HEADER, type RetryingEvent } from '../../src/kafka/index.js'
import { tmpDir } from '../helpers/tmp.js'
import { CLIENTS, producerFor, clientTests } from './clients.js'
import { cluster, consume, distinctIds } from './kafka-helpers.js'
import { API, KAFKA_ERRORS } from './mock-cluster.js'

/** The kafkajs tests need the mock cluster; the confluent ones its client built too. */
const testOf = clientTests(anyTest, import.meta.url)

async function openEvaq (t: Parameters<typeof tmpDir>[0], options?: EvaqOptions): Promise<Evaq> {
  const dir = await tmpDir(t, 'evaq-kafka-')
  const evaq = await Evaq.open(dir, options)
  t.teardown(() => evaq.close())
  return evaq
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: send() persists, the broker gets every field and an evaq-id header; ` +
    'with await: broker it resolves after the ack and the WAL is empty', async t => {
    const c = await cluster(t)
    await c.createTopic('basic', 3)
    const evaq = await openEvaq(t)
    const ep = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), await: 'broker', topic: 'basic' })
    t.teardown(() => ep.stop())
    await ep.start()
    const identity = await ep.evaqId()
    const result = await ep.send({
      messages: [
        { key: 'a', value: 'one', headers: { trace: 'x', multi: ['p', Buffer.from('q')] }, timestamp: '1700000000000' },
        { key: Buffer.from([0, 1, 2]), value: Buffer.from([255, 0]), partition: 2 },
        { key: 'tomb', value: null },
      ],
    })
    t.deepEqual(result.evaqIds, result.ids.map(id => `${identity}:${id}`))
    t.deepEqual(result.deadLettered, [])
    // The removal from the WAL follows the broker's ack; flush() waits for it.
    await ep.flush()
    t.is((await evaq.wal.stats()).count, 0)

    const read = await consume(c.brokers, ['basic'], m => m.length >= 3)
    t.is(read.length, 3)
    const byId = new Map(read.map(m => [m.evaqId, m]))
    const a = byId.get(result.evaqIds[0])!
    t.is(a.key, 'a')
    t.is(a.value?.toString(), 'one')
    t.is(String(a.headers.trace), 'x')
    t.deepEqual((a.headers.multi as Buffer[]).map(String), ['p', 'q'])
    const b = byId.get(result.evaqIds[1])!
    t.is(b.partition, 2)
    t.deepEqual(b.value, Buffer.from([255, 0]))
    t.is(byId.get(result.evaqIds[2])!.value, null)
    const stats = await ep.stats()
    t.like(stats, { status: 'running', inWal: 0, inFlight: 0, sent: 3, resent: 0, deadLettered: 0 })
  })
}

/** For each key, the WAL IDs of its messages in the order a consumer first saw them (duplicates dropped). */
function firstSeenIdsPerKey (read: ReadonlyArray<{ key: string | undefined, evaqId: string | undefined }>): Map<string, number[]> {
  const seen = new Set<string>()
  const perKey = new Map<string, number[]>()
  for (const m of read) {
    if (m.evaqId === undefined || seen.has(m.evaqId)) continue
    seen.add(m.evaqId)
    const key = m.key ?? ''
    let list = perKey.get(key)
    if (list === undefined) perKey.set(key, list = [])
    list.push(Number(m.evaqId.split(':')[1]))
  }
  return perKey
}

function increasing (list: readonly number[]): boolean {
  return list.every((id, i) => i === 0 || list[i - 1]! < id)
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: a message over the broker's message.max.bytes goes to the DLQ with MESSAGE_TOO_LARGE and its evaq-id; ` +
    'the messages behind it are delivered in order', async t => {
    const c = await cluster(t, { messageMaxBytes: 64 * 1024 })
    await c.createTopic('sized', 3)
    const evaq = await openEvaq(t)
    const ep = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), await: 'broker', topic: 'sized' })
    t.teardown(() => ep.stop())
    const dead: number[] = []
    ep.on('deadLettered', e => dead.push(e.id))
    await ep.start()
    const before = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 4}`, value: `before-${i}` }))
    const big = { key: 'k1', value: Buffer.alloc(100 * 1024, 7) }
    const after = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 4}`, value: `after-${i}` }))
    // One send: the drainer puts all 41 in one produce call, which the broker refuses as a whole.
    const result = await ep.send({ messages: [...before, big, ...after] })
    const bigId = result.ids[20]!
    t.is(result.deadLettered?.length, 1)
    t.like(result.deadLettered?.[0], { id: bigId, code: 'MESSAGE_TOO_LARGE' })
    t.deepEqual(dead, [bigId])
    t.true(await c.rejectedTooLarge() >= 1)

    const dlq = await evaq.dlq.read()
    t.is(dlq.length, 1)
    t.is(dlq[0]!.error?.code, 'MESSAGE_TOO_LARGE')
    t.like(dlq[0]!.retry, { attempts: 1, source: { log: 'wal', id: bigId } })
    const record = decodeKafkaRecord(dlq[0]!.payload)
    t.is(record.topic, 'sized')
    t.deepEqual(record.message.value, big.value)
    t.is(String(record.message.headers[EVAQ_ID_HEADER]), result.evaqIds[20]!)
    await ep.flush()
    t.is((await evaq.wal.stats()).count, 0)

    const read = await consume(c.brokers, ['sized'], m => distinctIds(m).size >= 40)
    const ids = distinctIds(read)
    t.is(ids.size, 40)
    t.false(ids.has(result.evaqIds[20]!))
    for (const [key, list] of firstSeenIdsPerKey(read)) t.true(increasing(list), `key ${key}: ${list.join(',')}`)
    t.like(await ep.stats(), { deadLettered: 1, inWal: 0 })
  })
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: an invalid topic (kafkajs) and a topic the producer may not write go to the DLQ with their codes; ` +
    'the other topics go on', async t => {
    const c = await cluster(t)
    await c.createTopic('good', 2)
    await c.topicError('bad..topic', KAFKA_ERRORS.INVALID_TOPIC_EXCEPTION)
    await c.topicError('secret', KAFKA_ERRORS.TOPIC_AUTHORIZATION_FAILED)
    const evaq = await openEvaq(t)
    const ep = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), await: 'broker', topic: 'good' })
    t.teardown(() => ep.stop())
    await ep.start()
    // librdkafka (confluent) reports a topic its metadata calls invalid as ERR__UNKNOWN_TOPIC, as it
    // does a topic that does not exist yet: retriable, see the next test.
    const refused: Array<[topic: string, code: string]> = client === 'kafkajs'
      ? [['bad..topic', 'INVALID_TOPIC_EXCEPTION'], ['secret', 'TOPIC_AUTHORIZATION_FAILED']]
      : [['secret', 'TOPIC_AUTHORIZATION_FAILED']]
    // good, then each refused topic followed by a good one: [good, refused, good, refused, good]
    const sends = await Promise.all([
      ep.send({ messages: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }] }),
      ...refused.flatMap(([topic], i) => [
        ep.send({ topic, messages: [{ key: i % 2 === 0 ? 'a' : 'b', value: `refused-${i}` }] }),
        ep.send({ messages: [{ key: i % 2 === 0 ? 'a' : 'b', value: `${i + 3}` }] }),
      ]),
    ])
    refused.forEach(([, code], i) => t.like(sends[1 + 2 * i]!.deadLettered, [{ code }]))
    const good = sends.filter((_, i) => i % 2 === 0)
    for (const send of good) t.deepEqual(send.deadLettered, [])
    t.deepEqual((await evaq.dlq.read()).map(r => r.error?.code), refused.map(([, code]) => code))
    const goodIds = good.flatMap(send => send.evaqIds)
    const read = await consume(c.brokers, ['good'], m => distinctIds(m).size >= goodIds.length)
    t.deepEqual([...distinctIds(read)].sort(), goodIds.sort())
  })
}

testOf('confluent')('confluent: a message to a topic the metadata calls invalid goes to the DLQ (INVALID_TOPIC_EXCEPTION) or, when librdkafka ' +
  'reports the topic as unknown (ERR__UNKNOWN_TOPIC), stays in the WAL: in exactly one of the two', async t => {
  const c = await cluster(t)
  await c.topicError('bad..topic', KAFKA_ERRORS.INVALID_TOPIC_EXCEPTION)
  const evaq = await openEvaq(t)
  const ep = new EvacuatingProducer({ evaq, producer: producerFor('confluent', c.brokers), topic: 'bad..topic', backoff: { initialMs: 10, maxMs: 50 } })
  t.teardown(() => ep.stop())
  const retrying: RetryingEvent[] = []
  // Which one librdkafka reports depends on whether the topic's metadata is in its cache when
  // the message is produced (ERR__UNKNOWN_TOPIC) or arrives while the message waits (the topic's error).
  const outcome = new Promise<'dlq' | 'wal'>(resolve => {
    ep.once('deadLettered', () => resolve('dlq'))
    ep.on('retrying', e => { retrying.push(e); if (retrying.length === 2) resolve('wal') })
  })
  await ep.start()
  await ep.send({ messages: [{ key: 'a', value: 'x' }] })
  const where = await outcome
  await ep.stop()
  const stats = await ep.stats()
  t.is(stats.inWal + stats.deadLettered, 1)
  t.is((await evaq.dlq.stats()).count, stats.deadLettered)
  if (where === 'wal') {
    t.like(retrying[1], { count: 1, error: { code: -188 } })
    t.is(stats.inWal, 1)
  } else {
    t.deepEqual((await evaq.dlq.read()).map(r => r.error?.code), ['INVALID_TOPIC_EXCEPTION'])
  }
  t.log(`the message is in the ${where === 'wal' ? 'WAL' : 'DLQ'}`)
})

for (const client of CLIENTS) {
  testOf(client)(`${client}: retriable broker errors (not leader, timeouts, not enough replicas) keep the messages in the WAL until they are sent; ` +
    'nothing is dead-lettered', async t => {
    const c = await cluster(t)
    await c.createTopic('flaky', 3)
    const evaq = await openEvaq(t)
    // producerFor() gives the client no retries of its own, so every refusal reaches the producer.
    const ep = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), await: 'broker', topic: 'flaky', backoff: { initialMs: 5, maxMs: 20 } })
    t.teardown(() => ep.stop())
    const retrying: RetryingEvent[] = []
    ep.on('retrying', e => retrying.push(e))
    await ep.start()
    const { NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, LEADER_NOT_AVAILABLE } = KAFKA_ERRORS
    await c.pushErrors(API.Produce, [NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, LEADER_NOT_AVAILABLE])
    const result = await ep.send({ messages: Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 3}`, value: `v${i}` })) })
    t.deepEqual(result.deadLettered, [])
    await ep.flush()
    t.true(retrying.length >= 1)
    t.true(retrying.every(e => e.count > 0 && e.delayMs >= 0))
    const stats = await ep.stats()
    t.like(stats, { inWal: 0, deadLettered: 0 })
    t.true(stats.failedAttempts >= 1)
    const read = await consume(c.brokers, ['flaky'], m => distinctIds(m).size >= 30)
    t.is(distinctIds(read).size, 30)
    for (const [key, list] of firstSeenIdsPerKey(read)) t.true(increasing(list), `key ${key}: ${list.join(',')}`)
  })
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: while every broker is down, send() keeps persisting; stop() leaves it all in the WAL ` +
    'and the next start sends it first', async t => {
    const c = await cluster(t)
    await c.createTopic('later', 2)
    await c.down(-1)
    const evaq = await openEvaq(t)
    const first = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), topic: 'later', backoff: { initialMs: 10, maxMs: 50 } })
    const retried = new Promise<RetryingEvent>(resolve => first.once('retrying', resolve))
    await first.start() // Kafka being down does not fail start()
    t.is(first.status, 'running')
    const early = await first.send({ messages: Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 5}`, value: `early-${i}` })) })
    await retried
    await first.stop()
    t.is(first.status, 'stopped')
    t.is((await evaq.wal.stats()).count, 50)
    t.true(isEvaqError(await t.throwsAsync(first.send({ messages: [{ value: 'x' }] })), 'EVAQ_CLOSED'))

    await c.up(-1)
    const second = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), topic: 'later' })
    t.teardown(() => second.stop())
    await second.start()
    const late = await second.send({ messages: Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 5}`, value: `late-${i}` })) })
    await second.flush({ timeoutMs: 30_000 })
    t.is((await evaq.wal.stats()).count, 0)
    t.like(await second.stats(), { sent: 100, resent: 50 })
    const read = await consume(c.brokers, ['later'], m => distinctIds(m).size >= 100)
    t.deepEqual([...distinctIds(read)].sort(), [...early.evaqIds, ...late.evaqIds].sort())
    // The leftovers of the first run come before the second run's messages, key by key.
    for (const [key, list] of firstSeenIdsPerKey(read)) t.true(increasing(list), `key ${key}: ${list.join(',')}`)
  })
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: one producer per queue; a WAL record the producer did not write goes to the DLQ; flush() times out with EVAQ_ABORTED`, async t => {
    const c = await cluster(t)
    await c.createTopic('own', 1)
    const evaq = await openEvaq(t)
    const foreign = await evaq.pushWal('not a kafka record')
    const ep = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), topic: 'own', await: 'broker' })
    t.teardown(() => ep.stop())
    await ep.start()
    const other = new EvacuatingProducer({ evaq, producer: producerFor(client, c.brokers), topic: 'own' })
    t.true(isEvaqError(await t.throwsAsync(other.start()), 'EVAQ_INVALID_ARGUMENT'))
    const sent = await ep.send({ messages: [{ value: 'mine' }] })
    t.deepEqual(sent.deadLettered, [])
    const dlq = await evaq.dlq.read()
    t.is(dlq.length, 1)
    t.like(dlq[0], { error: { code: 'EVAQ_NOT_A_KAFKA_RECORD' }, retry: { source: { log: 'wal', id: foreign } } })
    t.is(dlq[0]!.payload.toString(), 'not a kafka record')

    await c.down(-1)
    const stuck = ep.send({ messages: [{ value: 'stuck' }] }) // waits for the broker
    t.true(isEvaqError(await t.throwsAsync(ep.flush({ timeoutMs: 200 })), 'EVAQ_ABORTED'))
    t.true(isEvaqError(await t.throwsAsync(ep.send({ messages: [{ value: 1 as unknown as string }] })), 'EVAQ_INVALID_ARGUMENT'))
    await ep.stop()
    t.true(isEvaqError(await t.throwsAsync(stuck), 'EVAQ_CLOSED'))
    t.is((await evaq.wal.stats()).count, 1)
  })
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: backpressure: when the WAL's budget is full, send() rejects with EVAQ_AT_CAPACITY (onFull: reject) ` +
    'or waits until the broker took messages (backpressure)', async t => {
    const c = await cluster(t)
    await c.createTopic('full', 2)
    const value = 'x'.repeat(100)
    const batch = Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value }))
    const rejecting = await openEvaq(t, { retention: { wal: { maxBytes: 20_000, onFull: 'reject' } } })
    const r = new EvacuatingProducer({ evaq: rejecting, producer: producerFor(client, c.brokers), topic: 'full', backoff: { initialMs: 10, maxMs: 50 } })
    t.teardown(() => r.stop())
    const waiting = await openEvaq(t, { retention: { wal: { maxBytes: 20_000, onFull: 'backpressure' } } })
    const w = new EvacuatingProducer({ evaq: waiting, producer: producerFor(client, c.brokers), topic: 'full', backoff: { initialMs: 10, maxMs: 50 } })
    t.teardown(() => w.stop())
    // Connected before the outage: a confluent producer's connect() to unreachable brokers takes
    // 30 s (starting during an outage is the test above).
    await r.start()
    await w.start()
    await c.down(-1)

    let error: unknown
    for (let i = 0; i < 100 && error === undefined; i++) await r.send({ messages: batch }).catch(err => { error = err })
    t.true(isEvaqError(error, 'EVAQ_AT_CAPACITY'))
    const stuck = (await r.stats()).inWal
    t.true(stuck > 0 && (await rejecting.wal.stats()).bytes <= 20_000)

    const one = (await w.send({ messages: batch })).ids.length
    const perBatch = (await waiting.wal.stats()).bytes
    t.is(one, 10)
    while ((await waiting.wal.stats()).bytes + perBatch <= 20_000) await w.send({ messages: batch })
    let resolved = false
    const blocked = w.send({ messages: batch }).then(result => { resolved = true; return result })
    // The drainer fails again (the brokers are still down) and the send is still waiting.
    await new Promise<void>(resolve => w.once('retrying', () => resolve()))
    t.false(resolved)
    await c.up(-1)
    t.is((await blocked).ids.length, 10)
    await w.flush({ timeoutMs: 30_000 })
    await r.flush({ timeoutMs: 30_000 })
    t.is((await r.send({ messages: batch })).ids.length, 10)
    t.like(await w.stats(), { inWal: 0, deadLettered: 0 })
  })
}

testOf('confluent')('confluent: given a function, the producer replaces a producer whose connect() failed (it cannot connect again); ' +
  'what waited in the WAL is sent once the brokers are back', async t => {
  const c = await cluster(t)
  await c.createTopic('again', 2)
  await c.down(-1)
  const evaq = await openEvaq(t)
  const made: Array<ReturnType<typeof producerFor>> = []
  const producer = (): ReturnType<typeof producerFor> => { const p = producerFor('confluent', c.brokers); made.push(p); return p }
  const ep = new EvacuatingProducer({ evaq, producer, topic: 'again', backoff: { initialMs: 10, maxMs: 50 } })
  t.teardown(() => ep.stop())
  const failed = new Promise<RetryingEvent>(resolve => ep.once('retrying', resolve))
  await ep.start() // connect() fails after librdkafka's 30 s metadata timeout; start() does not
  t.like(await failed, { count: 0 })
  await c.up(-1)
  const sent = await ep.send({ messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 4}`, value: `v${i}` })) })
  await ep.flush({ timeoutMs: 30_000 })
  t.is(made.length, 2)
  t.is(ep.producer, made[1]!)
  const read = await consume(c.brokers, ['again'], m => distinctIds(m).size >= 20)
  t.deepEqual([...distinctIds(read)].sort(), [...sent.evaqIds].sort())
})
