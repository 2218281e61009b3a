export { Evaq, type EvaqStatus, type RetryItemOptions } from './evaq.js'
export { Log, type QueueRecord, type RecordError, type ReadOptions, type PushOptions, type LogStats } from './log/log.js'
export { EvaqError, ERROR_CODES, isEvaqError, type EvaqErrorCode } from './errors.js'
export { DEFAULTS, type EvaqOptions, type Durability, type Clock } from './options.js'
