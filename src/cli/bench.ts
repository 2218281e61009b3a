import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Evaq } from '../evaq.js'
import { guardInterrupts } from './interrupt.js'
import { durabilityFlag, intFlag } from './usage.js'

/**
 * `evaq bench`: durable pushes to a fresh queue in a temporary directory (on the filesystem of
 * `--dir`, default the OS temp dir), from `--concurrency` callers for `--seconds`; prints the
 * rate and the latency percentiles. The directory is removed afterwards, also on an error, Ctrl-C
 * or SIGTERM (the callers stop, the queue closes, the directory goes; exit 130 / 143).
 */
export async function bench (values: Record<string, string | boolean | undefined>): Promise<number> {
  const seconds = intFlag(values.seconds as string | undefined, '--seconds', 5, 1, 3600)
  const concurrency = intFlag(values.concurrency as string | undefined, '--concurrency', 256, 1, 100_000)
  const size = intFlag(values.size as string | undefined, '--size', 1024, 0, 8 * 1024 * 1024)
  const durability = durabilityFlag(values.durability as string | undefined) ?? 'sync'
  const parent = (values.dir as string | undefined) ?? tmpdir()
  const interrupt = guardInterrupts()
  let dir: string
  try {
    dir = await mkdtemp(join(parent, 'evaq-bench-'))
  } catch (err) {
    interrupt.dispose()
    throw err
  }
  try {
    const evaq = await Evaq.open(dir, { durability, minFreeDiskBytes: 0 })
    const payload = Buffer.alloc(size, 0x61)
    const latencies: number[] = []
    let pushed = 0
    const started = performance.now()
    const deadline = started + seconds * 1000
    const caller = async (): Promise<void> => {
      while (performance.now() < deadline && !interrupt.signal.aborted) {
        const t = performance.now()
        await evaq.pushWal(payload)
        latencies.push(performance.now() - t)
        pushed++
      }
    }
    try {
      await Promise.all(Array.from({ length: concurrency }, caller))
    } finally {
      await evaq.close()
    }
    if (interrupt.received !== undefined) {
      console.error(`evaq: bench interrupted (${interrupt.received}) after ${pushed} push(es); its directory was removed`)
      return interrupt.exitCode
    }
    const elapsed = (performance.now() - started) / 1000
    latencies.sort((a, b) => a - b)
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
    const result = {
      seconds: Number(elapsed.toFixed(3)),
      concurrency,
      payloadBytes: size,
      durability,
      records: pushed,
      recordsPerSecond: Math.round(pushed / elapsed),
      megabytesPerSecond: Number((pushed * size / elapsed / 1e6).toFixed(2)),
      latencyMs: { p50: round(at(0.5)), p99: round(at(0.99)), max: round(latencies.at(-1) ?? 0) },
    }
    if (values.json === true) console.log(JSON.stringify(result))
    else {
      console.log(`${result.records.toLocaleString('en-US')} pushes of ${size} B in ${result.seconds} s ` +
        `from ${concurrency} callers (durability ${JSON.stringify(durability)})`)
      const { p50, p99, max } = result.latencyMs
      console.log(`${result.recordsPerSecond.toLocaleString('en-US')} msg/s, ${result.megabytesPerSecond} MB/s; ` +
        `latency p50 ${p50} ms, p99 ${p99} ms, max ${max} ms`)
    }
    return 0
  } finally {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    interrupt.dispose()
  }
}

function round (ms: number): number {
  return Number(ms.toFixed(3))
}
