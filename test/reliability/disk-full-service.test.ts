/**
 * Disk full under the service and the disk budget's waiting pushes, on a real 16 MiB tmpfs whose
 * free space another file eats down to just above `minFreeDiskBytes`.
 *
 * (a) `serve()` with `onFull: 'backpressure'`: eight concurrent HTTP pushes of 64 KiB that do not
 *     fit each get an answer within the push timeout, 503 EVAQ_AT_CAPACITY with Retry-After, and
 *     store nothing; /readyz answers 503 `full` while the budget refuses them. Once the other file
 *     is deleted the same pushers (retrying after Retry-After) succeed and /readyz is 200 again.
 * (b) A push waiting in the library wakes once space is freed, at the next maintenance round.
 * (c) Under `onFull: 'reject'`, the budget stays full while the refused push still would not fit
 *     (room for a few bytes is not room for it), and drains once it would.
 */
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { rm, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq, isEvaqError, type EvaqOptions } from '../../src/index.js'
import { serve } from '../../src/server/serve.js'
import { tmpDir } from '../helpers/tmp.js'
import { Mounts, mountsUnavailable } from './fixtures/disk-images.js'
import { report } from './report.js'
import { skipUnlessCi } from '../helpers/prerequisites.js'

const KiB = 1024
const MiB = 1024 * KiB
const MIN_FREE = 8 * MiB
/** The budget: an 8 MiB reserve on the 16 MiB tmpfs (a 1 MiB memtable lets it be that small). */
const BUDGET: EvaqOptions = { minFreeDiskBytes: MIN_FREE, writeBufferSize: 1 * MiB }
/** Generous bounds: answers must come, but a slow machine must not fail the test. */
const ANSWER_MS = 20_000

const unavailable = skipUnlessCi('test/reliability/disk-full-service.test.ts', mountsUnavailable())
const maybe = unavailable === undefined ? test.serial : test.skip
const suffix = unavailable === undefined ? '' : ` (skipped: ${unavailable})`

async function tmpfs (t: ExecutionContext): Promise<string> {
  const base = await tmpDir(t, 'evaq-full-service-')
  return (await new Mounts(t).mountTmpfs(join(base, 'mnt'), '16m')).mountpoint
}

/** Write a file that leaves `slack` bytes free above the reserve on `mountpoint`'s filesystem. */
async function leaveFree (mountpoint: string, slack: number): Promise<string> {
  const filler = join(mountpoint, 'filler')
  const s = await statfs(mountpoint)
  await writeFile(filler, Buffer.alloc(s.bavail * s.bsize - MIN_FREE - slack, 0x5a))
  return filler
}

interface Answer { status: number, code: string | undefined, retryAfter: string | null, ids: number[] | undefined, ms: number }

