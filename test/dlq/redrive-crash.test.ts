/**
 * The DLQ to WAL redrive (`requeueDeadLetters`, `POST /v1/dlq/requeue`, `evaq dlq requeue`): each
 * page is one write. Real child processes (test/fixtures/move-worker.ts) are killed at the write
 * of a page; after the reopen every record is in exactly one of the DLQ and the WAL. And records
 * removed from the DLQ while a redrive runs are neither requeued twice nor brought back.
 */
import test, { type ExecutionContext } from 'ava'
import { fileURLToPath } from 'node:url'
import { Evaq, isEvaqError, type EvaqError, type QueueLog } from '../../src/index.js'
import { redrivePage } from '../../src/dlq/redrive.js'
import { QueueService } from '../../src/server/queue-service.js'
import { rawKeys, runFixture } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/move-worker.ts', import.meta.url))
const WATCHDOG_MS = 30_000
const OPTIONS = { minFreeDiskBytes: 0 } as const
const PAYLOADS = ['p0', 'p1', 'p2', 'p3', 'p4']

/** Run the worker; it must kill itself at `point`. */
async function run (t: ExecutionContext, args: string[], point: string): Promise<void> {
  const { signal, stdout, stderr } = await runFixture(FIXTURE, args, point, WATCHDOG_MS)
  t.is(signal, 'SIGKILL', `${args[1]!} at ${point}: ${stderr}`)
  t.false(stdout.includes('D\n'), `${args[1]!} at ${point}: the work finished before the kill`)
}

async function payloads (log: QueueLog): Promise<string[]> {
  return (await log.read({ maxBytes: Infinity, maxCount: Infinity })).map(r => r.payload.toString())
}

async function seed (dir: string): Promise<number[]> {
  const evaq = await Evaq.open(dir, OPTIONS)
  try {
    const ids: number[] = []
    for (const p of PAYLOADS) ids.push(await evaq.pushRetryItem(p, { error: { message: 'down' } }))
    return ids
  } finally {
    await evaq.close()
  }
}

test('a redrive killed at the write of a page: every record is in exactly one of the DLQ and the WAL', async t => {
  // Pages of 3 records (maxBatchCount 3). segment-write:after is where the WAL push of a redrive
  // in two writes ended: there the record was in both logs.
  const cases = [
    { mode: 'redrive', point: 'move:before', wal: [] as string[] },
    { mode: 'redrive', point: 'move:after', wal: ['p0', 'p1', 'p2'] },
    { mode: 'redrive', point: 'segment-write:after', wal: ['p0', 'p1', 'p2'] },
    // IDs of p1 to p4, given in reverse: the first page is p1 to p3, in DLQ order.
    { mode: 'redrive-ids', point: 'move:after', wal: ['p1', 'p2', 'p3'] },
  ]
  for (const { mode, point, wal } of cases) {
    const what = `${mode} at ${point}`
    const dir = await tmpDir(t, 'evaq-redrive-crash-')
    const ids = await seed(dir)
    await run(t, [dir, mode, String(ids[1]), '3'], point)
    for (let reopen = 0; reopen < 2; reopen++) {
      const evaq = await Evaq.open(dir, OPTIONS)
      try {
        t.deepEqual(await payloads(evaq.wal), wal, what)
        t.deepEqual(await payloads(evaq.dlq), PAYLOADS.filter(p => !wal.includes(p)), what)
        t.like(await evaq.stats(), { wal: { count: wal.length }, dlq: { count: PAYLOADS.length - wal.length } }, what)
      } finally {
        await evaq.close()
      }
    }
    // The rest is redriven after the restart, once.
    const evaq = await Evaq.open(dir, OPTIONS)
    try {
      t.is((await new QueueService(evaq).requeueDeadLetters('all')).length, PAYLOADS.length - wal.length, what)
      t.deepEqual(await payloads(evaq.wal), [...wal, ...PAYLOADS.filter(p => !wal.includes(p))], what)
      t.like(await evaq.stats(), { wal: { count: PAYLOADS.length }, dlq: { count: 0 } }, what)
    } finally {
      await evaq.close()
    }
    t.is(await rawKeys(dir, 'dlq-retry'), 0, `${what}: no retry state left`)
    t.is(await rawKeys(dir, 'dlq-due'), 0, `${what}: no schedule entry left`)
  }
})

