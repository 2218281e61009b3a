/**
 * Backup and restore through the API: Evaq.backup (a LevelDB snapshot taken while the queue runs,
 * written as an archive) and Evaq.restore (a chain of archives into a new directory). The
 * restored directory is compared with the source entry by entry and through the queue's API.
 */
import test, { type ExecutionContext } from 'ava'
import { createWriteStream } from 'node:fs'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ArchiveCorruption } from '../../src/backup/archive-error.js'
import { ArchiveReader, readManifest, verifyArchive } from '../../src/backup/archive-reader.js'
import { writeArchive } from '../../src/backup/archive-writer.js'
import { ARCHIVE_MAGIC } from '../../src/backup/format.js'
import type { BackupManifest } from '../../src/backup/manifest.js'
import { Evaq, isEvaqError, type EvaqOptions } from '../../src/index.js'
import { ID_FILE, SYNC_KEY } from '../../src/schema.js'
import { placeOf, readStore } from '../../src/store/snapshot.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'
import { eventually } from '../helpers/wait.js'

const NOW = 1_800_000_000_000
const OPTIONS: EvaqOptions = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000, clock: { now: () => NOW } }

async function open (t: ExecutionContext, dir: string, options: EvaqOptions = OPTIONS): Promise<Evaq> {
  const q = await Evaq.open(dir, options)
  t.teardown(() => q.close())
  return q
}

/** Take a backup of `q` into `file`; resolves with its manifest. */
async function backupTo (q: Evaq, file: string, since?: BackupManifest): Promise<BackupManifest> {
  const stream = await q.backup(since === undefined ? {} : { since })
  await pipeline(Readable.from(stream), createWriteStream(file))
  return stream.manifest
}

/** Everything the API shows of a queue: records with retry state, counters, subscriber progress. */
async function state (q: Evaq): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const name of ['wal', 'dlq', 'parked'] as const) {
    const records = (await readAll(q[name])).map(r => ({
      id: r.id,
      payload: r.payload.toString('base64'),
      pushedAt: r.pushedAt,
      error: r.error,
      retry: (r as { retry?: unknown }).retry,
    }))
    const { subscribers, ...counters } = await q[name].stats()
    const subs = subscribers
      .map(s => ({ name: s.name, ackFloor: s.ackFloor, lagRecords: s.lagRecords, leaseMs: s.leaseMs, maxDeliveries: s.maxDeliveries }))
      .sort((a, b) => a.name < b.name ? -1 : 1)
    out[name] = { records, counters, subscribers: subs }
  }
  return out
}

/** Every raw entry of a closed directory, as hex key → hex value. */
async function entries (dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const page of readStore(dir)) for (const [k, v] of page) out.set(k.toString('hex'), v.toString('hex'))
  return out
}

async function idFile (dir: string): Promise<Record<string, { next: number }>> {
  return (JSON.parse(await readFile(join(dir, ID_FILE), 'utf8')) as { logs: Record<string, { next: number }> }).logs
}

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

/** A queue with something in every part: WAL records (one removed), DLQ with retry state, parked, a subscriber. */
async function populate (q: Evaq): Promise<void> {
  await q.pushWalMany(['w1', Buffer.from([0, 255, 10]), 'w3', 'w4'])
  await q.pushWal(Buffer.alloc(5000, 'x'))
  await q.removeWal(2)
  await q.pushRetryItem('poison', { error: { code: 'E_REFUSED', message: 'refused' } })
  const daemon = q.retry(() => { throw Object.assign(new Error('refused'), { retriable: false }) }, { autoStart: false })
  await daemon.tick()
  await daemon.stop()
  await q.pushRetryItem('d2', { error: { code: 'E_DOWN', message: 'down' }, attempts: 2 })
  const sub = await q.wal.subscribe('reader', { start: 'earliest' })
  const batch = await sub.next({ maxCount: 2 })
  await batch!.ack()
}

async function rejects (t: ExecutionContext, promise: Promise<unknown>, code: string, what: string): Promise<unknown> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  t.true(isEvaqError(err), `${what}: an EvaqError (got ${String(err)})`)
  t.is((err as { code?: string }).code, code, what)
  return err
}

// ---- a full backup ------------------------------------------------------------------------------

