/**
 * Closed-loop pushing for the small measurement scripts (cpu-push.ts, compress.ts): `callers`
 * callers each `await q.pushWal(payload)` in a loop for a while, with the CPU the process and its
 * main thread used meanwhile.
 */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import type { Evaq } from '../../src/index.js'

export interface PushLoopResult { pushed: number, wallS: number, cpuS: number, mainS: number }

/**
 * CPU-seconds of the main thread (JavaScript and what it calls synchronously) from Linux's
 * /proc/self/task/<pid>/stat; the rest of cpuUsage is LevelDB's and libuv's threads. NaN elsewhere.
 */
export function mainThreadCpu (): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

/** `callers` closed loops of pushWal for `ms`, caller c pushing payloads[c], payloads[c + callers], … (cycling). */
export async function pushLoop (q: Evaq, callers: number, payloads: readonly Buffer[], ms: number): Promise<PushLoopResult> {
  let pushed = 0
  const state = { stop: false }
  const cpu0 = process.cpuUsage()
  const main0 = mainThreadCpu()
  const t0 = performance.now()
  const timer = setTimeout(() => { state.stop = true }, ms)
  await Promise.all(Array.from({ length: callers }, async (_, c) => {
    for (let i = c; !state.stop; i += callers) {
      await q.pushWal(payloads[i % payloads.length]!)
      pushed++
    }
  }))
  clearTimeout(timer)
  const cpu = process.cpuUsage(cpu0)
  return { pushed, wallS: (performance.now() - t0) / 1000, cpuS: (cpu.user + cpu.system) / 1e6, mainS: mainThreadCpu() - main0 }
}

/** The load averages, for the line beside each number. */
export function load (): string {
  return os.loadavg().map(l => l.toFixed(2)).join(' ')
}
