import { Readable } from 'node:stream'
import { assertNewFile, saveArchive } from '../backup/archive-file.js'
import { manifestOf, type ArchiveRef } from '../backup/archive-reader.js'
import type { BackupManifest, BackupSummary } from '../backup/manifest.js'
import { restoreArchives, type RestorePhase } from '../backup/restore.js'
import { ArchiveBuckets, archiveObject, assertNewObject, uploadArchive, type S3Place } from '../backup/s3-archive.js'
import { givenS3Flag, s3Place } from './s3-flags.js'
import { ERROR_CODES, EvaqError, isEvaqError, type EvaqErrorCode } from '../errors.js'
import { crashPoint } from '../crash-points.js'
import { Evaq } from '../evaq.js'
import { dataDirKind } from '../store/dir-claim.js'
import { isS3Url } from '../store/s3-bucket.js'
import { serviceUrl } from './backend.js'
import { check } from '../store/check.js'
import { guardInterrupts } from './interrupt.js'
import { progress, type Progress } from './progress.js'
import { dataDir, serviceHolding, tokenOf } from './target.js'
import { UsageError } from './usage.js'

/**
 * `evaq backup` and `evaq restore`. A backup of a directory no service holds opens it here; one
 * of a running service (`--url`, or `--data` of the directory it holds, found by its EVAQ-SERVICE
 * file) asks the service, which holds the directory's lock, to take the snapshot and stream it.
 * Either way the archive is written under a temporary name, read back whole, and only then named
 * FILE; or, for `--out s3://bucket/key`, uploaded and checked on the way, the upload completing
 * only once the whole archive checked out (s3-archive.ts). Archives of `--since` and `--from` may
 * be files or objects, mixed.
 */

type Values = Record<string, string | boolean | string[] | undefined>

interface BackupDone {
  file: string
  bytes: number
  manifest: BackupManifest
  summary: BackupSummary
}

function printBackup (done: BackupDone, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(done))
    return
  }
  const { manifest: m, summary: s } = done
  const marks = Object.entries(m.logs).map(([log, mark]) => `${log} ${mark.highWater}`).join(', ')
  const on = m.base === undefined ? '' : ` (on ${m.base.id})`
  console.log(`${m.kind} backup ${m.id}${on} written to ${done.file}: ` +
    `${done.bytes} bytes, ${s.entries} entries, ${s.references} of them by reference to the base`)
  console.log(`high-water IDs: ${marks}`)
}

/** Save the archive's chunks to the backup's target (a file, or an object); `signal` stops it. */
type Save = (
  chunks: AsyncIterable<Uint8Array>,
  onProgress: (phase: 'write' | 'verify', bytes: number, total?: number) => void,
  signal: AbortSignal
) => Promise<{ manifest: BackupManifest, summary: BackupSummary, bytes: number }>

/**
 * Where s3:// archives are (s3-flags.ts). The flags are refused when no archive of the command is
 * in a bucket.
 */
function s3PlaceFor (values: Values, used: boolean): S3Place {
  const given = givenS3Flag(values)
  if (!used && given !== undefined) throw new UsageError(`--${given} is for s3:// archives; no archive of this command is one`)
  return s3Place(values)
}

/** An archive named on the command line: a file, or an object (s3://bucket/key). */
function archiveRef (buckets: ArchiveBuckets, name: string): Promise<ArchiveRef> | ArchiveRef {
  return isS3Url(name) ? buckets.source(name) : name
}

function backupBar (total: number | undefined): { done: () => void, onProgress: (phase: 'write' | 'verify', bytes: number, total?: number) => void } {
  let phase: 'write' | 'verify' = 'write'
  let bar = progress(process.stdout, 'backup', 'bytes', total)
  return {
    done: () => bar.done(),
    onProgress: (p, bytes, t) => {
      if (p !== phase) {
        bar.done()
        phase = p
        bar = progress(process.stdout, 'backup: verify', 'bytes', t)
      }
      // The total is the queue's live bytes: the archive differs by removed records and metadata.
      bar.update(total === undefined || p === 'verify' ? bytes : Math.min(bytes, total), t)
    },
  }
}

