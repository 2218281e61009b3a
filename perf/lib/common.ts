/**
 * What every benchmark module shares: the payload, the run configuration, closed-loop and latency
 * measurement, statistics, machine facts, formatting and the README block writer.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { resourceMeter, type Resources } from './io.js'

// ---------------------------------------------------------------------------------------------
// Configuration

export const PAYLOAD_BYTES = 1024
export const CALLERS = 256

export interface Config {
  readonly mode: 'full' | 'quick' | 'custom'
  /** Length of one measurement, after its warm-up. */
  readonly durationMs: number
  /** Same workload on the same database before measuring: JIT, LevelDB's log and memtable. */
  readonly warmupMs: number
  /** Every round scenario runs once per round; odd rounds run them in reverse order. */
  readonly rounds: number
  readonly only: readonly string[] | undefined
  /** `evaq-head-read`: records pushed and acknowledged before the head is read. */
  readonly headRecords: number
  /** `evaq-head-read`: timed head reads per phase (each read and each next). */
  readonly headIterations: number
  /** `evaq-rss-backlog`: the backlog to grow to, in payload bytes. */
  readonly backlogBytes: number
  /** Before each measurement, wait at most this long for other processes to go quiet (0: never wait). */
  readonly quietWaitMs: number
}

export const PERF_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
export const RESULTS_DIR = path.join(PERF_DIR, 'results')
/** perf/README.md: its "Latest results" keeps the generated blocks, between `<!-- bench:NAME:start/end -->` markers. */
export const README = path.join(PERF_DIR, 'README.md')

/**
 * Distinct payloads of random bytes, handed out in turn by `nextPayload()`. LevelDB compresses
 * with Snappy, which looks for repeats within 64 KiB: one payload written over and over would
 * repeat inside every evaq segment (256 copies in one value) and inside every 4 KiB block of
 * single-record puts, and compress ~10× on disk. 1,024 distinct payloads (1 MiB) repeat only
 * every 1 MiB, so nothing compresses and the disk sees every byte.
 */
export const PAYLOAD_POOL = 1024
const pool = randomBytes(PAYLOAD_POOL * PAYLOAD_BYTES)
const payloads = Array.from({ length: PAYLOAD_POOL }, (_, i) => pool.subarray(i * PAYLOAD_BYTES, (i + 1) * PAYLOAD_BYTES))
let turn = 0

/** The next payload: 1 KiB of random bytes, a different one from the previous 1,023 calls. Shared, never modify. */
export function nextPayload (): Buffer {
  const p = payloads[turn]!
  turn = turn === PAYLOAD_POOL - 1 ? 0 : turn + 1
  return p
}

const sources = new Map<number, () => Buffer>()

/**
 * Like `nextPayload()` for any size: PAYLOAD_POOL distinct buffers of `bytes` random bytes, handed
 * out in turn (one source per size, shared by every scenario of that size). For 100 B payloads the
 * pool spans 100 KiB, still more than Snappy's 64 KiB window.
 */
export function payloadSource (bytes: number): () => Buffer {
  if (bytes === PAYLOAD_BYTES) return nextPayload
  let source = sources.get(bytes)
  if (source === undefined) {
    const buf = randomBytes(PAYLOAD_POOL * bytes)
    const list = Array.from({ length: PAYLOAD_POOL }, (_, i) => buf.subarray(i * bytes, (i + 1) * bytes))
    let i = 0
    source = () => {
      const p = list[i]!
      i = i === PAYLOAD_POOL - 1 ? 0 : i + 1
      return p
    }
    sources.set(bytes, source)
  }
  return source
}

/** Describes the payloads in the reports. */
export const PAYLOAD_NOTE = `${PAYLOAD_POOL} distinct ${PAYLOAD_BYTES} B buffers of random bytes, used in turn ` +
  "(incompressible: no repeat within Snappy's 64 KiB)"

// ---------------------------------------------------------------------------------------------
// Samples and statistics

export interface ThroughputSample {
  readonly kind: 'throughput'
  readonly messages: number
  readonly elapsedMs: number
  readonly msgsPerSec: number
  /** CPU time and bytes written over the measured interval (lib/io.ts), this process and the tracked servers. */
  readonly resources?: Resources
}

