/**
 * Disk full (issue 4, part 3), on a small tmpfs and on a small ext4 image (`mkfs.ext4 -m 0`).
 *
 * (a) Filling through the API with a `minFreeDiskBytes` reserve and `onFull: 'reject'`: pushes
 *     get EVAQ_AT_CAPACITY before the disk runs out (never EVAQ_IO, never degraded), and
 *     acknowledgements and removals still work afterwards.
 * (b) Without a reserve, while another file eats the space: the push that meets ENOSPC fails with
 *     EVAQ_IO, the queue goes `degraded` (event), refuses writes with EVAQ_IO, keeps serving reads,
 *     and once the file is deleted recovers by itself (`recovered` event); pushes then work again
 *     and every acknowledged record is intact, also after close and reopen.
 */
import test, { type ExecutionContext } from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq, isEvaqError, type EvaqError, type EvaqOptions, type Log, type QueueRecord } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'
import { fillWithFile, loopUnavailable, mountsUnavailable, Mounts } from './fixtures/disk-images.js'
import { report } from './report.js'
import { skipUnlessCi } from '../helpers/prerequisites.js'

const MiB = 1024 * 1024
/** Upper bound on any wait for an event (recovery backs off to 5 s between attempts). */
const EVENT_WAIT_MS = 30_000

function sha (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

async function readAll (log: Log): Promise<QueueRecord[]> {
  const out: QueueRecord[] = []
  for (let from = 0; ;) {
    const page = await log.read({ from, maxBytes: 1024 * 1024, maxCount: 1000 })
    if (page.length === 0) return out
    for (const r of page) out.push(r)
    from = page[page.length - 1]!.id + 1
  }
}

/** Resolve with the first of `events` emitted by `q`; reject after `ms`. */
async function nextEvent (q: Evaq, events: ReadonlyArray<'recovered' | 'error' | 'degraded'>, ms: number, what: string): Promise<string> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), ms)
  try {
    return await Promise.race(events.map(e => once(q, e, { signal: controller.signal }).then(() => e)))
  } catch (err) {
    if (controller.signal.aborted) throw new Error(`No ${events.join(' or ')} event within ${ms} ms: ${what}`)
    throw err
  } finally {
    clearTimeout(timer)
    controller.abort()
  }
}

/**
 * The queue's records against the model: every record of `live` present byte for byte; records
 * of `optional` (acknowledged by the subscriber, so cleanup may have deleted their segment)
 * present or not; `maybe` are digests of pushes that failed with EVAQ_IO and may have been
 * stored all the same (at-least-once), each at most once. Anything else is a problem.
 */
function compare (
  records: readonly QueueRecord[],
  live: ReadonlyMap<number, string>,
  optional: ReadonlyMap<number, string>,
  maybe: readonly string[] = []
): { problems: string[], lost: number } {
  const problems: string[] = []
  let lost = 0
  const seen = new Set<number>()
  const unclaimed = [...maybe]
  for (const r of records) {
    seen.add(r.id)
    const want = live.get(r.id) ?? optional.get(r.id)
    const got = sha(r.payload)
    if (want === undefined) {
      const i = unclaimed.indexOf(got)
      if (i >= 0) unclaimed.splice(i, 1)
      else problems.push(`ID ${r.id} was never acknowledged`)
    } else if (want !== got) {
      problems.push(`ID ${r.id} has a different payload`)
      if (live.has(r.id)) lost++
    }
  }
  for (const id of live.keys()) {
    if (!seen.has(id)) { problems.push(`acknowledged ID ${id} is missing`); lost++ }
  }
  return { problems, lost }
}

/** Move what the subscriber acknowledged from `live` to `optional`: cleanup may delete it. */
function settleAcked (live: Map<number, string>, optional: Map<number, string>, floor: number): void {
  for (const [id, digest] of live) {
    if (id >= floor) continue
    live.delete(id)
    optional.set(id, digest)
  }
}

interface Filesystem {
  readonly name: string
  readonly unavailable: string | undefined
  /** Mount a fresh, empty filesystem; returns the mountpoint. */
  mount (t: ExecutionContext): Promise<string>
}

