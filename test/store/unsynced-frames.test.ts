import test from 'ava'
import { spawnSync } from 'node:child_process'
import { open } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { Evaq, type DropEvent } from '../../src/index.js'
import { allFrames } from '../helpers/segment-files.js'
import { tmpDir } from '../helpers/tmp.js'

/**
 * After a power cut, LevelDB may hold locators whose frames never reached the disk (a locator is
 * written without a sync after its frame, and under durability 'none' the frame is not synced
 * either). Here a crashed writer's frames are zeroed from some push on, as such a cut leaves them:
 * open takes those segments out as lost at the stop (reason 'unsynced'), not as damage. (A
 * clean close syncs the frames and records so: nothing is then checked.)
 */

const PUSH_AND_EXIT = fileURLToPath(new URL('../fixtures/push-and-exit.ts', import.meta.url))

/** Push in a child process that exits without closing the queue (a crash). */
function pushThenCrash (dir: string, options: object, pushes: Array<string | string[]>): void {
  const r = spawnSync(process.execPath, ['--import', 'tsx', PUSH_AND_EXIT, dir, JSON.stringify(options), JSON.stringify(pushes)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`push-and-exit failed (${r.status}): ${r.stderr}`)
}

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

const text = (i: number): string => `record ${i}`

/** Zero the frames of the WAL whose first ID is at or above `from`, as a power cut leaves them. */
async function loseFramesFrom (dir: string, from: number): Promise<number> {
  let n = 0
  for (const f of await allFrames(dir)) {
    if (f.firstId < from) continue
    const h = await open(f.path, 'r+')
    await h.write(Buffer.alloc(f.end - f.offset), 0, f.end - f.offset, f.offset)
    await h.close()
    n++
  }
  return n
}

async function readWal (q: Evaq): Promise<string[]> {
  return (await q.wal.read({ maxBytes: Infinity, maxCount: Infinity })).map(r => r.payload.toString())
}

test("under durability 'none', locators whose frames never reached the disk are taken out at open, named, and their IDs not issued again", async t => {
  const dir = await tmpDir(t, 'evaq-unsynced-')
  pushThenCrash(dir, { ...OPTIONS, durability: 'none' }, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(text))
  t.is(await loseFramesFrom(dir, 7), 4)
  let q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  const dropped: DropEvent[] = []
  q.on('dropped', e => dropped.push(e))
  const bytes = [7, 8, 9, 10].reduce((n, i) => n + Buffer.byteLength(text(i)), 0)
  const expected = [{ log: 'wal', firstId: 7, lastId: 10, records: 4, bytes, reason: 'unsynced' }]
  t.deepEqual(q.openReport.dropped, expected)
  t.deepEqual(q.openReport.corruption, [])
  t.deepEqual(await readWal(q), [1, 2, 3, 4, 5, 6].map(text), 'read without EVAQ_CORRUPTION')
  const stats = await q.wal.stats()
  t.like(stats, { count: 6, quarantined: 0, dropped: { records: 4, bytes }, lastId: 6 })
  t.true(stats.nextId > 10, 'IDs 7 to 10 are not issued again')
  t.true(await q.pushWal('after') > 10)
  await new Promise(resolve => setImmediate(resolve))
  t.deepEqual(dropped, expected, 'emitted once the caller has the queue')
  await q.close()
  q = await Evaq.open(dir, OPTIONS)
  t.deepEqual(q.openReport.dropped, [], 'taken out durably, once')
  t.deepEqual(await readWal(q), [1, 2, 3, 4, 5, 6].map(text).concat('after'))
})

test('a damaged frame below the synced bound is damage: EVAQ_CORRUPTION names it, nothing is dropped at open', async t => {
  const dir = await tmpDir(t, 'evaq-unsynced-')
  pushThenCrash(dir, OPTIONS, [1, 2, 3, 4, 5].map(text))
  // Under 'sync' every frame was synced before its locator was written: nothing is at risk.
  await loseFramesFrom(dir, 5)
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.dropped, [])
  const err = await t.throwsAsync(q.wal.read({ maxBytes: Infinity, maxCount: Infinity }), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual((err as { ids?: number[] }).ids, [5])
})

test('the frames of a pushMany joined to a lost one are taken out with it', async t => {
  const dir = await tmpDir(t, 'evaq-unsynced-')
  pushThenCrash(dir, { ...OPTIONS, durability: 'none', maxBatchCount: 2 }, [[text(1), text(2)], [3, 4, 5, 6, 7].map(text), text(8)])
  const frames = (await allFrames(dir)).map(f => f.firstId)
  t.deepEqual(frames, [1, 3, 5, 7, 8], 'the pushMany of five spans three frames')
  // Only the middle frame of the pushMany is lost: the whole push goes, the next one stays.
  const middle = (await allFrames(dir)).find(f => f.firstId === 5)!
  const h = await open(middle.path, 'r+')
  await h.write(Buffer.alloc(middle.end - middle.offset), 0, middle.end - middle.offset, middle.offset)
  await h.close()
  const q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.like(q.openReport.dropped, [{ firstId: 3, lastId: 7, records: 5, reason: 'unsynced' }])
  t.deepEqual(await readWal(q), [1, 2, 8].map(text))
})

test("a clean close under durability 'none' syncs the frames and says so: the next open checks none", async t => {
  const dir = await tmpDir(t, 'evaq-unsynced-')
  let q = await Evaq.open(dir, { ...OPTIONS, durability: 'none' })
  for (let i = 1; i <= 5; i++) await q.pushWal(text(i))
  await q.close()
  // Damage after a clean close is damage, not a lost write.
  await loseFramesFrom(dir, 5)
  q = await Evaq.open(dir, OPTIONS)
  t.teardown(() => q.close())
  t.deepEqual(q.openReport.dropped, [])
  const err = await t.throwsAsync(q.wal.read({ maxBytes: Infinity, maxCount: Infinity }), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual((err as { ids?: number[] }).ids, [5])
})
