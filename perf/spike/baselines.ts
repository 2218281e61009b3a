/**
 * Spike (throwaway): what the format-2 prototype is compared with, each as an `op` for the
 * closed loops in cases.ts. The fs baselines use fs/promises like the prototype does.
 */
import { open, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import type { RootDatabase } from 'lmdb'
import { Evaq } from '../../src/index.js'
import { syncDir } from './files.js'

export interface Runner {
  /** One caller's operation: pushes `perOp` records. */
  readonly op: () => Promise<unknown>
  readonly close: () => Promise<void>
  /** Mean records per synced write where the runner knows it. */
  readonly group?: () => number
}

/**
 * One writer appends `group` payloads as one write + fdatasync, in one growing file
 * (`overwrite`: into a zero-filled, fsynced 64 MiB file, wrapping around: the disk's limit).
 */
export async function fsGroup (dir: string, payload: () => Buffer, group: number, overwrite: boolean, fileBytes: number): Promise<Runner> {
  const name = path.join(dir, 'data')
  const handle: FileHandle = await open(name, 'w')
  if (overwrite) {
    const zeros = Buffer.alloc(1 << 20)
    for (let at = 0; at < fileBytes; at += zeros.byteLength) await handle.write(zeros, 0, zeros.byteLength, at)
    await handle.datasync()
  }
  await syncDir(dir)
  let pos = 0
  let buf = Buffer.allocUnsafe(0)
  return {
    op: async () => {
      let len = 0
      for (let i = 0; i < group; i++) {
        const p = payload()
        if (len + p.byteLength > buf.byteLength) {
          const grown = Buffer.allocUnsafe(Math.max(2 * buf.byteLength, len + p.byteLength, 64 * 1024))
          buf.copy(grown, 0, 0, len)
          buf = grown
        }
        p.copy(buf, len)
        len += p.byteLength
      }
      if (overwrite && pos + len > fileBytes) pos = 0
      await handle.write(buf, 0, len, pos)
      pos += len
      await handle.datasync()
    },
    close: () => handle.close(),
    group: () => group,
  }
}

// better-sqlite3 and lmdb come from perf/node_modules: imported when used, so that the
// prototype's own cases run without them.

/** better-sqlite3, WAL, synchronous=FULL; `group` INSERTs per transaction (1: autocommit). */
export async function sqlite (dir: string, payload: () => Buffer, group: number): Promise<Runner> {
  const { default: Database } = await import('better-sqlite3')
  const db = new Database(path.join(dir, 'queue.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec('CREATE TABLE queue (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
  const insert = db.prepare<[Buffer]>('INSERT INTO queue (payload) VALUES (?)')
  const tx = db.transaction(() => { for (let i = 0; i < group; i++) insert.run(payload()) })
  return {
    op: async () => { if (group === 1) insert.run(payload()); else tx() },
    close: async () => { db.close() },
    group: () => group,
  }
}

/** lmdb-js: concurrent puts; lmdb batches the puts of one event-loop turn into one synced transaction. */
export async function lmdb (dir: string, payload: () => Buffer): Promise<Runner> {
  const { open: openLmdb } = await import('lmdb')
  const db: RootDatabase<Buffer, number> = openLmdb<Buffer, number>({ path: path.join(dir, 'lmdb'), overlappingSync: false, encoding: 'binary' })
  let id = 0
  return {
    op: () => db.put(++id, payload()),
    close: () => db.close(),
  }
}

/** evaq as it is today (defaults: durability 'sync'). */
export async function evaq (dir: string, payload: () => Buffer, many: number): Promise<Runner> {
  const q = await Evaq.open(path.join(dir, 'evaq'))
  return {
    op: many === 1 ? () => q.pushWal(payload()) : () => q.pushWalMany(Array.from({ length: many }, payload)),
    close: () => q.close(),
  }
}
