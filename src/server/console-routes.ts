import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { EvaqError } from '../errors.js'
import type { TierStats } from '../evaq.js'
import type { QueueRecord } from '../log/log.js'
import { LOG_NAME_PATTERN, parseUint, SUBSCRIBER_SCHEMA, UINT_PATTERN } from './params.js'
import type { QueueService } from './queue-service.js'

/**
 * The operator console (`GET /`) and the two read routes it needs beyond the rest of the API.
 *
 * The browser code is hand-written ES modules (checked by `tsc -p tsconfig.console.json`, with
 * the DOM library and `checkJs`), HTML and CSS in `./console/`, served as they are. That one
 * folder works both from `src/` (`npm start` runs the TypeScript through tsx, which cannot compile
 * code for a browser on the fly) and from `dist/` (the build copies the folder beside this file),
 * with no bundler and no second compile step whose output could drift from its source. The assets
 * are public routes: they hold no data. Every number the page shows comes from `/v1` with the
 * bearer token, which the page keeps in sessionStorage.
 */

const ASSETS = new URL('./console/', import.meta.url)
const ASSET_NAME = /^[a-z0-9-]+\.(?:js|css|svg|html)$/
const TYPES: Readonly<Record<string, string>> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  html: 'text/html; charset=utf-8',
}
/** The page loads nothing from elsewhere and runs no inline script or style. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** Bounds of `GET /v1/logs/:log/previews`. */
export const PREVIEW_LIMITS = Object.freeze({
  maxCount: 1000,
  previewBytes: 64 * 1024, // 64 KiB
})
export const PREVIEW_DEFAULTS = Object.freeze({
  maxCount: 50,
  previewBytes: 1024, // 1 KiB
})
/** Payload bytes one previews request reads at most (it stops early, like a read; the page goes on from the last ID). */
const PREVIEW_READ_BYTES = 16 * 1024 * 1024 // 16 MiB

const ANY_OBJECT = { type: 'object', additionalProperties: true } as const
const UINT = { type: 'string', pattern: UINT_PATTERN } as const
const SUBSCRIBER = SUBSCRIBER_SCHEMA
const LOG_OVERVIEW = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    count: { type: 'integer' },
    bytes: { type: 'integer' },
    firstId: { type: 'integer' },
    lastId: { type: 'integer' },
    nextId: { type: 'integer' },
    oldestPushedAt: { type: 'integer' },
    oldestAgeMs: { type: 'number' },
    dropped: { type: 'object', properties: { records: { type: 'integer' }, bytes: { type: 'integer' } } },
    quarantined: { type: 'integer' },
    subscribers: { type: 'array', items: SUBSCRIBER },
  },
  required: ['name', 'count', 'bytes', 'nextId', 'oldestAgeMs', 'subscribers'],
} as const
const OVERVIEW = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    now: { type: 'integer' },
    disk: { type: 'object', properties: { usedBytes: { type: 'integer' }, maxDiskBytes: { type: 'integer' }, full: { type: 'boolean' } } },
    logs: { type: 'array', items: LOG_OVERVIEW },
    tier: {
      type: 'object',
      properties: {
        segments: { type: 'integer' },
        bytes: { type: 'integer' },
        uploads: { type: 'integer' },
        downloads: { type: 'integer' },
        deletes: { type: 'integer' },
        errors: { type: 'integer' },
        cachedBytes: { type: 'integer' },
        lastError: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
      },
    },
  },
  required: ['status', 'now', 'disk', 'logs'],
} as const
const PREVIEW_QUERY = {
  type: 'object',
  properties: { from: UINT, maxCount: UINT, previewBytes: UINT },
  additionalProperties: false,
} as const
const PREVIEWS = {
  type: 'object',
  properties: {
    records: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          pushedAt: { type: 'integer' },
          size: { type: 'integer' },
          preview: { type: 'string', description: 'base64 of the first previewBytes bytes' },
          error: ANY_OBJECT,
          retry: ANY_OBJECT,
        },
        required: ['id', 'pushedAt', 'size', 'preview'],
      },
    },
  },
  required: ['records'],
} as const

/** One log as the console's overview shows it. */
export interface LogOverview {
  readonly name: string
  readonly count: number
  readonly bytes: number
  readonly firstId?: number
  readonly lastId?: number
  readonly nextId: number
  /** When the oldest live record was pushed (ms since the epoch), absent when the log is empty. */
  readonly oldestPushedAt?: number
  /** Age of the oldest live record at `now`, in ms; 0 when the log is empty. */
  readonly oldestAgeMs: number
  readonly dropped: { readonly records: number, readonly bytes: number }
  readonly quarantined: number
  readonly subscribers: readonly unknown[]
}

/** The answer of `GET /v1/overview`. */
export interface Overview {
  readonly status: string
  /** The queue's clock when the counters were read, so that a browser computes ages and rates without clock skew. */
  readonly now: number
  readonly disk: { readonly usedBytes: number, readonly maxDiskBytes?: number, readonly full: boolean }
  readonly logs: readonly LogOverview[]
  /** The tier on object storage, when the queue has one (stats().tier). */
  readonly tier?: TierStats
}

