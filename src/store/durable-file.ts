import { open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

/** fsync a file or a directory (`path`), so that what was written to it, or renamed in it, survives an OS crash. */
export async function fsyncPath (path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Replace `path` with `data` atomically and durably: write a temporary sibling (`tmp`), fsync it,
 * rename it over `path`, and fsync the directory (unless `syncDir` is false: the caller does not
 * need the rename itself to survive an OS crash). A crash leaves the old file or the new one,
 * never a torn one. On failure the temporary file is removed and the error thrown.
 */
export async function replaceFileDurably (path: string, data: string | Uint8Array, options: { tmp?: string, syncDir?: boolean } = {}): Promise<void> {
  const tmp = options.tmp ?? `${path}.tmp`
  try {
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {})
    throw err
  }
  if (options.syncDir !== false) await fsyncPath(dirname(path))
}
