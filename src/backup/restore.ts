import { readdir } from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import { crashPoint } from '../crash-points.js'
import { EvaqError, invalid } from '../errors.js'
import { placeOf, readStore, StoreLoader } from '../store/snapshot.js'
import { FORMAT_VERSION } from '../schema.js'
import { ArchiveCorruption } from './archive-error.js'
import { archiveName, ArchiveReader, type ArchiveRef, type Frame } from './archive-reader.js'
import { FrameKind } from './format.js'
import type { BackupManifest } from './manifest.js'
import { commit, isWorkName, prepare, removeStale, syncWork } from './restore-dir.js'

/**
 * Restore a chain of archives (a full one, then the incremental ones built on it, in order) into
 * a new data directory. Everything is read and verified before anything is written: a damaged
 * archive, a broken chain or a reference its base cannot answer leaves no trace in the target.
 * The database is built under another name and renamed into place when complete (restore-dir.ts):
 * interrupted at any point, the target is as it was found.
 */

export type RestorePhase = 'verify' | 'restore' | 'read-back'

export interface RestoreOptions {
  /** After writing, read the restored database back and compare every entry with the archives. @defaultValue false */
  verify?: boolean
  /** Progress in bytes of archive (`verify`, `restore`) or entries (`read-back`) per phase. */
  onProgress?: (phase: RestorePhase, done: number, total: number) => void
  /**
   * Stop the restore: it removes what it wrote and rejects with EVAQ_ABORTED, leaving the target
   * as it was found. Once the restored directory is being put in place, the restore completes.
   */
  signal?: AbortSignal
}

export interface RestoreResult {
  /** The manifest of the last archive: the moment the directory now holds. */
  readonly manifest: BackupManifest
  /** Database entries written. */
  readonly entries: number
  /** Per log, the ID the next push gets (above every ID the backed-up queue had issued). */
  readonly nextIds: Readonly<Record<string, number>>
  /** Whether the restored database was read back and matched (with `verify`). */
  readonly verified: boolean
}

/** Frames of one archive, advanced in key order on demand. */
class Cursor {
  private readonly it: AsyncGenerator<Frame>
  private current: Frame | undefined
  private ended = false

  constructor (readonly reader: ArchiveReader) {
    this.it = reader.frames()
  }

  /** The frame with `key`, if the archive has one; frames before it are passed over. */
  async seek (key: Buffer): Promise<Frame | undefined> {
    while (!this.ended && (this.current === undefined || Buffer.compare(this.current.key, key) < 0)) {
      const next = await this.it.next()
      if (next.done === true) {
        this.ended = true
        this.current = undefined
      } else {
        this.current = next.value
      }
    }
    return this.current !== undefined && this.current.key.equals(key) ? this.current : undefined
  }

  async close (): Promise<void> {
    await this.it.return(undefined).catch(() => {})
    await this.reader.close()
  }
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new EvaqError('EVAQ_ABORTED', 'The restore was aborted; nothing was written to the target')
}

async function openAll (files: readonly ArchiveRef[]): Promise<ArchiveReader[]> {
  const readers: ArchiveReader[] = []
  try {
    for (const file of files) readers.push(await ArchiveReader.open(file))
  } catch (err) {
    await Promise.all(readers.map(r => r.close()))
    throw err
  }
  return readers
}