test('a full backup restores every log, removal, retry state, counter and subscriber, entry for entry', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const src = join(root, 'src')
  const q = await Evaq.open(src, OPTIONS)
  await populate(q)
  const file = join(root, 'full.evaq')
  const manifest = await backupTo(q, file)
  t.is(manifest.kind, 'full')
  t.deepEqual(manifest.logs.wal, { highWater: 6, nextId: 6 })
  await q.close()

  const restored = join(root, 'restored')
  const result = await Evaq.restore(file, restored, { verify: true })
  t.true(result.verified)
  t.deepEqual(result.nextIds, { wal: 6, dlq: 3, parked: 2 })

  // The same entries as the source; the source's close wrote nothing the snapshot lacked but its
  // `sync` key (a root key of no meaning, rewritten with fsync: the WAL's locators are written
  // without one, so close syncs LevelDB's log).
  const a = await entries(src)
  a.delete(SYNC_KEY.toString('hex'))
  const b = await entries(restored)
  t.deepEqual([...b.keys()].filter(k => !a.has(k)), [])
  t.deepEqual([...a.keys()].filter(k => !b.has(k)), [])
  for (const [k, v] of a) t.is(b.get(k), v, `entry ${k}`)

  const before = await open(t, src)
  const after = await open(t, restored)
  t.deepEqual(await state(after), await state(before))
  // IDs continue above the restored ones.
  t.is(await after.pushWal('next'), 6)
  t.is(await after.pushRetryItem('next', { error: 'e' }), 3)
})

test('a backup taken under concurrent pushes restores exactly its snapshot: what resolved before is there, what started after is not', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'), { ...OPTIONS, durability: 'none', flushWorkers: 4 })
  const sub = await q.wal.subscribe('reader')
  await q.pushWalMany(['a', 'b', 'c'])
  const first = await sub.next({ maxCount: 2 })
  await first!.ack()

  const pushed = new Map<number, string>()
  const resolvedBefore = new Set<number>()
  const startedAfter = new Set<number>()
  let phase: 'before' | 'during' | 'after' = 'before'
  const stop = new AbortController()
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop.signal.aborted; i++) {
      const payload = `w${w}-${i}-${'p'.repeat((i * 37 + w) % 300)}`
      const startedIn = phase
      const many = i % 3 === 0
      const ids = many ? await q.pushWalMany([payload, `${payload}+`]) : [await q.pushWal(payload)]
      ids.forEach((id, k) => pushed.set(id, k === 0 ? payload : `${payload}+`))
      if (phase === 'before') for (const id of ids) resolvedBefore.add(id)
      if (startedIn === 'after') for (const id of ids) startedAfter.add(id)
    }
  }
  const writers = Array.from({ length: 8 }, (_, w) => writer(w))
  await eventually(() => pushed.size >= 2000)
  phase = 'during'
  const stream = await q.backup()
  phase = 'after'
  const file = join(root, 'b.evaq')
  const saving = pipeline(Readable.from(stream), createWriteStream(file))
  await eventually(() => startedAfter.size >= 500)
  await saving
  stop.abort()
  await Promise.all(writers)

  const restoredDir = join(root, 'restored')
  await Evaq.restore(file, restoredDir)
  const r = await open(t, restoredDir)
  const records = await readAll(r.wal)
  const ids = new Set(records.map(x => x.id))
  for (const id of resolvedBefore) t.true(ids.has(id), `ID ${id} resolved before the backup and is restored`)
  for (const id of startedAfter) t.false(ids.has(id), `ID ${id} was pushed after the snapshot and is not restored`)
  for (const x of records) {
    if (x.id <= 3) continue
    t.is(x.payload.toString(), pushed.get(x.id) ?? '(never pushed)', `ID ${x.id}: the same bytes`)
  }
  // The counters agree with the records, and the subscriber's acknowledgements came along.
  const stats = await r.wal.stats()
  t.is(stats.count, records.length)
  t.is(stats.bytes, records.reduce((n, x) => n + x.payload.byteLength, 0))
  t.deepEqual(stats.subscribers.map(s => [s.name, s.ackFloor]), [['reader', 3]])
  // A push into the restored queue gets an ID above every ID the source had issued at the snapshot.
  t.is(stream.manifest.logs.wal!.nextId >= Math.max(...ids) + 1, true)
  const next = await r.pushWal('after restore')
  t.is(next, stream.manifest.logs.wal!.nextId)
  t.true(next > Math.max(...ids))
})

// ---- damage -------------------------------------------------------------------------------------

/** The frames of an archive: offsets and places. */
async function frames (
  file: string
): Promise<Array<{ offset: number, valueOffset: number, valueLength: number, log?: string, segment?: number, sublevel: string }>> {
  const reader = await ArchiveReader.open(file)
  const out = []
  try {
    for await (const f of reader.frames()) {
      const place = placeOf(f.key)
      out.push({
        offset: f.offset,
        valueOffset: f.valueOffset,
        valueLength: f.valueLength,
        sublevel: place.sublevel,
        ...(place.log === undefined ? {} : { log: place.log, segment: place.segment! }),
      })
    }
  } finally {
    await reader.close()
  }
  return out
}

