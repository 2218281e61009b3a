export { Evaq, type EvaqStatus, type RetryItemOptions, type EvaqStats, type EvaqEvents } from './evaq.js'
export {
  Log, type QueueRecord, type RecordError, type ReadOptions, type PushOptions, type LogStats,
  type DropEvent, type DropReason,
} from './log/log.js'
export {
  Subscriber, type SubscribeOptions, type SubscribeStart, type NextOptions, type Batch, type Delivery,
  type SubscriberInfo,
} from './log/subscriber.js'
export type { FullEvent } from './log/budget.js'
export { EvaqError, ERROR_CODES, isEvaqError, type EvaqErrorCode } from './errors.js'
export { DEFAULTS, type EvaqOptions, type Durability, type Clock, type FullPolicy, type Retention } from './options.js'
