/**
 * /readyz follows the queue's status through a real failure: a full disk (a 16 MiB tmpfs filled by
 * another file) degrades the queue; the service answers 503 EVAQ_IO to writes and to /readyz,
 * still serves reads and /healthz, and is ready again once space is freed and the queue recovered.
 * Needs root for the mount (as the reliability battery does); CI runs as root.
 */
import test from 'ava'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { canMountOrFail, fillWithFile, Mounts } from '../reliability/fixtures/disk-images.js'
import { startServer, type Reply } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

test('a full disk: writes and /readyz answer 503 EVAQ_IO while degraded, reads and /healthz go on; ready again after recovery', async t => {
  if (!canMountOrFail(t)) return
  const base = await tmpDir(t, 'evaq-http-full-')
  const mountpoint = (await new Mounts(t).mountTmpfs(join(base, 'mnt'), '16m')).mountpoint
  const s = await startServer(t, { dir: join(mountpoint, 'q'), evaq: { minFreeDiskBytes: 0 } })
  const push = (body: Buffer | string): Promise<Reply> =>
    s.call('POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body })
  const acknowledged: number[] = []
  for (let i = 0; i < 20; i++) acknowledged.push(...(await push(randomBytes(1000))).json.ids)

  const degraded = once(s.evaq, 'degraded')
  await fillWithFile(join(mountpoint, 'filler'))
  let failed: Reply | undefined
  for (let i = 0; i < 2000 && failed === undefined; i++) {
    const r = await push(randomBytes(64 * 1024))
    if (r.status === 201) acknowledged.push(...r.json.ids)
    else failed = r
  }
  await degraded
  t.is(failed?.status, 503)
  t.is(failed?.json.code, 'EVAQ_IO')
  t.is(s.evaq.status, 'degraded')

  const ready = await s.call('GET', '/readyz')
  t.deepEqual([ready.status, ready.json.code, ready.json.status], [503, 'EVAQ_IO', 'degraded'])
  t.is((await s.call('GET', '/healthz')).status, 200)
  const write = await push('while degraded')
  t.deepEqual([write.status, write.json.code], [503, 'EVAQ_IO'])
  const read = await s.call('GET', '/v1/logs/wal/records?maxCount=10000&maxBytes=67108864')
  t.is(read.status, 200)
  t.deepEqual(read.json.records.map((r: { id: number }) => r.id).filter((id: number) => acknowledged.includes(id)), acknowledged,
    'reads return every acknowledged record')
  const metrics = (await s.call('GET', '/metrics')).text
  t.regex(metrics, /^evaq_status\{status="degraded"\} 1$/m)
  t.regex(metrics, /^evaq_degraded_total 1$/m)

  const recovered = once(s.evaq, 'recovered')
  await rm(join(mountpoint, 'filler'))
  await recovered
  t.deepEqual((await s.call('GET', '/readyz')).json, { status: 'open' })
  t.is((await push('after recovery')).status, 201)
})