export interface LatencySample {
  readonly kind: 'latency'
  readonly count: number
  readonly meanUs: number
  readonly p50Us: number
  readonly p90Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly maxUs: number
  readonly resources?: Resources
}

/**
 * `callers` loops, each awaiting `op` until the deadline; every completed op counts `perOp`
 * messages. Ops started before the deadline finish and count; the elapsed time includes them.
 */
export async function closedLoop (callers: number, durationMs: number, perOp: number, op: () => Promise<unknown>): Promise<ThroughputSample> {
  let messages = 0
  const start = performance.now()
  const deadline = start + durationMs
  const caller = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await op()
      messages += perOp
    }
  }
  const meter = resourceMeter(runningServers())
  await Promise.all(Array.from({ length: callers }, caller))
  const elapsedMs = performance.now() - start
  return { kind: 'throughput', messages, elapsedMs, msgsPerSec: messages / elapsedMs * 1000, resources: meter() }
}

export async function measureThroughput (config: Config, callers: number, perOp: number, op: () => Promise<unknown>): Promise<ThroughputSample> {
  await closedLoop(callers, config.warmupMs, perOp, op)
  return closedLoop(callers, config.durationMs, perOp, op)
}

export async function measureLatency (config: Config, op: () => Promise<unknown>): Promise<LatencySample> {
  const warmupEnd = performance.now() + config.warmupMs
  while (performance.now() < warmupEnd) await op()
  const samples: number[] = []
  const meter = resourceMeter(runningServers())
  const deadline = performance.now() + config.durationMs
  for (;;) {
    const t0 = performance.now()
    if (t0 >= deadline) break
    await op()
    samples.push((performance.now() - t0) * 1000)
  }
  return { ...summarize(samples), resources: meter() }
}

export function summarize (samplesUs: readonly number[]): LatencySample {
  const sorted = Float64Array.from(samplesUs).sort()
  let sum = 0
  for (const s of sorted) sum += s
  return {
    kind: 'latency',
    count: sorted.length,
    meanUs: sorted.length === 0 ? NaN : sum / sorted.length,
    p50Us: percentile(sorted, 50),
    p90Us: percentile(sorted, 90),
    p99Us: percentile(sorted, 99),
    p999Us: percentile(sorted, 99.9),
    maxUs: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
  }
}

/** Nearest-rank percentile of an ascending array. */
export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil(p / 100 * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

export function median (values: readonly number[]): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/**
 * Bytes of the files under `dir`. Measured while the queue runs: a file (a released segment file,
 * a LevelDB table a compaction replaced) may go between the listing and its stat, and counts 0.
 */
export async function dirBytes (dir: string): Promise<number> {
  let total = 0
  const gone = (err: unknown): number => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(err => { gone(err); return [] })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) total += await dirBytes(p)
    else if (entry.isFile()) total += await stat(p).then(s => s.size, gone)
  }
  return total
}

/** Yield to the event loop once (lets queued I/O callbacks and background tasks run). */
export const tick = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

// ---------------------------------------------------------------------------------------------
// Machine facts

export interface Machine {
  readonly cpuModel: string
  readonly cpuCount: number
  readonly totalMemoryBytes: number
  readonly platform: string
  readonly arch: string
  readonly kernel: string
  readonly node: string
  readonly tmpdir: string
  readonly tmpdirFilesystem: { readonly type: string, readonly mountedOn: string, readonly device?: string } | undefined
  /** The block device under tmpdir, from /sys/block: size, rotational, write cache, scheduler. */
  readonly disk: string | undefined
  /** classic-level runs every operation on libuv's pool; its size caps concurrent raw puts. */
  readonly uvThreadpoolSize: number
}

export function machine (): Machine {
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    platform: os.platform(),
    arch: os.arch(),
    kernel: os.release(),
    node: process.version,
    tmpdir: os.tmpdir(),
    tmpdirFilesystem: filesystemOf(os.tmpdir()),
    disk: diskOf(filesystemOf(os.tmpdir())?.device),
    uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
  }
}