export async function backupCommand (values: Values): Promise<number> {
  const { url } = values
  if (typeof values.out !== 'string') throw new UsageError('backup needs --out FILE')
  const out = values.out
  if (values.data !== undefined && url !== undefined) throw new UsageError('give --data DIR or --url URL, not both')
  const sinceName = values.since as string | undefined
  // Bad URLs are refused before anything is opened.
  const object = isS3Url(out) ? archiveObject(out) : undefined
  if (sinceName !== undefined && isS3Url(sinceName)) archiveObject(sinceName)
  const buckets = new ArchiveBuckets(s3PlaceFor(values, object !== undefined || (sinceName !== undefined && isS3Url(sinceName))))
  try {
    let save: Save
    if (object !== undefined) {
      const bucket = await buckets.bucket(object.bucket)
      await assertNewObject(bucket, object.key, out)
      save = (chunks, onProgress, signal) => uploadArchive(chunks, bucket, object.key, out, onProgress, signal)
    } else {
      await assertNewFile(out)
      save = (chunks, onProgress) => saveArchive(chunks, out, onProgress)
    }
    // --since: the manifest of an earlier archive (only its head is read).
    const since = sinceName === undefined ? undefined : await manifestOf(await archiveRef(buckets, sinceName))
    const token = tokenOf(values)
    // Ctrl-C or SIGTERM stops the backup between two chunks: the partial file is removed, an
    // upload is never completed.
    const interrupt = guardInterrupts()
    let done: BackupDone
    try {
      done = typeof url === 'string'
        ? await remoteBackup(url, token, out, save, since, interrupt.signal)
        : await localBackup(dataDir(values), token, out, save, since, interrupt.signal)
    } catch (err) {
      if (interrupt.received === undefined) throw err
      process.stderr.write(`evaq: backup interrupted (${interrupt.received}); nothing was written to ${out}\n`)
      return interrupt.exitCode
    } finally {
      interrupt.dispose()
    }
    printBackup(done, values.json === true)
    return 0
  } finally {
    await buckets.close()
  }
}

/** The archive's chunks until `signal` aborts (then EVAQ_ABORTED, and saveArchive removes its partial file). */
async function * untilAborted (chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    if (signal.aborted) throw new EvaqError('EVAQ_ABORTED', 'The backup was interrupted')
    yield chunk
    crashPoint('backup:chunk')
  }
  if (signal.aborted) throw new EvaqError('EVAQ_ABORTED', 'The backup was interrupted')
}

async function localBackup (
  dir: string,
  token: string | undefined,
  out: string,
  save: Save,
  since: BackupManifest | undefined,
  signal: AbortSignal
): Promise<BackupDone> {
  if (await dataDirKind(dir) !== 'queue') throw new EvaqError('EVAQ_NOT_FOUND', `There is no queue at ${dir}`)
  let evaq: Evaq
  try {
    evaq = await Evaq.open(dir)
  } catch (err) {
    if (isEvaqError(err, 'EVAQ_LOCKED')) {
      // A running `evaq serve` holds the directory: it takes the snapshot (see service-file.ts).
      const service = await serviceHolding(dir)
      if (service !== undefined) {
        process.stderr.write(`evaq: ${dir} is held by the service at ${service.url} (pid ${service.pid}); backing up through it\n`)
        return remoteBackup(service.url, token, out, save, since, signal)
      }
      throw new EvaqError('EVAQ_LOCKED', `The data directory ${dir} is in use by another process that is not an \`evaq serve\` this command can find. Back it up through the process that holds it (a service: --url http://HOST:PORT and --token)`, { cause: err })
    }
    throw err
  }
  try {
    const stats = await evaq.stats()
    const bar = backupBar(stats.wal.bytes + stats.dlq.bytes + stats.parked.bytes)
    try {
      const stream = await evaq.backup(since === undefined ? {} : { since })
      const saved = await save(untilAborted(stream, signal), bar.onProgress, signal)
      return { file: out, ...saved }
    } finally {
      bar.done()
    }
  } finally {
    await evaq.close()
  }
}

