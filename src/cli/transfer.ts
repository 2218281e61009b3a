import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { crashPoint } from '../crash-points.js'
import { EvaqError } from '../errors.js'
import type { Backend } from './backend.js'
import { markerPath, pendingStored, readMarker, removeMarker, writeMarker, type ImportMarker } from './import-marker.js'
import { guardInterrupts, type Interrupt } from './interrupt.js'
import { progress } from './progress.js'

/**
 * `evaq import`: a log as NDJSON, one record per line in the shape `peek --json` and `evaq export`
 * (export.ts) print (`{ id, pushedAt, payload (base64), error?, retry? }`). Import pushes the
 * payloads again (they get new IDs); IDs, push times, errors and retry state are not carried over.
 */

/** Records pushed per atomic write while importing, and their payload bytes (under the service's body limit in base64). */
const BATCH_COUNT = 1000
const BATCH_BYTES = 2 * 1024 * 1024

interface ImportLine {
  payload: Buffer
  /** Its line number in the input (from 1). */
  line: number
  bytes: number
}

/**
 * Read NDJSON records from `--in FILE` (checked whole before anything is pushed) or stdin. From a
 * file, the progress is kept beside it (import-marker.ts): interrupted (Ctrl-C, SIGTERM, a kill,
 * an error), the same command continues after the records already imported. Ctrl-C and SIGTERM
 * let the batch being pushed finish, then say how many records were imported and exit 130 / 143.
 */
export async function importLog (q: Backend, log: string, options: { in: string | undefined, json: boolean, target: string }): Promise<number> {
  const interrupt = guardInterrupts()
  try {
    return await importWith(q, log, options, interrupt)
  } finally {
    interrupt.dispose()
  }
}

async function importWith (q: Backend, log: string, options: { in: string | undefined, json: boolean, target: string }, interrupt: Interrupt): Promise<number> {
  let total: number | undefined
  let marker: ImportMarker | undefined
  let path: string | undefined
  if (options.in !== undefined) {
    const source = await stat(options.in)
    total = source.size
    // A file is checked first, so that a malformed line imports nothing.
    for await (const line of lines(createReadStream(options.in))) {
      void line
      if (interrupt.signal.aborted) break
    }
    if (!interrupt.signal.aborted) {
      path = markerPath(options.in)
      marker = await resume(q, log, options.in, path, options.target, { size: source.size, mtimeMs: source.mtimeMs })
    }
  }
  if (interrupt.signal.aborted) {
    console.error(`evaq: import interrupted (${interrupt.received!}) before any record was imported`)
    return interrupt.exitCode
  }
  const skip = marker?.line ?? 0
  const input: Readable = options.in === undefined ? process.stdin : createReadStream(options.in)
  const bar = progress(process.stdout, `import ${log}`, 'bytes', total)
  let batch: Buffer[] = []
  let batchBytes = 0
  let batchFrom = 0
  let batchLine = 0
  let readBytes = 0
  /** Lines of the input imported (every record up to it is stored). */
  let done = skip
  const ids: number[] = []
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    if (marker !== undefined) {
      const nextId = (await q.stats() as unknown as Record<string, { nextId: number }>)[log]!.nextId
      marker.pending = { from: batchFrom, line: batchLine, count: batch.length, nextId }
      await writeMarker(path!, marker)
      crashPoint('import:pending')
    }
    const pushed = await q.push(log, batch)
    crashPoint('import:pushed')
    ids.push(...pushed)
    done = batchLine
    if (marker !== undefined) {
      delete marker.pending
      marker.line = batchLine
      marker.imported += pushed.length
      marker.firstId ??= pushed[0]
      marker.lastId = pushed[pushed.length - 1]
      await writeMarker(path!, marker, false)
    }
    batch = []
    batchBytes = 0
    bar.update(readBytes)
  }
  const summary = (): string => `imported ${ids.length} record(s) into ${log}${ids.length > 0 ? ` (IDs ${ids[0]}..${ids[ids.length - 1]})` : ''}`
  const rest = (): string => marker !== undefined
    ? `; ${marker.imported} of the file's records are imported, through line ${done}: ` +
      `run the same command again to continue after it (the progress is in ${path})`
    : `; the input was imported through line ${done}, the records after it were not`
  try {
    for await (const { payload, line, bytes } of lines(input)) {
      readBytes += bytes
      if (interrupt.signal.aborted) break
      if (line <= skip) continue
      if (batch.length > 0 && (batch.length >= BATCH_COUNT || batchBytes + payload.length > BATCH_BYTES)) await flush()
      if (interrupt.signal.aborted) break
      if (batch.length === 0) batchFrom = line
      batch.push(payload)
      batchBytes += payload.length
      batchLine = line
    }
    if (!interrupt.signal.aborted) await flush()
  } catch (err) {
    bar.done()
    if (ids.length > 0 || marker !== undefined) console.error(`evaq: ${summary()} before the error${rest()}`)
    throw err
  }
  bar.done()
  if (interrupt.received !== undefined) {
    console.error(`evaq: import interrupted (${interrupt.received}): ${summary()}${rest()}`)
    if (options.json) {
      console.log(JSON.stringify({ imported: ids.length, firstId: ids[0], lastId: ids[ids.length - 1], interrupted: interrupt.received, line: done }))
    }
    return interrupt.exitCode
  }
  if (path !== undefined) await removeMarker(path)
  const result = { imported: ids.length, firstId: ids[0], lastId: ids[ids.length - 1] }
  const range = ids.length > 0 ? `: IDs ${ids[0]}..${ids[ids.length - 1]}` : ''
  console.log(options.json ? JSON.stringify(result) : `imported ${ids.length} record(s) into ${log}${range}`)
  return 0
}

