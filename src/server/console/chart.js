// @ts-check
/**
 * An inline SVG chart of push and drain rates over time: two lines, a y axis in records per
 * second with rounded ticks, and a time axis that ends at the latest poll ("now").
 *
 * The SVG scales uniformly with its card (a fixed viewBox, no stretching), so that its text keeps
 * its shape; the numbers are computed here, the look is in style.css.
 */

const NS = 'http://www.w3.org/2000/svg'
const WIDTH = 360
const HEIGHT = 100
/** The plot area inside the viewBox; the margins hold the tick labels. */
const LEFT = 42
const RIGHT = WIDTH - 4
const TOP = 6
const BOTTOM = HEIGHT - 16
/** At most this many intervals on the y axis (so at most one more tick). */
const Y_INTERVALS = 4
/** Steps of the time axis, in seconds: the smallest that gives at most 4 intervals is used. */
const TIME_STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 86_400]

/**
 * Records per second over the `seconds` before `at` (a time of the service's clock, in ms): drawn
 * as a step over that span, so that one sample shows, and a long gap between polls shows as the
 * average it is. Without `seconds`, a point at `at`.
 * @typedef {{ push: number, drain: number, at: number, seconds?: number }} RatePoint
 */

/**
 * Rounded ticks from 0 to at least `max`: steps of 1, 2, 2.5 or 5 times a power of ten, at most
 * {@link Y_INTERVALS} of them. An all-zero chart gets the scale of `max` 1.
 * @param {number} max
 * @returns {{ top: number, step: number, ticks: number[] }}
 */
export function niceScale (max) {
  const m = max > 0 && Number.isFinite(max) ? max : 1
  const raw = m / Y_INTERVALS
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = /** @type {number} */ ([1, 2, 2.5, 5, 10].map(f => f * magnitude).find(s => s >= raw * (1 - 1e-9)))
  const intervals = Math.max(1, Math.ceil(m / step - 1e-9))
  const ticks = Array.from({ length: intervals + 1 }, (_, i) => Number((i * step).toPrecision(12)))
  return { top: /** @type {number} */ (ticks[ticks.length - 1]), step, ticks }
}

/**
 * A rate for a y tick: `0/s`, `0.25/s`, `40/s`, `1.5k/s`, `2M/s`.
 * @param {number} perSecond
 */
export function formatTick (perSecond) {
  /** @param {number} v */
  const short = v => String(Number(v.toFixed(2)))
  if (perSecond >= 1e6) return `${short(perSecond / 1e6)}M/s`
  if (perSecond >= 1e3) return `${short(perSecond / 1e3)}k/s`
  return `${short(perSecond)}/s`
}

/**
 * Ticks of a time axis `windowMs` long that ends now: `now`, `-30 s`, `-2 min`…, from the right.
 * @param {number} windowMs
 * @returns {Array<{ agoMs: number, label: string }>}
 */
export function timeTicks (windowMs) {
  const seconds = Math.max(1, windowMs / 1000)
  const step = TIME_STEPS.find(s => seconds / s <= 4) ?? Math.ceil(seconds / 4)
  /** @param {number} s */
  const label = s => {
    if (s === 0) return 'now'
    if (s % 3600 === 0 && s >= 7200) return `-${s / 3600} h`
    if (s % 60 === 0 && s >= 120) return `-${s / 60} min`
    return `-${s} s`
  }
  const ticks = []
  for (let s = 0; s <= seconds + 1e-9; s += step) ticks.push({ agoMs: s * 1000, label: label(s) })
  return ticks
}

/**
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 * @returns {SVGElementTagNameMap[K]}
 */
function svgEl (tag, attrs, text) {
  const el = document.createElementNS(NS, tag)
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v))
  if (text !== undefined) el.textContent = text
  return el
}

/**
 * An empty chart to update with {@link drawRates}.
 * @param {string} label what it shows, for screen readers
 * @returns {SVGSVGElement}
 */
export function rateChart (label) {
  const svg = svgEl('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': label, class: 'chart' })
  svg.append(
    svgEl('g', { class: 'grid' }),
    svgEl('g', { class: 'y-ticks' }),
    svgEl('g', { class: 'x-ticks' }),
    svgEl('line', { class: 'axis', x1: LEFT, x2: RIGHT, y1: BOTTOM, y2: BOTTOM }),
    svgEl('line', { class: 'axis', x1: LEFT, x2: LEFT, y1: TOP, y2: BOTTOM }),
    svgEl('polyline', { class: 'line drain', points: '' }),
    svgEl('polyline', { class: 'line push', points: '' }))
  return svg
}

/**
 * Draw `samples` (oldest first) into a chart of {@link rateChart}: the y axis from 0 to a rounded
 * rate above the highest, the x axis the `windowMs` before `now` (samples older are left out).
 * The ticks' values are also in `data-y-ticks` and `data-x-ticks`, `|`-separated (for tests and tools).
 * @param {SVGSVGElement} svg
 * @param {readonly RatePoint[]} samples
 * @param {{ windowMs: number, now: number }} axis
 */
export function drawRates (svg, samples, { windowMs, now }) {
  const shown = samples.filter(s => now - s.at <= windowMs && s.at <= now)
  const max = Math.max(0, ...shown.map(s => Math.max(s.push, s.drain)))
  const scale = niceScale(max)
  /** @param {number} v */
  const y = v => BOTTOM - (v / scale.top) * (BOTTOM - TOP)
  /** @param {number} at */
  const x = at => RIGHT - ((now - at) / windowMs) * (RIGHT - LEFT)
  /** @param {(s: RatePoint) => number} pick */
  const points = pick => shown.flatMap(s => {
    const level = y(pick(s)).toFixed(1)
    const end = `${x(s.at).toFixed(1)},${level}`
    return s.seconds === undefined ? [end] : [`${Math.max(LEFT, x(s.at - s.seconds * 1000)).toFixed(1)},${level}`, end]
  }).join(' ')

  const [grid, yTicks, xTicks] = /** @type {SVGGElement[]} */ ([...svg.querySelectorAll('g')])
  grid?.replaceChildren(...scale.ticks.filter(v => v > 0).map(v => svgEl('line', { x1: LEFT, x2: RIGHT, y1: y(v).toFixed(1), y2: y(v).toFixed(1) })))
  yTicks?.replaceChildren(...scale.ticks.map(v =>
    svgEl('text', { x: LEFT - 4, y: y(v).toFixed(1), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, formatTick(v))))
  const times = timeTicks(windowMs)
  xTicks?.replaceChildren(...times.map(({ agoMs, label }) => {
    const at = x(now - agoMs)
    const anchor = agoMs === 0 ? 'end' : at - LEFT < 12 ? 'start' : 'middle'
    return svgEl('text', { x: at.toFixed(1), y: HEIGHT - 3, 'text-anchor': anchor }, label)
  }))
  const [drain, push] = svg.querySelectorAll('polyline')
  drain?.setAttribute('points', points(s => s.drain))
  push?.setAttribute('points', points(s => s.push))
  svg.dataset.max = String(scale.top)
  svg.dataset.maxPush = String(Math.max(0, ...shown.map(s => s.push)))
  svg.dataset.maxDrain = String(Math.max(0, ...shown.map(s => s.drain)))
  svg.dataset.yTicks = scale.ticks.map(formatTick).join('|')
  svg.dataset.xTicks = times.map(t => t.label).join('|')
}
