/**
 * Segment compression (`segmentCompression`) on the push path: 256 callers, each
 * `await q.pushWal(payload)` in a loop for a few seconds, durability 'sync', at 1 KiB and 16 KiB,
 * with JSON log events (about 4x compressible) and random bytes, for each codec. Prints msg/s, the
 * bytes written to the WAL's segment files per record, the CPU-seconds of the whole process
 * (process.cpuUsage) and of its main thread (Linux), and the load average beside them.
 *
 * Then, per codec and size, what compressing one 256-record segment costs: synchronously (the
 * main thread is blocked that long) and through zlib's asynchronous (threadpool) variant.
 *
 *   npx tsx perf/compress.ts
 *   npx tsx perf/compress.ts --seconds 5 --sizes 16384 --codecs none,zstd --kinds json
 *   npx tsx perf/compress.ts --rounds 3     (the codecs interleaved, 3 times; then each one's median msg/s)
 *   /path/to/node24 --import tsx perf/compress.ts      (zstd: Node >= 22.15 / 23.8)
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs, promisify } from 'node:util'
import zlib from 'node:zlib'
import { Evaq, type SegmentCompression } from '../src/index.js'
import { zstdAvailable } from '../src/store/frame-codec.js'
import { dirBytes } from './lib/common.js'
import { load, pushLoop, type PushLoopResult } from './lib/push-loop.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '0.5' },
    callers: { type: 'string', default: '256' },
    sizes: { type: 'string', default: '1024,16384' },
    kinds: { type: 'string', default: 'json,random' },
    codecs: { type: 'string', default: zstdAvailable() ? 'none,deflate,zstd' : 'none,deflate' },
    rounds: { type: 'string', default: '1' },
  },
  strict: true,
})
const seconds = Number(values.seconds)
const warmup = Number(values.warmup)
const callers = Number(values.callers)
const sizes = values.sizes.split(',').map(Number)
const kinds = values.kinds.split(',') as Array<'json' | 'random'>
const codecs = values.codecs.split(',') as SegmentCompression[]
const rounds = Number(values.rounds)
const DISTINCT = 1024

const WORDS = ['order', 'payment', 'processed', 'accepted', 'retry', 'cache', 'miss', 'hit', 'user', 'cart', 'shipping', 'timeout',
  'upstream', 'latency', 'queue', 'warehouse', 'invoice', 'created', 'updated', 'refund', 'session', 'token', 'expired', 'inventory']
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!
const hex = (n: number): string => randomBytes(n).toString('hex')

/** One log event as an application would emit it: fixed keys, varying values, ids and numbers. */
function logEvent (): object {
  return {
    ts: new Date(1_700_000_000_000 + Math.floor(Math.random() * 1e9)).toISOString(),
    level: pick(['info', 'info', 'info', 'warn', 'debug', 'error']),
    service: pick(['checkout-api', 'payments', 'inventory-sync', 'auth']),
    host: `ip-10-0-${Math.floor(Math.random() * 255)}-${Math.floor(Math.random() * 255)}.eu-west-1.compute.internal`,
    trace_id: hex(16),
    span_id: hex(8),
    msg: Array.from({ length: 4 + Math.floor(Math.random() * 8) }, () => pick(WORDS)).join(' '),
    user: { id: `u_${Math.floor(Math.random() * 1e7)}`, plan: pick(['free', 'pro', 'team']) },
    http: { method: pick(['GET', 'POST', 'PUT']), path: `/v1/${pick(WORDS)}/${Math.floor(Math.random() * 1e5)}`, status: pick([200, 200, 201, 404, 500]) },
    duration_ms: Math.round(Math.random() * 50_000) / 100,
  }
}

/** A JSON payload of exactly `size` bytes: a batch of events, padded with spaces. */
function jsonPayload (size: number): Buffer {
  const events: object[] = []
  let text = '[]'
  for (;;) {
    events.push(logEvent())
    const next = JSON.stringify({ events })
    if (next.length > size) break
    text = next
  }
  return Buffer.from(text.padEnd(size, ' '))
}

function payloads (kind: 'json' | 'random', size: number): Buffer[] {
  return Array.from({ length: DISTINCT }, () => kind === 'json' ? jsonPayload(size) : randomBytes(size))
}

