/**
 * The throughput chart: one group of horizontal bars per scenario (evaq and each baseline), on a
 * logarithmic axis because the systems span three orders of magnitude. Plain SVG, no dependency.
 */
import type { SystemId } from './systems.js'

export interface ChartGroup {
  readonly label: string
  readonly bars: ReadonlyArray<{ readonly system: SystemId, readonly value: number }>
}

const COLORS: Record<SystemId, string> = {
  evaq: '#d62728',
  'fs-overwrite': '#3f3f3f',
  fs: '#9f9f9f',
  'level-put': '#aec7e8',
  'level-batch': '#1f77b4',
  'level-segment': '#17becf',
  sqlite: '#2ca02c',
  lmdb: '#9467bd',
  bullmq: '#ff7f0e',
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const short = (n: number): string => {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`
  return `${Math.round(n)}`
}

export function throughputSvg (title: string, subtitle: string, groups: readonly ChartGroup[], names: Record<SystemId, string>): string {
  const values = groups.flatMap(g => g.bars.map(b => b.value)).filter(v => Number.isFinite(v) && v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values, 1e3)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 1e4)))
  const left = 250
  const plot = 520
  const right = 70
  const width = left + plot + right
  const bar = 11
  const gap = 3
  const groupGap = 14
  const systems = [...new Set(groups.flatMap(g => g.bars.map(b => b.system)))]
  const legendRows = Math.ceil(systems.length / 3)
  const top = 48 + legendRows * 16 + 22
  const x = (v: number): number => left + (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plot
  const out: string[] = []
  let y = top
  for (const g of groups) {
    out.push(`<text x="${left - 8}" y="${y + bar}" text-anchor="end" font-weight="bold">${esc(g.label)}</text>`)
    for (const b of g.bars) {
      y += bar + gap
      if (!Number.isFinite(b.value) || b.value <= 0) continue
      out.push(`<text x="${left - 8}" y="${y + bar - 2}" text-anchor="end" fill="#444">${esc(names[b.system])}</text>`)
      out.push(`<rect x="${left}" y="${y}" width="${Math.max(1, x(b.value) - left).toFixed(1)}" height="${bar}" fill="${COLORS[b.system]}"/>`)
      out.push(`<text x="${(x(b.value) + 4).toFixed(1)}" y="${y + bar - 2}" fill="#222">${short(b.value)}</text>`)
    }
    y += bar + gap + groupGap
  }
  const height = y + 40
  const grid: string[] = []
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m
      if (v > hi * 1.0001) break
      const gx = x(v).toFixed(1)
      grid.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${y}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`)
      if (m === 1 || m === 5) grid.push(`<text x="${gx}" y="${y + 14}" text-anchor="middle" fill="#666">${short(v)}</text>`)
    }
  }
  const legend = systems.map((s, i) => {
    const lx = 12 + (i % 3) * 250
    const ly = 48 + Math.floor(i / 3) * 16
    return `<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${COLORS[s]}"/><text x="${lx + 14}" y="${ly}">${esc(names[s])}</text>`
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="12" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="36" fill="#555">${esc(subtitle)}</text>`,
    ...legend,
    ...grid,
    ...out,
    `<text x="${left + plot / 2}" y="${height - 6}" text-anchor="middle" fill="#555">messages per second (log scale)</text>`,
    '</svg>',
    '',
  ].join('\n')
}
