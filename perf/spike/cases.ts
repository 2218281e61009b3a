/** Spike (throwaway): the workloads and the systems each one runs, side by side. */
import { evaq, fsGroup, lmdb, type Runner, sqlite } from './baselines.js'
import type { FileMode } from './files.js'
import { ProtoLog } from './proto-log.js'

export const FILE_BYTES = 64 * 1024 * 1024
const MAX_BATCH_BYTES = 4 * 1024 * 1024

export interface CaseDef {
  readonly id: string
  readonly title: string
  /** One writer doing groups itself (the fs and sqlite baselines): callers and records per op instead of the workload's. */
  readonly writer?: { readonly callers: number, readonly perOp: number }
  readonly make: (dir: string, payload: () => Buffer) => Promise<Runner>
}

export interface Workload {
  readonly id: 'push-256' | 'seq' | 'many-1000'
  readonly title: string
  readonly callers: number
  /** Records per op. */
  readonly perOp: number
  readonly sizes: readonly number[]
  /** Record the latency of each op (one caller). */
  readonly latency: boolean
  readonly cases: readonly CaseDef[]
  /** The case the ratios are taken against. */
  readonly reference: string
}

async function proto (dir: string, payload: () => Buffer, mode: FileMode, depth: number, many: number): Promise<Runner> {
  const log = await ProtoLog.open(dir, { mode, depth, fileBytes: FILE_BYTES, maxBatchBytes: MAX_BATCH_BYTES })
  return {
    op: many === 1 ? () => log.push(payload()) : () => log.pushMany(Array.from({ length: many }, payload)),
    close: async () => {
      await log.close()
      if (log.grownFiles > 0) console.error(`  (recycle: ${log.grownFiles} file(s) had to be preallocated: none was free)`)
    },
    group: () => log.records / Math.max(1, log.frames),
  }
}

const protoCase = (mode: FileMode, depth = 1, many = 1): CaseDef => ({
  id: `proto-${mode}${depth > 1 ? `-d${depth}` : ''}`,
  title: `prototype, ${mode} segment files, ${depth} group(s) in flight, unsynced LevelDB locator`,
  make: (dir, payload) => proto(dir, payload, mode, depth, many),
})

const W256 = { callers: 1, perOp: 256 }

export const WORKLOADS: readonly Workload[] = [
  {
    id: 'push-256',
    title: 'durable push, 256 concurrent callers',
    callers: 256,
    perOp: 1,
    sizes: [100, 1024, 16 * 1024],
    latency: false,
    reference: 'evaq',
    cases: [
      protoCase('append'),
      protoCase('prealloc'),
      protoCase('recycle'),
      protoCase('sparse'),
      protoCase('append', 2),
      protoCase('prealloc', 2),
      protoCase('recycle', 2),
      { id: 'fs-append', title: 'append 256 payloads + fdatasync, growing file', writer: W256, make: (dir, p) => fsGroup(dir, p, 256, false, FILE_BYTES) },
      {
        id: 'fs-overwrite',
        title: 'overwrite 256 payloads + fdatasync, preallocated file (the disk\'s limit)',
        writer: W256,
        make: (dir, p) => fsGroup(dir, p, 256, true, FILE_BYTES),
      },
      { id: 'sqlite', title: 'better-sqlite3 WAL FULL, transactions of 256 INSERTs', writer: W256, make: (dir, p) => sqlite(dir, p, 256) },
      { id: 'lmdb', title: 'lmdb-js, 256 concurrent put, overlappingSync: false', make: (dir, p) => lmdb(dir, p) },
      { id: 'evaq', title: 'evaq today, 256 concurrent pushWal', make: (dir, p) => evaq(dir, p, 1) },
    ],
  },
  {
    id: 'seq',
    title: 'one caller, sequential durable push (latency)',
    callers: 1,
    perOp: 1,
    sizes: [1024],
    latency: true,
    reference: 'evaq',
    cases: [
      protoCase('prealloc'),
      protoCase('append'),
      { id: 'fs-append', title: 'append 1 payload + fdatasync', make: (dir, p) => fsGroup(dir, p, 1, false, FILE_BYTES) },
      { id: 'fs-overwrite', title: 'overwrite 1 payload + fdatasync, preallocated file', make: (dir, p) => fsGroup(dir, p, 1, true, FILE_BYTES) },
      { id: 'sqlite', title: 'better-sqlite3 autocommit INSERT, WAL FULL', make: (dir, p) => sqlite(dir, p, 1) },
      { id: 'evaq', title: 'evaq today, pushWal', make: (dir, p) => evaq(dir, p, 1) },
    ],
  },
  {
    id: 'many-1000',
    title: 'one caller, batches of 1,000',
    callers: 1,
    perOp: 1000,
    sizes: [1024],
    latency: false,
    reference: 'fs-append',
    cases: [
      protoCase('prealloc', 1, 1000),
      protoCase('recycle', 1, 1000),
      protoCase('append', 1, 1000),
      { id: 'fs-append', title: 'append 1,000 payloads + fdatasync', make: (dir, p) => fsGroup(dir, p, 1000, false, FILE_BYTES) },
      { id: 'evaq', title: 'evaq today, pushWalMany(1,000)', make: (dir, p) => evaq(dir, p, 1000) },
    ],
  },
]
