/**
 * The argument contract, across every public method that takes an options object or a signal:
 * an unknown option is EVAQ_INVALID_ARGUMENT, an already-aborted signal is EVAQ_ABORTED, and
 * either way nothing stored changes (no record, no lease, no subscriber, no directory).
 */
import test from 'ava'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq, type Subscriber } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const NOW = 1_800_000_000_000
const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, clock: { now: () => NOW } }

interface World {
  q: Evaq
  sub: Subscriber
  dir: string
  spare: string
  archive: string
}

/** A queue with a WAL record delivered to subscriber `s` (one lease held), a DLQ record and a backup of it all. */
async function world (t: Parameters<typeof tmpDir>[0]): Promise<World> {
  const parent = await tmpDir(t, 'evaq-contract-')
  const dir = join(parent, 'q')
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  await q.pushWalMany(['one', 'two'])
  await q.pushRetryItem('failed', { error: { code: 'E', message: 'down' } })
  const sub = await q.wal.subscribe('s')
  const batch = await sub.next({ maxCount: 1 })
  t.is(batch?.records.length, 1)
  const archive = join(parent, 'full.evaq')
  const { createWriteStream } = await import('node:fs')
  const { pipeline } = await import('node:stream/promises')
  await pipeline(await q.backup(), createWriteStream(archive))
  return { q, sub, dir, spare: join(parent, 'spare'), archive }
}

/** Everything a call could change. */
async function state (w: World): Promise<unknown> {
  const { q } = w
  return {
    wal: await q.wal.read({ from: 0 }),
    dlq: await q.dlq.read({ from: 0 }),
    parked: await q.parked.read({ from: 0 }),
    stats: await q.stats().then(s => ({ wal: s.wal, dlq: s.dlq, parked: s.parked })),
    spare: await readdir(join(w.spare, '..')),
  }
}

type Call = (w: World, options: Record<string, unknown>) => Promise<unknown> | unknown

/** Every public method that takes an options object, called with `options`. */
const WITH_OPTIONS: Record<string, Call> = {
  'Evaq.open': (w, o) => Evaq.open(w.spare, { ...OPTIONS, ...o }),
  'Evaq.restore': (w, o) => Evaq.restore(w.archive, w.spare, o),
  pushWal: (w, o) => w.q.pushWal('x', o),
  pushWalMany: (w, o) => w.q.pushWalMany(['x', 'y'], o),
  pushRetryItem: (w, o) => w.q.pushRetryItem('x', { error: 'e', ...o }),
  'wal.push': (w, o) => w.q.wal.push('x', o),
  'dlq.push': (w, o) => w.q.dlq.push('x', o),
  'wal.pushMany': (w, o) => w.q.wal.pushMany(['x'], o),
  'wal.read': (w, o) => w.q.wal.read(o),
  'dlq.read': (w, o) => w.q.dlq.read(o),
  'parked.read': (w, o) => w.q.parked.read(o),
  'wal.subscribe': (w, o) => w.q.wal.subscribe('t', o),
  'subscriber.next': (w, o) => w.sub.next(o),
  'subscriber.nack': (w, o) => w.sub.nack(1, o),
  // eslint-disable-next-line no-unreachable-loop, @typescript-eslint/no-unused-vars -- takes the first batch; break closes the iterator
  'subscriber.batches': async (w, o) => { for await (const _ of w.sub.batches(o)) break },
  retry: (w, o) => w.q.retry(async () => {}, { autoStart: false, ...o }),
  'retryDaemon.stop': async (w, o) => {
    const daemon = w.q.retry(async () => {}, { autoStart: false })
    try {
      await daemon.stop(o)
    } finally {
      await daemon.stop()
    }
  },
  backup: (w, o) => w.q.backup(o),
}

/** Every public method that takes a signal, called with `signal`. */
const WITH_SIGNAL: Record<string, Call> = {
  pushWal: (w, o) => w.q.pushWal('x', o),
  pushWalMany: (w, o) => w.q.pushWalMany(['x', 'y'], o),
  pushRetryItem: (w, o) => w.q.pushRetryItem('x', { error: 'e', ...o }),
  'dlq.push': (w, o) => w.q.dlq.push('x', o),
  'subscriber.next': (w, o) => w.sub.next({ waitMs: 1000, ...o }),
}

for (const [name, call] of Object.entries(WITH_OPTIONS)) {
  test(`${name} rejects an unknown option with EVAQ_INVALID_ARGUMENT and changes nothing`, async t => {
    const w = await world(t)
    const before = await state(w)
    await t.throwsAsync(async () => { await call(w, { bogus: 1 }) }, { code: 'EVAQ_INVALID_ARGUMENT' })
    t.deepEqual(await state(w), before)
  })
}

for (const [name, call] of Object.entries(WITH_SIGNAL)) {
  test(`${name} with an aborted signal rejects with EVAQ_ABORTED and stores nothing`, async t => {
    const w = await world(t)
    const before = await state(w)
    const controller = new AbortController()
    controller.abort()
    await t.throwsAsync(async () => { await call(w, { signal: controller.signal }) }, { code: 'EVAQ_ABORTED' })
    t.deepEqual(await state(w), before)
    await w.q.close()
    const again = await Evaq.open(w.dir, OPTIONS)
    t.teardown(() => again.close())
    t.deepEqual((await again.stats()).wal.nextId, 3, 'no WAL ID was issued')
    t.deepEqual((await again.stats()).dlq.nextId, 2, 'no DLQ ID was issued')
  })
}

test('subscriber.batches with an aborted signal ends without taking a lease', async t => {
  const w = await world(t)
  const before = await state(w)
  const controller = new AbortController()
  controller.abort()
  const got = []
  for await (const batch of w.sub.batches({ signal: controller.signal })) got.push(batch)
  t.deepEqual(got, [])
  t.deepEqual(await state(w), before)
})