const FILESYSTEMS: Filesystem[] = [
  {
    name: 'tmpfs 16 MiB',
    unavailable: mountsUnavailable(),
    async mount (t) {
      const base = await tmpDir(t, 'evaq-disk-full-')
      const m = await new Mounts(t).mountTmpfs(join(base, 'mnt'), '16m')
      return m.mountpoint
    },
  },
  {
    name: 'ext4 32 MiB',
    unavailable: loopUnavailable(),
    async mount (t) {
      const base = await tmpDir(t, 'evaq-disk-full-')
      const mounts = new Mounts(t)
      const image = join(base, 'ext4.img')
      await mounts.makeExt4(image, 32 * MiB, ['-m', '0'])
      const m = await mounts.mountImage(image, join(base, 'mnt'))
      return m.mountpoint
    },
  },
]

/**
 * The reserve of scenario (a). Besides the records, LevelDB needs room of its own: while it
 * flushes a memtable the new table and the log it replaces are both on disk, opening a database
 * turns the log it finds into a table the same way, and a compaction writes its output before it
 * deletes its inputs (every flushed table spans several sublevels, so a level-0 compaction
 * rewrites most of level 1).
 * - tmpfs: the plain 4 MiB reserve with the default 16 MiB memtable. The disk is smaller than the
 *   memtable, so while the queue runs LevelDB only appends to its log; but reopening the full
 *   queue needs as much room again as that log, more than the reserve. (Known defect: the budget
 *   does not count this room, so the reopen at the end of this scenario fails with EVAQ_IO.)
 * - ext4: a 1 MiB memtable makes LevelDB flush and compact while the disk fills, and the reserve
 *   is sized to cover it (with a 4 MiB reserve and the default memtable, the memtable flush meets
 *   ENOSPC before any push is refused).
 */
const RESERVES: Record<string, EvaqOptions> = {
  'tmpfs 16 MiB': { minFreeDiskBytes: 8 * MiB, writeBufferSize: 1 * MiB },
  'ext4 32 MiB': { minFreeDiskBytes: 16 * MiB, writeBufferSize: 1 * MiB },
}

let acknowledged = 0
let lostTotal = 0
let scenarios = 0

