/**
 * CPU per record on the push path: 256 callers, each `await q.pushWal(payload)` in a loop for a
 * few seconds, at 100 B, 1 KiB and 16 KiB, with durability 'sync' and 'none'. Prints msg/s, the
 * CPU-seconds the whole process used (process.cpuUsage, user + system: JavaScript, LevelDB's
 * threads and the syscalls) and records per CPU-second, the main thread's share of that CPU (Linux),
 * with the load average beside them
 * (numbers taken under load are indicative only; compare runs made side by side).
 *
 *   npm run bench:cpu
 *   npm run bench:cpu -- --seconds 5 --sizes 100 --durability sync
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof-cpu --import tsx perf/cpu-push.ts --sizes 100
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Evaq, type Durability } from '../src/index.js'
import { load, pushLoop } from './lib/push-loop.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '0.5' },
    callers: { type: 'string', default: '256' },
    sizes: { type: 'string', default: '100,1024,16384' },
    durability: { type: 'string', default: 'sync,none' },
  },
  strict: true,
})
const seconds = Number(values.seconds)
const warmup = Number(values.warmup)
const callers = Number(values.callers)
const sizes = values.sizes.split(',').map(Number)
const durabilities = values.durability.split(',') as Durability[]

console.log(`node ${process.version}, ${os.cpus().length} cores, ${callers} callers, ${seconds} s per run`)
console.log('durability  size     msg/s   cpu-s  rec/cpu-s  main-cpu-s  main-µs/rec  load (1 5 15 min)')
for (const durability of durabilities) {
  for (const size of sizes) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'evaq-cpu-'))
    try {
      const q = await Evaq.open(dir, { durability })
      try {
        const payloads = Array.from({ length: 16 }, () => randomBytes(size))
        await pushLoop(q, callers, payloads, warmup * 1000)
        const r = await pushLoop(q, callers, payloads, seconds * 1000)
        const line = [
          String(durability).padEnd(10),
          String(size).padStart(5),
          Math.round(r.pushed / r.wallS).toString().padStart(9),
          r.cpuS.toFixed(2).padStart(7),
          Math.round(r.pushed / r.cpuS).toString().padStart(10),
          r.mainS.toFixed(2).padStart(11),
          (r.mainS * 1e6 / r.pushed).toFixed(2).padStart(12),
          ` ${load()}`,
        ]
        console.log(line.join(' '))
      } finally {
        await q.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
}
