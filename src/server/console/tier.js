// @ts-check
/**
 * The tier on object storage in the header, beside the disk: what the bucket holds, what moved
 * since the queue opened, the failed calls and the last error while the bucket fails. Hidden for
 * a queue without a tier.
 */
import { setText } from './dom.js'
import { formatBytes, formatCount } from './format.js'

/** @typedef {import('./types.js').TierOverview} TierOverview */

/**
 * @param {HTMLElement} el the `#tier` element, with its `[data-field]` spans
 * @param {TierOverview | undefined} tier
 */
export function renderTier (el, tier) {
  el.hidden = tier === undefined
  if (tier === undefined) return
  /** @param {string} name @param {string} text */
  const field = (name, text) => {
    const f = el.querySelector(`[data-field="${name}"]`)
    if (f !== null) setText(f, text)
  }
  field('segments', `${formatCount(tier.segments)} ${tier.segments === 1 ? 'segment' : 'segments'}`)
  field('bytes', formatBytes(tier.bytes))
  field('uploads', `${formatCount(tier.uploads)} up`)
  field('downloads', `${formatCount(tier.downloads)} down`)
  field('errors', `${formatCount(tier.errors)} ${tier.errors === 1 ? 'error' : 'errors'}`)
  const last = tier.lastError
  const error = el.querySelector('[data-field="last-error"]')
  if (error instanceof HTMLElement) {
    error.hidden = last === undefined
    setText(error, last === undefined ? '' : `failing: ${last.code}`)
    error.title = last === undefined ? '' : last.message
  }
  el.dataset.failing = last === undefined ? 'false' : 'true'
}
