import { mkdir, readdir, rm } from 'node:fs/promises'
import { EvaqError, fromLevel } from '../errors.js'
import { resolveOptions } from '../options.js'
import { IdFloor } from './id-floor.js'
import type { Entry } from './key-place.js'
import { logicalPage } from './logical-entries.js'
import { closeFiles, openFilesReadOnly, openRaw } from './repair.js'
import type { SegmentFiles } from './segment-files.js'
import { openStore, type Db, type Store } from './store.js'

/**
 * The database as raw entries, for backup and restore: a point-in-time read of every entry
 * (every sublevel, with its prefix), and a writer that loads such entries into a new directory.
 * The backup layer above sees keys and values only; what they mean stays here. The entries are
 * logical (logical-entries.ts): segments kept in segment files come as their bytes, so an archive
 * is the same whatever the storage format.
 */

export type { Entry, KeyPlace } from './key-place.js'
export { placeOf } from './key-place.js'

/** Entries fetched per round from LevelDB, and the bytes its iterator reads ahead. */
const READ_COUNT = 1000
const READ_AHEAD_BYTES = 1024 * 1024
/** Bytes of entries loaded per batch while restoring. */
const LOAD_BATCH_BYTES = 4 * 1024 * 1024

/** Every entry of the database as it was when the snapshot was taken. */
export interface StoreSnapshot {
  /** The entries in key order (root keys: sublevel prefixes included), logical. Iterate once. */
  entries (): AsyncGenerator<Entry[]>
  /** Release the snapshot (LevelDB keeps what it sees from compaction until then). */
  close (): Promise<void>
}

/**
 * Take an explicit LevelDB snapshot of the whole database, at once and synchronously: it holds
 * every write that completed before this call, across every sublevel, and nothing written after
 * it. So a caller that reads in-memory state (watermarks, next IDs) in the same turn of the event
 * loop gets state that agrees with it. The snapshot lives until close(); closing the database
 * (close, or a reopen after a failed write) ends it, and a read still under way then fails.
 *
 * The segment files are pinned until close(): the snapshot may locate frames in files that
 * cleanup would otherwise release (and reuse) meanwhile.
 */
export function takeSnapshot (store: Store): StoreSnapshot {
  const db = store.db
  let snapshot: ReturnType<Db['snapshot']>
  try {
    snapshot = db.snapshot()
  } catch (err) {
    throw fromLevel(err, 'Cannot take a snapshot of the database')
  }
  const files = store.files
  for (const set of files.values()) set.pin()
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    for (const set of files.values()) set.unpin()
    await snapshot.close().catch(() => {})
  }
  return {
    async * entries () {
      const failed = (err: unknown): EvaqError => db.status !== 'open'
        ? new EvaqError('EVAQ_CLOSED', 'The database was closed (the queue closed or reopened) while a backup read it', { cause: err })
        : fromLevel(err, 'Reading the snapshot failed')
      let it: ReturnType<Db['iterator']>
      try {
        it = db.iterator({ snapshot, highWaterMarkBytes: READ_AHEAD_BYTES } as object)
      } catch (err) {
        await close()
        throw failed(err)
      }
      try {
        for await (const page of pages(it, failed)) {
          // The queue closed under the read: its segment files are closed too.
          if (db.status !== 'open') throw failed(new Error('The database is not open'))
          let entries: Entry[]
          try {
            entries = await logicalPage(page, files)
          } catch (err) {
            throw db.status !== 'open' ? failed(err) : err
          }
          yield entries
        }
      } finally {
        await close()
      }
    },
    close,
  }
}

/**
 * A new data directory, loaded with raw entries. It starts as Evaq.open would create it (format
 * and sentinel keys first, flushed to a table), so that it behaves like any other directory.
 * Nothing opens it meanwhile: LevelDB's lock is held until finish() or abort().
 */
export class StoreLoader {
  private batch: ReturnType<Db['batch']>
  private batchBytes = 0
  /** Entries loaded. */
  loaded = 0

  private readonly db: Db

  private constructor (readonly dir: string, private readonly store: Store, private readonly created: boolean) {
    this.db = store.db
    this.batch = this.db.batch()
  }