/** The progress of an earlier, unfinished import of `source` into `target`'s `log`, settled; or a new one. */
async function resume (q: Backend, log: string, source: string, path: string, target: string, file: ImportMarker['source']): Promise<ImportMarker> {
  const found = await readMarker(path)
  if (found === undefined) return { version: 1, target, log, source: file, line: 0, imported: 0 }
  if (found.target !== target || found.log !== log) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${source} has an unfinished import into ${found.log} of ${found.target} (${path}): ` +
      `finish it with that target and log, or delete ${path} to import from the first line`)
  }
  if (found.source.size !== file.size || found.source.mtimeMs !== file.mtimeMs) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      `${source} changed since its import was interrupted (${path}): delete ${path} to import it from the first line`)
  }
  if (found.pending !== undefined) {
    const { from, line } = found.pending
    const payloads: Buffer[] = []
    for await (const record of lines(createReadStream(source))) {
      if (record.line > line) break
      if (record.line >= from) payloads.push(record.payload)
    }
    if (await pendingStored(q, found, payloads, path)) {
      found.line = line
      found.imported += found.pending.count
      found.firstId ??= found.pending.nextId
      found.lastId = found.pending.nextId + found.pending.count - 1
    }
    delete found.pending
    await writeMarker(path, found)
  }
  if (found.line > 0) process.stderr.write(`evaq: continuing the import of ${source} after line ${found.line} (${found.imported} record(s) imported before)\n`)
  return found
}

/** The records of an NDJSON stream; EVAQ_INVALID_ARGUMENT names the first bad line. */
async function * lines (input: Readable): AsyncGenerator<ImportLine> {
  let n = 0
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    n++
    const bytes = Buffer.byteLength(line) + 1
    if (line.trim() === '') continue
    let record: { payload?: unknown }
    try {
      record = JSON.parse(line) as { payload?: unknown }
    } catch {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Line ${n} is not JSON`)
    }
    if (record === null || typeof record !== 'object' || typeof record.payload !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(record.payload) || record.payload.length % 4 !== 0) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Line ${n} is not a record: expected an object with a base64 \`payload\``)
    }
    yield { payload: Buffer.from(record.payload, 'base64'), line: n, bytes }
  }
}
