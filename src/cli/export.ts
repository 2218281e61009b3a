import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { link, lstat, rm } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { crashPoint } from '../crash-points.js'
import { EvaqError } from '../errors.js'
import type { Backend } from './backend.js'
import { guardInterrupts } from './interrupt.js'
import { recordLine, writeOut } from './output.js'
import { progress } from './progress.js'

/**
 * `evaq export`: a log as NDJSON, one record per line in the shape `peek --json` prints
 * (`{ id, pushedAt, payload (base64), error?, retry? }`), to stdout or `--out FILE`. A file is
 * written under a temporary name and linked to FILE once complete (a link never replaces a
 * file), so FILE is whole or absent: an interrupted export (Ctrl-C, SIGTERM, an error) removes
 * the temporary file and says how far it got.
 */

/** Records fetched per read while exporting, and payload bytes per read. */
const PAGE_COUNT = 1000
const PAGE_BYTES = 4 * 1024 * 1024

/** EVAQ_INVALID_ARGUMENT when `file` exists: a command's output never replaces a file. */
export async function assertNewOutput (file: string, flag: string): Promise<void> {
  const exists = await lstat(file).then(() => true, () => false)
  if (exists) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} exists: ${flag} never replaces a file; remove it or name another`)
}

/** Write LOG's records from `from` up to those present when the export started. */
export async function exportLog (q: Backend, log: string, options: { out: string | undefined, from: number }): Promise<number> {
  const { out } = options
  if (out !== undefined) await assertNewOutput(out, '--out')
  const stats = (await q.stats() as unknown as Record<string, { count: number, nextId: number }>)[log]!
  // Records pushed while the export runs are not part of it: it ends.
  const end = stats.nextId
  const tmp = out === undefined ? undefined : `${out}.${process.pid}.evaq-export`
  const file = tmp === undefined ? undefined : createWriteStream(tmp, { flags: 'wx' })
  if (file !== undefined) await once(file, 'open')
  // On a terminal, records go to the screen and a bar would garble them: only with --out.
  const bar = progress(file === undefined ? { isTTY: false, write: () => true } : process.stdout, `export ${log}`, 'records', stats.count)
  const interrupt = guardInterrupts()
  let exported = 0
  let lastId: number | undefined
  let complete = false
  try {
    for (let from = options.from; !interrupt.signal.aborted;) {
      const page = (await q.read(log, { from, maxBytes: PAGE_BYTES, maxCount: PAGE_COUNT })).filter(r => r.id < end)
      // A signal that came during the read: the page is not written, so what was is whole pages.
      if (page.length === 0 || interrupt.signal.aborted) break
      const text = page.map(recordLine).join('\n') + '\n'
      if (file === undefined) await writeOut(text)
      else await write(file, text)
      exported += page.length
      lastId = page[page.length - 1]!.id
      bar.update(exported)
      from = lastId + 1
      crashPoint('export:page')
    }
    if (file !== undefined) {
      file.end()
      await once(file, 'close')
      if (!interrupt.signal.aborted) await link(tmp!, out!)
    }
    complete = !interrupt.signal.aborted
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${out!} exists: --out never replaces a file`)
    throw err
  } finally {
    bar.done()
    interrupt.dispose()
    if (file !== undefined) {
      if (!file.closed) file.destroy()
      await rm(tmp!, { force: true })
    }
  }
  const range = lastId === undefined ? '' : `, through ID ${lastId}`
  if (!complete) {
    const where = out === undefined ? `${exported} record(s) of ${log} were written to stdout${range}` : `nothing was written to ${out}`
    console.error(`evaq: export interrupted (${interrupt.received!}): ${where}`)
    return interrupt.exitCode
  }
  if (out !== undefined) console.log(`exported ${exported} record(s) of ${log} to ${out}`)
  return 0
}

function write (stream: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, err => { if (err == null) resolve(); else reject(err) })
  })
}
