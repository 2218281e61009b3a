// @ts-check
/**
 * Push and drain rates from two polls of the overview: the records pushed are the growth of
 * `nextId` (IDs are never reused), the records that left are those pushed less the growth of
 * `count`, both over the service's own clock (`now`), so that the browser's clock does not skew them.
 */

/** Rate samples a chart keeps. */
export const SAMPLES = 60
/** The span of the rates shown as numbers, in ms of the service's clock. */
const RATE_WINDOW_MS = 10_000

/**
 * @typedef {object} RateSample records pushed and leaving between two polls, and per second
 * @property {number} push
 * @property {number} drain
 * @property {number} pushed
 * @property {number} left records that left (negative when a push in flight at the poll before committed since)
 * @property {number} seconds
 * @property {number} at the service's clock at the later poll
 */
/**
 * One log's history since the page loaded: the last counters, the rate samples, and the records
 * seen pushed and leaving.
 * @typedef {{ last?: { now: number, nextId: number, count: number }, rates: RateSample[], pushed: number, drained: number }} History
 */

/** @returns {History} */
export function newHistory () {
  return { rates: [], pushed: 0, drained: 0 }
}

/**
 * Add the sample between the last poll and this one. None on the first poll, nor when the
 * service's clock did not move: that poll is not a new baseline either, so the records it saw
 * count in the next sample, when the clock moved.
 * @param {History} history
 * @param {{ nextId: number, count: number }} log
 * @param {number} now the service's clock at this poll
 */
export function addSample (history, log, now) {
  const last = history.last
  if (last !== undefined && now <= last.now) return
  if (last !== undefined) {
    const seconds = (now - last.now) / 1000
    const pushed = Math.max(0, log.nextId - last.nextId)
    // Signed: a push in flight at a poll has its IDs but is not counted yet, so it reads as
    // records leaving, and the next poll takes them back. The totals stay exact; what is drawn
    // and shown is clamped at 0.
    const left = pushed - (log.count - last.count)
    history.rates.push({ push: pushed / seconds, drain: Math.max(0, left) / seconds, pushed, left, seconds, at: now })
    history.pushed += pushed
    history.drained += left
    if (history.rates.length > SAMPLES) history.rates.shift()
  }
  history.last = { now, nextId: log.nextId, count: log.count }
}

/**
 * The rates shown as numbers: records over the samples of the last {@link RATE_WINDOW_MS} (at
 * least the latest), so that one quiet poll between two bursts does not read as a stop.
 * @param {readonly RateSample[]} samples
 * @param {number} at
 * @returns {{ push: number, drain: number } | undefined}
 */
export function recentRate (samples, at) {
  let pushed = 0
  let left = 0
  let seconds = 0
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = /** @type {RateSample} */ (samples[i])
    if (seconds > 0 && at - s.at >= RATE_WINDOW_MS) break
    pushed += s.pushed
    left += s.left
    seconds += s.seconds
  }
  return seconds === 0 ? undefined : { push: pushed / seconds, drain: Math.max(0, left) / seconds }
}
