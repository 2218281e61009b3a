import { ERROR_CODES, EvaqError, type EvaqErrorCode } from '../errors.js'
import type { CliRecord } from './backend.js'
import { serviceUrl } from './backend.js'
import { recordLine, recordText, writeOut } from './output.js'
import { dataDir, serviceHolding } from './target.js'
import { intFlag, UsageError } from './usage.js'

/**
 * `evaq tail LOG --follow --subscriber NAME [--url URL]`: a consumer on the command line. It reads
 * the service's change stream of the subscriber (`GET …/subscribers/NAME/stream`, Server-Sent
 * Events), prints each record as it comes and acknowledges it once printed. A record printed but
 * not acked (the command was killed in between) comes back after the subscriber's lease: each
 * record is printed at least once.
 *
 * A subscriber that does not exist yet is created, starting at `--from` or at the next record
 * pushed (what `tail` prints without `--follow`); an existing one resumes where it is.
 */

export interface FollowOptions {
  readonly url: string
  readonly token: string | undefined
  readonly log: string
  readonly subscriber: string
  /** Stop after this many records. */
  readonly count: number
  /** Where a new subscriber starts. @defaultValue 'latest' */
  readonly from?: number | undefined
  readonly json: boolean
  /** Ctrl-C: ends the stream; the command then exits 0. */
  readonly signal: AbortSignal
}

/** The command: its flags checked, Ctrl-C (SIGINT) and SIGTERM end it with exit code 0. */
export async function followCommand (log: string, count: number, values: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  if (values.follow !== true || typeof values.subscriber !== 'string') throw new UsageError('tail --follow goes with --subscriber NAME')
  if (values.data !== undefined && values.url !== undefined) throw new UsageError('give --data DIR or --url URL, not both')
  let url = values.url
  if (typeof url !== 'string') {
    // No --url: the service that serves --data (default ./data), as the other commands find it.
    const dir = dataDir(values)
    const service = await serviceHolding(dir)
    if (service === undefined) {
      throw new EvaqError('EVAQ_NOT_FOUND', `tail --follow reads a running service, and none serves ${dir} (no EVAQ-SERVICE there): ` +
        `start \`evaq serve --data ${dir}\` or give --url URL`)
    }
    url = service.url
  }
  const stop = new AbortController()
  const onSignal = (): void => stop.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await follow({
      url,
      token: typeof values.token === 'string' ? values.token : process.env.EVAQ_TOKEN,
      log,
      subscriber: values.subscriber,
      count,
      from: values.from === undefined ? undefined : intFlag(values.from as string, '--from', 0),
      json: values.json === true,
      signal: stop.signal,
    })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

interface Event {
  readonly event: string
  readonly data: string
}

/** Follow the subscriber; resolves with the exit code (0) once `count` records were printed or `signal` aborted. */
export async function follow (options: FollowOptions): Promise<number> {
  const base = serviceUrl(options.url)
  const headers: Record<string, string> = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }
  const sub = `/v1/logs/${encodeURIComponent(options.log)}/subscribers/${encodeURIComponent(options.subscriber)}`
  const call = async (method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> => {
    const res = await reach(base, fetch(new URL(path, base), {
      method,
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal === undefined ? {} : { signal }),
    }))
    if (!res.ok) throw await failure(base, res)
    return res
  }
  await call('PUT', sub, { start: options.from ?? 'latest' })
  // Ctrl-C or --count ends the stream: the request is aborted, and the loop below sees the end.
  const stop = new AbortController()
  const onAbort = (): void => { stop.abort() }
  if (options.signal.aborted) return 0
  options.signal.addEventListener('abort', onAbort, { once: true })
  let printed = 0
  let lastId: number | undefined
  try {
    const res = await reach(base, fetch(new URL(`${sub}/stream`, base), { headers: { ...headers, accept: 'text/event-stream' }, signal: stop.signal }))
    if (!res.ok) throw await failure(base, res)
    for await (const e of events(res.body!)) {
      if (e.event === 'end') {
        const why = JSON.parse(e.data) as { code?: string, message?: string }
        throw new EvaqError(errorCode(why.code), `The service ended the stream: ${why.message ?? ''}`)
      }
      if (e.event !== 'message') continue
      const r = JSON.parse(e.data) as { id: number, payload: string, pushedAt: number }
      const record: CliRecord = { ...r, payload: Buffer.from(r.payload, 'base64') }
      await writeOut(`${options.json ? recordLine(record) : recordText(record)}\n`)
      // Acked once printed (not when the command is stopped between the two: the record comes again).
      await call('POST', `${sub}/ack`, { ids: [r.id] })
      lastId = r.id
      if (++printed >= options.count) break
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err
  } finally {
    options.signal.removeEventListener('abort', onAbort)
    stop.abort()
  }
  if (options.signal.aborted) {
    const through = lastId === undefined ? '' : `, through ID ${lastId}`
    console.error(`evaq: tail interrupted: ${printed} record(s) printed and acknowledged as ${options.subscriber}${through}`)
  }
  return 0
}

/** The events of an SSE body (comments and fields other than `event` and `data` skipped). */
async function * events (body: ReadableStream<Uint8Array>): AsyncGenerator<Event> {
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n')
    for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let event = 'message'
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5))
      }
      if (data.length > 0) yield { event, data: data.join('\n') }
    }
  }
}

async function reach (base: URL, request: Promise<Response>): Promise<Response> {
  try {
    return await request
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err
    const why = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
    throw new EvaqError('EVAQ_IO', `Cannot reach the evaq service at ${base.origin}: ${why}`, { cause: err })
  }
}

/** The service's JSON error as an EvaqError with its code. */
async function failure (base: URL, res: Response): Promise<EvaqError> {
  let e: { code?: string, message?: string, ids?: number[] } | undefined
  try {
    e = await res.json() as typeof e
  } catch {}
  const message = `${e?.message ?? `HTTP ${res.status}`} (HTTP ${res.status} from ${base.origin})`
  return new EvaqError(errorCode(e?.code), message, Array.isArray(e?.ids) ? { ids: e.ids } : {})
}

function errorCode (code: unknown): EvaqErrorCode {
  return typeof code === 'string' && code in ERROR_CODES ? code as EvaqErrorCode : 'EVAQ_IO'
}
