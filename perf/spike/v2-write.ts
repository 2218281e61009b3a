/**
 * Spike (throwaway): storage format 2's write path, measured side by side with evaq today and
 * the baselines. Run: npx tsx perf/spike/v2-write.ts [--rounds 3] [--seconds 2] [--only push-256,seq,many-1000,recovery]
 * Prints markdown tables (see perf/spike/README.md) and writes the raw samples to os.tmpdir().
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { payloadSource, summarize } from '../lib/common.js'
import type { Runner } from './baselines.js'
import { FILE_BYTES, WORKLOADS } from './cases.js'
import { recover, writeFrames } from './recovery.js'
import { printTables, type Row } from './report.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '2' },
    only: { type: 'string' },
    cases: { type: 'string' },
    sizes: { type: 'string' },
    'no-wait': { type: 'boolean', default: false },
  },
})
const rounds = Number(values.rounds)
const durationMs = Number(values.seconds) * 1000
const warmupMs = 300
const only = values.only?.split(',')
const onlyCases = values.cases?.split(',')
const onlySizes = values.sizes?.split(',').map(Number)
const load = (): string => os.loadavg().map(l => l.toFixed(2)).join(' ')

async function waitForLoad (): Promise<void> {
  const until = Date.now() + 5 * 60_000
  while (os.loadavg()[0]! >= 1.5 && Date.now() < until) {
    console.error(`  waiting for the 1-minute load to fall below 1.5 (now ${load()})`)
    await new Promise(resolve => setTimeout(resolve, 10_000))
  }
}

async function inTempDir<T> (fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'evaq-spike-'))
  try { return await fn(dir) } finally { await rm(dir, { recursive: true, force: true }) }
}

/**
 * `callers` loops, each awaiting `op` until the deadline. The second half starts one event-loop
 * turn after the first: with all callers in one turn they would form one group and stay in
 * lockstep forever, and a second group in flight could never be used.
 */
async function closedLoop (callers: number, ms: number, perOp: number, op: () => Promise<unknown>): Promise<{ messages: number, msgsPerSec: number }> {
  let messages = 0
  const start = performance.now()
  const deadline = start + ms
  const caller = async (i: number): Promise<void> => {
    if (i >= callers / 2 && callers > 1) await new Promise(resolve => setImmediate(resolve))
    while (performance.now() < deadline) {
      await op()
      messages += perOp
    }
  }
  await Promise.all(Array.from({ length: callers }, (_, i) => caller(i)))
  return { messages, msgsPerSec: messages / (performance.now() - start) * 1000 }
}

async function latencyLoop (ms: number, op: () => Promise<unknown>): Promise<number[]> {
  const samples: number[] = []
  const deadline = performance.now() + ms
  for (;;) {
    const t0 = performance.now()
    if (t0 >= deadline) return samples
    await op()
    samples.push((performance.now() - t0) * 1000)
  }
}

async function main (): Promise<void> {
  console.log(`uptime before: load ${load()}`)
  if (values['no-wait'] !== true) await waitForLoad()
  console.log(`start: load ${load()}`)
  const rows: Row[] = []
  const unavailable = new Set<string>()
  const workloads = WORKLOADS.filter(w => only === undefined || only.includes(w.id))
  for (let round = 0; round < rounds; round++) {
    for (const w of workloads) {
      for (const size of w.sizes.filter(x => onlySizes === undefined || onlySizes.includes(x))) {
        const payload = payloadSource(size)
        // Rotate the order each round, so that no case always runs first or after the same one.
        const cases = w.cases.filter(c => onlyCases === undefined || onlyCases.includes(c.id))
        const order = cases.map((_, i) => cases[(i + round) % cases.length]!)
        for (const c of order) {
          if (unavailable.has(c.id)) continue
          const row = await inTempDir(async (dir): Promise<Row | undefined> => {
            let runner: Runner
            try {
              runner = await c.make(dir, payload)
            } catch (err) {
              console.error(`  ${c.id} is unavailable, left out: ${String(err)}`)
              unavailable.add(c.id)
              return undefined
            }
            const base = { workload: w.id, size, caseId: c.id, round }
            try {
              if (w.latency) {
                await latencyLoop(warmupMs, runner.op)
                const cpu0 = process.cpuUsage()
                const samples = await latencyLoop(durationMs, runner.op)
                const cpu = process.cpuUsage(cpu0)
                const lat = summarize(samples)
                const cpuSec = (cpu.user + cpu.system) / 1e6
                return { ...base, msgsPerSec: 1e6 / lat.meanUs, cpuSec, messages: samples.length, latency: lat, load1: os.loadavg()[0]! }
              }
              const { callers, perOp } = c.writer ?? w
              await closedLoop(callers, warmupMs, perOp, runner.op)
              const cpu0 = process.cpuUsage()
              const s = await closedLoop(callers, durationMs, perOp, runner.op)
              const cpu = process.cpuUsage(cpu0)
              const cpuSec = (cpu.user + cpu.system) / 1e6
              return { ...base, msgsPerSec: s.msgsPerSec, cpuSec, messages: s.messages, group: runner.group?.(), load1: os.loadavg()[0]! }
            } finally {
              await runner.close()
            }
          })
          if (row === undefined) continue
          rows.push(row)
          console.error(`  round ${round + 1} ${w.id} ${size} B ${c.id}: ${Math.round(row.msgsPerSec)} msg/s` +
            `${row.group === undefined ? '' : `, group ${row.group.toFixed(0)}`} (load ${load()})`)
        }
      }
    }
  }
  printTables(workloads, rows)
  if (only === undefined || only.includes('recovery')) {
    const results = []
    for (let i = 0; i < rounds; i++) {
      results.push(await inTempDir(async dir => {
        await writeFrames(dir, FILE_BYTES, payloadSource(1024), 256)
        return recover(dir)
      }))
    }
    console.log('\n### E. Recovery: a 64 MiB segment file of frames (1 KiB payloads, 256 per frame), no locators (page cache warm)\n')
    console.log('| round | frames | records | MiB | read file ms | headers ms | record CRCs ms | locator batch ms | total open ms |')
    console.log('|---|---|---|---|---|---|---|---|---|')
    results.forEach((r, i) => console.log(`| ${i + 1} | ${r.frames} | ${r.records} | ${(r.bytes / 2 ** 20).toFixed(1)} | ${r.readMs.toFixed(1)} | ` +
      `${r.headersMs.toFixed(1)} | ${r.recordsMs.toFixed(1)} | ${r.locatorsMs.toFixed(1)} | ${r.totalMs.toFixed(1)} |`))
  }
  const out = path.join(os.tmpdir(), `evaq-spike-${Date.now()}.json`)
  await writeFile(out, JSON.stringify(rows, null, 1))
  console.log(`\nuptime after: load ${load()}; raw samples: ${out}`)
}

await main()
