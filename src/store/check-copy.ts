import { rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { copyFile, link, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { hasCode } from '../errors.js'
import { LEVELDB_INFO_LOGS, LEVELDB_LOCK_FILE, SEGMENTS_DIR } from '../schema.js'
import { canonicalDir, claimDir, type DirClaim } from './dir-claim.js'

/**
 * What `evaq check` reads instead of the directory itself. Opening a LevelDB database is not a
 * read: recovery turns its log into a table and rewrites the manifest, and a log record that
 * fails its checksum is dropped for good. So check opens a copy: the immutable tables are
 * hard-linked (no bytes copied; LevelDB never writes into a table, it only deletes whole files),
 * everything else is copied, and `LOCK` is neither opened nor copied (closing any descriptor of
 * it would drop the holder's lock, see dir-claim.ts).
 *
 * The segment files (`segments/<log>/NNNNNNNNNN.seg`) are hard-linked too: check opens them for
 * reads only (repair.ts openFilesReadOnly), and nothing writes them while the directory is
 * claimed. Spares hold no segment and are left out.
 */

const TABLE = /^\d+\.(ldb|sst)$/
const SEGMENT_FILE = /^\d{10}\.seg$/
/** LevelDB's lock and info logs: the copy gets its own. */
const SKIPPED: ReadonlySet<string> = new Set([LEVELDB_LOCK_FILE, ...LEVELDB_INFO_LOGS])

/** Copies being made or read; removed synchronously by removeCheckCopies() on a signal. */
const live = new Set<string>()

/**
 * Remove every copy this process still has (for a SIGINT handler, which cannot wait). LevelDB may
 * still be writing into a copy from its own threads (a compaction adds a file between the listing
 * and the rmdir: ENOTEMPTY), so each removal is retried; a failure must not throw out of the
 * signal handler, which would end the process with 1 instead of its signal's exit code.
 */
export function removeCheckCopies (): void {
  for (const copy of live) {
    try {
      rmSync(copy, { recursive: true, force: true, maxRetries: 20, retryDelay: 5 })
    } catch {}
  }
  live.clear()
}

/**
 * Run `task` on a copy of `dir` (which must exist and no other process may hold; `held`: the
 * caller's claim on it), and remove the copy
 * afterwards, also when `task` fails. The copy sits beside `dir` so that tables can be
 * hard-linked; where that is impossible (no write access there) it goes to the temp directory,
 * and tables that cannot be linked (another filesystem) are copied.
 */
export async function withCheckCopy<T> (dir: string, task: (copy: string) => Promise<T>, held?: DirClaim): Promise<T> {
  const real = await canonicalDir(dir)
  const name = `.${basename(real)}.check-${process.pid}-${randomBytes(4).toString('hex')}`
  // Known to removeCheckCopies() before it exists: a signal may come while it is being made.
  let copy = join(dirname(real), name)
  live.add(copy)
  try {
    await mkdir(copy)
  } catch {
    live.delete(copy)
    copy = join(tmpdir(), name.slice(1))
    live.add(copy)
    await mkdir(copy)
  }
  try {
    // Held while copying, so that no queue of this process opens (and recovers) it meanwhile.
    const claim = held ?? await claimDir(real)
    try {
      for (const entry of await readdir(real, { withFileTypes: true })) {
        if (!entry.isFile() || SKIPPED.has(entry.name)) continue
        await linkOrCopy(join(real, entry.name), join(copy, entry.name), TABLE.test(entry.name))
      }
      await copySegmentFiles(real, copy)
    } finally {
      if (held === undefined) claim.release()
    }
    return await task(copy)
  } finally {
    await rm(copy, { recursive: true, force: true, maxRetries: 3 })
    live.delete(copy)
  }
}

async function linkOrCopy (from: string, to: string, linkable: boolean): Promise<void> {
  if (linkable) {
    try {
      await link(from, to)
      return
    } catch {}
  }
  await copyFile(from, to)
}

/** The segment files of every log of `dir`, into the same places in `copy`. */
async function copySegmentFiles (dir: string, copy: string): Promise<void> {
  const logs = await readdir(join(dir, SEGMENTS_DIR), { withFileTypes: true }).catch(() => [])
  for (const log of logs) {
    if (!log.isDirectory()) continue
    const from = join(dir, SEGMENTS_DIR, log.name)
    const to = join(copy, SEGMENTS_DIR, log.name)
    await mkdir(to, { recursive: true })
    for (const name of await readdir(from)) if (SEGMENT_FILE.test(name)) await linkOrCopy(join(from, name), join(to, name), true)
  }
}

/**
 * Whether another process holds LevelDB's lock on `dir`, found without opening `LOCK`.
 *
 * On Linux, /proc/locks lists every POSIX lock by device and inode: the lock is held when a line
 * names the inode of `dir/LOCK`. Elsewhere evaq asks LevelDB, with an open that must fail right
 * after taking the lock (`errorIfExists`): it fails with LEVEL_LOCKED when the lock is held,
 * otherwise with "exists" before recovering anything. That open still rotates LevelDB's info
 * log (`LOG` to `LOG.old`), the one change check makes to the directory on such systems.
 */
export async function heldByAnotherProcess (dir: string): Promise<boolean> {
  let lock
  try {
    lock = await stat(join(dir, 'LOCK'), { bigint: true })
  } catch {
    return false // no LOCK file: LevelDB never opened it, nobody can hold it
  }
  let table: string | undefined
  try {
    table = await readFile('/proc/locks', 'utf8')
  } catch {}
  if (table !== undefined) {
    const dev = lock.dev
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn)
    const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${lock.ino}`
    return table.split('\n').some(line => line.split(/\s+/).includes(id))
  }
  const db = new ClassicLevel(dir, { createIfMissing: false, errorIfExists: true })
  try {
    await db.open()
    await db.close()
    return false
  } catch (err) {
    return hasCode(err, 'LEVEL_LOCKED')
  }
}
