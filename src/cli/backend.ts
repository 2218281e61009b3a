import { ERROR_CODES, EvaqError, type EvaqErrorCode } from '../errors.js'
import { dataDirKind } from '../store/dir-claim.js'
import { Evaq } from '../evaq.js'
import type { RecordError } from '../log/log.js'
import type { EvaqOptions } from '../options.js'
import { QueueService, type LogSubscriberInfo, type ServiceStats } from '../server/queue-service.js'
import { LOG_NAMES } from '../schema.js'

/**
 * What the commands work on: a data directory opened in this process, or a running service over
 * HTTP (`--url`). Both answer in the same shapes, so every command prints the same either way.
 */

/** A record as the commands see it. */
export interface CliRecord {
  readonly id: number
  readonly payload: Buffer
  readonly pushedAt: number
  readonly error?: RecordError
  readonly retry?: Record<string, unknown>
}

export interface ReadRequest {
  from: number
  maxBytes: number
  maxCount: number
  /** Long poll: wait this long for a record at or after `from`. */
  waitMs?: number
  signal?: AbortSignal
}

export interface Backend {
  /** The logs, in the order `stats` lists them. */
  readonly logNames: readonly string[]
  stats (): Promise<ServiceStats>
  read (log: string, request: ReadRequest): Promise<CliRecord[]>
  push (log: string, payloads: Buffer[]): Promise<number[]>
  subscribers (log?: string): Promise<LogSubscriberInfo[]>
  /** Requeue DLQ records to the WAL, or parked records to the DLQ; resolves with their new IDs. */
  requeue (log: 'dlq' | 'parked', ids: number[] | 'all'): Promise<number[]>
  purge (log: 'dlq' | 'parked', ids: number[] | 'all'): Promise<number>
  close (): Promise<void>
}

/** The queue in `dir`, opened here. `create`: make the directory if it does not exist. */
export async function openLocal (dir: string, options: { create?: boolean, evaq?: EvaqOptions } = {}): Promise<Backend> {
  // Only import creates a queue: a read (a typo in --data, an empty directory) must not.
  if (options.create !== true && await dataDirKind(dir) !== 'queue') throw new EvaqError('EVAQ_NOT_FOUND', `There is no queue at ${dir}`)
  const evaq = await Evaq.open(dir, options.evaq)
  const service = new QueueService(evaq)
  return {
    logNames: service.logNames,
    stats: () => service.stats(),
    read: (log, r) => service.read(log, r),
    push: (log, payloads) => service.push(log, payloads),
    subscribers: log => service.subscribers(log),
    requeue: (log, ids) => log === 'dlq' ? service.requeueDeadLetters(ids) : service.requeueParked(ids),
    purge: (log, ids) => log === 'dlq' ? service.purgeDeadLetters(ids) : service.purgeParked(ids),
    close: () => evaq.close(),
  }
}

interface RecordJson {
  id: number
  payload: string
  pushedAt: number
  error?: RecordError
  retry?: Record<string, unknown>
}

/** `--url` as a URL: http or https, else EVAQ_INVALID_ARGUMENT. */
export function serviceUrl (url: string): URL {
  let base: URL
  try {
    base = new URL(url)
  } catch {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`--url\` to be a URL like http://127.0.0.1:7070, got \`${url}\``)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected an http(s) URL, got \`${url}\``)
  return base
}

/** The service at `url` (for example `http://127.0.0.1:7070`). */
export function openRemote (url: string, token: string | undefined): Backend {
  const base = serviceUrl(url)
  const call = async <T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> => {
    const headers: Record<string, string> = {}
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    let payload: string | Buffer | undefined
    if (Buffer.isBuffer(body)) {
      headers['content-type'] = 'application/octet-stream'
      payload = body
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json'
      payload = JSON.stringify(body)
    }
    let res: Response
    try {
      res = await fetch(new URL(path, base), {
        method,
        headers,
        ...(payload === undefined ? {} : { body: payload }),
        ...(signal === undefined ? {} : { signal }),
      })
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw new EvaqError('EVAQ_ABORTED', 'The request was aborted', { cause: err })
      const why = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
      throw new EvaqError('EVAQ_IO', `Cannot reach the evaq service at ${base.origin}: ${why}`, { cause: err })
    }
    const text = await res.text()
    let json: unknown
    try {
      json = text === '' ? undefined : JSON.parse(text)
    } catch {
      throw new EvaqError('EVAQ_IO', `The service at ${base.origin} answered ${res.status} with a body that is not JSON`)
    }
    if (!res.ok) {
      const e = json as { code?: string, message?: string, ids?: number[] } | undefined
      const code = typeof e?.code === 'string' && e.code in ERROR_CODES ? e.code as EvaqErrorCode : 'EVAQ_IO'
      throw new EvaqError(code, `${e?.message ?? `HTTP ${res.status}`} (HTTP ${res.status} from ${base.origin})`, Array.isArray(e?.ids) ? { ids: e.ids } : {})
    }
    return json as T
  }
  const records = (list: RecordJson[]): CliRecord[] => list.map(r => ({ ...r, payload: Buffer.from(r.payload, 'base64') }))
  const query = (r: ReadRequest): string => `from=${r.from}&maxBytes=${r.maxBytes}&maxCount=${r.maxCount}${r.waitMs === undefined ? '' : `&waitMs=${r.waitMs}`}`
  const logs = [...LOG_NAMES]
  return {
    logNames: logs,
    stats: () => call('GET', '/v1/stats'),
    read: async (log, r) =>
      records((await call<{ records: RecordJson[] }>('GET', `/v1/logs/${encodeURIComponent(log)}/records?${query(r)}`, undefined, r.signal)).records),
    // One record goes as a raw body, so that it may be as large as the service's body limit.
    push: async (log, payloads) => (await call<{ ids: number[] }>('POST', `/v1/logs/${encodeURIComponent(log)}/records`,
      payloads.length === 1 ? payloads[0] : payloads.map(p => p.toString('base64')))).ids,
    subscribers: async log => (await call<{ subscribers: LogSubscriberInfo[] }>('GET',
      log === undefined ? '/v1/subscribers' : `/v1/logs/${encodeURIComponent(log)}/subscribers`)).subscribers,
    requeue: async (log, ids) => (await call<{ ids: number[] }>('POST', `/v1/${log}/requeue`, ids === 'all' ? { all: true } : { ids })).ids,
    purge: async (log, ids) => (await call<{ purged: number }>('POST', `/v1/${log}/purge`, ids === 'all' ? { all: true } : { ids })).purged,
    close: async () => {},
  }
}
