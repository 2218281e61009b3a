import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { EvaqError } from '../errors.js'
import { EvaqMetrics } from '../metrics.js'
import { bearerCheck } from './auth.js'
import { registerBackupRoute } from './backup-route.js'
import { base64Payloads, NDJSON_TYPE, ndjsonPayloads, PUSH_TYPES, RAW_TYPES } from './bodies.js'
import { registerConsole } from './console-routes.js'
import { errorReply, explainError, type RouteLimits } from './http-errors.js'
import { siteGuard } from './site-guard.js'
import { registerStreamRoutes } from './stream-routes.js'
import { StreamTickets } from './stream-tickets.js'
import { LOG_NAME_PATTERN, parseUint, READ_DEFAULTS, READ_LIMITS, SUB_PARAMS, SUBSCRIBER_SCHEMA, UINT_PATTERN } from './params.js'
import type { QueueService } from './queue-service.js'
import { recordJson } from './record-json.js'

export { recordJson }

/** Options of {@link createApp}. */
export interface AppOptions {
  /**
   * Bearer token that every route but `/healthz`, `/readyz` and the console's page and assets
   * (`/`, `/console/*`: they hold no data) requires (`Authorization: Bearer <token>`), compared in
   * constant time. The change stream takes a single-use `?ticket=` instead (`POST
   * /v1/stream-tickets`), for browsers' EventSource. @defaultValue none: no auth
   */
  token?: string
  /**
   * Largest request body in bytes. A larger one is answered 413 (`EVAQ_TOO_LARGE`) without being
   * buffered: at once when its Content-Length says so, else as soon as it grows past the limit.
   * @defaultValue the queue's `maxPayloadBytes`
   */
  bodyLimit?: number
  /** A pino logger for start, stop, errors and (with `logRequests`) requests. @defaultValue none: silent */
  logger?: FastifyBaseLogger
  /** Log every request and response. @defaultValue false */
  logRequests?: boolean
  /**
   * Host names (no port) requests may name in `Host` besides `localhost` and IP addresses, which
   * are always served; `'*'` allows any. Without a token every other Host is refused (421
   * `EVAQ_MISDIRECTED`, the DNS-rebinding guard); with a token Host is checked only when this is
   * given. See docs/security.md. @defaultValue none
   */
  allowedHosts?: readonly string[]
  /**
   * Web page origins (`scheme://host[:port]`) besides the service's own whose requests are
   * answered; any other `Origin`, or without one `Sec-Fetch-Site: cross-site` or `same-site`
   * (but for a GET navigation), is refused (403 `EVAQ_FORBIDDEN`). @defaultValue none
   */
  allowedOrigins?: readonly string[]
  /** The metrics `/metrics` serves. @defaultValue `new EvaqMetrics(service.evaq)` */
  metrics?: EvaqMetrics
  /** The clock of the stream tickets' expiry (`POST /v1/stream-tickets`), in ms. @defaultValue `Date.now` */
  clock?: { now (): number }
}

/** Payloads a content-type parser of the push route produced (a JSON body arrives as plain JSON). */
class Payloads {
  constructor (readonly list: Buffer[]) {}
}