async function flip (file: string, offset: number): Promise<void> {
  const buf = await readFile(file)
  buf[offset]! ^= 0x5a
  await writeFile(file, buf)
}

test('a byte flipped inside a segment is refused with EVAQ_CORRUPTION naming that segment, and nothing is written', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'))
  await q.pushWal('one')
  await q.pushWalMany(['two', 'three', 'four'])
  await q.pushWal('five')
  await q.pushRetryItem('dead', { error: 'e' })
  const file = join(root, 'b.evaq')
  await backupTo(q, file)
  const segment = (await frames(file)).find(f => f.log === 'wal' && f.segment === 2)!
  t.truthy(segment)
  await flip(file, segment.valueOffset + Math.floor(segment.valueLength / 2))

  const target = join(root, 'restored')
  const err = await rejects(t, Evaq.restore(file, target), 'EVAQ_CORRUPTION', 'restore')
  t.true(err instanceof ArchiveCorruption)
  const damage = (err as ArchiveCorruption).damage
  t.like(damage, { archive: file, log: 'wal', segment: 2, sublevel: 'wal', reason: 'value-checksum', offset: segment.offset })
  t.deepEqual((err as ArchiveCorruption).ids, [2])
  t.false(await exists(target), 'the target was not created')

  // An empty target directory stays, and stays empty.
  await mkdir(target)
  await rejects(t, Evaq.restore(file, target), 'EVAQ_CORRUPTION', 'restore into an empty directory')
  t.deepEqual(await readdir(target), [])
  await rejects(t, verifyArchive(file), 'EVAQ_CORRUPTION', 'verifyArchive')
})

test('damage anywhere else is refused too: a frame head, the manifest, the summary, a cut, a frame dropped whole', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'))
  await populate(q)
  const file = join(root, 'b.evaq')
  await backupTo(q, file)
  const good = await readFile(file)
  const list = await frames(file)
  const index = list.find(f => f.sublevel === 'wal-index')!

  const cases: Array<[string, Buffer, string]> = [
    ['a key byte of an index entry', (() => { const b = Buffer.from(good); b[index.offset + 13 + 2]! ^= 1; return b })(), 'head-checksum'],
    ['a value byte of an index entry', (() => { const b = Buffer.from(good); b[index.valueOffset]! ^= 1; return b })(), 'value-checksum'],
    ['cut in the middle', good.subarray(0, Math.floor(good.length / 2)), 'truncated'],
    ['cut before the summary', good.subarray(0, list[list.length - 1]!.valueOffset + list[list.length - 1]!.valueLength), 'truncated'],
    ['a frame dropped whole', Buffer.concat([good.subarray(0, list[3]!.offset), good.subarray(list[4]!.offset)]), 'summary'],
    ['bytes after the summary', Buffer.concat([good, Buffer.from([0])]), 'trailing'],
  ]
  for (const [what, bytes, reason] of cases) {
    const f = join(root, `${reason}-${what.length}.evaq`)
    await writeFile(f, bytes)
    const err = await rejects(t, Evaq.restore(f, join(root, `r-${what.length}`)), 'EVAQ_CORRUPTION', what)
    t.is((err as ArchiveCorruption).damage?.reason, reason, what)
    t.false(await exists(join(root, `r-${what.length}`)), `${what}: nothing written`)
  }
  // The manifest: its checksum fails.
  const m = Buffer.from(good)
  m[ARCHIVE_MAGIC.length + 4 + 13 + 4 + 10]! ^= 1
  await writeFile(join(root, 'm.evaq'), m)
  await rejects(t, Evaq.restore(join(root, 'm.evaq'), join(root, 'rm')), 'EVAQ_CORRUPTION', 'manifest')
})

