/** Spike (throwaway): markdown tables of the samples, medians over rounds, ratios per round. */
import type { LatencySample } from '../lib/common.js'
import { median } from '../lib/common.js'
import type { Workload } from './cases.js'

export interface Row {
  readonly workload: string
  readonly size: number
  readonly caseId: string
  readonly round: number
  readonly msgsPerSec: number
  readonly cpuSec: number
  readonly messages: number
  readonly group?: number | undefined
  readonly latency?: LatencySample
  readonly load1: number
}

const k = (n: number): string =>
  !Number.isFinite(n) ? 'n/a' : n >= 10_000 ? `${Math.round(n / 1000)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : `${Math.round(n)}`
const sizeName = (s: number): string => s >= 1024 ? `${s / 1024} KiB` : `${s} B`

/** Median over rounds of this case's rate divided by the reference's rate of the same round. */
function ratio (rows: readonly Row[], caseId: string, ref: string): number {
  const rs: number[] = []
  for (const r of rows.filter(x => x.caseId === caseId)) {
    const b = rows.find(x => x.caseId === ref && x.round === r.round)
    if (b !== undefined) rs.push(r.msgsPerSec / b.msgsPerSec)
  }
  return median(rs)
}

export function printTables (workloads: readonly Workload[], rows: readonly Row[]): void {
  for (const w of workloads) {
    const ofW = rows.filter(r => r.workload === w.id)
    if (ofW.length === 0) continue
    console.log(`\n### ${w.id}: ${w.title}\n`)
    if (w.latency) {
      console.log(`| case (${w.sizes.map(sizeName).join(', ')}) | p50 µs | p99 µs | mean µs | msg/s | p50 vs ${w.reference} | load per round |`)
      console.log('|---|---|---|---|---|---|---|')
      const refP50 = median(ofW.filter(r => r.caseId === w.reference).map(r => r.latency!.p50Us))
      for (const c of w.cases) {
        const rs = ofW.filter(r => r.caseId === c.id)
        if (rs.length === 0) continue
        const p50 = median(rs.map(r => r.latency!.p50Us))
        const p99 = median(rs.map(r => r.latency!.p99Us))
        const mean = median(rs.map(r => r.latency!.meanUs))
        console.log(`| ${c.id} | ${p50.toFixed(0)} | ${p99.toFixed(0)} | ${mean.toFixed(0)} | ${k(median(rs.map(r => r.msgsPerSec)))} | ` +
          `${(p50 / refP50).toFixed(2)}× | ${rs.map(r => r.load1.toFixed(1)).join(' ')} |`)
      }
      continue
    }
    console.log(`| case | ${w.sizes.map(s => `${sizeName(s)}: msg/s, vs ${w.reference}, rec/CPU-s, group`).join(' | ')} |`)
    console.log(`|---|${w.sizes.map(() => '---').join('|')}|`)
    for (const c of w.cases) {
      const cells = w.sizes.map(size => {
        const rs = ofW.filter(r => r.size === size && r.caseId === c.id)
        if (rs.length === 0) return ''
        const bySize = ofW.filter(r => r.size === size)
        const group = rs[0]!.group === undefined ? '' : `, ${median(rs.map(r => r.group!)).toFixed(0)}`
        const perCpu = k(median(rs.map(r => r.messages / r.cpuSec)))
        return `${k(median(rs.map(r => r.msgsPerSec)))}, ${ratio(bySize, c.id, w.reference).toFixed(2)}×, ${perCpu}${group}`
      })
      console.log(`| ${c.id} | ${cells.join(' | ')} |`)
    }
    const loads = ofW.map(r => r.load1)
    const [lo, mid, hi] = [Math.min(...loads), median(loads), Math.max(...loads)].map(l => l.toFixed(2))
    console.log(`\nLoad (1 min) at the end of each sample: min ${lo}, median ${mid}, max ${hi}`)
  }
}
