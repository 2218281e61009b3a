/**
 * Child processes of the crash tests: run a fixture under tsx with a crash point set, collect
 * what it printed, and kill it with SIGKILL if it outlives the watchdog.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
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
  const env = { ...process.env }
  delete env.EVAQ_CRASH_POINT
  if (point !== undefined && point !== 'none') env.EVAQ_CRASH_POINT = point
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const watchdog = setTimeout(() => child.kill('SIGKILL'), watchdogMs)
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  clearTimeout(watchdog)
  return { code, signal, stdout, stderr }
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