  /**
   * Create the directory (or take an empty one) and its database. EVAQ_INVALID_ARGUMENT when
   * `dir` holds anything: a restore never writes over data.
   */
  static async create (dir: string): Promise<StoreLoader> {
    let created = false
    try {
      const names = await readdir(dir)
      if (names.length > 0) {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT',
          `Expected \`${dir}\` to be a new or empty directory; it holds ${names.length} file(s). A restore never writes over data`)
      }
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code === 'ENOTDIR') throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${dir}\` to be a directory`, { cause: err })
      if (code !== 'ENOENT') throw err
      await mkdir(dir, { recursive: true })
      created = true
    }
    let store: Store
    try {
      store = await openStore(dir, resolveOptions({}))
    } catch (err) {
      // Locked: another process (another restore) took the directory meanwhile; it is theirs.
      if (!(err instanceof EvaqError && err.code === 'EVAQ_LOCKED')) await StoreLoader.remove(dir, created)
      throw err
    }
    return new StoreLoader(dir, store, created)
  }

  /** Add one entry (buffered; written in batches). */
  async put (key: Buffer, value: Buffer): Promise<void> {
    this.batch.put(key, value)
    this.batchBytes += key.byteLength + value.byteLength
    this.loaded++
    if (this.batchBytes >= LOAD_BATCH_BYTES) await this.flush(false)
  }

  private async flush (sync: boolean): Promise<void> {
    const batch = this.batch
    this.batch = this.db.batch()
    this.batchBytes = 0
    try {
      await batch.write({ sync })
    } catch (err) {
      throw fromLevel(err, `Writing to ${this.dir} failed`)
    }
  }

  /**
   * Write what is buffered with fsync (LevelDB syncs its tables as it writes them, and the synced
   * write covers its log), close the database, and reserve IDs: each log continues from
   * `nextIds[log]`, above every ID the backed-up queue had issued.
   */
  async finish (nextIds: Readonly<Record<string, number>>): Promise<void> {
    await this.flush(true)
    try {
      await this.db.close()
    } catch (err) {
      throw fromLevel(err, `Closing ${this.dir} failed`)
    }
    try {
      const ids = await IdFloor.load(this.dir)
      const logs: Record<string, { next: number }> = {}
      for (const [log, next] of Object.entries(nextIds)) logs[log] = { next }
      await ids.close(logs)
    } finally {
      this.store.claim.release()
    }
  }

  /** Close and remove what was written: the directory if it was created, else its contents. */
  async abort (): Promise<void> {
    await this.db.close().catch(() => {})
    try {
      await StoreLoader.remove(this.dir, this.created)
    } finally {
      if (this.db.status === 'closed') this.store.claim.release()
    }
  }

  private static async remove (dir: string, created: boolean): Promise<void> {
    if (created) {
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
      return
    }
    for (const name of await readdir(dir).catch(() => [])) await rm(`${dir}/${name}`, { recursive: true, force: true, maxRetries: 3 })
  }
}

/** Every entry of the database in `dir` (no process may hold it), in key order, logical (as takeSnapshot's). */
export async function * readStore (dir: string): AsyncGenerator<Entry[]> {
  const db = await openRaw(dir)
  let files: Map<string, SegmentFiles> | undefined
  try {
    files = await openFilesReadOnly(dir)
    for await (const page of pages(db.iterator({ highWaterMarkBytes: READ_AHEAD_BYTES } as object), err => fromLevel(err, `Reading ${dir} failed`))) {
      yield await logicalPage(page, files)
    }
  } finally {
    if (files !== undefined) await closeFiles(files)
    await db.close().catch(() => {})
  }
}

/** An iterator's entries, READ_COUNT at a time, with its errors mapped by `failed`; closes it. */
async function * pages (it: { nextv: (n: number) => Promise<unknown>, close: () => Promise<void> }, failed: (err: unknown) => Error): AsyncGenerator<Entry[]> {
  try {
    for (;;) {
      let page: Entry[]
      try {
        page = await it.nextv(READ_COUNT) as Entry[]
      } catch (err) {
        throw failed(err)
      }
      if (page.length === 0) return
      yield page
    }
  } finally {
    await it.close().catch(() => {})
  }
}