/** The manifests of `files`, checked to form one chain: EVAQ_INVALID_ARGUMENT says where it breaks. */
export async function checkChain (refs: readonly ArchiveRef[]): Promise<BackupManifest[]> {
  if (!Array.isArray(refs) || refs.length === 0 || refs.some(f => typeof f === 'string' ? f.length === 0 : typeof f?.open !== 'function')) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      'Expected `from` to be a list of archive files: a full backup, then the incremental ones built on it, in order')
  }
  const files = refs.map(archiveName)
  // Only the manifests are read here (from a bucket: the first bytes of each object).
  const readers: ArchiveReader[] = []
  try {
    for (const ref of refs) readers.push(await ArchiveReader.open(ref, { headOnly: true }))
  } finally {
    await Promise.all(readers.map(r => r.close()))
  }
  const manifests = readers.map(r => r.manifest)
  manifests.forEach((m, i) => {
    if (m.storeFormat !== FORMAT_VERSION) {
      throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT', `${files[i]} holds data directory format ${m.storeFormat}; this evaq writes format ${FORMAT_VERSION}`)
    }
    if (i === 0 && m.kind !== 'full') {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT',
        `${files[0]} is an incremental backup (of ${m.base!.id}): ` +
        'a restore starts from the full backup it builds on, then takes the incremental ones in order')
    }
    if (i > 0 && (m.kind !== 'incremental' || m.base!.id !== manifests[i - 1]!.id)) {
      const why = m.kind === 'full' ? 'it is a full backup' : `its base is ${m.base!.id}, not ${manifests[i - 1]!.id}`
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${files[i]} does not build on ${files[i - 1]} (${why}): give the archives of one chain, oldest first`)
    }
  })
  return manifests
}

/** Whether `dir` exists; EVAQ_INVALID_ARGUMENT unless it is a directory with nothing in it. */
async function assertEmptyTarget (dir: string): Promise<boolean> {
  if (typeof dir !== 'string' || dir.length === 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected the target to be a directory path')
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT') return false
    if (code === 'ENOTDIR') throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${dir}\` to be a directory`, { cause: err })
    throw new EvaqError('EVAQ_IO', `Cannot read ${dir}`, { cause: err })
  }
  // Another restore's work directory, when the target is a mount point, does not count (see restore-dir.ts).
  names = names.filter(n => !isWorkName(n))
  if (names.length > 0) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      `Expected \`${dir}\` to be a new or empty directory; it holds ${names.length} file(s). A restore never writes over data`)
  }
  return true
}

/**
 * Read every archive through, and check that every reference of each incremental one names an
 * entry of its base with the same length and checksum (so, by induction, the chain holds a value
 * for every entry of the last archive).
 */
async function verifyChain (files: readonly ArchiveRef[], onProgress: RestoreOptions['onProgress'], signal: AbortSignal | undefined): Promise<void> {
  const readers = await openAll(files)
  const total = readers.reduce((n, r) => n + r.size, 0)
  let before = 0
  try {
    for (let i = 0; i < readers.length; i++) {
      const reader = readers[i]!
      const base = i > 0 ? new Cursor(await ArchiveReader.open(files[i - 1]!)) : undefined
      try {
        let n = 0
        for await (const frame of reader.frames()) {
          throwIfAborted(signal)
          if ((++n & 255) === 0) onProgress?.('verify', before + reader.position, total)
          if (frame.kind !== FrameKind.REFERENCE) continue
          const found = await base!.seek(frame.key)
          if (found === undefined || found.valueLength !== frame.valueLength || found.valueCrc !== frame.valueCrc) {
            const place = placeOf(frame.key)
            const where = place.segment === undefined ? '' : ` (segment ${place.segment} of ${place.log})`
            const [name, baseName] = [archiveName(files[i]!), archiveName(files[i - 1]!)]
            throw new ArchiveCorruption(`${name} refers to an entry its base ${baseName} does not hold${where}: they are not backups of one queue`, {
              archive: name,
              offset: frame.offset,
              sublevel: place.sublevel,
              key: place.key.toString('hex'),
              ...(place.log === undefined ? {} : { log: place.log, segment: place.segment! }),
              reason: 'reference',
            })
          }
        }
        before += reader.size
        onProgress?.('verify', before, total)
      } finally {
        await base?.close()
      }
    }
  } finally {
    await Promise.all(readers.map(r => r.close()))
  }
}