/** The filesystem type of `dir` from `df -PT` (POSIX output: one line per filesystem). */
function filesystemOf (dir: string): Machine['tmpdirFilesystem'] {
  try {
    const lines = execFileSync('df', ['-PT', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')
    const fields = lines[lines.length - 1]?.split(/\s+/) ?? []
    if (fields.length < 7) return undefined
    return { type: fields[1]!, mountedOn: fields.slice(6).join(' '), device: fields[0]! }
  } catch {
    return undefined
  }
}

function diskOf (device: string | undefined): string | undefined {
  const name = device === undefined ? undefined : /^\/dev\/([a-z]+)/.exec(device)?.[1]
  if (name === undefined) return undefined
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(`/sys/block/${name}/${f}`, 'utf8').trim()
    } catch {
      return undefined
    }
  }
  const sectors = Number(read('size'))
  const parts = [
    `${name}${Number.isFinite(sectors) ? ` ${(sectors * 512 / 1e9).toFixed(0)} GB` : ''}`,
    read('device/model'),
    read('queue/rotational') === '0' ? 'non-rotational' : read('queue/rotational') === '1' ? 'rotational' : undefined,
    read('queue/write_cache') === undefined ? undefined : `write cache: ${read('queue/write_cache')}`,
  ]
  return parts.filter(p => p !== undefined && p !== '').join(', ')
}