async function remoteBackup (
  url: string,
  token: string | undefined,
  out: string,
  save: Save,
  since: BackupManifest | undefined,
  signal: AbortSignal
): Promise<BackupDone> {
  const base = serviceUrl(url)
  const headers: Record<string, string> = {}
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  let res: Response
  try {
    res = await fetch(new URL('/v1/backup', base), {
      method: 'POST',
      headers: since === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      ...(since === undefined ? {} : { body: JSON.stringify({ since }) }),
    })
  } catch (err) {
    const why = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
    throw new EvaqError('EVAQ_IO', `Cannot reach the evaq service at ${base.origin}: ${why}`, { cause: err })
  }
  if (!res.ok || res.body === null) {
    let e: { code?: string, message?: string } | undefined
    try { e = await res.json() as typeof e } catch { e = undefined }
    const code = typeof e?.code === 'string' && e.code in ERROR_CODES ? e.code as EvaqErrorCode : 'EVAQ_IO'
    throw new EvaqError(code, `${e?.message ?? `HTTP ${res.status}`} (HTTP ${res.status} from ${base.origin})`)
  }
  const bar = backupBar(undefined)
  try {
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)
    const saved = await save(untilAborted(body, signal), bar.onProgress, signal).catch((err: unknown) => {
      if (err instanceof EvaqError || signal.aborted) throw err
      throw new EvaqError('EVAQ_IO',
        `The service at ${base.origin} ended the backup early (${(err as Error).message}); nothing was written to ${out}`, { cause: err })
    })
    return { file: out, ...saved }
  } finally {
    bar.done()
  }
}

const PHASE_LABEL: Record<RestorePhase, [string, string]> = {
  verify: ['restore: verify', 'bytes'],
  restore: ['restore', 'bytes'],
  'read-back': ['restore: read back', 'entries'],
}

export async function restoreCommand (values: Values): Promise<number> {
  if (values.url !== undefined) throw new UsageError('restore writes a new directory (--data NEWDIR); it does not go through a service')
  const from = values.from as string[] | undefined
  if (from === undefined || from.length === 0) {
    throw new UsageError('restore needs --from FILE: a full backup, then --from for each incremental one built on it, oldest first')
  }
  const dir = dataDir(values)
  const verify = values.verify === true
  // Bad URLs are refused before anything is opened.
  for (const name of from) if (isS3Url(name)) archiveObject(name)
  const buckets = new ArchiveBuckets(s3PlaceFor(values, from.some(isS3Url)))
  try {
    return await restoreFrom(values, from, await Promise.all(from.map(name => archiveRef(buckets, name))), dir, verify)
  } finally {
    await buckets.close()
  }
}

async function restoreFrom (values: Values, from: string[], refs: ArchiveRef[], dir: string, verify: boolean): Promise<number> {
  let phase: RestorePhase | undefined
  let bar: Progress = progress({ isTTY: false, write: () => true }, '', '')
  // Ctrl-C or SIGTERM stops the restore, which removes its work directory: nothing is left at DIR.
  const interrupt = guardInterrupts()
  let result
  try {
    result = await restoreArchives(refs, dir, {
      verify,
      signal: interrupt.signal,
      onProgress: (p, done, total) => {
        if (p !== phase) {
          bar.done()
          phase = p
          bar = progress(process.stdout, ...PHASE_LABEL[p], total)
        }
        bar.update(done, total)
      },
    })
  } catch (err) {
    if (interrupt.received !== undefined && isEvaqError(err, 'EVAQ_ABORTED')) {
      bar.done()
      process.stderr.write(`evaq: restore interrupted (${interrupt.received}); nothing was written to ${dir}\n`)
      return interrupt.exitCode
    }
    throw err
  } finally {
    bar.done()
    interrupt.dispose()
  }
  let damaged = false
  let report
  if (verify) {
    const checked = progress(process.stdout, 'restore: check', 'segments')
    report = await check(dir, n => checked.update(n))
    checked.done()
    damaged = report.damaged
  }
  const m = result.manifest
  if (values.json === true) {
    console.log(JSON.stringify({
      dir,
      archives: from.length,
      entries: result.entries,
      nextIds: result.nextIds,
      manifest: m,
      verified: verify ? !damaged : undefined,
      check: report,
    }))
  } else {
    console.log(`restored ${result.entries} entries from ${from.length} archive(s) into ${dir}: ` +
      `the queue as of ${new Date(m.createdAt).toISOString()} (${m.kind} backup ${m.id})`)
    console.log(`next IDs: ${Object.entries(result.nextIds).map(([log, next]) => `${log} ${next}`).join(', ')}`)
    if (verify) {
      console.log(damaged
        ? 'DAMAGED: the restored directory fails `evaq check`'
        : 'verified: every entry read back and matched, every record passed its checksum')
    }
  }
  return damaged ? 1 : 0
}