/** Write the state of the last archive, taking each referenced value from the newest archive that carries it. */
async function load (
  files: readonly ArchiveRef[],
  loader: StoreLoader,
  onProgress: RestoreOptions['onProgress'],
  signal: AbortSignal | undefined
): Promise<void> {
  const readers = await openAll(files)
  const cursors = readers.map(r => new Cursor(r))
  const last = readers[readers.length - 1]!
  try {
    let n = 0
    for await (const frame of last.frames()) {
      throwIfAborted(signal)
      let value = frame.value
      for (let j = cursors.length - 2; value === undefined && j >= 0; j--) {
        const found = await cursors[j]!.seek(frame.key)
        if (found === undefined) break
        value = found.value
      }
      if (value === undefined) throw new EvaqError('EVAQ_INTERNAL', 'A verified reference has no value in the chain')
      await loader.put(frame.key, value)
      if ((++n & 255) === 0) onProgress?.('restore', last.position, last.size)
    }
    onProgress?.('restore', last.size, last.size)
  } finally {
    await Promise.all(cursors.map(c => c.close()))
  }
}

/** Keys a new directory starts with (format, sentinels) that an archive may lack. */
function startsWith (key: Buffer): boolean {
  const place = placeOf(key)
  return place.sublevel === '' || (place.sublevel === 'meta' && place.key.toString('latin1') === 'format')
}

/** Compare every entry of the restored database with the last archive's list (key, length, CRC). */
async function readBack (
  work: string,
  dir: string,
  last: ArchiveRef,
  onProgress: RestoreOptions['onProgress'],
  entries: number,
  signal: AbortSignal | undefined
): Promise<void> {
  const cursor = new Cursor(await ArchiveReader.open(last))
  const mismatch = (key: Buffer, why: string): EvaqError => {
    const place = placeOf(key)
    const sublevel = place.sublevel === '' ? 'root' : place.sublevel
    return new EvaqError('EVAQ_CORRUPTION',
      `The restored database in ${dir} does not match ${archiveName(last)}: ${why} (${sublevel} key ${place.key.toString('hex')})`,
      place.segment === undefined ? {} : { ids: [place.segment] })
  }
  let n = 0
  let seen = 0
  try {
    for await (const page of readStore(work)) {
      throwIfAborted(signal)
      for (const [key, value] of page) {
        const frame = await cursor.seek(key)
        if (frame === undefined) {
          if (startsWith(key)) continue
          throw mismatch(key, 'an entry the archive does not list')
        }
        seen++
        if (frame.valueLength !== value.byteLength || frame.valueCrc !== crc32(value)) throw mismatch(key, 'a value differs')
        if ((++n & 1023) === 0) onProgress?.('read-back', n, entries)
      }
    }
  } finally {
    await cursor.close()
  }
  if (seen !== entries) {
    throw new EvaqError('EVAQ_CORRUPTION', `The restored database in ${dir} holds ${seen} of the ${entries} entries of ${archiveName(last)}`)
  }
  onProgress?.('read-back', entries, entries)
}

/**
 * Restore `files` (a full archive, then incremental ones built on it, oldest first) into `dir`,
 * which must not exist or be empty. IDs continue above every ID the backed-up queue had issued
 * when the last snapshot was taken. The database is built in a work directory and renamed to
 * `dir` once complete and fsynced: on any failure, an abort, or a crash at any moment, the target
 * is left as it was found (a killed restore's work directory is removed by the next restore into
 * the same target).
 */
export async function restoreArchives (files: readonly ArchiveRef[], dir: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
  const { onProgress, signal } = options
  const manifests = await checkChain(files)
  if (typeof dir !== 'string' || dir.length === 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected the target to be a directory path')
  await removeStale(dir)
  const exists = await assertEmptyTarget(dir)
  throwIfAborted(signal)
  await verifyChain(files, onProgress, signal)
  const manifest = manifests[manifests.length - 1]!
  const nextIds: Record<string, number> = {}
  for (const [log, mark] of Object.entries(manifest.logs)) nextIds[log] = mark.nextId
  const target = await prepare(dir, exists)
  const loader = await StoreLoader.create(target.work)
  try {
    await load(files, loader, onProgress, signal)
    crashPoint('restore:loaded')
    await loader.finish(nextIds)
    if (options.verify === true) await readBack(target.work, dir, files[files.length - 1]!, onProgress, loader.loaded, signal)
    throwIfAborted(signal)
    await syncWork(target)
    crashPoint('restore:synced')
    await commit(target)
  } catch (err) {
    await loader.abort()
    throw err
  }
  return { manifest, entries: loader.loaded, nextIds, verified: options.verify === true }
}
