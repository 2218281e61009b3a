/**
 * The model of what test/fixtures/crash-writer.ts leaves in a queue across kills (SIGKILL in
 * test/facade/crash.test.ts, a power cut in test/reliability/power-cut.test.ts): the pushes it
 * acknowledged, the removals it started and finished, and the highest ID ever issued.
 */
import { checkPayload, digest } from '../fixtures/crash-writer.js'

/** How a record read back after a kill compares with the model. */
export type Verdict =
  /** Acknowledged (or in a removal that was in flight), with its payload. */
  | 'known'
  /** Acknowledged, with another payload. */
  | 'changed'
  /** Its removal was acknowledged, yet it is there. */
  | 'back'
  /** Never acknowledged and not a whole payload of the run just killed. */
  | 'foreign'
  /** Never acknowledged, but a whole payload of the killed run: committed before its ack went out; now live. */
  | 'committed'

export class WriterModel {
  /** Records that must be present, with their payload digests. */
  readonly live = new Map<number, string>()
  /** Records whose removal was in flight at the kill: present or not, both are fine. */
  readonly maybe = new Map<number, string>()
  /** Records that must never appear again. */
  readonly removed = new Set<number>()
  /** Highest ID acknowledged (or seen stored) in any run. */
  maxId = 0
  /** `maxId` before the last run was folded in: a committed push of that run is above it. */
  maxBefore = 0

  /**
   * Fold in what a run reported: the pushes it acknowledged (`acks`), the IDs it started removing
   * and those whose removal resolved. Returns what is wrong with the report, if anything.
   */
  fold (acks: ReadonlyArray<readonly [id: number, sha: string]>, removing: readonly number[], removed: readonly number[]): string | undefined {
    this.maxBefore = this.maxId
    const acked = new Map<number, string>()
    for (const [id, sha] of acks) {
      if (id <= this.maxBefore || this.live.has(id) || this.maybe.has(id) || this.removed.has(id) || acked.has(id)) return `ID ${id} was issued again`
      acked.set(id, sha)
      this.live.set(id, sha)
      if (id > this.maxId) this.maxId = id
    }
    const done = new Set(removed)
    for (const id of removing) {
      const sha = acked.get(id)
      if (sha === undefined) return `the writer removed ID ${id} it never acknowledged`
      this.live.delete(id)
      if (done.has(id)) this.removed.add(id)
      else this.maybe.set(id, sha)
    }
    return undefined
  }

  /** Compare one record read back after the kill of the run tagged `tag`. */
  judge (record: { readonly id: number, readonly payload: Buffer }, tag: string): Verdict {
    const sha = this.live.get(record.id) ?? this.maybe.get(record.id)
    if (sha !== undefined) return digest(record.payload) === sha ? 'known' : 'changed'
    if (this.removed.has(record.id)) return 'back'
    if (checkPayload(record.payload) !== tag || record.id <= this.maxBefore) return 'foreign'
    this.live.set(record.id, digest(record.payload))
    if (record.id > this.maxId) this.maxId = record.id
    return 'committed'
  }

  /** Acknowledged records that were not read back. */
  missing (seen: ReadonlySet<number>): number[] {
    return [...this.live.keys()].filter(id => !seen.has(id))
  }

  /** The removals in flight at the kill happened or not (`seen` says which); from now on the model is exact. */
  settle (seen: ReadonlySet<number>): void {
    for (const [id, sha] of this.maybe) {
      if (seen.has(id)) this.live.set(id, sha)
      else this.removed.add(id)
    }
    this.maybe.clear()
  }
}