test('bad input: a missing file, not an archive, another version, a non-empty target, bad arguments', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'))
  await q.pushWal('x')
  const file = join(root, 'b.evaq')
  await backupTo(q, file)
  const target = join(root, 'r')

  await rejects(t, Evaq.restore(join(root, 'missing.evaq'), target), 'EVAQ_NOT_FOUND', 'missing file')
  await writeFile(join(root, 'text'), 'not an archive at all')
  await rejects(t, Evaq.restore(join(root, 'text'), target), 'EVAQ_INVALID_ARGUMENT', 'not an archive')
  await rejects(t, Evaq.restore(root, target), 'EVAQ_INVALID_ARGUMENT', 'a directory')
  const v2 = await readFile(file)
  v2.writeUInt32BE(2, ARCHIVE_MAGIC.length)
  await writeFile(join(root, 'v2.evaq'), v2)
  await rejects(t, Evaq.restore(join(root, 'v2.evaq'), target), 'EVAQ_UNSUPPORTED_FORMAT', 'another version')
  await rejects(t, Evaq.restore([], target), 'EVAQ_INVALID_ARGUMENT', 'no archive')
  await rejects(t, Evaq.restore(file, ''), 'EVAQ_INVALID_ARGUMENT', 'no target')
  await rejects(t, Evaq.restore(file, join(root, 'src')), 'EVAQ_INVALID_ARGUMENT', 'a non-empty target')
  await rejects(t, Evaq.restore(file, file), 'EVAQ_INVALID_ARGUMENT', 'a file as target')
  t.false(await exists(target))

  await rejects(t, q.backup({ since: { id: 'nope' } as never }), 'EVAQ_INVALID_ARGUMENT', 'a malformed since')
  await rejects(t, q.backup(null as never), 'EVAQ_INVALID_ARGUMENT', 'null options')
  const manifest = await readManifest(file)
  const future = { ...manifest, logs: { ...manifest.logs, wal: { highWater: 1000, nextId: 1000 } } }
  await rejects(t, q.backup({ since: future }), 'EVAQ_INVALID_ARGUMENT', 'a base from the future (another queue)')
  await q.close()
  await rejects(t, q.backup(), 'EVAQ_CLOSED', 'a closed queue')
})

// ---- incremental backups ------------------------------------------------------------------------

test('full plus incrementals restore to exactly what a full backup of the same moment restores, removals, acks and DLQ moves included', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'))
  await populate(q)
  const sub = await q.wal.subscribe('reader')
  // A subscriber that acknowledges nothing: records leave the WAL by removal only.
  await q.wal.subscribe('laggard')
  const full = await backupTo(q, join(root, 'full.evaq'))

  // Between the full backup and the first incremental: pushes, removals below the high-water,
  // acknowledgements, a DLQ record parked, one requeued, one retried successfully.
  await q.pushWalMany(['i1', 'i2', 'i3'])
  await q.removeWal([1, 4])
  const b1 = await sub.next({ maxCount: 10 })
  await b1!.ack()
  await q.pushRetryItem('to park', { error: 'e' })
  await q.pushRetryItem('to succeed', { error: 'e' })
  const daemon = q.retry(async (record) => {
    if (record.payload.toString() === 'to park') throw Object.assign(new Error('permanent'), { retriable: false })
  }, { autoStart: false })
  await daemon.tick()
  await daemon.stop()
  await q.requeueParked([1])
  const inc1 = await backupTo(q, join(root, 'inc1.evaq'), full)
  const atInc1 = await state(q)
  t.is(inc1.kind, 'incremental')
  t.is(inc1.base!.id, full.id)
  t.is(inc1.depth, 1)

  // And between the first and the second: more of the same, and a purge.
  await q.pushWal(Buffer.alloc(20_000, 'y'))
  const live = (await readAll(q.wal)).map(r => r.id)
  t.true(live.length >= 3)
  await q.removeWal([live[0]!, live[live.length - 2]!])
  await q.purgeParked('all')
  await q.wal.unsubscribe('reader')
  const inc2 = await backupTo(q, join(root, 'inc2.evaq'), inc1)
  const same = await backupTo(q, join(root, 'same.evaq'))
  t.is(inc2.depth, 2)
  t.deepEqual(inc2.logs, same.logs)

  const summary = (await verifyArchive(join(root, 'inc2.evaq'))).summary
  t.true(summary.references > 0, 'the incremental refers to segments of its base')
  t.true(summary.valueBytes < (await verifyArchive(join(root, 'same.evaq'))).summary.valueBytes - 5000, 'and is smaller than a full backup')

  await Evaq.restore([join(root, 'full.evaq'), join(root, 'inc1.evaq'), join(root, 'inc2.evaq')], join(root, 'chain'), { verify: true })
  await Evaq.restore(join(root, 'same.evaq'), join(root, 'single'), { verify: true })
  t.deepEqual(await entries(join(root, 'chain')), await entries(join(root, 'single')))
  t.deepEqual(await idFile(join(root, 'chain')), await idFile(join(root, 'single')))
  const chain = await open(t, join(root, 'chain'))
  const single = await open(t, join(root, 'single'))
  const expected = await state(q)
  t.deepEqual(await state(chain), expected)
  t.deepEqual(await state(single), expected)

  // Full plus the first incremental: the moment of the first incremental.
  await Evaq.restore([join(root, 'full.evaq'), join(root, 'inc1.evaq')], join(root, 'half'), { verify: true })
  const half = await open(t, join(root, 'half'))
  t.deepEqual(await state(half), atInc1)
})

