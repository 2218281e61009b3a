/**
 * A property (fast-check): random operations on a queue (pushes, removals, acknowledgements, DLQ
 * records retried, parked, requeued and purged), with full and incremental backups at random
 * points. At every backup, the chain ending there restores to the queue as it was (through the
 * API), and to exactly the entries a full backup of the same moment restores.
 */
import test from 'ava'
import fc from 'fast-check'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { isDeepStrictEqual } from 'node:util'
import type { BackupManifest } from '../../src/backup/manifest.js'
import { Evaq, isEvaqError, type EvaqOptions } from '../../src/index.js'
import { readStore } from '../../src/store/snapshot.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'
import { internals } from '../helpers/internals.js'

const RUNS = Number(process.env.EVAQ_BACKUP_MODEL_RUNS ?? 60)

type Op =
  | { op: 'push', payloads: string[] }
  | { op: 'remove', picks: number[] }
  | { op: 'ack', count: number }
  | { op: 'dlq', payload: string }
  | { op: 'retry', outcome: 'ok' | 'fail' | 'park' }
  | { op: 'requeue', pick: number }
  | { op: 'purge', pick: number }
  | { op: 'backup', incremental: boolean }

const payload = fc.string({ maxLength: 40 })
const ops: fc.Arbitrary<Op[]> = fc.array(fc.oneof(
  { weight: 4, arbitrary: fc.array(payload, { minLength: 1, maxLength: 6 }).map(payloads => ({ op: 'push', payloads }) as Op) },
  { weight: 2, arbitrary: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }).map(picks => ({ op: 'remove', picks }) as Op) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }).map(count => ({ op: 'ack', count }) as Op) },
  { weight: 2, arbitrary: payload.map(p => ({ op: 'dlq', payload: p }) as Op) },
  { weight: 2, arbitrary: fc.constantFrom('ok', 'fail', 'park').map(outcome => ({ op: 'retry', outcome }) as Op) },
  { weight: 1, arbitrary: fc.nat().map(pick => ({ op: 'requeue', pick }) as Op) },
  { weight: 1, arbitrary: fc.nat().map(pick => ({ op: 'purge', pick }) as Op) },
  { weight: 2, arbitrary: fc.boolean().map(incremental => ({ op: 'backup', incremental }) as Op) }
), { minLength: 1, maxLength: 30 })

const config = fc.record({ maxBatchCount: fc.integer({ min: 1, max: 4 }), flushWorkers: fc.integer({ min: 1, max: 3 }) })
/** Whether a second subscriber holds every record (else acknowledged records leave the WAL, segments go whole). */
const idle = fc.boolean()

async function state (q: Evaq): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const name of ['wal', 'dlq', 'parked'] as const) {
    const records = (await readAll(q[name])).map(r => [r.id, r.payload.toString('base64'), r.pushedAt, r.error, (r as { retry?: unknown }).retry])
    const { subscribers, ...counters } = await q[name].stats()
    out[name] = { records, counters, subscribers: subscribers.map(s => [s.name, s.ackFloor]).sort() }
  }
  return out
}

async function entries (dir: string): Promise<string[]> {
  const out: string[] = []
  for await (const page of readStore(dir)) for (const [k, v] of page) out.push(`${k.toString('hex')}=${v.toString('hex')}`)
  return out
}

async function save (q: Evaq, file: string, since?: BackupManifest): Promise<BackupManifest> {
  const stream = await q.backup(since === undefined ? {} : { since })
  await pipeline(Readable.from(stream), createWriteStream(file))
  return stream.manifest
}

