export {
  Evaq, type EvaqStatus, type RetryItemOptions, type EvaqStats, type EvaqEvents, type OpenReport, type TierStats, type TierEvent, type TierErrorEvent,
} from './evaq.js'
export type {
  QueueLog, QueueLog as Log, QueueRecord, RecordError, ReadOptions, PushOptions, LogStats, DropEvent, DropReason, FlushEvent,
} from './log/log.js'
export {
  Subscriber, type SubscribeOptions, type SubscribeStart, type NextOptions, type Batch, type Delivery,
  type SubscriberInfo,
} from './log/subscriber.js'
export type { FullEvent } from './log/budget.js'
export { EvaqError, ERROR_CODES, isEvaqError, type EvaqErrorCode } from './errors.js'
export {
  DEFAULTS, EVAQ_DEFAULTS, type EvaqOptions, type Durability, type Clock, type FullPolicy, type Retention, type RetentionOptions, type LogName,
  type SegmentCompression, type TierOptions,
} from './options.js'
export type { S3Options } from './store/s3-bucket.js'
export {
  RetryDaemon, type RetryHandler, type RetryContext, type RetryDaemonEvents, type RetryDaemonStats, type RetriedEvent,
  type SucceededEvent, type RescheduledEvent, type ParkedEvent,
} from './retry/retry-daemon.js'
export type { DeadLetterQueue, DeadLetterRecord } from './dlq/dead-letter-log.js'
export type { ParkedQueue, ParkedRecord } from './dlq/parked-log.js'
export { defaultClassify, RETRY_DEFAULTS, type RetryOptions, type RateLimit, type ErrorClass } from './retry/retry-options.js'
export type { BackoffOptions } from './retry/backoff.js'
export type { RetryState, ParkedState, ParkReason, AttemptError, RecordSource } from './dlq/retry-state.js'
export { BackupStream, type BackupOptions } from './backup/backup-stream.js'
export type { BackupManifest, BackupBase, BackupLogMark, BackupSummary } from './backup/manifest.js'
export type { RestoreOptions, RestoreResult, RestorePhase } from './backup/restore.js'
export { ArchiveCorruption, type ArchiveDamage } from './backup/archive-error.js'
export { readManifest, verifyArchive } from './backup/archive-reader.js'
// The HTTP service and the metrics load fastify, pino and prom-client: their code is in 'evaq/server'.
export type { AppOptions, ServeOptions, Service, ServiceReadOptions, ServiceStats, LogSubscriberInfo, ErrorBody, EvaqMetricsOptions } from './server/index.js'
