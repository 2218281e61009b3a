import type { QueueRecord } from '../log/log.js'
import type { Delivery } from '../log/subscriber.js'

/** A record as JSON: the payload in base64, and what the log knows beside it. */
export function recordJson (r: QueueRecord | Delivery): Record<string, unknown> {
  const out: Record<string, unknown> = { id: r.id, payload: r.payload.toString('base64'), pushedAt: r.pushedAt }
  if ('deliveryCount' in r) out.deliveryCount = r.deliveryCount
  if (r.error !== undefined) out.error = r.error
  const retry = (r as { retry?: unknown }).retry
  if (retry !== undefined) out.retry = retry
  return out
}