test('a broken chain is refused before anything is written', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'))
  await q.pushWalMany(['a', 'b'])
  const full = await backupTo(q, join(root, 'full.evaq'))
  await q.pushWal('c')
  const inc1 = await backupTo(q, join(root, 'inc1.evaq'), full)
  await q.pushWal('d')
  await backupTo(q, join(root, 'inc2.evaq'), inc1)
  await backupTo(q, join(root, 'other.evaq'))
  const target = join(root, 'r')
  const f = (name: string): string => join(root, `${name}.evaq`)

  await rejects(t, Evaq.restore(f('inc1'), target), 'EVAQ_INVALID_ARGUMENT', 'an incremental alone')
  await rejects(t, Evaq.restore([f('full'), f('inc2')], target), 'EVAQ_INVALID_ARGUMENT', 'a link missing')
  await rejects(t, Evaq.restore([f('other'), f('inc1')], target), 'EVAQ_INVALID_ARGUMENT', 'another base')
  await rejects(t, Evaq.restore([f('full'), f('full')], target), 'EVAQ_INVALID_ARGUMENT', 'two full backups')
  t.false(await exists(target))

  // A base that is damaged: refused as such, naming the segment.
  const seg = (await frames(f('full'))).find(x => x.log === 'wal' && x.segment === 1)!
  const damaged = await readFile(f('full'))
  damaged[seg.valueOffset]! ^= 1
  await writeFile(f('damaged'), damaged)
  const err = await rejects(t, Evaq.restore([f('damaged'), f('inc1')], target), 'EVAQ_CORRUPTION', 'a damaged base')
  t.like((err as ArchiveCorruption).damage, { archive: f('damaged'), log: 'wal', segment: 1, reason: 'value-checksum' })

  // A sound archive under the base's ID that lacks a segment the incremental refers to.
  const reader = await ArchiveReader.open(f('full'))
  const kept: Array<[Buffer, Buffer]> = []
  for await (const x of reader.frames()) if (placeOf(x.key).segment !== 1 || placeOf(x.key).log !== 'wal') kept.push([x.key, Buffer.from(x.value!)])
  await reader.close()
  const forged = writeArchive(reader.manifest, { async * entries () { yield kept }, close: async () => {} }, () => {})
  await pipeline(Readable.from(forged), createWriteStream(f('forged')))
  await verifyArchive(f('forged'))
  const missing = await rejects(t, Evaq.restore([f('forged'), f('inc1')], target), 'EVAQ_CORRUPTION', 'a reference its base does not hold')
  t.like((missing as ArchiveCorruption).damage, { archive: f('inc1'), log: 'wal', segment: 1, reason: 'reference' })
  t.false(await exists(target))
})

// ---- the queue around a backup ------------------------------------------------------------------

test('acknowledgements not yet persisted (interval ack durability) are written before the snapshot', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await open(t, join(root, 'src'), { ...OPTIONS, ackDurability: { intervalMs: 3_600_000 } })
  await q.pushWalMany(['a', 'b', 'c', 'd'])
  await q.wal.subscribe('idle')
  const sub = await q.wal.subscribe('reader')
  await (await sub.next({ maxCount: 3 }))!.ack()
  const file = join(root, 'b.evaq')
  await backupTo(q, file)
  await Evaq.restore(file, join(root, 'r'))
  const r = await open(t, join(root, 'r'))
  t.deepEqual((await r.wal.stats()).subscribers.map(s => [s.name, s.ackFloor]).sort(), [['idle', 1], ['reader', 4]])
})

test('closing the queue ends a backup: an unread one is released, one being read fails with EVAQ_CLOSED', async t => {
  const root = await tmpDir(t, 'evaq-backup-')
  const q = await Evaq.open(join(root, 'a'), OPTIONS)
  await q.pushWal('x')
  const unread = await q.backup()
  await q.close()
  t.is(unread.summary, undefined)

  const q2 = await Evaq.open(join(root, 'b'), { ...OPTIONS, maxPayloadBytes: 1024 * 1024 })
  for (let i = 0; i < 40; i++) await q2.pushWal(Buffer.alloc(512 * 1024, i))
  const reading = await q2.backup()
  const it = reading[Symbol.asyncIterator]()
  await it.next()
  await q2.close()
  const err = await (async () => { for (;;) if ((await it.next()).done === true) return undefined })().catch((e: unknown) => e)
  t.true(isEvaqError(err, 'EVAQ_CLOSED'), String(err))
})
