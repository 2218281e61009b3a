/**
 * What the model-based tests (fast-check `fc.commands`) share: the mismatch a command throws when
 * the real queue and the reference model disagree, the clock command, and one run of a command
 * sequence in a fresh directory that is closed and removed whatever happens.
 */
import fc from 'fast-check'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { inspect, isDeepStrictEqual } from 'node:util'
import type { Evaq } from '../../src/index.js'
import type { ManualClock } from './clock.js'

/** The real queue and the model disagree; fast-check shrinks the sequence that led here. */
export class ModelMismatch extends Error {}

export function fail (what: string, details?: Record<string, unknown>): never {
  throw new ModelMismatch(details === undefined ? what : `${what}: ${inspect(details, { depth: 5, breakLength: 160 })}`)
}

export function expectEqual (actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) fail(what, { expected, actual })
}

/** The real side of a model test: a queue on a clock the test moves, opened (again) by `open()`. */
export interface RealQueue {
  readonly q: Evaq | undefined
  readonly clock: ManualClock
  open (): Promise<void>
}

/** Compares the real queue with the model after a command; `what` names the command. */
export type Verify<M, R> = (m: M, r: R, what: string) => Promise<void>

/** Both clocks move on by `ms`. */
export class AdvanceCmd<M extends { now: number }, R extends RealQueue> implements fc.AsyncCommand<M, R> {
  constructor (readonly ms: number, private readonly verify: Verify<M, R>) {}
  check (): boolean { return true }
  async run (m: M, r: R): Promise<void> {
    m.now += this.ms
    r.clock.t = m.now
    await this.verify(m, r, this.toString())
  }

  toString (): string { return `advance(${this.ms})` }
}

/** Checks of a run outside its commands. */
export interface RunHooks<M, R> {
  /** Once the queue is open, before the first command. */
  readonly begin?: (m: M, r: R) => Promise<void>
  /** After the last command (e.g. a final drain). */
  readonly end?: (m: M, r: R) => Promise<void>
}

/**
 * One run of a property: `make` builds the model and the real side on a fresh directory under
 * `root`; the real queue is opened and the commands run against both; the queue is closed and the
 * directory removed even when a command failed.
 */
export async function modelRun<M extends object, R extends RealQueue> (
  root: string,
  make: (dir: string) => { model: M, real: R },
  cmds: Iterable<fc.AsyncCommand<M, R>>,
  hooks: RunHooks<M, R> = {}
): Promise<void> {
  const dir = await mkdtemp(join(root, 'run-'))
  const { model, real } = make(dir)
  try {
    await real.open()
    await hooks.begin?.(model, real)
    await fc.asyncModelRun(() => ({ model, real }), cmds)
    await hooks.end?.(model, real)
  } finally {
    await real.q?.close().catch(() => {})
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
  }
}