/** Every log's counters, oldest record and subscribers, the queue's status and disk, at one time. */
export async function overview (service: QueueService): Promise<Overview> {
  const evaq = service.evaq
  const stats = await service.stats()
  const now = evaq.options.clock.now()
  const logs: LogOverview[] = []
  for (const name of service.logNames) {
    const l = stats[name as 'wal' | 'dlq' | 'parked']
    const oldestPushedAt = l.firstPushedAt
    logs.push({
      name,
      count: l.count,
      bytes: l.bytes,
      ...(l.firstId === undefined ? {} : { firstId: l.firstId }),
      ...(l.lastId === undefined ? {} : { lastId: l.lastId }),
      nextId: l.nextId,
      ...(oldestPushedAt === undefined ? {} : { oldestPushedAt }),
      oldestAgeMs: oldestPushedAt === undefined ? 0 : Math.max(0, now - oldestPushedAt),
      dropped: l.dropped,
      quarantined: l.quarantined,
      subscribers: l.subscribers,
    })
  }
  const disk = stats.disk.maxDiskBytes === undefined ? { usedBytes: stats.disk.usedBytes, full: stats.disk.full } : stats.disk
  return { status: stats.status, now, disk, logs, ...(stats.tier === undefined ? {} : { tier: stats.tier }) }
}

/** A record with its payload cut to `previewBytes`, and its full size. */
export function previewJson (r: QueueRecord, previewBytes: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: r.id,
    pushedAt: r.pushedAt,
    size: r.payload.length,
    preview: r.payload.subarray(0, previewBytes).toString('base64'),
  }
  if (r.error !== undefined) out.error = r.error
  const retry = (r as { retry?: unknown }).retry
  if (retry !== undefined) out.retry = retry
  return out
}

/**
 * The files of the console, listed once: a fixed set, so that no request names a path. Without
 * them (a build that ran tsc alone) the API still serves, and `/` says what is missing.
 */
function assetNames (): Set<string> {
  try {
    return new Set(readdirSync(ASSETS).filter(name => ASSET_NAME.test(name)))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set()
    throw err
  }
}

async function sendAsset (reply: FastifyReply, cache: Map<string, Buffer>, name: string): Promise<FastifyReply> {
  let body = cache.get(name)
  if (body === undefined) {
    body = await readFile(new URL(name, ASSETS))
    cache.set(name, body)
  }
  return reply
    .type(TYPES[name.slice(name.lastIndexOf('.') + 1)]!)
    .header('cache-control', 'no-cache')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('content-security-policy', CSP)
    .send(body)
}

/** Register the console's page, assets and read routes on `app` (inside createApp, under its auth hook). */
export async function registerConsole (app: FastifyInstance, service: QueueService): Promise<void> {
  const names = assetNames()
  const cache = new Map<string, Buffer>()

  app.get('/', { config: { public: true } }, async (_request, reply) => {
    if (!names.has('index.html')) {
      throw new EvaqError('EVAQ_NOT_FOUND', `The console's files are missing from ${fileURLToPath(ASSETS)} (build with \`npm run build\`, which copies them)`)
    }
    return sendAsset(reply, cache, 'index.html')
  })

  app.get<{ Params: { file: string } }>('/console/:file', {
    config: { public: true },
    schema: { params: { type: 'object', properties: { file: { type: 'string' } }, required: ['file'] } },
  }, async (request, reply) => {
    const file = request.params.file
    if (!names.has(file) || file === 'index.html') throw new EvaqError('EVAQ_NOT_FOUND', `No console asset \`${file.slice(0, 80)}\``)
    return sendAsset(reply, cache, file)
  })

  app.get('/v1/overview', {
    schema: { querystring: { type: 'object', properties: {}, additionalProperties: false }, response: { 200: OVERVIEW } },
  }, async () => overview(service))

  app.get<{ Params: { log: string }, Querystring: { from?: string, maxCount?: string, previewBytes?: string } }>('/v1/logs/:log/previews', {
    schema: {
      params: { type: 'object', properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN } }, required: ['log'], additionalProperties: false },
      querystring: PREVIEW_QUERY,
      response: { 200: PREVIEWS },
    },
  }, async request => {
    const q = request.query
    const from = parseUint(q.from, 'from', 0)
    const maxCount = parseUint(q.maxCount, 'maxCount', PREVIEW_DEFAULTS.maxCount, 1, PREVIEW_LIMITS.maxCount)
    const previewBytes = parseUint(q.previewBytes, 'previewBytes', PREVIEW_DEFAULTS.previewBytes, 0, PREVIEW_LIMITS.previewBytes)
    const records = await service.read(request.params.log, { from, maxCount, maxBytes: PREVIEW_READ_BYTES })
    return { records: records.map(r => previewJson(r, previewBytes)) }
  })
}
