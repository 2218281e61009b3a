// @ts-check
/** A small inline SVG chart of push and drain rates: two lines over the last samples. */

const NS = 'http://www.w3.org/2000/svg'
const WIDTH = 240
const HEIGHT = 48
const PAD = 2

/**
 * @typedef {{ push: number, drain: number }} RateSample records per second
 */

/**
 * An empty chart to update with {@link drawRates}.
 * @param {string} label what it shows, for screen readers
 * @returns {SVGSVGElement}
 */
export function rateChart (label) {
  const svg = document.createElementNS(NS, 'svg')
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`)
  svg.setAttribute('preserveAspectRatio', 'none')
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', label)
  svg.setAttribute('class', 'chart')
  const base = document.createElementNS(NS, 'line')
  base.setAttribute('x1', '0')
  base.setAttribute('x2', String(WIDTH))
  base.setAttribute('y1', String(HEIGHT - PAD))
  base.setAttribute('y2', String(HEIGHT - PAD))
  base.setAttribute('class', 'axis')
  svg.appendChild(base)
  for (const kind of ['drain', 'push']) {
    const line = document.createElementNS(NS, 'polyline')
    line.setAttribute('class', `line ${kind}`)
    line.setAttribute('points', '')
    svg.appendChild(line)
  }
  return svg
}

/**
 * Draw `samples` (oldest first) into a chart of {@link rateChart}, scaled to their highest rate,
 * the newest at the right edge and `capacity` samples across.
 * @param {SVGSVGElement} svg
 * @param {readonly RateSample[]} samples
 * @param {number} capacity
 */
export function drawRates (svg, samples, capacity) {
  const max = Math.max(1, ...samples.map(s => Math.max(s.push, s.drain)))
  const step = WIDTH / Math.max(1, capacity - 1)
  const offset = WIDTH - step * (samples.length - 1)
  /** @param {number} v */
  const y = v => (HEIGHT - PAD - (v / max) * (HEIGHT - 2 * PAD)).toFixed(1)
  /** @param {(s: RateSample) => number} pick */
  const points = pick => samples.map((s, i) => `${(offset + i * step).toFixed(1)},${y(pick(s))}`).join(' ')
  const [drain, push] = svg.querySelectorAll('polyline')
  drain?.setAttribute('points', points(s => s.drain))
  push?.setAttribute('points', points(s => s.push))
  svg.dataset.max = String(max)
  svg.dataset.maxPush = String(Math.max(0, ...samples.map(s => s.push)))
  svg.dataset.maxDrain = String(Math.max(0, ...samples.map(s => s.drain)))
}
