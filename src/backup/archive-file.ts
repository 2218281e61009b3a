import { link, lstat, open, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { EvaqError } from '../errors.js'
import { verifyArchive } from './archive-reader.js'
import type { BackupManifest, BackupSummary } from './manifest.js'
import { fsyncPath } from '../store/durable-file.js'

/**
 * Save an archive's bytes to `file`, which must not exist: written under a temporary name,
 * fsynced, read back and verified whole, and only then given its name (a hard link, which never
 * replaces a file that appeared meanwhile). On any failure nothing is left at `file`, so an
 * archive under its name is complete: a backup cut short (the service stopped, the connection
 * dropped) never looks like one.
 */
export async function saveArchive (
  chunks: AsyncIterable<Uint8Array>,
  file: string,
  onProgress?: (phase: 'write' | 'verify', bytes: number, total?: number) => void
): Promise<{ manifest: BackupManifest, summary: BackupSummary, bytes: number }> {
  const partial = `${file}.partial-${process.pid}`
  let handle
  try {
    handle = await open(partial, 'wx')
  } catch (err) {
    const code = (err as { code?: string }).code === 'ENOENT' ? 'EVAQ_NOT_FOUND' : 'EVAQ_IO'
    throw new EvaqError(code, `Cannot create ${partial}: ${(err as Error).message}`, { cause: err })
  }
  let bytes = 0
  try {
    try {
      for await (const chunk of chunks) {
        await handle.write(chunk)
        bytes += chunk.byteLength
        onProgress?.('write', bytes)
      }
      await handle.sync()
    } finally {
      await handle.close()
    }
    const { manifest, summary } = await verifyArchive(partial, (done, total) => onProgress?.('verify', done, total))
    try {
      await link(partial, file)
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIST') {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} exists: a backup never replaces a file`, { cause: err })
      }
      throw new EvaqError('EVAQ_IO', `Cannot name the archive ${file}: ${(err as Error).message}`, { cause: err })
    }
    await rm(partial, { force: true })
    await fsyncPath(dirname(file))
    return { manifest, summary, bytes }
  } catch (err) {
    await rm(partial, { force: true })
    throw err
  }
}

/** EVAQ_INVALID_ARGUMENT unless nothing exists at `file` (checked before a backup starts). */
export async function assertNewFile (file: string): Promise<void> {
  const exists = await lstat(file).then(() => true, () => false)
  if (exists) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} exists: a backup never replaces a file`)
}