const MAX_IDS = 100_000
const ID = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } as const
const UINT = { type: 'string', pattern: UINT_PATTERN } as const
const LOG_PARAMS = {
  type: 'object',
  properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN } },
  required: ['log'],
  additionalProperties: false,
} as const
const READ_QUERY = {
  type: 'object',
  properties: { from: UINT, maxBytes: UINT, maxCount: UINT, waitMs: UINT },
  additionalProperties: false,
} as const
const IDS_BODY = {
  type: 'object',
  properties: { ids: { type: 'array', items: ID, maxItems: MAX_IDS } },
  required: ['ids'],
  additionalProperties: false,
} as const
const SELECTION_BODY = {
  type: 'object',
  properties: { ids: { type: 'array', items: ID, maxItems: MAX_IDS }, all: { const: true } },
  additionalProperties: false,
} as const
const ANY_OBJECT = { type: 'object', additionalProperties: true } as const
const RECORD = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    payload: { type: 'string', description: 'base64' },
    pushedAt: { type: 'integer' },
    deliveryCount: { type: 'integer' },
    error: ANY_OBJECT,
    retry: ANY_OBJECT,
  },
  required: ['id', 'payload', 'pushedAt'],
} as const
const RECORDS = { type: 'object', properties: { records: { type: 'array', items: RECORD } }, required: ['records'] } as const
const IDS_REPLY = { type: 'object', properties: { ids: { type: 'array', items: { type: 'integer' } } }, required: ['ids'] } as const
const COUNT_REPLY = (name: string): object => ({ type: 'object', properties: { [name]: { type: 'integer' } }, required: [name] })
const SUBSCRIBER = SUBSCRIBER_SCHEMA
const NEXT_BODY = {
  type: ['object', 'null'],
  properties: {
    maxBytes: { type: 'integer', minimum: 0, maximum: READ_LIMITS.maxBytes },
    maxCount: { type: 'integer', minimum: 1, maximum: READ_LIMITS.maxCount },
    waitMs: { type: 'integer', minimum: 0, maximum: READ_LIMITS.waitMs },
  },
  additionalProperties: false,
} as const
const SUBSCRIBE_BODY = {
  type: ['object', 'null'],
  properties: {
    start: { anyOf: [{ enum: ['earliest', 'latest'] }, { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }] },
    leaseMs: { type: 'integer', minimum: 1, maximum: 7 * 24 * 3_600_000 },
    maxDeliveries: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
  },
  additionalProperties: false,
} as const
const NACK_BODY = {
  type: 'object',
  properties: { ids: { type: 'array', items: ID, maxItems: MAX_IDS }, delayMs: { type: 'integer', minimum: 0, maximum: 7 * 24 * 3_600_000 } },
  required: ['ids'],
  additionalProperties: false,
} as const

interface LogParams { log: string }
interface SubParams { log: string, name: string }
interface ReadQuery { from?: string, maxBytes?: string, maxCount?: string, waitMs?: string }

/** Aborted when the client goes away before its response was sent. */
function clientGone (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  reply.raw.once('close', () => { if (!reply.raw.writableFinished) controller.abort() })
  return controller.signal
}

function readOptions (q: ReadQuery): { from: number, maxBytes: number, maxCount: number, waitMs: number } {
  return {
    from: parseUint(q.from, 'from', 0),
    maxBytes: parseUint(q.maxBytes, 'maxBytes', READ_DEFAULTS.maxBytes, 0, READ_LIMITS.maxBytes),
    maxCount: parseUint(q.maxCount, 'maxCount', READ_DEFAULTS.maxCount, 1, READ_LIMITS.maxCount),
    waitMs: parseUint(q.waitMs, 'waitMs', 0, 0, READ_LIMITS.waitMs),
  }
}

function selection (body: { ids?: number[], all?: true }): number[] | 'all' {
  if ((body.ids === undefined) === (body.all === undefined)) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected a body with either `ids` (an array of IDs) or `all: true`')
  }
  return body.all === true ? 'all' : body.ids!
}