console.log(`node ${process.version}, ${os.cpus().length} cores, ${callers} callers, ${seconds} s per run, durability 'sync', load ${load()}`)
console.log('codec    kind    size     msg/s  seg-B/rec  ratio   cpu-s  cpu-µs/rec  main-cpu-s  load (1 5 15 min)')
const rates = new Map<string, number[]>()
for (const size of sizes) {
  for (const kind of kinds) {
    const data = payloads(kind, size)
    for (let round = 0; round < rounds; round++) {
      for (const codec of codecs) {
        const dir = await mkdtemp(path.join(os.tmpdir(), 'evaq-compress-'))
        try {
          const q = await Evaq.open(dir, { durability: 'sync', segmentCompression: codec, minFreeDiskBytes: 0 })
          let r: PushLoopResult
          let bytes: number
          try {
            await pushLoop(q, callers, data, warmup * 1000)
            const before = await dirBytes(path.join(dir, 'segments', 'wal'))
            r = await pushLoop(q, callers, data, seconds * 1000)
            bytes = (await dirBytes(path.join(dir, 'segments', 'wal'))) - before
          } finally {
            await q.close()
          }
          const key = `${codec.padEnd(8)} ${kind.padEnd(7)} ${String(size).padStart(5)}`
          rates.set(key, [...rates.get(key) ?? [], r.pushed / r.wallS])
          console.log([
            codec.padEnd(8), kind.padEnd(7), String(size).padStart(5),
            Math.round(r.pushed / r.wallS).toString().padStart(9),
            Math.round(bytes / r.pushed).toString().padStart(10),
            (r.pushed * size / bytes).toFixed(2).padStart(6),
            r.cpuS.toFixed(2).padStart(7),
            (r.cpuS * 1e6 / r.pushed).toFixed(1).padStart(11),
            r.mainS.toFixed(2).padStart(11),
            ` ${load()}`,
          ].join(' '))
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      }
    }
  }
}

if (rounds > 1) {
  console.log(`\nmedian msg/s of ${rounds} interleaved rounds`)
  for (const [key, list] of rates) console.log(`${key} ${Math.round([...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!).toString().padStart(9)}`)
}

// One 256-record segment of JSON, compressed synchronously (blocking the main thread) and through
// the threadpool (the main thread is free meanwhile; the wall time includes the hand-off).
type Fn = (b: Buffer, o: object) => Buffer
const z = zlib as unknown as Record<string, Fn | undefined>
const zstdParams = { params: { [zlib.constants['ZSTD_c_compressionLevel' as keyof typeof zlib.constants] ?? 100]: 1 } }
const variants: Array<[string, (b: Buffer) => Buffer, (b: Buffer) => Promise<Buffer>]> = [
  ['deflate', b => zlib.deflateRawSync(b, { level: 1 }), b => promisify(zlib.deflateRaw)(b, { level: 1 })],
]
if (z['zstdCompressSync'] !== undefined) {
  const asyncZstd = promisify(z['zstdCompress'] as unknown as (b: Buffer, o: object, cb: (e: Error | null, r: Buffer) => void) => void)
  variants.push(['zstd', b => z['zstdCompressSync']!(b, zstdParams), b => asyncZstd(b, zstdParams)])
}
console.log('\none 256-record JSON segment    size   sync ms (main thread)   async ms (wall, 4 at once)   ratio')
for (const size of sizes) {
  const segment = Buffer.concat(payloads('json', size).slice(0, 256))
  for (const [name, sync, async] of variants) {
    for (let i = 0; i < 3; i++) sync(segment)
    const rounds = 10
    let t0 = performance.now()
    let out: Buffer = segment
    for (let i = 0; i < rounds; i++) out = sync(segment)
    const syncMs = (performance.now() - t0) / rounds
    t0 = performance.now()
    for (let i = 0; i < rounds; i += 4) await Promise.all([0, 1, 2, 3].map(() => async(segment)))
    const asyncMs = (performance.now() - t0) / (Math.ceil(rounds / 4) * 4)
    const ratio = (segment.byteLength / out.byteLength).toFixed(2)
    console.log(`${name.padEnd(30)} ${String(size).padStart(5)} ${syncMs.toFixed(2).padStart(22)} ${asyncMs.toFixed(2).padStart(28)} ${ratio.padStart(7)}`)
  }
}