async function push (url: string, payload: Buffer): Promise<Answer> {
  const started = performance.now()
  const r = await fetch(`${url}/v1/logs/wal/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: payload,
    signal: AbortSignal.timeout(ANSWER_MS),
  })
  const body = await r.json() as { code?: string, ids?: number[] }
  return { status: r.status, code: body.code, retryAfter: r.headers.get('retry-after'), ids: body.ids, ms: performance.now() - started }
}

async function ready (url: string): Promise<{ status: number, body: { status?: string, code?: string }, retryAfter: string | null }> {
  const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(ANSWER_MS) })
  return { status: r.status, body: await r.json() as { status?: string, code?: string }, retryAfter: r.headers.get('retry-after') }
}

maybe('service: pushes that wait for space are answered 503 EVAQ_AT_CAPACITY with Retry-After within the push timeout, ' +
  `/readyz says full; once space is freed the same pushers succeed${suffix}`, async t => {
  const mountpoint = await tmpfs(t)
  const pushTimeoutMs = 1000
  const service = await serve({
    dir: join(mountpoint, 'q'),
    port: 0,
    logLevel: 'silent',
    pushTimeoutMs,
    evaq: { ...BUDGET, onFull: 'backpressure', maintenanceIntervalMs: 100 },
  })
  t.teardown(() => service.close())
  const filler = await leaveFree(mountpoint, 16 * KiB)
  // A maintenance round measures the filesystem with the other file on it.
  await service.evaq.maintain()
  t.is((await ready(service.url)).status, 200, 'ready before any push was refused')

  const payloads = Array.from({ length: 8 }, () => randomBytes(64 * KiB))
  const refused = await Promise.all(payloads.map(p => push(service.url, p)))
  for (const [i, a] of refused.entries()) {
    t.is(a.status, 503, `pusher ${i} got 503`)
    t.is(a.code, 'EVAQ_AT_CAPACITY', `pusher ${i}`)
    t.regex(a.retryAfter ?? '', /^[1-9][0-9]*$/, `pusher ${i} got a Retry-After in seconds`)
  }
  t.log(`refused after ${refused.map(a => Math.round(a.ms)).join(', ')} ms (push timeout ${pushTimeoutMs} ms)`)
  t.is((await service.evaq.wal.stats()).count, 0, 'a push that timed out stored nothing')
  const full = await ready(service.url)
  t.is(full.status, 503, '/readyz answers 503 while the budget refuses pushes')
  t.is(full.body.status, 'full')
  t.is(full.body.code, 'EVAQ_AT_CAPACITY')
  t.regex(full.retryAfter ?? '', /^[1-9][0-9]*$/)
  t.true((await service.evaq.stats()).disk.full)

  // Free the space while the pushers push again (retrying after Retry-After, as a client should).
  const deadline = performance.now() + ANSWER_MS
  const again = payloads.map(async p => {
    for (;;) {
      const a = await push(service.url, p)
      if (a.status !== 503 || a.code !== 'EVAQ_AT_CAPACITY' || performance.now() > deadline) return a
      await new Promise(resolve => setTimeout(resolve, Number(a.retryAfter) * 1000))
    }
  })
  await rm(filler)
  const stored = await Promise.all(again)
  t.deepEqual(stored.map(a => a.status), payloads.map(() => 201), 'every pusher succeeded once space was freed')
  const ids = stored.flatMap(a => a.ids ?? [])
  const records = await service.evaq.wal.read({ maxBytes: Infinity, maxCount: Infinity })
  t.deepEqual(records.map(r => r.id).sort((a, b) => a - b), [...ids].sort((a, b) => a - b), 'the WAL holds exactly the pushes answered 201')
  for (const r of records) t.true(payloads[ids.indexOf(r.id)]!.equals(r.payload))
  let readyAgain = await ready(service.url)
  while (readyAgain.status !== 200 && performance.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    readyAgain = await ready(service.url)
  }
  t.deepEqual(readyAgain, { status: 200, body: { status: 'open' }, retryAfter: null }, '/readyz is 200 again')
  const found = new Set(records.map(r => r.id))
  await report({
    part: 'disk-full-service',
    failure: 'disk full under the service (tmpfs 16 MiB, 8 HTTP pushers of 64 KiB)',
    guarantee: 'a push waiting for room is answered 503 EVAQ_AT_CAPACITY with Retry-After within the push timeout and stores nothing; ' +
      '/readyz says full; once space is freed the same pushers succeed',
    test: 'test/reliability/disk-full-service.test.ts',
    cycles: 1,
    acknowledged: ids.length,
    lost: ids.filter(id => !found.has(id)).length,
  })
})

maybe(`library: a push waiting for disk space wakes at the next maintenance round once space is freed${suffix}`, async t => {
  const mountpoint = await tmpfs(t)
  // The maintenance timer never fires during the test: the test runs the rounds.
  const q = await Evaq.open(join(mountpoint, 'q'), { ...BUDGET, onFull: 'backpressure', maintenanceIntervalMs: 3_600_000 })
  t.teardown(() => q.close())
  const filler = await leaveFree(mountpoint, 16 * KiB)
  await q.maintain()
  const payload = randomBytes(64 * KiB)
  let settled: string | undefined
  const waiting = q.pushWal(payload).then(id => { settled = `stored ${id}`; return id })
  await q.maintain()
  t.is(settled, undefined, 'the push waits while there is no room')
  t.true((await q.stats()).disk.full)
  await rm(filler)
  await q.maintain()
  t.is(await waiting, 1, 'the waiting push was stored once space was freed')
  t.false((await q.stats()).disk.full)
  t.true((await q.wal.read({ maxBytes: Infinity }))[0]!.payload.equals(payload))
})

maybe(`library: under 'reject' the budget stays full while the refused push would still not fit, and drains once it would${suffix}`, async t => {
  const mountpoint = await tmpfs(t)
  const q = await Evaq.open(join(mountpoint, 'q'), { ...BUDGET, onFull: 'reject', maintenanceIntervalMs: 3_600_000 })
  t.teardown(() => q.close())
  let drains = 0
  q.on('drain', () => { drains++ })
  const filler = await leaveFree(mountpoint, 16 * KiB)
  await q.maintain()
  const refused = await q.pushWal(randomBytes(64 * KiB)).then(() => 'stored', (err: unknown) => isEvaqError(err) ? err.code : String(err))
  t.is(refused, 'EVAQ_AT_CAPACITY')
  await q.maintain()
  t.true((await q.stats()).disk.full, 'still full: 16 KiB free above the reserve is no room for the 64 KiB push')
  t.is(drains, 0)
  await rm(filler)
  await q.maintain()
  t.false((await q.stats()).disk.full, 'room again once the other file is gone')
  t.is(drains, 1)
  t.is(await q.pushWal(randomBytes(64 * KiB)), 1)
})
