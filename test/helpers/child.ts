/**
 * Child processes of the crash tests: run a fixture under tsx with a crash point set, collect
 * what it printed (whole, or line by line as it comes), kill it with SIGKILL when the test says
 * so, and if it outlives the watchdog.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import { ClassicLevel } from 'classic-level'

export interface ChildOutcome {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Run `fixture` (a TypeScript file) with `args` under `EVAQ_CRASH_POINT=point` ('none' or
 * undefined: no crash point, even if the parent has one set) until it exits or is killed.
 */
export async function runFixture (fixture: string, args: readonly string[], point: string | undefined, watchdogMs: number): Promise<ChildOutcome> {
  const child = spawnFixture(fixture, args, point)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const watchdog = setTimeout(() => child.kill('SIGKILL'), watchdogMs)
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  clearTimeout(watchdog)
  return { code, signal, stdout, stderr }
}

/** This process's environment with EVAQ_CRASH_POINT set to `point` only ('none' or undefined: unset). */
function fixtureEnv (point: string | undefined): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.EVAQ_CRASH_POINT
  if (point !== undefined && point !== 'none') env.EVAQ_CRASH_POINT = point
  return env
}

function spawnFixture (fixture: string, args: readonly string[], point: string | undefined): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(process.execPath, ['--import', 'tsx', fixture, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: fixtureEnv(point) })
}

/** What the test can do to a running child from its callbacks. */
export interface LineChild {
  /** SIGKILL the child, once; nothing once it has exited. */
  kill (): void
  /** Run `fn` in `ms` unless the child has exited by then. */
  after (ms: number, fn: () => void): void
}

export interface LineOptions {
  /** EVAQ_CRASH_POINT for the child ('none' or undefined: none, even if this process has one). */
  readonly point?: string | undefined
  /** A child still running after this long is killed and reported `hung`. */
  readonly watchdogMs: number
  /** Each complete line of stdout, in order (a killed child may leave half a line: it is dropped). */
  readonly onLine: (line: string, child: LineChild) => void
  /** Asked after the lines of each chunk of stdout: true kills the child. */
  readonly killWhen?: () => boolean
  /** Called once the child is started, e.g. to schedule a kill with `after`. */
  readonly onStart?: (child: LineChild) => void
}

export interface LineOutcome {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
  /** Whether the test (or the watchdog) killed the child before it exited. */
  readonly killed: boolean
  /** Whether the watchdog killed it. */
  readonly hung: boolean
}

/**
 * Run `fixture` (a TypeScript file) under tsx, handing each line it prints to `onLine` as it
 * arrives, until it exits or is killed. The fixtures report through lineReporter()
 * (test/helpers/report-line.ts), so a line that arrived was written before the kill.
 */
export async function runLines (fixture: string, args: readonly string[], options: LineOptions): Promise<LineOutcome> {
  const child = spawnFixture(fixture, args, options.point)
  let closed = false
  let killed = false
  let hung = false
  let stderr = ''
  const timers: NodeJS.Timeout[] = []
  const control: LineChild = {
    kill: () => {
      if (killed || closed) return
      killed = true
      child.kill('SIGKILL')
    },
    after: (ms, fn) => { timers.push(setTimeout(fn, ms)) },
  }
  control.after(options.watchdogMs, () => { hung = true; control.kill() })
  options.onStart?.(control)
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  let rest = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n')
    // A line is only complete with its newline; a killed child may leave half of one.
    rest = lines.pop()!
    for (const line of lines) options.onLine(line, control)
    if (options.killWhen?.() === true) control.kill()
  })
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  closed = true
  for (const timer of timers) clearTimeout(timer)
  return { code, signal, stderr, killed, hung }
}

/** Keys left in a sublevel, read with classic-level directly (the queue must be closed). */
export async function rawKeys (dir: string, sublevel: string): Promise<number> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  try {
    return (await db.sublevel<Buffer, Buffer>(sublevel, { keyEncoding: 'buffer', valueEncoding: 'buffer' }).keys().all()).length
  } finally {
    await db.close()
  }
}
