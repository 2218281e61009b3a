import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fsyncPath } from './durable-file.js'

/** How segment files come to be (see segment-files.ts): created, or reused, and made durable. */

const ZEROS = Buffer.alloc(1024 * 1024)

/** Create `dir` and make its entry (and those of the parents it creates) survive an OS crash. */
export async function makeDurableDir (dir: string): Promise<void> {
  const made = await mkdir(dir, { recursive: true })
  if (made === undefined) return
  // Each directory created has a new entry in its parent: sync the parents up to made's.
  const top = dirname(made)
  for (let d = dirname(dir); ; d = dirname(d)) {
    await fsyncPath(d)
    if (d === top || dirname(d) === d) break
  }
}

/**
 * A new file at `path` for `capacity` bytes of frames: created under a temporary name (zero-filled
 * to `capacity` and synced with `preallocate`), renamed into place, its directory synced. A crash
 * leaves the file whole or only a `.tmp`, which the next open deletes.
 */
export async function createFile (
  dir: string, path: string, capacity: number, preallocate: boolean
): Promise<{ handle: FileHandle, capacity: number }> {
  const tmp = `${path}.tmp`
  const handle = await open(tmp, 'w+')
  try {
    if (preallocate) {
      for (let at = 0; at < capacity; at += ZEROS.byteLength) {
        const n = Math.min(ZEROS.byteLength, capacity - at)
        await handle.write(ZEROS, 0, n, at)
      }
      await handle.datasync()
    }
    await rename(tmp, path)
    await fsyncPath(dir)
  } catch (err) {
    await handle.close().catch(() => {})
    await rm(tmp, { force: true }).catch(() => {})
    throw err
  }
  return { handle, capacity }
}

/**
 * A spare renamed to `path` (its new number), its directory synced: frames are written over its
 * old ones up to its size (no new blocks, no metadata to commit) and appended beyond it.
 */
export async function reuseFile (
  dir: string, spare: { name: string, size: number }, path: string, capacity: number
): Promise<{ handle: FileHandle, capacity: number }> {
  await rename(join(dir, spare.name), path)
  await fsyncPath(dir)
  const handle = await open(path, 'r+')
  return { handle, capacity: Math.max(spare.size, capacity) }
}
