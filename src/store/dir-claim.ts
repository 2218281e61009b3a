import { mkdir, readdir, realpath, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { EvaqError } from '../errors.js'

/**
 * Which data directories this process has open, checked before LevelDB is touched.
 *
 * LevelDB's lock is a POSIX record lock (fcntl) on `LOCK`, and POSIX drops all of a process's
 * locks on a file as soon as the process closes *any* descriptor of it. LevelDB's own second
 * open in the same process does exactly that: it opens `LOCK`, finds the name in its in-process
 * table, and closes the descriptor, which silently frees the directory for other processes while
 * the first database still writes to it. Its table is also keyed by the path as spelled, so a
 * second spelling of the same directory (relative, through a symlink) is not even refused. So
 * evaq never lets a second handle reach LevelDB: a claim, keyed by the directory's real path, is
 * taken before any open and released only by the handle that holds it.
 *
 * The registry lives on globalThis under a registered symbol, so that copies of this module
 * loaded twice in one process (two installed versions, ESM and a bundle) share it.
 */
const REGISTRY = Symbol.for('evaq.claimedDirectories')

function registry (): Map<string, DirClaim> {
  const g = globalThis as { [REGISTRY]?: Map<string, DirClaim> }
  return (g[REGISTRY] ??= new Map())
}

export interface DirClaim {
  /** The real path the claim is keyed by. */
  readonly path: string
  /** Let the directory go; a second call does nothing. */
  release (): void
}

/** The real path of `dir`, or its absolute path while it does not exist. */
export async function canonicalDir (dir: string): Promise<string> {
  try {
    return await realpath(dir)
  } catch {
    return resolve(dir)
  }
}

/**
 * Claim `dir` for one handle of this process (creating the directory first with `create`, so
 * that its real path is known). EVAQ_LOCKED when this process holds it already.
 */
export async function claimDir (dir: string, create = false): Promise<DirClaim> {
  if (create) await mkdir(dir, { recursive: true }).catch(() => {})
  const path = await canonicalDir(dir)
  const held = registry()
  if (held.has(path)) {
    throw new EvaqError('EVAQ_LOCKED', `${dir} is already open in this process; close the open queue (or wait for the command using it) first`)
  }
  const claim: DirClaim = {
    path,
    release: () => { if (held.get(path) === claim) held.delete(path) },
  }
  held.set(path, claim)
  return claim
}

/** Whether this process holds `dir`. */
export async function isClaimed (dir: string): Promise<boolean> {
  return registry().has(await canonicalDir(dir))
}

/** LevelDB's and evaq's own names: a directory holding only these (and no CURRENT) is not foreign. */
const OWN_NAME = /^(LOCK|LOG|LOG\.old|EVAQ-[A-Z-]+.*|segments|MANIFEST-\d+|\d+\.(ldb|log|sst))$/

/**
 * What `dir` is before it is opened: a queue (LevelDB's CURRENT is there), `empty` (a directory
 * with nothing but LevelDB's and evaq's own files, names starting with a dot and `lost+found`: a
 * queue may be created there) or `missing`. A regular file, or a directory holding anything
 * else, is refused with EVAQ_INVALID_ARGUMENT before anything is written into it: a queue
 * created there would scatter LevelDB's files among the user's.
 */
export async function dataDirKind (dir: string): Promise<'queue' | 'empty' | 'missing'> {
  const s = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new EvaqError('EVAQ_IO', `Cannot read ${dir}: ${err.message}`, { cause: err })
  })
  if (s === undefined) return 'missing'
  if (!s.isDirectory()) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${dir} is a file, not a data directory; give a directory (new, empty, or holding a queue)`)
  }
  const names = await readdir(dir)
  if (names.includes('CURRENT')) return 'queue'
  const foreign = names.filter(n => !OWN_NAME.test(n) && !n.startsWith('.') && n !== 'lost+found')
  if (foreign.length > 0) {
    const listed = foreign.slice(0, 3).map(n => JSON.stringify(n)).join(', ') + (foreign.length > 3 ? ', ...' : '')
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${dir} is not empty and holds no evaq queue (it holds ${listed}); ` +
      'give a new or empty directory, or the directory of a queue')
  }
  return 'empty'
}
