/**
 * `evaq/server`: the HTTP service and the Prometheus metrics. A subpath of its own, so that
 * `import { Evaq } from 'evaq'` does not load fastify, pino and prom-client (about 200 ms).
 */
export { createApp, recordJson, type AppOptions } from './app.js'
export { serve, SERVE_DEFAULTS, type ServeOptions, type Service } from './serve.js'
export { QueueService, PUSH_TIMEOUT_MS, type QueueServiceOptions, type ServiceReadOptions, type ServiceStats, type LogSubscriberInfo } from './queue-service.js'
export { errorReply, type ErrorBody } from './http-errors.js'
export { EvaqMetrics, type EvaqMetricsOptions } from '../metrics.js'
