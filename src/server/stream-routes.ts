import type { FastifyInstance } from 'fastify'
import { EvaqError } from '../errors.js'
import { LOG_NAME_PATTERN, parseUint, SUB_PARAMS, SUBSCRIBER_NAME_PATTERN, UINT_PATTERN } from './params.js'
import type { QueueService } from './queue-service.js'
import { runStream, STREAM_DEFAULTS, STREAM_LIMITS } from './stream.js'
import type { StreamTickets } from './stream-tickets.js'

/**
 * `GET /v1/logs/:log/subscribers/:name/stream` (the change stream, see stream.ts) and
 * `POST /v1/stream-tickets` (what opens it from a browser, see stream-tickets.ts).
 */

/** The route config that lets a `?ticket=` stand in for the Authorization header (app.ts's auth hook reads it). */
export const TICKET_ROUTE = Object.freeze({ ticket: true })

const TICKET_PATTERN = '^[A-Za-z0-9_-]{1,100}$'
const STREAM_QUERY = {
  type: 'object',
  properties: {
    maxInFlight: { type: 'string', pattern: UINT_PATTERN },
    heartbeatMs: { type: 'string', pattern: UINT_PATTERN },
    ticket: { type: 'string', pattern: TICKET_PATTERN },
  },
  additionalProperties: false,
} as const
const TICKET_BODY = {
  type: 'object',
  properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN }, subscriber: { type: 'string', pattern: SUBSCRIBER_NAME_PATTERN } },
  required: ['log', 'subscriber'],
  additionalProperties: false,
} as const
const TICKET_REPLY = {
  type: 'object',
  properties: { ticket: { type: 'string' }, expiresAt: { type: 'integer' } },
  required: ['ticket', 'expiresAt'],
} as const

interface StreamQuery { maxInFlight?: string, heartbeatMs?: string, ticket?: string }

export function registerStreamRoutes (app: FastifyInstance, service: QueueService, tickets: StreamTickets): void {
  app.post<{ Body: { log: string, subscriber: string } }>('/v1/stream-tickets', {
    schema: { body: TICKET_BODY, response: { 201: TICKET_REPLY } },
  }, async (request, reply) => {
    const { log, subscriber } = request.body
    await service.leaseMs(log, subscriber) // 404 for an unknown log or subscriber
    return reply.code(201).send(tickets.issue(log, subscriber))
  })

  app.get<{ Params: { log: string, name: string }, Querystring: StreamQuery }>('/v1/logs/:log/subscribers/:name/stream', {
    config: TICKET_ROUTE,
    // A HEAD would run the lease loop with nowhere to send the records.
    exposeHeadRoute: false,
    schema: { params: SUB_PARAMS, querystring: STREAM_QUERY },
  }, async (request, reply) => {
    const { log, name } = request.params
    const q = request.query
    const options = {
      maxInFlight: parseUint(q.maxInFlight, 'maxInFlight', STREAM_DEFAULTS.maxInFlight, 1, STREAM_LIMITS.maxInFlight),
      heartbeatMs: parseUint(q.heartbeatMs, 'heartbeatMs', STREAM_DEFAULTS.heartbeatMs, STREAM_LIMITS.heartbeatMs.min, STREAM_LIMITS.heartbeatMs.max),
    }
    // The site guard lets a link from another site navigate to a GET (it shows the answer to the
    // user, not to the page). This GET leases records away from the real consumer: refuse it.
    const site = request.headers['sec-fetch-site']
    if (site === 'cross-site' || site === 'same-site') {
      throw new EvaqError('EVAQ_FORBIDDEN', `Refused a stream a web page of another site opened (Sec-Fetch-Site: ${site})`)
    }
    if (q.ticket !== undefined) tickets.redeem(q.ticket, log, name)
    await service.leaseMs(log, name) // 404 for an unknown log or subscriber, as a JSON error
    reply.hijack()
    await runStream(service, log, name, reply.raw, options)
  })
}
