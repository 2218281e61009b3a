import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import { EvaqError } from '../errors.js'
import type { Backend } from './backend.js'
import { recordLine, writeOut } from './output.js'
import { progress } from './progress.js'

/**
 * `evaq export` and `evaq import`: a log as NDJSON, one record per line in the shape `peek --json`
 * prints (`{ id, pushedAt, payload (base64), error?, retry? }`). Import pushes the payloads again
 * (they get new IDs); IDs, push times, errors and retry state are not carried over.
 */

/** Records fetched per read while exporting, and payload bytes per read. */
const PAGE_COUNT = 1000
const PAGE_BYTES = 4 * 1024 * 1024
/** Records pushed per atomic write while importing, and their payload bytes (under the service's body limit in base64). */
const BATCH_COUNT = 1000
const BATCH_BYTES = 2 * 1024 * 1024

/** Write LOG's records from `from` up to those present when the export started. */
export async function exportLog (q: Backend, log: string, options: { out: string | undefined, from: number }): Promise<number> {
  const stats = (await q.stats() as unknown as Record<string, { count: number, nextId: number }>)[log]!
  // Records pushed while the export runs are not part of it: it ends.
  const end = stats.nextId
  const file = options.out === undefined ? undefined : createWriteStream(options.out, { flags: 'wx' })
  if (file !== undefined) await once(file, 'open')
  // On a terminal, records go to the screen and a bar would garble them: only with --out.
  const bar = progress(file === undefined ? { isTTY: false, write: () => true } : process.stdout, `export ${log}`, 'records', stats.count)
  let exported = 0
  try {
    for (let from = options.from; ;) {
      const page = (await q.read(log, { from, maxBytes: PAGE_BYTES, maxCount: PAGE_COUNT })).filter(r => r.id < end)
      if (page.length === 0) break
      const text = page.map(recordLine).join('\n') + '\n'
      if (file === undefined) await writeOut(text)
      else await write(file, text)
      exported += page.length
      bar.update(exported)
      from = page[page.length - 1]!.id + 1
    }
  } finally {
    bar.done()
    if (file !== undefined) {
      file.end()
      await once(file, 'close')
    }
  }
  if (file !== undefined) console.log(`exported ${exported} record(s) of ${log} to ${options.out}`)
  return 0
}

interface ImportLine {
  payload: Buffer
  bytes: number
}

/** Read NDJSON records from `--in FILE` (checked whole before anything is pushed) or stdin. */
export async function importLog (q: Backend, log: string, options: { in: string | undefined, json: boolean }): Promise<number> {
  let total: number | undefined
  if (options.in !== undefined) {
    total = (await stat(options.in)).size
    // A file is checked first, so that a malformed line imports nothing.
    for await (const line of lines(createReadStream(options.in))) void line
  }
  const input: Readable = options.in === undefined ? process.stdin : createReadStream(options.in)
  const bar = progress(process.stdout, `import ${log}`, 'bytes', total)
  let batch: Buffer[] = []
  let batchBytes = 0
  let readBytes = 0
  const ids: number[] = []
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    ids.push(...await q.push(log, batch))
    batch = []
    batchBytes = 0
    bar.update(readBytes)
  }
  try {
    for await (const { payload, bytes } of lines(input)) {
      readBytes += bytes
      if (batch.length > 0 && (batch.length >= BATCH_COUNT || batchBytes + payload.length > BATCH_BYTES)) await flush()
      batch.push(payload)
      batchBytes += payload.length
    }
    await flush()
  } catch (err) {
    bar.done()
    if (ids.length > 0) console.error(`evaq: imported ${ids.length} record(s) into ${log} (IDs ${ids[0]}..${ids[ids.length - 1]}) before the error`)
    throw err
  }
  bar.done()
  const summary = { imported: ids.length, firstId: ids[0], lastId: ids[ids.length - 1] }
  console.log(options.json ? JSON.stringify(summary) : `imported ${ids.length} record(s) into ${log}${ids.length > 0 ? `: IDs ${summary.firstId}..${summary.lastId}` : ''}`)
  return 0
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
    yield { payload: Buffer.from(record.payload, 'base64'), bytes }
  }
}

function write (stream: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, err => { if (err == null) resolve(); else reject(err) })
  })
}