export function gitRevision (): { commit: string, dirty: boolean } | undefined {
  try {
    const run = (...args: string[]): string =>
      execFileSync('git', args, { cwd: PERF_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return { commit: run('rev-parse', 'HEAD'), dirty: run('status', '--porcelain', '--', '../src').length > 0 }
  } catch {
    return undefined
  }
}

export function machineLine (m: Machine): string {
  const fs = m.tmpdirFilesystem === undefined ? 'unknown fs' : `${m.tmpdirFilesystem.type} (${m.tmpdirFilesystem.mountedOn})`
  return `${m.cpuCount} × ${m.cpuModel}, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ` +
    `${m.platform} ${m.kernel} ${m.arch}, Node ${m.node}, tmpdir on ${fs}` +
    (m.uvThreadpoolSize === 4 ? '' : `, UV_THREADPOOL_SIZE=${m.uvThreadpoolSize}`)
}

/**
 * CPU use while something ran, in CPUs (1.0 = one CPU busy the whole time): this process (all its
 * threads: JS, libuv's pool, LevelDB's compaction) and everything else on the machine, from
 * /proc/stat (Linux; undefined elsewhere). `otherCpus` well above 0 means other processes competed
 * for the CPU during the measurement; `stealCpus`, that the hypervisor did.
 */
export interface CpuShare {
  readonly wallMs: number
  readonly ownCpus: number
  readonly otherCpus: number | undefined
  readonly stealCpus: number | undefined
  /** 1-minute load average at the end (it includes this process). */
  readonly load1: number
}

/**
 * Start measuring; call the result to stop. Counts child processes once they exited, and the
 * running processes `servers()` names (the harness's redis-server) as this run's own.
 */
export function cpuMeter (servers: () => readonly number[] = runningServers): () => CpuShare {
  const t0 = performance.now()
  const u0 = process.cpuUsage()
  const c0 = childTicks()
  const pids = servers()
  const p0 = pids.map(processTicks)
  const s0 = systemTicks()
  return () => {
    const wallMs = performance.now() - t0
    const u = process.cpuUsage(u0)
    const serverTicks = pids.reduce((sum, pid, i) => sum + Math.max(0, processTicks(pid) - p0[i]!), 0)
    const ownCpus = (u.user + u.system) / 1000 / wallMs + (childTicks() - c0 + serverTicks) * 10 / wallMs
    const s1 = systemTicks()
    const round = (n: number): number => Math.round(n * 100) / 100
    if (s0 === undefined || s1 === undefined) return { wallMs, ownCpus: round(ownCpus), otherCpus: undefined, stealCpus: undefined, load1: loadAverage()[0]! }
    // /proc/stat counts in USER_HZ ticks, 100 per second on Linux.
    const busy = (s1.busy - s0.busy) * 10 / wallMs
    return {
      wallMs,
      ownCpus: round(ownCpus),
      otherCpus: round(Math.max(0, busy - ownCpus)),
      stealCpus: round((s1.steal - s0.steal) * 10 / wallMs),
      load1: loadAverage()[0]!,
    }
  }
}

const servers = new Set<number>()
/** The server processes this run started and still runs (redis-server), by pid. */
export const runningServers = (): number[] => [...servers]

/** Count a server process this run started (redis-server) as its own CPU use, until `forget`. */
export function trackServer (pid: number): { forget (): void } {
  servers.add(pid)
  return { forget: () => servers.delete(pid) }
}

/** utime + stime of a running process, in ticks (0 where unknown). */
function processTicks (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/** CPU ticks of this process's exited children (cutime + cstime of /proc/self/stat), 0 where unknown. */
function childTicks (): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8')
    // Fields after the command (which may contain spaces) start at field 3, the state.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[13]) + Number(fields[14])
  } catch {
    return 0
  }
}

export interface QuietWait {
  /** How long the run waited for other processes to go quiet before this measurement. */
  readonly waitedMs: number
  /** Whether they did (false: it gave up after the maximum wait and measured anyway). */
  readonly quiet: boolean
  /** What other processes used in the last second before the measurement, in CPUs. */
  readonly otherCpus: number | undefined
}

/**
 * Wait until other processes used less than `threshold` CPUs in two consecutive one-second
 * windows, at most `maxWaitMs` (0: do not wait). Call it while this process is idle.
 */
export async function waitForQuiet (maxWaitMs: number, threshold = 0.25): Promise<QuietWait> {
  const t0 = performance.now()
  const window = async (): Promise<number | undefined> => {
    const stop = cpuMeter()
    await new Promise(resolve => setTimeout(resolve, 1000))
    return stop().otherCpus
  }
  if (maxWaitMs <= 0) return { waitedMs: 0, quiet: true, otherCpus: undefined }
  let calm = 0
  let told = false
  for (;;) {
    const other = await window()
    if (other === undefined) return { waitedMs: performance.now() - t0, quiet: true, otherCpus: undefined }
    calm = other < threshold ? calm + 1 : 0
    const waitedMs = performance.now() - t0
    if (calm >= 2) {
      if (told) console.log(`  ... quiet after ${(waitedMs / 1000).toFixed(0)} s`)
      return { waitedMs, quiet: true, otherCpus: other }
    }
    if (waitedMs >= maxWaitMs) {
      console.log(`  ... still busy after ${(waitedMs / 1000).toFixed(0)} s (others ${other.toFixed(2)} CPUs): measuring anyway`)
      return { waitedMs, quiet: false, otherCpus: other }
    }
    if (!told && other >= threshold) {
      console.log(`  waiting for other processes to go quiet (they use ${other.toFixed(2)} CPUs) ...`)
      told = true
    }
  }
}

function systemTicks (): { busy: number, steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    if (user === undefined || steal === undefined) return undefined
    return { busy: user + nice! + system! + irq! + softirq!, steal }
  } catch {
    return undefined
  }
}

export function formatCpu (c: CpuShare): string {
  return c.otherCpus === undefined
    ? `[load ${c.load1}]`
    : `[CPUs: own ${c.ownCpus.toFixed(2)}, others ${c.otherCpus.toFixed(2)}` +
      `${c.stealCpus! >= 0.05 ? `, steal ${c.stealCpus!.toFixed(2)}` : ''}; load ${c.load1}]`
}

/** The 1, 5 and 15 minute load averages, rounded for the record. */
export function loadAverage (): number[] {
  return os.loadavg().map(l => Math.round(l * 100) / 100)
}

// ---------------------------------------------------------------------------------------------
// Memory

/**
 * RSS split into anonymous memory (heaps, buffers, LevelDB's memtables and caches) and
 * file-backed pages (the Node binary, and the table files LevelDB maps with mmap to read them),
 * from /proc/self/status; undefined where that does not exist.
 */
export interface RssSplit {
  readonly rssAnon: number
  readonly rssFile: number
}

