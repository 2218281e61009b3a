import { mkdir, realpath } from 'node:fs/promises'
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
