import anyTest from 'ava'
import { fileURLToPath } from 'node:url'
import { Evaq } from '../../src/index.js'
import { runFixture, runLines } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { CLIENTS, clientTests } from './clients.js'
import { cluster, consume, distinctIds, outOfOrderFirsts } from './kafka-helpers.js'

/** The kafkajs tests need the mock cluster; the confluent ones its client built too. */
const testOf = clientTests(anyTest, import.meta.url)

const FIXTURE = fileURLToPath(new URL('../fixtures/kafka-producer.ts', import.meta.url))
const KEYS = 16
const PER_SEND = 100
/** A run that has not reached its kill point by then is hung. */
const WATCHDOG_MS = 60_000

interface Run {
  identity: string | undefined
  /** Durable sends: [firstSeq, count, firstId] */
  acked: Array<[number, number, number]>
  sent: number
  retries: number
  finished: boolean
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
}

/** Run the producer child; SIGKILL it as soon as `killWhen` holds (never, when undefined). */
async function runChild (args: string[], killWhen?: (run: Run) => boolean): Promise<Run> {
  const run: Run = { identity: undefined, acked: [], sent: 0, retries: 0, finished: false, code: null, signal: null, stderr: '' }
  const outcome = await runLines(FIXTURE, args, {
    watchdogMs: WATCHDOG_MS,
    onLine: line => {
      const [kind, a, b, c] = line.split('\t')
      if (kind === 'O') run.identity = a
      else if (kind === 'A') run.acked.push([Number(a), Number(b), Number(c)])
      else if (kind === 'S') run.sent += Number(a)
      else if (kind === 'R') run.retries++
      else if (kind === 'F') run.finished = true
      else throw new Error(`Unexpected line from the producer: ${JSON.stringify(line)}`)
    },
    killWhen: () => killWhen?.(run) === true,
  })
  Object.assign(run, { code: outcome.code, signal: outcome.signal, stderr: outcome.stderr })
  if (outcome.hung) throw new Error(`The producer hung (${run.acked.length} sends, ${run.sent} sent): ${run.stderr}`)
  return run
}

for (const client of CLIENTS) {
  testOf(client)(`${client}: SIGKILL mid-stream, also during an outage, then a restart: every message whose send() resolved is delivered, ` +
    'per-key order holds, resends carry the same evaq-id', async t => {
    const c = await cluster(t)
    await c.createTopic('crash', 4)
    for (let p = 0; p < 4; p++) await c.setLeader('crash', p, (p % 2) + 1)
    const dir = await tmpDir(t, 'evaq-kafka-crash-')
    const brokers = c.brokers.join(',')
    const args = (first: number, count: number): string[] => [dir, brokers, 'crash', String(first), String(count), String(PER_SEND), String(KEYS), client]

    // 1. Killed while sending and draining: some messages acknowledged by the broker, some not yet
    //    (as the child last reported; it runs on until the signal lands).
    const one = await runChild(args(0, 100_000), r => r.sent >= 3_000 && r.acked.length * PER_SEND > r.sent)
    t.is(one.signal, 'SIGKILL', `exit ${String(one.code)}: ${one.stderr}`)
    // 2. Killed while broker 2 is down: the WAL holds a backlog behind the failing batch. librdkafka
    //    (confluent) reports a failed attempt only after message.timeout.ms (2 s here), so 10,000
    //    messages: a child that persisted them all before its second failure is killed in flush().
    await c.down(2)
    const two = await runChild(args(200_000, 10_000), r => r.retries >= 2 && r.acked.length >= 20)
    t.is(two.signal, 'SIGKILL', `exit ${String(two.code)}: ${two.stderr}`)
    await c.up(2)
    // 3. A clean run: it sends what the killed runs left first, then its own, and flushes.
    const three = await runChild(args(400_000, 2_000))
    t.true(three.finished, three.stderr)
    t.is(one.identity, two.identity)
    t.is(two.identity, three.identity)

    const expected = new Map<string, string>() // evaq-id -> value, for every send() that resolved
    for (const run of [one, two, three]) {
      for (const [seq, n, id] of run.acked) for (let i = 0; i < n; i++) expected.set(`${run.identity!}:${id + i}`, `m${seq + i}`)
    }
    const read = await consume(c.brokers, ['crash'], m => {
      const got = new Set(m.map(x => x.evaqId))
      for (const id of expected.keys()) if (!got.has(id)) return false
      return true
    }, 120_000)

    // Every acknowledged send arrived, under the evaq-id it was persisted with.
    const byId = new Map<string, Set<string>>()
    for (const m of read) {
      let values = byId.get(m.evaqId!)
      if (values === undefined) byId.set(m.evaqId!, values = new Set())
      values.add(m.value!.toString())
    }
    const missing = [...expected.keys()].filter(id => !byId.has(id))
    t.deepEqual(missing.slice(0, 10), [])
    // A resend is the same message: one value per evaq-id, and the value persisted under it.
    t.deepEqual([...byId].filter(([, values]) => values.size !== 1).slice(0, 10), [])
    t.deepEqual([...expected].filter(([id, value]) => !byId.get(id)?.has(value)).slice(0, 10), [])
    // Per key, first appearances follow seq (the order of send() across all three runs).
    t.is(outOfOrderFirsts(read), 0)
    const duplicates = read.length - distinctIds(read).size
    t.log(`run 1: ${one.acked.length} sends, ${one.sent} sent before the kill; run 2: ${two.acked.length} sends, ${two.retries} failed attempts; ` +
      `${read.length} messages read, ${duplicates} duplicates`)
  })
}

const DEAD_LETTER = fileURLToPath(new URL('../fixtures/kafka-dead-letter.ts', import.meta.url))

for (const client of CLIENTS) {
  testOf(client)(`${client}: a crash inside the dead-letter move leaves the message in exactly one of WAL and DLQ`, async t => {
    const c = await cluster(t, { messageMaxBytes: 64 * 1024 })
    await c.createTopic('dead', 1)
    for (const mode of ['foreign', 'large'] as const) {
      for (const [point, expected] of [['move:before', 'wal'], ['move:after', 'dlq']] as const) {
        const where = `${mode} at ${point}`
        const dir = await tmpDir(t, 'evaq-kafka-dead-')
        let id: number | undefined
        if (mode === 'foreign') {
          const setup = await Evaq.open(dir)
          id = await setup.pushWal('not a kafka record')
          await setup.close()
        }
        const { signal, stdout, stderr } = await runFixture(DEAD_LETTER, [dir, c.brokers.join(','), 'dead', mode, client], point, WATCHDOG_MS)
        t.is(signal, 'SIGKILL', `${where}: ${stderr}`)
        t.false(stdout.includes('D\t'), `${where}: the move resolved before the kill`)
        id ??= Number(/^I\t(\d+)$/m.exec(stdout)?.[1])
        t.true(Number.isSafeInteger(id), `${where}: ${stdout}`)

        const evaq = await Evaq.open(dir)
        try {
          const inWal = (await evaq.wal.read({ maxCount: Infinity, maxBytes: Infinity })).filter(r => r.id === id)
          const inDlq = (await evaq.dlq.read({ maxCount: Infinity, maxBytes: Infinity })).filter(r => r.retry.source?.id === id)
          t.is(inWal.length + inDlq.length, 1, `${where}: ${inWal.length} in the WAL, ${inDlq.length} in the DLQ`)
          t.is(inWal.length === 1 ? 'wal' : 'dlq', expected, where)
          t.like(await evaq.stats(), { wal: { count: inWal.length }, dlq: { count: inDlq.length } }, where)
        } finally {
          await evaq.close()
        }
      }
    }
  })
}