for (const fs of FILESYSTEMS) {
  const skip = skipUnlessCi(`test/reliability/disk-full.test.ts (${fs.name})`, fs.unavailable)
  const maybe = skip === undefined ? test.serial : test.skip
  const suffix = skip === undefined ? '' : ` (skipped: ${skip})`

  maybe(`${fs.name}: with a minFreeDiskBytes reserve, pushes get EVAQ_AT_CAPACITY before the disk is full; acks and removals still work${suffix}`, async t => {
    const dir = join(await fs.mount(t), 'q')
    const options: EvaqOptions = { ...RESERVES[fs.name], onFull: 'reject' }
    let q = await Evaq.open(dir, options)
    t.teardown(() => q.close())
    const degraded: EvaqError[] = []
    const full: string[] = []
    q.on('degraded', err => degraded.push(err))
    q.on('full', e => full.push(e.reason))
    q.on('error', () => {})
    const sub = await q.wal.subscribe('reader')

    // Fill: 4 concurrent producers of incompressible payloads (1 B to 64 KiB) until each is refused.
    const live = new Map<number, string>()
    const failures = new Map<string, number>()
    let pushes = 0
    await Promise.all(Array.from({ length: 4 }, async () => {
      // Far more than the disk holds: a budget that never refuses fails the test instead of looping.
      while (pushes++ < 20_000) {
        const payload = randomBytes(1 + Math.floor(Math.random() * 64 * 1024))
        try {
          live.set(await q.pushWal(payload), sha(payload))
        } catch (err) {
          const code = isEvaqError(err) ? err.code : String(err)
          failures.set(code, (failures.get(code) ?? 0) + 1)
          return
        }
      }
    }))
    t.log(`${live.size} pushes acknowledged before the reserve was reached; refusals: ${JSON.stringify(Object.fromEntries(failures))}`)
    t.deepEqual([...failures.keys()], ['EVAQ_AT_CAPACITY'], 'every refused push got EVAQ_AT_CAPACITY (EVAQ_IO would mean the disk ran full first)')
    t.deepEqual(degraded.map(e => e.code), [], 'the queue never degraded')
    t.is(q.status, 'open')
    t.true(full.includes('minFreeDiskBytes'), 'a full event named the minFreeDiskBytes bound')
    t.true(live.size > 0)
    // Small pushes fit a while longer, then they are refused too.
    let refused: string | undefined
    for (let i = 0; i < 20_000 && refused === undefined; i++) {
      const payload = randomBytes(1024)
      try {
        live.set(await q.pushWal(payload), sha(payload))
      } catch (err) {
        refused = isEvaqError(err) ? err.code : String(err)
      }
    }
    t.is(refused, 'EVAQ_AT_CAPACITY', 'small pushes are refused with EVAQ_AT_CAPACITY too, once the reserve is reached')
    t.deepEqual(degraded.map(e => e.code), [], 'the queue never degraded')

    // Acknowledgements and removals still fit in the reserve.
    const batch = await sub.next({ maxCount: 50 })
    t.truthy(batch)
    await batch!.ack()
    t.true(sub.floor > batch!.records.at(-1)!.id, 'the acknowledgement was taken')
    const optional = new Map<number, string>()
    settleAcked(live, optional, sub.floor)
    const victims = [...live.keys()].filter((_, i) => i % 3 === 0)
    await q.removeWal(victims)
    for (const id of victims) live.delete(id)
    t.deepEqual(degraded.map(e => e.code), [], 'acks and removals did not degrade the queue')

    let checked = compare(await readAll(q.wal), live, optional)
    t.deepEqual(checked.problems.slice(0, 20), [], 'every acknowledged record is intact')
    await q.close()
    // A process restart: a queue filled up to its reserve must open again. (LevelDB turns the
    // log it finds into a table while it opens, which takes room on the disk.)
    try {
      q = await Evaq.open(dir, options)
    } catch (err) {
      t.fail(`the queue filled up to its reserve cannot be reopened: ${isEvaqError(err) ? err.code : ''} ${(err as Error).message}`)
      return
    }
    checked = compare(await readAll(q.wal), live, optional)
    t.deepEqual(checked.problems.slice(0, 20), [], 'every acknowledged record is intact after reopening')
    const resumed = await q.wal.subscribe('reader')
    t.is(resumed.floor, sub.floor, 'the acknowledgement survived the reopen')
    acknowledged += live.size
    lostTotal += checked.lost
    scenarios++
  })

  maybe(`${fs.name}: without a reserve, ENOSPC gives EVAQ_IO and status degraded, reads go on, and evaq recovers once space is freed${suffix}`, async t => {
    const mountpoint = await fs.mount(t)
    const dir = join(mountpoint, 'q')
    const filler = join(mountpoint, 'filler')
    const options: EvaqOptions = { minFreeDiskBytes: 0 }
    let q = await Evaq.open(dir, options)
    t.teardown(() => q.close())
    const degraded: EvaqError[] = []
    let recovered = 0
    q.on('degraded', err => degraded.push(err))
    q.on('recovered', () => recovered++)
    // Failed recovery attempts are reported as 'error' events.
    q.on('error', () => {})
    const sub = await q.wal.subscribe('reader')

    const live = new Map<number, string>()
    for (let i = 0; i < 300; i++) {
      const payload = randomBytes(1 + Math.floor(Math.random() * 4000))
      live.set(await q.pushWal(payload), sha(payload))
    }
    const first = await sub.next({ maxCount: 100 })
    await first!.ack()
    const floor = sub.floor
    const optional = new Map<number, string>()
    settleAcked(live, optional, floor)

    // Another file eats the space; pushes go on until one meets ENOSPC.
    const filled = await fillWithFile(filler)
    t.log(`the filler took ${filled} bytes`)
    const maybeStored: string[] = []
    let failure: unknown
    for (let i = 0; i < 2000 && failure === undefined; i++) {
      const payload = randomBytes(64 * 1024)
      try {
        live.set(await q.pushWal(payload), sha(payload))
      } catch (err) {
        failure = err
        maybeStored.push(sha(payload))
      }
    }
    t.true(isEvaqError(failure, 'EVAQ_IO'),
      `the push that met the full disk failed with EVAQ_IO, got ${String((failure as { code?: unknown })?.code ?? failure)}`)
    t.is(q.status, 'degraded')
    t.deepEqual(degraded.map(e => e.code), ['EVAQ_IO'], 'one degraded event, with the EVAQ_IO error')

    // Writes fail fast; reads go on.
    const write = await q.pushWal('x').then(() => 'stored', (err: unknown) => isEvaqError(err) ? err.code : String(err))
    t.is(write, 'EVAQ_IO', 'a push while degraded fails with EVAQ_IO')
    const removal = await q.removeWal([...live.keys()][0]!).then(() => 'removed', (err: unknown) => isEvaqError(err) ? err.code : String(err))
    t.is(removal, 'EVAQ_IO', 'a removal while degraded fails with EVAQ_IO')
    const readNow = await readAll(q.wal).then(records => compare(records, live, optional, maybeStored).problems,
      (err: unknown) => [`read failed: ${isEvaqError(err) ? err.code : String(err)}`])
    t.deepEqual(readNow.slice(0, 20), [], 'reads while degraded return every acknowledged record')

    // While the disk is still full evaq does not close the database to reopen it (it could not
    // open again): reads keep working, however long the disk stays full.
    t.is(q.status, 'degraded')
    const readAfterAttempt = await readAll(q.wal).then(records => compare(records, live, optional, maybeStored).problems,
      (err: unknown) => [`read failed: ${isEvaqError(err) ? err.code : String(err)}`])
    t.deepEqual(readAfterAttempt.slice(0, 20), [], 'reads after a failed recovery attempt return every acknowledged record')
    const delivered = await sub.next({ maxCount: 10 }).then(b => b?.records.map(r => r.id) ?? [],
      (err: unknown) => `next failed: ${isEvaqError(err) ? err.code : String(err)}`)
    t.deepEqual(delivered, [...live.keys()].filter(id => id >= floor).slice(0, 10), 'the subscriber still gets records while degraded')

    // Free the space: evaq recovers by itself.
    const whenRecovered = nextEvent(q, ['recovered'], EVENT_WAIT_MS, 'evaq did not recover after the space was freed')
    await rm(filler)
    await whenRecovered
    t.is(q.status, 'open')
    t.is(recovered, 1)

    // Writes work again, and nothing acknowledged was lost.
    for (let i = 0; i < 50; i++) {
      const payload = randomBytes(1 + Math.floor(Math.random() * 8000))
      live.set(await q.pushWal(payload), sha(payload))
    }
    let checked = compare(await readAll(q.wal), live, optional, maybeStored)
    t.deepEqual(checked.problems.slice(0, 20), [], 'after recovery every acknowledged record is intact')
    const next = await sub.next({ maxCount: 1 })
    t.true(next !== undefined && next.records[0]!.id >= floor, 'the subscriber resumes after what it acknowledged')

    await q.close()
    q = await Evaq.open(dir, options)
    checked = compare(await readAll(q.wal), live, optional, maybeStored)
    t.deepEqual(checked.problems.slice(0, 20), [], 'after close and reopen every acknowledged record is intact')
    t.is((await q.wal.subscribe('reader')).floor, floor, 'the subscriber\'s acknowledgement survived')
    acknowledged += live.size
    lostTotal += checked.lost
    scenarios++
  })
}

test.after(async () => {
  if (scenarios === 0) return
  await report({
    part: 'disk-full',
    failure: 'disk full (tmpfs 16 MiB, ext4 32 MiB -m 0)',
    guarantee: 'EVAQ_AT_CAPACITY before ENOSPC with a reserve; otherwise EVAQ_IO, degraded, reads go on, ' +
      'recovery once space is freed; nothing acknowledged lost',
    test: 'test/reliability/disk-full.test.ts',
    cycles: scenarios,
    acknowledged,
    lost: lostTotal,
  })
})
