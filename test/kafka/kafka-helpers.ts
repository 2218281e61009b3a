import type { ExecutionContext } from 'ava'
import { Kafka, logLevel, type KafkaConfig } from 'kafkajs'
import { EVAQ_ID_HEADER } from '../../src/kafka/index.js'
import { MockCluster, type MockClusterOptions } from './mock-cluster.js'

/**
 * kafkajs settings for a broker on this machine: fail fast, so that outages show within a test's
 * time, and no retries inside kafkajs, as docs/kafka.md recommends (evaq retries).
 */
export function kafka (brokers: string[], overrides: Partial<KafkaConfig> = {}): Kafka {
  return new Kafka({
    clientId: 'evaq-test',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 300,
    requestTimeout: 5000,
    retry: { retries: 0 },
    ...overrides,
  })
}

/** A mock cluster stopped when the test ends. */
export async function cluster (t: ExecutionContext, options?: MockClusterOptions): Promise<MockCluster> {
  const c = await MockCluster.start(options)
  t.teardown(() => c.stop())
  return c
}

export interface Consumed {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly key: string | undefined
  readonly value: Buffer | null
  readonly evaqId: string | undefined
  readonly headers: Record<string, Buffer | Buffer[] | undefined>
}

/**
 * Read `topics` from the beginning with a kafkajs consumer group until `done(messages)` holds.
 * Rejects after `timeoutMs` (a hang guard, not a measurement) with what was read.
 */
export async function consume (brokers: string[], topics: string[], done: (messages: readonly Consumed[]) => boolean, timeoutMs = 60_000): Promise<Consumed[]> {
  // The consumer keeps kafkajs's retries: joining a group meets transient coordinator errors.
  const consumer = kafka(brokers, { retry: { retries: 8, initialRetryTime: 50, maxRetryTime: 1000 } })
    .consumer({ groupId: `evaq-test-${process.pid}-${Math.random().toString(36).slice(2)}`, maxWaitTimeInMs: 50 })
  const messages: Consumed[] = []
  await consumer.connect()
  try {
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`consume: ${messages.length} messages after ${timeoutMs} ms and not done`)), timeoutMs)
      consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            const id = m.headers?.[EVAQ_ID_HEADER]
            messages.push({
              topic: batch.topic,
              partition: batch.partition,
              offset: m.offset,
              key: m.key?.toString('utf8'),
              value: m.value,
              evaqId: id === undefined ? undefined : Array.isArray(id) ? String(id[0]) : String(id),
              headers: (m.headers ?? {}) as Record<string, Buffer | Buffer[] | undefined>,
            })
          }
          if (done(messages)) { clearTimeout(timer); resolve() }
        },
      }).catch(err => { clearTimeout(timer); reject(err) })
      if (done(messages)) { clearTimeout(timer); resolve() }
    })
  } finally {
    await consumer.disconnect()
  }
  return messages
}

/** The set of distinct evaq-ids read. */
export function distinctIds (messages: readonly Consumed[]): Set<string> {
  return new Set(messages.map(m => m.evaqId).filter((id): id is string => id !== undefined))
}

/**
 * Keys whose messages first appear out of send() order: counted over the first appearance of each
 * evaq-id (a resend may come later), with the send order in the value (`<letter><seq>`).
 */
export function outOfOrderFirsts (messages: readonly Consumed[]): number {
  const seen = new Set<string>()
  const last = new Map<string, number>()
  let outOfOrder = 0
  for (const m of messages) {
    if (seen.has(m.evaqId!)) continue
    seen.add(m.evaqId!)
    const seq = Number(m.value!.toString().slice(1))
    if ((last.get(m.key!) ?? -1) >= seq) outOfOrder++
    last.set(m.key!, seq)
  }
  return outOfOrder
}
