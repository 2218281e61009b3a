import { createServer, isIP } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { pino, type Logger, type LevelWithSilent } from 'pino'
import { EvaqError, isEvaqError } from '../errors.js'
import { Evaq } from '../evaq.js'
import { EvaqMetrics } from '../metrics.js'
import type { EvaqOptions } from '../options.js'
import { createApp } from './app.js'
import { bindsLoopbackOnly } from './auth.js'
import { allowedHost, allowedOrigin } from './site-guard.js'
import { checkPushTimeout, QueueService } from './queue-service.js'
import { readServiceFile, removeServiceFile, writeServiceFile } from './service-file.js'

/** Options of {@link serve}. */
export interface ServeOptions {
  /**
   * The data directory; created if needed. LevelDB lets one process hold it; while the service
   * runs, `EVAQ-SERVICE` in it says where it listens (so `evaq backup --data` finds it).
   */
  dir: string
  /** Address to bind. Anything but loopback needs a `token`. @defaultValue `'127.0.0.1'` */
  host?: string
  /** Port to bind; 0 picks a free one (see `Service.url`). @defaultValue 7070 */
  port?: number
  /** Bearer token every route but `/healthz`, `/readyz` and the console's page and files requires. @defaultValue none */
  token?: string
  /**
   * Host names requests may name besides `localhost`, IP addresses and `host`; `'*'` any. Without
   * a token any other `Host` is refused (421); with one, Host is checked only when this is given.
   * See docs/security.md. @defaultValue none
   */
  allowedHosts?: readonly string[]
  /** Web page origins besides the service's own whose requests are answered (403 otherwise). @defaultValue none */
  allowedOrigins?: readonly string[]
  /** Largest request body in bytes (413 beyond). @defaultValue the queue's `maxPayloadBytes` */
  bodyLimit?: number
  /** Log every request. @defaultValue false */
  logRequests?: boolean
  /** pino level of the service's logs (JSON lines on stdout). @defaultValue `'info'` */
  logLevel?: LevelWithSilent
  /** A logger of your own instead (`logLevel` is then ignored). */
  logger?: Logger
  /**
   * Options of `Evaq.open`, among them the disk budget: `onFull`, `maxDiskBytes` and
   * `minFreeDiskBytes`. @defaultValue evaq's defaults
   */
  evaq?: EvaqOptions
  /**
   * How long a push may wait for room (under `onFull: 'backpressure'`) before it is answered 503
   * `EVAQ_AT_CAPACITY` with `Retry-After`, having stored nothing; 0 answers at once instead of
   * waiting. @defaultValue 5000
   */
  pushTimeoutMs?: number
  /** Stop gracefully on SIGTERM and SIGINT, then exit with 0 (1 if closing failed). @defaultValue false */
  exitOnSignal?: boolean
}

/** A running service. */
export interface Service {
  /** Where it listens, for example `http://127.0.0.1:7070`. */
  readonly url: string
  readonly app: FastifyInstance
  readonly evaq: Evaq
  readonly logger: Logger
  /**
   * Stop: refuse new connections and requests, end long polls, finish the requests in flight,
   * then flush and close the queue. Calling it again returns the same promise.
   */
  close (): Promise<void>
}

export const SERVE_DEFAULTS = Object.freeze({ host: '127.0.0.1', port: 7070 })

