import { randomBytes } from 'node:crypto'
import { readdir, realpath, rename, rm, rmdir, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { crashPoint } from '../crash-points.js'
import { EvaqError } from '../errors.js'
import { fsyncPath } from '../store/durable-file.js'

/**
 * Where a restore builds the new directory, and how it puts it in place, so that no signal or
 * crash at any moment leaves a half-restored queue under the target's name.
 *
 * The database is built in a work directory beside the target, on the same filesystem:
 * `.NAME.evaq-restore-PID-RANDOM` in the target's parent. Once it is complete (loaded, IDs
 * reserved, closed, every file and the directory fsynced) it is renamed to the target (rename(2)
 * replaces an empty directory, and fails on a non-empty one) and the parent is fsynced. Before the
 * rename the target is as it was found; after it the target is the whole restored queue.
 *
 * A target that is a mount point (an empty volume) cannot be replaced by a rename: the work
 * directory is then `.evaq-restore-PID-RANDOM` inside it, and its files are moved up with
 * LevelDB's CURRENT last. Interrupted among those moves, the target holds LevelDB files without
 * CURRENT, which evaq refuses to open (EVAQ_CORRUPTION) rather than taking it for a new queue.
 *
 * A work directory left by a restore that was killed (SIGKILL, a crash) is removed by the next
 * restore into the same target, once the process named in it no longer runs on this machine.
 */

export interface RestoreTarget {
  /** The target as given. */
  readonly dir: string
  /** Where the database is built. */
  readonly work: string
  /** The target is a mount point: the work directory is inside it, and commit moves files up. */
  readonly inPlace: boolean
}

const WORK = /^\.evaq-restore-(\d+)-[0-9a-f]+$/

/** The name of a work directory of `dir`, in its parent (or in `dir` itself when in place). */
function workName (dir: string, inPlace: boolean): string {
  const tag = `evaq-restore-${process.pid}-${randomBytes(4).toString('hex')}`
  return inPlace ? `.${tag}` : `.${basename(resolve(dir))}.${tag}`
}

function isWork (name: string, dir: string, inPlace: boolean): number | undefined {
  const prefix = inPlace ? '' : `.${basename(resolve(dir))}`
  if (!name.startsWith(prefix)) return undefined
  const m = WORK.exec(name.slice(prefix.length))
  return m === null ? undefined : Number(m[1])
}

function running (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}

/** Remove the work directories of `dir` whose restore is no longer running (in its parent, and in it). */
export async function removeStale (given: string): Promise<string[]> {
  const dir = await realpath(given).catch(() => given)
  const removed: string[] = []
  for (const [where, inPlace] of [[dirname(resolve(dir)), false], [dir, true]] as const) {
    for (const name of await readdir(where).catch(() => [] as string[])) {
      const pid = isWork(name, dir, inPlace)
      if (pid === undefined || running(pid)) continue
      await rm(join(where, name), { recursive: true, force: true, maxRetries: 3 })
      removed.push(join(where, name))
    }
  }
  return removed
}

/** Whether a name in the target itself is one a restore may find there (a running restore's work directory). */
export function isWorkName (name: string): boolean {
  return WORK.test(name)
}

/** Pick the work directory for `dir` (which exists empty, or not at all). */
export async function prepare (given: string, exists: boolean): Promise<RestoreTarget> {
  let inPlace = false
  // An existing target (a symbolic link to an empty directory, say) is replaced where it really is.
  const dir = exists ? await realpath(given) : given
  if (exists) {
    const [own, parent] = await Promise.all([stat(dir), stat(dirname(resolve(dir)))])
    inPlace = own.dev !== parent.dev
  }
  const work = inPlace ? join(dir, workName(dir, true)) : join(dirname(resolve(dir)), workName(dir, false))
  return { dir, work, inPlace }
}

/** fsync every file of the work directory, then the directory. */
export async function syncWork (target: RestoreTarget): Promise<void> {
  try {
    for (const entry of await readdir(target.work, { withFileTypes: true })) {
      if (entry.isFile()) await fsyncPath(join(target.work, entry.name))
    }
    await fsyncPath(target.work)
  } catch (err) {
    throw new EvaqError('EVAQ_IO', `Cannot sync ${target.work}`, { cause: err })
  }
}

const LEVELDB = /^(MANIFEST-\d+|\d+\.(ldb|log|sst))$/

/** Put the complete work directory in place under the target's name, durably. */
export async function commit (target: RestoreTarget): Promise<void> {
  const parent = dirname(resolve(target.dir))
  if (!target.inPlace) {
    try {
      await rename(target.work, target.dir)
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT',
          `Expected \`${target.dir}\` to be a new or empty directory; something was written to it during the restore. ` +
          'A restore never writes over data', { cause: err })
      }
      throw new EvaqError('EVAQ_IO', `Cannot rename ${target.work} to ${target.dir}`, { cause: err })
    }
    crashPoint('restore:renamed')
    await fsyncPath(parent).catch(err => {
      throw new EvaqError('EVAQ_IO', `Cannot sync ${parent} after renaming the restored directory into it`, { cause: err })
    })
    return
  }
  try {
    const names = await readdir(target.work)
    // LevelDB's files first, CURRENT last: until it is there, the target does not open.
    const rank = (n: string): number => n === 'CURRENT' ? 2 : LEVELDB.test(n) ? 0 : 1
    names.sort((a, b) => rank(a) - rank(b))
    for (const name of names) {
      await rename(join(target.work, name), join(target.dir, name))
      if (name !== 'CURRENT') crashPoint('restore:moved')
    }
    await rmdir(target.work)
    await fsyncPath(target.dir)
  } catch (err) {
    throw new EvaqError('EVAQ_IO', `Cannot move the restored files from ${target.work} into ${target.dir}`, { cause: err })
  }
}
