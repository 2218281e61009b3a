import { EvaqError } from '../errors.js'

/** A push waiting for room (in the disk budget or under a log's maxBytes). */
export interface Waiter {
  readonly bytes: number
  resolve (): void
  reject (err: unknown): void
}

/**
 * Queue a waiter for `bytes` on `waiters`; an abort of `signal` takes it out again and rejects
 * with EVAQ_ABORTED (`what` says what it waited for). Whoever owns the queue resolves it.
 */
export function waitForRoom (waiters: Waiter[], bytes: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  const aborted = (): EvaqError => new EvaqError('EVAQ_ABORTED', `The push was aborted while waiting for ${what}`, { cause: signal?.reason })
  if (signal?.aborted === true) return Promise.reject(aborted())
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      const i = waiters.indexOf(waiter)
      if (i >= 0) waiters.splice(i, 1)
      reject(aborted())
    }
    const waiter: Waiter = {
      bytes,
      resolve: () => { signal?.removeEventListener('abort', onAbort); resolve() },
      reject: (err) => { signal?.removeEventListener('abort', onAbort); reject(err) },
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    waiters.push(waiter)
  })
}
