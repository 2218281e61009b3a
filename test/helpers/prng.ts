import type { ExecutionContext } from 'ava'
import { randomInt } from 'node:crypto'

/** mulberry32: a small seeded PRNG, so that a failing run can be replayed from its seed. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The seed of a randomized test: the environment variable `name` when set (to replay a run), else
 * a random one; logged with the line that replays it.
 */
export function seedFor (t: ExecutionContext, name: string): number {
  const seed = process.env[name] === undefined ? randomInt(2 ** 31) : Number(process.env[name])
  t.log(`seed ${seed} (replay with ${name}=${seed})`)
  return seed
}
