/**
 * Ctrl-C (SIGINT) and SIGTERM for commands that stop cleanly: while a guard is in place, the
 * signal aborts `signal` instead of killing the process, and the command finishes what must be
 * finished (a batch under way), removes what must not stay, says what was done, and exits with
 * `exitCode` (128 + the signal's number, as a shell reports a process killed by it).
 */
export interface Interrupt {
  /** Aborted at the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal
  /** The signal received, if any. */
  readonly received: NodeJS.Signals | undefined
  /** 130 after SIGINT, 143 after SIGTERM. */
  readonly exitCode: number
  /** Restore the default handling (a later signal kills the process). */
  dispose (): void
}

const EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 }

export function guardInterrupts (): Interrupt {
  const controller = new AbortController()
  let received: NodeJS.Signals | undefined
  const on = (sig: NodeJS.Signals): void => {
    // A second signal while the command winds down is ignored: it finishes what it cleans up.
    if (received !== undefined) return
    received = sig
    controller.abort()
  }
  process.on('SIGINT', on)
  process.on('SIGTERM', on)
  return {
    signal: controller.signal,
    get received () { return received },
    get exitCode () { return received === undefined ? 0 : EXIT_CODES[received] ?? 1 },
    dispose () {
      process.off('SIGINT', on)
      process.off('SIGTERM', on)
    },
  }
}