/** Open the queue in `options.dir` and serve its HTTP API. */
export async function serve (options: ServeOptions): Promise<Service> {
  const host = options.host ?? SERVE_DEFAULTS.host
  const port = options.port ?? SERVE_DEFAULTS.port
  if (options.token !== undefined && options.token.length === 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected `token` to be a non-empty string')
  if (options.token === undefined && !await bindsLoopbackOnly(host)) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Refusing to serve on ${host} without a token: ` +
      'anyone who can reach it could read and delete the queue. Set --token (or EVAQ_TOKEN), or bind to 127.0.0.1')
  }
  // The Host check (without a token, or when hosts are named) serves the name bound to as well.
  const allowedHosts = options.token !== undefined && options.allowedHosts === undefined
    ? undefined
    : [...(options.allowedHosts ?? []).map(allowedHost), ...(isIP(host.replace(/^\[(.*)\]$/, '$1')) === 0 ? [allowedHost(host)] : [])]
  const allowedOrigins = options.allowedOrigins?.map(allowedOrigin)
  const logger = options.logger ?? pino({ level: options.logLevel ?? 'info', base: { pid: process.pid }, name: 'evaq' })
  const pushTimeoutMs = checkPushTimeout(options.pushTimeoutMs)
  // The port first: a service that cannot listen must not open (and, for a new one, create) the directory.
  await assertPortFree(host, port)
  const evaq = await Evaq.open(options.dir, options.evaq).catch(async (err: unknown) => {
    if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
    const holder = await readServiceFile(options.dir)
    if (holder === undefined) throw err
    throw new EvaqError('EVAQ_LOCKED', `${options.dir} is held by the evaq service at ${holder.url} (pid ${holder.pid}); ` +
      'stop it first, or use that service', { cause: err })
  })
  const metrics = new EvaqMetrics(evaq)
  const service = new QueueService(evaq, metrics, { pushTimeoutMs })
  evaq.on('degraded', err => logger.error({ code: err.code, err }, 'evaq degraded: a write failed; writes are refused until the queue recovers'))
  evaq.on('recovered', () => logger.info('evaq recovered: writes are accepted again'))
  evaq.on('error', err => logger.error({ code: err.code, err }, 'evaq background error'))
  evaq.on('dropped', e => logger.warn({ dropped: e }, 'evaq dropped records'))
  evaq.on('full', e => logger.warn({ full: e }, 'evaq is full'))
  evaq.on('drain', () => logger.info('evaq has room again'))

  let app: FastifyInstance
  let address: string
  try {
    app = await createApp(service, {
      logger,
      metrics,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.bodyLimit === undefined ? {} : { bodyLimit: options.bodyLimit }),
      ...(allowedHosts === undefined ? {} : { allowedHosts }),
      ...(allowedOrigins === undefined ? {} : { allowedOrigins }),
      ...(options.logRequests === undefined ? {} : { logRequests: options.logRequests }),
    })
    address = await app.listen({ host, port, listenTextResolver: a => `listening at ${a}` })
  } catch (err) {
    metrics.close()
    await evaq.close().catch(() => {})
    throw err instanceof EvaqError ? err : new EvaqError('EVAQ_INVALID_ARGUMENT', `Cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err })
  }
  const url = address
  // So that `evaq backup --data DIR` finds the service that holds DIR (see service-file.ts).
  await writeServiceFile(options.dir, url).catch(err => logger.warn({ err }, 'cannot write EVAQ-SERVICE: `evaq backup --data` will not find this service'))

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info('evaq stopping: finishing requests in flight')
      try {
        await app.close()
      } finally {
        await removeServiceFile(options.dir).catch(() => {})
        metrics.close()
        await evaq.close()
        logger.info({ dir: options.dir }, 'evaq stopped: queue flushed and closed')
      }
    })()
    return closing
  }

  if (options.exitOnSignal === true) {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (closing !== undefined) {
        logger.info({ signal }, 'evaq is already stopping')
        return
      }
      logger.info({ signal }, 'evaq received a signal')
      close().then(() => { logger.flush(); process.exit(0) }, err => {
        logger.error({ err }, 'evaq failed to stop cleanly')
        logger.flush()
        process.exit(1)
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  }
  // Only now: whoever waits for this line (a supervisor, a test, a script) may signal at once, and
  // a signal before the handlers are in place would kill the process instead of stopping it.
  logger.info({ url, dir: options.dir, auth: options.token !== undefined }, 'evaq listening')
  return { url, app, evaq, logger, close }
}

/**
 * Bind `host:port` and let it go again, before the service opens its data directory: a port in
 * use is then refused before the directory is touched (and a new one is not created). Port 0
 * always binds. Another process may still take the port in between; the listen after the open
 * reports that as before.
 */
export async function assertPortFree (host: string, port: number): Promise<void> {
  if (port === 0) return
  const server = createServer()
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port, exclusive: true }, resolve)
    })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'EADDRINUSE'
      ? 'the port is in use (another service?); pass another --port, or stop what listens there'
      : e.message
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Cannot listen on ${host}:${port}: ${why}`, { cause: err })
  }
  await new Promise<void>(resolve => server.close(() => resolve()))
}