test('requeueDeadLetters: new WAL IDs in DLQ order, one write per page, unknown IDs move nothing', async t => {
  const dir = await tmpDir(t, 'evaq-redrive-')
  const evaq = await Evaq.open(dir, { ...OPTIONS, maxBatchCount: 2 })
  t.teardown(() => evaq.close())
  const ids: number[] = []
  for (const p of PAYLOADS) ids.push(await evaq.pushRetryItem(p))

  const err = await t.throwsAsync<EvaqError>(evaq.requeueDeadLetters([ids[0]!, 999]))
  t.true(isEvaqError(err, 'EVAQ_NOT_FOUND'))
  t.deepEqual(err?.ids, [999])
  t.deepEqual(await payloads(evaq.dlq), PAYLOADS)
  t.is((await evaq.stats()).wal.count, 0)
  for (const bad of [7, ['x'], [-1]]) {
    await t.throwsAsync(evaq.requeueDeadLetters(bad as never), { code: 'EVAQ_INVALID_ARGUMENT' }, JSON.stringify(bad))
  }

  const flushes: Array<{ log: string, records: number }> = []
  evaq.on('flush', (e: { log: string, records: number }) => flushes.push({ log: e.log, records: e.records }))
  const walIds = await evaq.requeueDeadLetters([ids[4]!, ids[1]!, ids[3]!, ids[1]!])
  t.deepEqual((await evaq.wal.read({ maxBytes: Infinity, maxCount: Infinity })).map(r => [r.id, r.payload.toString()]),
    walIds.map((id, i) => [id, ['p1', 'p3', 'p4'][i]]))
  t.deepEqual(flushes, [{ log: 'wal', records: 2 }, { log: 'wal', records: 1 }], 'one write per page of maxBatchCount records')
  t.deepEqual(await payloads(evaq.dlq), ['p0', 'p2'])
  t.deepEqual(await evaq.requeueDeadLetters([]), [])
  t.is((await evaq.requeueDeadLetters('all')).length, 2)
  t.like(await evaq.stats(), { wal: { count: 5 }, dlq: { count: 0 } })
})

test('a record removed from the DLQ after a redrive read it is left out, the rest of the page moves', async t => {
  const dir = await tmpDir(t, 'evaq-redrive-race-')
  const evaq = await Evaq.open(dir, OPTIONS)
  t.teardown(() => evaq.close())
  for (const p of PAYLOADS) await evaq.pushRetryItem(p)
  const page = await evaq.dlq.read({ maxBytes: Infinity, maxCount: Infinity })
  // Removed by doneRetryItems between the read and the move; in the same tick, in one group.
  const [walIds, done] = await Promise.all([redrivePage(internals(evaq).wal, internals(evaq).dlq, page), evaq.doneRetryItems([page[1]!.id, page[3]!.id])])
  t.is(done, page[3]!.id)
  t.is(walIds.length, 3)
  t.deepEqual(await payloads(evaq.wal), ['p0', 'p2', 'p4'])
  t.deepEqual(await payloads(evaq.dlq), [])
  t.like(await evaq.stats(), { wal: { count: 3 }, dlq: { count: 0 } })
  // A page already moved: nothing is moved again.
  t.deepEqual(await redrivePage(internals(evaq).wal, internals(evaq).dlq, page), [])
  // Two redrives at once: each record once.
  for (const p of PAYLOADS) await evaq.pushRetryItem(p)
  const [a, b] = await Promise.all([evaq.requeueDeadLetters('all'), evaq.requeueDeadLetters('all')])
  t.is(a.length + b.length, 5)
  t.like(await evaq.stats(), { wal: { count: 8 }, dlq: { count: 0 } })
})

test('a redrive while a retry daemon delivers the record: it ends in the WAL once, and the DLQ keeps nothing of it', async t => {
  for (const outcome of ['succeeds', 'fails'] as const) {
    const dir = await tmpDir(t, 'evaq-redrive-daemon-')
    const evaq = await Evaq.open(dir, OPTIONS)
    const id = await evaq.pushRetryItem('poison')
    let release!: () => void
    let started!: () => void
    const running = new Promise<void>(resolve => { started = resolve })
    const gate = new Promise<void>(resolve => { release = resolve })
    const daemon = evaq.retry(async () => {
      started()
      await gate
      if (outcome === 'fails') throw new Error('down')
    }, { pollIntervalMs: 3_600_000 })
    await running
    t.is((await evaq.requeueDeadLetters([id])).length, 1, outcome)
    release()
    await daemon.stop()
    t.deepEqual(await payloads(evaq.wal), ['poison'], outcome)
    t.deepEqual(await payloads(evaq.dlq), [], outcome)
    t.deepEqual(await payloads(evaq.parked), [], outcome)
    t.like(await evaq.stats(), { wal: { count: 1 }, dlq: { count: 0 }, parked: { count: 0 } }, outcome)
    await evaq.close()
    const again = await Evaq.open(dir, OPTIONS)
    try {
      t.deepEqual(await payloads(again.dlq), [], outcome)
      t.like(await again.stats(), { wal: { count: 1 }, dlq: { count: 0 } }, outcome)
    } finally {
      await again.close()
    }
  }
})
