import anyTest from 'ava'
import { Evaq } from '../../src/index.js'
import { EvacuatingProducer } from '../../src/kafka/index.js'
import { tmpDir } from '../helpers/tmp.js'
import { CLIENTS, producerFor, clientTests } from './clients.js'
import { cluster, consume, distinctIds, outOfOrderFirsts } from './kafka-helpers.js'

/** The kafkajs tests need the mock cluster; the confluent ones its client built too. */
const testOf = clientTests(anyTest, import.meta.url)

const TOTAL = 50_000
const PER_SEND = 250
const KEYS = 64
const PARTITIONS = 6

for (const client of CLIENTS) {
  testOf(client)(`${client}: 50,000 messages while brokers go down and come back: every message arrives, ` +
    'duplicates come only from resends and carry the same evaq-id, per-key order holds', async t => {
    const c = await cluster(t)
    await c.createTopic('stream', PARTITIONS)
    // Each broker leads two partitions, so that taking any broker down stops some of the stream.
    for (let p = 0; p < PARTITIONS; p++) await c.setLeader('stream', p, (p % 3) + 1)
    const dir = await tmpDir(t, 'evaq-kafka-outage-')
    const evaq = await Evaq.open(dir)
    t.teardown(() => evaq.close())
    const ep = new EvacuatingProducer({
      evaq,
      producer: producerFor(client, c.brokers),
      topic: 'stream',
      maxBatchCount: 1000,
      backoff: { initialMs: 10, maxMs: 100 },
    })
    t.teardown(() => ep.stop())

    // Progress as the producer reports it; the outage script waits on these, never on the clock.
    let sent = 0
    let retries = 0
    let messagesInFailedAttempts = 0
    const waiting = new Set<() => void>()
    const poke = (): void => { for (const w of [...waiting]) w() }
    ep.on('sent', e => { sent += e.count; poke() })
    ep.on('retrying', e => { retries++; messagesInFailedAttempts += e.count; poke() })
    const until = (condition: () => boolean): Promise<void> => new Promise(resolve => {
      const check = (): void => { if (condition()) { waiting.delete(check); resolve() } }
      waiting.add(check)
      check()
    })
    const outage = async (brokers: number[], failures: number): Promise<void> => {
      const before = retries
      for (const b of brokers) await c.down(b)
      await until(() => retries >= before + failures)
      for (const b of brokers) await c.up(b)
    }

    await ep.start()
    const values = new Map<string, { key: string, value: string }>()
    const sending = (async () => {
      for (let s = 0; s < TOTAL / PER_SEND; s++) {
        const messages = Array.from({ length: PER_SEND }, (_, i) => {
          const seq = s * PER_SEND + i
          return { key: `k${seq % KEYS}`, value: `m${seq}` }
        })
        const r = await ep.send({ messages })
        r.evaqIds.forEach((id, i) => values.set(id, messages[i]!))
      }
    })()
    const outages = (async () => {
      await until(() => sent >= 5_000)
      await outage([1], 1)
      await until(() => sent >= 15_000)
      await outage([2, 3], 2)
      await until(() => sent >= 25_000)
      await outage([-1], 3)
      await until(() => sent >= 35_000)
      await outage([1], 1)
      await until(() => sent >= 42_000)
      await outage([3], 1)
    })()
    await Promise.all([sending, outages])
    await ep.flush({ timeoutMs: 120_000 })
    const stats = await ep.stats()
    t.like(stats, { inWal: 0, deadLettered: 0 })
    t.true(retries >= 8, `${retries} failed attempts`)

    const read = await consume(c.brokers, ['stream'], m => distinctIds(m).size >= TOTAL, 120_000)
    // Every message, by evaq-id, and nothing else.
    const ids = distinctIds(read)
    const missing = [...values.keys()].filter(id => !ids.has(id))
    const unknown = [...ids].filter(id => !values.has(id))
    t.deepEqual({ missing: missing.slice(0, 10), unknown: unknown.slice(0, 10) }, { missing: [], unknown: [] })
    // A duplicate is the same message (same key, same value) under the same evaq-id, and there are
    // no more duplicates than messages in failed attempts (each can have reached the broker once).
    let mismatched = 0
    for (const m of read) {
      const v = values.get(m.evaqId!)
      if (v === undefined || v.key !== m.key || v.value !== m.value?.toString()) mismatched++
    }
    t.is(mismatched, 0)
    const duplicates = read.length - TOTAL
    t.true(duplicates <= messagesInFailedAttempts, `${duplicates} duplicates, ${messagesInFailedAttempts} messages in failed attempts`)
    t.log(`${read.length} messages read, ${duplicates} duplicates; ${retries} failed attempts; stats ${JSON.stringify(stats)}`)
    // Per key, first appearances follow the order of send().
    t.is(outOfOrderFirsts(read), 0)
  })
}
