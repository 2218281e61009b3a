/**
 * Waiting in tests without timers: each helper looks again after one turn of the event loop
 * (setImmediate), so a wait ends as soon as the queue's own callbacks have run, not after a guess
 * at how long they take.
 */

/** One turn of the event loop. */
export const tick = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

/** Poll `cond` with a turn of the event loop between tries, a bounded number of times. */
export async function until (cond: () => Promise<boolean> | boolean, tries = 100_000): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return true
    await tick()
  }
  return cond()
}

/** Wait until `condition` holds, however long that takes: the test's timeout is the bound. */
export async function eventually (condition: () => boolean): Promise<void> {
  while (!condition()) await tick()
}

/** Whether `p` is still unsettled after `turns` turns of the event loop. */
export async function isPending (p: Promise<unknown>, turns = 50): Promise<boolean> {
  let settled = false
  p.then(() => { settled = true }, () => { settled = true })
  for (let i = 0; i < turns; i++) {
    if (settled) break
    await tick()
  }
  return !settled
}