test('every chain of full and incremental backups restores to the queue of its moment, and to what a full backup of that moment restores', async t => {
  t.timeout(170_000)
  const root = await tmpDir(t, 'evaq-backup-model-')
  let n = 0
  const property = fc.asyncProperty(config, idle, ops, async (cfg, withIdle, list) => {
    const dir = await mkdtemp(join(root, 'run-'))
    let now = 1_800_000_000_000
    const options: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, durability: 'none', clock: { now: () => now }, ...cfg }
    const q = await Evaq.open(join(dir, 'q'), options)
    const sub = await q.wal.subscribe('reader')
    if (withIdle) await q.wal.subscribe('idle')
    /** Archive files of the current chain, and the states at each backup. */
    const chain: string[] = []
    const checks: Array<{ files: string[], full: string, expected: unknown }> = []
    let last: BackupManifest | undefined
    try {
      for (const o of list) {
        now += 1000
        switch (o.op) {
          case 'push': await q.pushWalMany(o.payloads); break
          case 'remove': {
            const live = (await readAll(q.wal)).map(r => r.id)
            if (live.length === 0) break
            // A record every subscriber acknowledged may still be read until cleanup deletes it,
            // and remove() already counts it as gone (EVAQ_NOT_FOUND, nothing removed).
            await q.removeWal([...new Set(o.picks.map(p => live[p % live.length]!))]).catch((err: unknown) => {
              if (!isEvaqError(err, 'EVAQ_NOT_FOUND')) throw err
            })
            break
          }
          case 'ack': {
            const batch = await sub.next({ maxCount: o.count })
            await batch?.ack()
            break
          }
          case 'dlq': await q.pushRetryItem(o.payload, { error: { code: 'E', message: 'down' } }); break
          case 'retry': {
            const daemon = q.retry(async () => {
              if (o.outcome === 'fail') throw new Error('again')
              if (o.outcome === 'park') throw Object.assign(new Error('never'), { retriable: false })
            }, { autoStart: false })
            await daemon.tick()
            await daemon.stop()
            break
          }
          case 'requeue':
          case 'purge': {
            const parked = (await readAll(q.parked)).map(r => r.id)
            if (parked.length === 0) break
            const id = parked[o.pick % parked.length]!
            if (o.op === 'requeue') await q.requeueParked([id])
            else await q.purgeParked([id])
            break
          }
          case 'backup': {
            // Cleanup after an ack runs in the background: let it finish, so that the chain and
            // the full backup below are taken of the same state (else one may see a segment the
            // other does not).
            for (const log of [internals(q).wal, internals(q).dlq, internals(q).parked]) await log.drain()
            n++
            const file = join(dir, `b${n}.evaq`)
            const incremental = o.incremental && last !== undefined
            if (!incremental) chain.length = 0
            last = await save(q, file, incremental ? last : undefined)
            chain.push(file)
            const full = join(dir, `f${n}.evaq`)
            await save(q, full)
            checks.push({ files: [...chain], full, expected: await state(q) })
            break
          }
        }
      }
    } finally {
      await q.close()
    }
    for (const [i, c] of checks.entries()) {
      const a = join(dir, `chain-${i}`)
      const b = join(dir, `full-${i}`)
      await Evaq.restore(c.files, a)
      await Evaq.restore(c.full, b)
      const ea = await entries(a)
      if (!isDeepStrictEqual(ea, await entries(b))) {
        throw new Error(`backup ${i}: the chain of ${c.files.length} restores other entries than a full backup of the same moment`)
      }
      const r = await Evaq.open(a, options)
      try {
        const got = await state(r)
        if (!isDeepStrictEqual(got, c.expected)) {
          throw new Error(`backup ${i}: the restored queue differs:\n${JSON.stringify(got)}\nexpected\n${JSON.stringify(c.expected)}`)
        }
      } finally {
        await r.close()
      }
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
  })
  const seed = process.env.EVAQ_BACKUP_MODEL_SEED === undefined ? undefined : Number(process.env.EVAQ_BACKUP_MODEL_SEED)
  const details = await fc.check(property, { numRuns: RUNS, interruptAfterTimeLimit: 150_000, ...(seed === undefined ? {} : { seed }) })
  t.log(`${details.numRuns} run(s), seed ${details.seed}`)
  if (details.failed) t.fail(`${fc.defaultReportMessage(details) ?? 'failed'}\n${String((details.errorInstance as Error)?.message ?? details.errorInstance)}`)
  else t.pass()
})