export function rssSplit (): RssSplit | undefined {
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
    const split = { rssAnon: kb('RssAnon'), rssFile: kb('RssFile') }
    return Number.isFinite(split.rssAnon) && Number.isFinite(split.rssFile) ? split : undefined
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// The run, for the reports

export interface RunInfo {
  readonly config: Config
  readonly machine: Machine
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly loadBefore: readonly number[]
  readonly loadAfter: readonly number[]
  /** The 1-minute load average every 10 s of the run: [s since the start, load]. */
  readonly loadDuring: ReadonlyArray<readonly [number, number]>
  /** CPU use per measurement (see CpuShare), by scenario, one per round (or one for once-only scenarios). */
  readonly cpu: Readonly<Record<string, ReadonlyArray<CpuShare & { readonly before?: QuietWait }>>>
}

/** One sentence on how busy the machine was, for the captions. */
export function loadSentence (info: RunInfo): string {
  const during = Math.max(...info.loadDuring.map(([, l]) => l))
  const all = Object.values(info.cpu).flat()
  const others = all.map(c => c.otherCpus).filter((c): c is number => c !== undefined)
  const waited = all.filter(c => c.before !== undefined && c.before.waitedMs > 2500).length
  const busy = all.filter(c => c.before?.quiet === false).length
  const wait = info.config.quietWaitMs <= 0
    ? ''
    : ` Before each measurement the run waited (up to ${info.config.quietWaitMs / 1000} s) for other processes to use < 0.25 CPUs: ` +
      `${waited} of ${all.length} measurements had to wait${busy > 0 ? `, ${busy} gave up waiting` : ''}.`
  const spread = others.length === 0
    ? '.'
    : `; other processes used ${Math.min(...others).toFixed(2)} to ${Math.max(...others).toFixed(2)} CPUs during the measurements.`
  return `Load average ${info.loadBefore[0]!.toFixed(2)} at the start, at most ${during.toFixed(2)} during the run (this benchmark alone adds 1 to 2)` +
    spread + wait
}

/** The load record both reports carry. */
export function loadRecord (info: RunInfo): object {
  const during = info.loadDuring.map(([, l]) => l)
  return {
    before: info.loadBefore,
    after: info.loadAfter,
    max1mDuring: during.length === 0 ? undefined : Math.max(...during),
    during: info.loadDuring,
    note: 'the 1-minute load includes this benchmark (1 to 2 on its own); cpu[scenario].otherCpus is what other processes used during each measurement',
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

export const int = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'

export function formatRatio (r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(r >= 10 ? 1 : 2)}×` : 'n/a'
}

export function formatMet (met: boolean | undefined): string {
  return met === undefined ? '—' : met ? 'yes' : 'NO'
}

export function formatMiB (bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(bytes >= 100 * 2 ** 20 ? 0 : 1)} MiB` : 'n/a'
}

export function textTable (header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

/** A markdown table; `align` is one of `---`, `---:`, `:---:` per column. */
export function markdownTable (header: readonly string[], align: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|')
  return [
    `| ${header.join(' | ')} |`,
    `| ${align.join(' | ')} |`,
    ...rows.map(r => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

export function localDate (d: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

/** Where `marker` stands alone on a line of `text`, at or after `from`; -1 if nowhere. */
export function lineAt (text: string, marker: string, from = 0): number {
  for (let i = text.indexOf(marker, from); i >= 0; i = text.indexOf(marker, i + 1)) {
    const end = i + marker.length
    if ((i === 0 || text[i - 1] === '\n') && (end === text.length || text[end] === '\n')) return i
  }
  return -1
}

/** Replace the text between `startMarker` and `endMarker` in perf/README.md, if it has them. */
export async function updateReadme (startMarker: string, endMarker: string, content: string): Promise<boolean> {
  if (!existsSync(README)) return false
  const text = await readFile(README, 'utf8')
  // The markers on lines of their own: perf/README.md also names them in its prose.
  const start = lineAt(text, startMarker)
  const end = lineAt(text, endMarker, start + startMarker.length)
  if (start < 0 || end < 0) return false
  const next = `${text.slice(0, start + startMarker.length)}\n${content}\n${text.slice(end)}`
  if (next === text) return false
  await writeFile(README, next)
  return true
}
