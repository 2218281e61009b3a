/** The drainer's waits between attempts. */

/**
 * The wait after `failures` failures in a row: `initialMs` doubling up to `maxMs`, drawn at random
 * from the upper half, so that producers that failed together do not all retry together.
 */
export function backoffDelay (backoff: { readonly initialMs: number, readonly maxMs: number }, failures: number): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures, 30))
  return Math.round(ceiling / 2 + Math.random() * ceiling / 2)
}

/** Wait `ms`, or less when `signal` aborts (never rejects). */
export function sleep (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve()
  return new Promise(resolve => {
    const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
