/**
 * Backups across a failed write: a full disk (a 16 MiB tmpfs filled by another file) degrades the
 * queue. A batch whose write failed may still be in LevelDB's log and come back when the queue
 * reopens, so a backup's high-water never passes the point of the first failure, and a chain with
 * links on both sides of the failure restores to what a full backup of the same moment restores.
 * Needs root for the mount (as the reliability battery does); CI runs as root.
 */
import test from 'ava'
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { BackupManifest } from '../../src/backup/manifest.js'
import { Evaq, isEvaqError } from '../../src/index.js'
import { readStore } from '../../src/store/snapshot.js'
import { canMountOrFail, fillWithFile, Mounts } from '../reliability/fixtures/disk-images.js'
import { tmpDir } from '../helpers/tmp.js'

async function save (q: Evaq, file: string, since?: BackupManifest): Promise<BackupManifest> {
  const stream = await q.backup(since === undefined ? {} : { since })
  await pipeline(Readable.from(stream), createWriteStream(file))
  return stream.manifest
}

async function entries (dir: string): Promise<string[]> {
  const out: string[] = []
  for await (const page of readStore(dir)) for (const [k, v] of page) out.push(`${k.toString('hex')}=${v.toString('hex')}`)
  return out
}

test('after a failed write, backups keep their high-water below it, and a chain across the failure restores exactly', async t => {
  if (!canMountOrFail(t)) return
  // The queue's recovery timer does not hold the process open: this does, until the test ends.
  const alive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(alive))
  const root = await tmpDir(t, 'evaq-backup-full-disk-')
  const mountpoint = (await new Mounts(t).mountTmpfs(join(root, 'mnt'), '16m')).mountpoint
  const q = await Evaq.open(join(mountpoint, 'q'), { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, maxPayloadBytes: 1024 * 1024 })
  t.teardown(() => q.close())
  const acknowledged = new Set<number>()
  for (let i = 0; i < 20; i++) acknowledged.add(await q.pushWal(randomBytes(1000)))
  const f = (name: string): string => join(root, `${name}.evaq`)
  const full = await save(q, f('full'))

  const degraded = once(q, 'degraded')
  await fillWithFile(join(mountpoint, 'filler'))
  // Concurrent pushes, so that batches are in flight when the first one fails.
  let failed = false
  for (let round = 0; round < 500 && !failed; round++) {
    await Promise.all(Array.from({ length: 8 }, async () => {
      try {
        acknowledged.add(await q.pushWal(randomBytes(16 * 1024)))
      } catch (err) {
        if (!isEvaqError(err, 'EVAQ_IO')) throw err
        failed = true
      }
    }))
  }
  await degraded
  t.is(q.status, 'degraded')
  const firstLost = Math.min(...Array.from({ length: q.wal.nextId - 1 }, (_, i) => i + 1).filter(id => !acknowledged.has(id)))
  t.true(Number.isFinite(firstLost), 'some push failed')

  // While degraded, and after the recovery: never above the first failed ID.
  const during = await save(q, f('during'), full)
  t.true(during.logs.wal!.highWater <= firstLost, `high-water ${during.logs.wal!.highWater} <= ${firstLost}`)
  const recovered = once(q, 'recovered')
  await rm(join(mountpoint, 'filler'))
  await recovered
  for (let i = 0; i < 5; i++) acknowledged.add(await q.pushWal(`after ${i}`))
  const after = await save(q, f('after'), during)
  t.true(after.logs.wal!.highWater <= firstLost)
  await save(q, f('same'))

  await Evaq.restore([f('full'), f('during'), f('after')], join(root, 'chain'), { verify: true })
  await Evaq.restore(f('same'), join(root, 'single'))
  t.deepEqual(await entries(join(root, 'chain')), await entries(join(root, 'single')))
  const r = await Evaq.open(join(root, 'chain'), { minFreeDiskBytes: 0 })
  t.teardown(() => r.close())
  const ids = new Set((await r.wal.read({ maxCount: 100_000, maxBytes: Infinity })).map(x => x.id))
  for (const id of acknowledged) t.true(ids.has(id), `acknowledged ID ${id} is restored`)
})