/** Answer a malformed HTTP request (one the framework never saw) with a JSON error, then close. */
function clientError (err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
  const code = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'EVAQ_ABORTED' : 'EVAQ_INVALID_ARGUMENT'
  const status = code === 'EVAQ_ABORTED' ? '408 Request Timeout' : '400 Bad Request'
  const body = JSON.stringify({ code, message: `Malformed HTTP request (${err.code ?? 'unknown'})` })
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

/** The body types a route takes: what its config says (the push route), else JSON. */
const JSON_ONLY = ['application/json'] as const

/** What a 415 or 413 answer names: the route's accepted types and limits (see explainError). */
function routeLimits (request: FastifyRequest, maxPayloadBytes: number): RouteLimits {
  const options = request.routeOptions as { config?: { accepts?: readonly string[] }, bodyLimit?: number } | undefined
  return {
    accepted: options?.config?.accepts ?? JSON_ONLY,
    bodyLimit: options?.bodyLimit ?? request.server.initialConfig.bodyLimit ?? maxPayloadBytes,
    maxPayloadBytes,
    contentType: request.headers['content-type'],
  }
}

/** Answer any error a request met in evaq's shape (see errorReply). */
function sendError (err: unknown, request: FastifyRequest, reply: FastifyReply, maxPayloadBytes: number, retryAfterSeconds = 1): void {
  const { status, internal, ...answer } = errorReply(err)
  const body = status === 413 || status === 415 ? explainError(err, answer.body, routeLimits(request, maxPayloadBytes)) : answer.body
  if (internal) request.log.error({ err }, 'request failed')
  else if (status >= 500) request.log.warn({ code: body.code, msg: body.message }, 'request failed')
  // The rest of an oversized body is not read: close the connection instead of draining it.
  if (status === 413) reply.header('connection', 'close')
  // Clients and proxies retry a 503 after Retry-After: room comes back at a maintenance round.
  if (body.code === 'EVAQ_AT_CAPACITY') reply.header('retry-after', String(retryAfterSeconds))
  void reply.code(status).send(body)
}

/**
 * The HTTP API of one queue, as a fastify instance that is not listening yet (`listen()` it, or
 * `inject()` requests). Closing it ends long polls; it does not close the queue.
 */
export async function createApp (service: QueueService, options: AppOptions = {}): Promise<FastifyInstance> {
  const evaq = service.evaq
  const metrics = options.metrics ?? new EvaqMetrics(evaq)
  const app = Fastify({
    ...(options.logger === undefined ? { logger: false } : { loggerInstance: options.logger }),
    logController: new LogController({ disableRequestLogging: options.logRequests !== true }),
    bodyLimit: options.bodyLimit ?? evaq.options.maxPayloadBytes,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: false,
    clientErrorHandler: clientError,
    // The site guard answers a request without Host in evaq's shape (Node's own 400 has no body).
    http: { requireHostHeader: false },
    // Errors met before routing (a path parameter too long, a malformed URL) in evaq's shape too.
    frameworkErrors: (err, request, reply) => { sendError(err, request, reply, evaq.options.maxPayloadBytes) },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, useDefaults: false } },
  }) as unknown as FastifyInstance
  app.removeContentTypeParser('text/plain')

  const authorized = options.token === undefined ? undefined : bearerCheck(options.token)
  const guard = siteGuard({
    allowedHosts: options.allowedHosts ?? (options.token === undefined ? [] : undefined),
    allowedOrigins: options.allowedOrigins,
  })
  // Callback hooks, not async ones: no promise per request on the hot path.
  app.addHook('onRequest', (request, reply, done) => {
    // Before anything else, public routes included: a refused request is not read any further.
    const refused = guard(request.method, request.headers, request.raw.httpVersion)
    if (refused !== undefined) {
      reply.header('connection', 'close')
      done(refused)
      return
    }
    const config = request.routeOptions.config as { public?: boolean, ticket?: boolean } | undefined
    const open = config?.public === true
    // A stream may come with `?ticket=` instead of the header: its route redeems the ticket.
    const ticketed = config?.ticket === true && typeof (request.query as { ticket?: unknown } | undefined)?.ticket === 'string'
    if (!open && !ticketed && authorized !== undefined && !authorized(request.headers.authorization)) {
      reply.header('www-authenticate', 'Bearer realm="evaq"')
      done(new EvaqError('EVAQ_UNAUTHORIZED', 'Missing or wrong bearer token (Authorization: Bearer <token>)'))
      return
    }
    if (service.stopSignal.aborted && !open) {
      reply.header('connection', 'close')
      done(new EvaqError('EVAQ_CLOSED', 'The service is shutting down'))
      return
    }
    done()
  })
  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpResponse(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode)
    done()
  })
  app.addHook('preClose', async () => { service.stop() })

  app.setErrorHandler((err, request, reply) => { sendError(err, request, reply, evaq.options.maxPayloadBytes, service.retryAfterSeconds) })
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ code: 'EVAQ_NOT_FOUND', message: `No route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}` })
  })

  // ---- records ----------------------------------------------------------------------------------

  await app.register(async scope => {
    scope.addContentTypeParser([...RAW_TYPES], { parseAs: 'buffer' }, (_req, body, done) => { done(null, new Payloads([body as Buffer])) })
    scope.addContentTypeParser(NDJSON_TYPE, { parseAs: 'buffer' }, (_req, body, done) => {
      try {
        done(null, new Payloads(ndjsonPayloads(body as Buffer)))
      } catch (err) {
        done(err as Error, undefined)
      }
    })
    scope.post<{ Params: LogParams }>('/v1/logs/:log/records', {
      config: { accepts: PUSH_TYPES },
      schema: {
        params: LOG_PARAMS,
        response: { 201: IDS_REPLY },
      },
    }, async (request, reply) => {
      const body = request.body
      let payloads: Buffer[]
      if (body instanceof Payloads) payloads = body.list
      else if (body === undefined) {
        throw new EvaqError('EVAQ_UNSUPPORTED_MEDIA_TYPE', `Send records as ${PUSH_TYPES.join(', ')} (JSON: an array of base64 strings)`)
      } else payloads = base64Payloads(body)
      const ids = await service.push(request.params.log, payloads, clientGone(reply))
      return reply.code(201).send({ ids })
    })
  })

  app.get<{ Params: LogParams, Querystring: ReadQuery }>('/v1/logs/:log/records', {
    schema: {
      params: LOG_PARAMS,
      querystring: READ_QUERY,
      response: { 200: RECORDS },
    },
  }, async (request, reply) => {
    const options = readOptions(request.query)
    const records = await service.read(request.params.log, options.waitMs === 0 ? options : { ...options, signal: clientGone(reply) })
    return { records: records.map(recordJson) }
  })

  app.delete<{ Params: LogParams, Body: { ids: number[] } }>('/v1/logs/:log/records', {
    schema: {
      params: LOG_PARAMS,
      body: IDS_BODY,
      response: { 200: COUNT_REPLY('removed') },
    },
  }, async request => ({ removed: await service.remove(request.params.log, request.body.ids) }))

  // ---- subscribers ------------------------------------------------------------------------------

  app.get('/v1/subscribers', {
    schema: { response: { 200: { type: 'object', properties: { subscribers: { type: 'array', items: SUBSCRIBER } } } } },
  }, async () => ({ subscribers: await service.subscribers() }))

  app.get<{ Params: LogParams }>('/v1/logs/:log/subscribers', {
    schema: { params: LOG_PARAMS, response: { 200: { type: 'object', properties: { subscribers: { type: 'array', items: SUBSCRIBER } } } } },
  }, async request => ({ subscribers: await service.subscribers(request.params.log) }))

  app.put<{
    Params: SubParams
    Body: { start?: 'earliest' | 'latest' | number, leaseMs?: number, maxDeliveries?: number } | null
  }>('/v1/logs/:log/subscribers/:name', {
    schema: {
      params: SUB_PARAMS,
      body: SUBSCRIBE_BODY,
      response: { 200: SUBSCRIBER, 201: SUBSCRIBER },
    },
  }, async (request, reply) => {
    const { created, info } = await service.subscribe(request.params.log, request.params.name, request.body ?? {})
    return reply.code(created ? 201 : 200).send(info)
  })

  app.delete<{ Params: SubParams }>('/v1/logs/:log/subscribers/:name', {
    schema: { params: SUB_PARAMS },
  }, async (request, reply) => {
    await service.unsubscribe(request.params.log, request.params.name)
    return reply.code(204).send()
  })

  app.post<{ Params: SubParams, Body: { maxBytes?: number, maxCount?: number, waitMs?: number } | null }>('/v1/logs/:log/subscribers/:name/next', {
    schema: {
      params: SUB_PARAMS,
      body: NEXT_BODY,
      response: { 200: RECORDS },
    },
  }, async (request, reply) => {
    const records = await service.next(request.params.log, request.params.name, { ...request.body, signal: clientGone(reply) })
    return { records: records.map(recordJson) }
  })

  app.post<{ Params: SubParams, Body: { ids: number[] } }>('/v1/logs/:log/subscribers/:name/ack', {
    schema: { params: SUB_PARAMS, body: IDS_BODY, response: { 200: COUNT_REPLY('acked') } },
  }, async request => ({ acked: await service.ack(request.params.log, request.params.name, request.body.ids) }))

  app.post<{ Params: SubParams, Body: { ids: number[], delayMs?: number } }>('/v1/logs/:log/subscribers/:name/nack', {
    schema: { params: SUB_PARAMS, body: NACK_BODY, response: { 200: COUNT_REPLY('nacked') } },
  }, async request => ({ nacked: await service.nack(request.params.log, request.params.name, request.body.ids, request.body.delayMs) }))

  // ---- the DLQ and parked records ---------------------------------------------------------------

  const retryLogs = [
    { log: 'dlq', requeue: service.requeueDeadLetters.bind(service), purge: service.purgeDeadLetters.bind(service) },
    { log: 'parked', requeue: service.requeueParked.bind(service), purge: service.purgeParked.bind(service) },
  ] as const
  for (const { log, requeue, purge } of retryLogs) {
    app.get<{ Querystring: ReadQuery }>(`/v1/${log}`, {
      schema: { querystring: READ_QUERY, response: { 200: RECORDS } },
    }, async (request, reply) => {
      const options = readOptions(request.query)
      const records = await service.read(log, options.waitMs === 0 ? options : { ...options, signal: clientGone(reply) })
      return { records: records.map(recordJson) }
    })

    app.post<{ Body: { ids?: number[], all?: true } }>(`/v1/${log}/requeue`, {
      schema: { body: SELECTION_BODY, response: { 200: IDS_REPLY } },
    }, async request => ({ ids: await requeue(selection(request.body)) }))

    app.post<{ Body: { ids?: number[], all?: true } }>(`/v1/${log}/purge`, {
      schema: { body: SELECTION_BODY, response: { 200: COUNT_REPLY('purged') } },
    }, async request => ({ purged: await purge(selection(request.body)) }))
  }

  // ---- operations -------------------------------------------------------------------------------

  app.get('/v1/stats', {
    schema: { response: { 200: ANY_OBJECT } },
  }, async () => service.stats())

  registerBackupRoute(app, service)

  // ---- the change stream ------------------------------------------------------------------------

  const clock = options.clock ?? { now: () => Date.now() }
  registerStreamRoutes(app, service, new StreamTickets(() => clock.now()))

  app.get('/metrics', {
    schema: { response: { 200: { type: 'string' } } },
  }, async (_request, reply) => reply.type(metrics.contentType).send(await metrics.metrics()))

  app.get('/healthz', {
    config: { public: true },
    schema: { response: { 200: ANY_OBJECT } },
  }, async () => ({ status: 'ok' }))

  app.get('/readyz', {
    config: { public: true },
    schema: { response: { 200: ANY_OBJECT, 503: ANY_OBJECT } },
  }, async (_request, reply) => {
    const status = evaq.status
    if (status === 'open' && !service.stopSignal.aborted) {
      if (!service.full) return { status }
      reply.header('retry-after', String(service.retryAfterSeconds))
      // Under onFull 'offload', the budget is full while the tier's bucket fails: say so.
      const tier = service.tierError
      return reply.code(503).send({
        code: 'EVAQ_AT_CAPACITY',
        message: tier === undefined
          ? 'The disk budget is full: pushes are refused or held back until space is freed'
          : 'The disk budget is full and offloading to the tier fails: pushes are held back until the bucket takes files again or space is freed',
        status: 'full',
        ...(tier === undefined ? {} : { details: { tier: { code: tier.code, message: tier.message } } }),
      })
    }
    const code = status === 'degraded' ? 'EVAQ_IO' : 'EVAQ_CLOSED'
    return reply.code(503).send({ code, message: `The queue is ${service.stopSignal.aborted ? 'shutting down' : status}`, status })
  })

  // ---- the operator console (GET /) -------------------------------------------------------------

  await registerConsole(app, service)

  return app
}
