/**
 * Moves between logs under SIGKILL, in real child processes (test/fixtures/move-worker.ts), killed
 * exactly before and after the one write of the move (crash points move:before, move:after) or of
 * a removal group (removal:after): after the reopen the record is in exactly one place, or, where
 * a removal met a move of the same record, in none (the removal wins).
 */
import test, { type ExecutionContext } from 'ava'
import { fileURLToPath } from 'node:url'
import { Evaq, isEvaqError, type QueueLog } from '../../src/index.js'
import type { Store } from '../../src/store/store.js'
import { rawKeys, runFixture } from '../helpers/child.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/move-worker.ts', import.meta.url))
const WATCHDOG_MS = 30_000
const OPTIONS = { minFreeDiskBytes: 0 } as const

/** Run the worker; it must kill itself at `point`, or with `point` 'none' finish its work. */
async function run (t: ExecutionContext, dir: string, mode: string, id: number, point: string): Promise<void> {
  const { signal, stdout, stderr } = await runFixture(FIXTURE, [dir, mode, String(id)], point, WATCHDOG_MS)
  if (point === 'none') {
    t.true(stdout.includes('D\n'), `${mode}: ${stderr}`)
    return
  }
  t.is(signal, 'SIGKILL', `${mode} at ${point}: ${stderr}`)
  t.false(stdout.includes('D\n'), `${mode} at ${point}: the work finished before the kill`)
}

async function where (evaq: Evaq, payload: string): Promise<{ wal: number, dlq: number, parked: number }> {
  const count = async (log: QueueLog): Promise<number> =>
    (await log.read({ maxBytes: Infinity, maxCount: Infinity })).filter(r => r.payload.toString() === payload).length
  return { wal: await count(evaq.wal), dlq: await count(evaq.dlq), parked: await count(evaq.parked) }
}

test('WAL to DLQ with moveWalToDlq: killed before its write the record is in the WAL, after it in the DLQ', async t => {
  for (const [point, expected] of [['move:before', { wal: 1, dlq: 0 }], ['move:after', { wal: 0, dlq: 1 }]] as const) {
    const dir = await tmpDir(t, 'evaq-move-wal-')
    const setup = await Evaq.open(dir, OPTIONS)
    await setup.pushWal('other')
    const id = await setup.pushWal('poison')
    await setup.close()
    await run(t, dir, 'wal', id, point)
    for (let reopen = 0; reopen < 2; reopen++) {
      const evaq = await Evaq.open(dir, OPTIONS)
      try {
        t.like(await where(evaq, 'poison'), expected, point)
        t.like(await evaq.stats(), { wal: { count: 1 + expected.wal }, dlq: { count: expected.dlq } }, point)
        if (expected.dlq === 1) t.like((await evaq.dlq.read())[0]?.retry, { source: { log: 'wal', id } }, point)
      } finally {
        await evaq.close()
      }
    }
  }
})

test('a subscriber\'s dead-letter move: killed before its write the record is still to be delivered and not in the DLQ, ' +
  'after it in the DLQ and acknowledged', async t => {
  for (const [point, inDlq] of [['move:before', false], ['move:after', true]] as const) {
    const dir = await tmpDir(t, 'evaq-move-sub-')
    const setup = await Evaq.open(dir, OPTIONS)
    const id = await setup.pushWal('poison')
    await setup.close()
    await run(t, dir, 'subscriber', id, point)
    const evaq = await Evaq.open(dir, OPTIONS)
    try {
      const dlq = (await evaq.dlq.read()).filter(r => r.payload.toString() === 'poison')
      t.is(dlq.length, inDlq ? 1 : 0, point)
      const sub = await evaq.wal.subscribe('s', { maxDeliveries: 100 })
      const batch = await sub.next({ waitMs: 0 })
      t.deepEqual(batch?.records.map(r => r.id) ?? [], inDlq ? [] : [id], `${point}: delivered again to the subscriber`)
      t.is((await evaq.stats()).dlq.count, dlq.length, point)
    } finally {
      await evaq.close()
    }
  }
})

test('a removal and a move of the same record, then a crash: the removal wins, the record is nowhere', async t => {
  // race: a park as this version moves (one write) and doneRetryItems; race-intent: a requeue left
  // half-way by an earlier version's three writes, its removal in one group with the user's.
  for (const [mode, point] of [['race', 'removal:after'], ['race', 'none'], ['race-intent', 'removal:after']] as const) {
    const dir = await tmpDir(t, 'evaq-move-race-')
    const setup = await Evaq.open(dir, OPTIONS)
    const id = mode === 'race' ? await setup.pushRetryItem('poison') : await internals(setup).parked.pushRecord('poison', { state: {} })
    await setup.close()
    await run(t, dir, mode, id, point)
    for (let reopen = 0; reopen < 2; reopen++) {
      const evaq = await Evaq.open(dir, OPTIONS)
      try {
        t.deepEqual(await where(evaq, 'poison'), { wal: 0, dlq: 0, parked: 0 }, `${mode} at ${point}`)
        t.like(await evaq.stats(), { dlq: { count: 0 }, parked: { count: 0 } }, `${mode} at ${point}`)
      } finally {
        await evaq.close()
      }
      t.is(await rawKeys(dir, 'retry-moves'), 0, `${mode} at ${point}: no intent left`)
    }
  }
})

test('in one removal group a removal wins over a move of the same record, even one queued first', async t => {
  const dir = await tmpDir(t, 'evaq-move-group-')
  const evaq = await Evaq.open(dir, OPTIONS)
  t.teardown(() => evaq.close())
  const id = await evaq.pushRetryItem('poison')
  const store = (evaq as unknown as { store: Store }).store
  // The batch of a push that would move the record (here it carries nothing else).
  const move = internals(evaq).dlq.removeCarried([id], { batch: store.db.batch(), delta: {} })
  const removal = evaq.doneRetryItems([id])
  t.is(await removal, id)
  t.true(isEvaqError(await t.throwsAsync(move), 'EVAQ_NOT_FOUND'))
  t.like(await evaq.stats(), { dlq: { count: 0 }, parked: { count: 0 } })
})
