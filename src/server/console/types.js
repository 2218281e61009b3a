// @ts-check
/** The shapes the console reads from `/v1` (JSDoc types only: this module has no code). */

/** @typedef {'wal' | 'dlq' | 'parked'} LogName */
/** @typedef {'text' | 'hex' | 'json'} Format */
/**
 * A subscriber's info, as `/v1/overview` lists it per log.
 * @typedef {object} SubscriberInfo
 * @property {string} name
 * @property {number} ackFloor every ID below it is acknowledged
 * @property {number} cursor the next ID not yet delivered
 * @property {number} inFlight records delivered and not acknowledged
 * @property {number} lagRecords
 * @property {number} lagBytes
 * @property {number} oldestUnackedAgeMs
 * @property {number} lastActiveAt
 */
/**
 * @typedef {object} LogOverview
 * @property {LogName} name
 * @property {number} count
 * @property {number} bytes
 * @property {number} [firstId]
 * @property {number} [lastId]
 * @property {number} nextId
 * @property {number} [oldestPushedAt]
 * @property {number} oldestAgeMs
 * @property {{ records: number, bytes: number }} dropped
 * @property {number} quarantined
 * @property {SubscriberInfo[]} subscribers
 */
/**
 * The tier on object storage (the queue's `stats().tier`).
 * @typedef {object} TierOverview
 * @property {number} segments segment files in the bucket
 * @property {number} bytes their bytes
 * @property {number} uploads
 * @property {number} downloads
 * @property {number} deletes
 * @property {number} errors failed calls to the bucket since the queue opened
 * @property {number} cachedBytes
 * @property {{ code: string, message: string }} [lastError] while the bucket fails
 */
/**
 * @typedef {object} Overview
 * @property {string} status
 * @property {number} now
 * @property {{ usedBytes: number, maxDiskBytes?: number, full: boolean }} disk
 * @property {LogOverview[]} logs
 * @property {TierOverview} [tier] when the queue has a tier
 */
/**
 * @typedef {object} RetryInfo
 * @property {number} [attempts]
 * @property {number} [firstFailedAt]
 * @property {number} [lastFailedAt]
 * @property {{ code?: string, message: string }} [lastError]
 * @property {number} [nextAttemptAt]
 * @property {number} [parkedAt]
 * @property {string} [reason]
 * @property {number} [dlqId]
 * @property {{ log: string, id: number }} [source]
 */
/**
 * @typedef {object} RecordPreview
 * @property {number} id
 * @property {number} pushedAt
 * @property {number} size
 * @property {string} preview base64
 * @property {{ code?: string, message: string }} [error]
 * @property {RetryInfo} [retry]
 */

export {}
