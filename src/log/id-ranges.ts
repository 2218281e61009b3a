/**
 * A set of IDs kept as sorted, disjoint, non-adjacent ranges [start, end] (inclusive). Acks
 * mostly arrive in runs, so a subscriber's acknowledged IDs above its floor stay a few ranges
 * however many records they cover.
 */
export class IdRanges {
  private starts: number[] = []
  private ends: number[] = []

  static from (ranges: ReadonlyArray<readonly [number, number]>): IdRanges {
    const set = new IdRanges()
    for (const [s, e] of ranges) set.addRange(s, e)
    return set
  }

  get size (): number {
    let n = 0
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i]! - this.starts[i]! + 1
    return n
  }

  get rangeCount (): number {
    return this.starts.length
  }

  /** Index of the last range starting at or below `id`, or -1. */
  private find (id: number): number {
    let lo = 0
    let hi = this.starts.length - 1
    let found = -1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (this.starts[mid]! <= id) { found = mid; lo = mid + 1 } else hi = mid - 1
    }
    return found
  }

  has (id: number): boolean {
    const i = this.find(id)
    return i >= 0 && id <= this.ends[i]!
  }

  add (id: number): void {
    this.addRange(id, id)
  }

  addRange (start: number, end: number): void {
    if (end < start) return
    // Fast path: appending at or after the last range.
    const n = this.starts.length
    if (n === 0 || start > this.ends[n - 1]! + 1) { this.starts.push(start); this.ends.push(end); return }
    let i = this.find(start)
    if (i < 0 || this.ends[i]! + 1 < start) i++
    // Ranges i.. that touch [start, end] merge into one.
    let j = i
    let s = start
    let e = end
    while (j < this.starts.length && this.starts[j]! <= end + 1) {
      s = Math.min(s, this.starts[j]!)
      e = Math.max(e, this.ends[j]!)
      j++
    }
    this.starts.splice(i, j - i, s)
    this.ends.splice(i, j - i, e)
  }

  /** Drop every ID below `floor`. */
  pruneBelow (floor: number): void {
    let k = 0
    while (k < this.starts.length && this.ends[k]! < floor) k++
    if (k > 0) { this.starts.splice(0, k); this.ends.splice(0, k) }
    if (this.starts.length > 0 && this.starts[0]! < floor) this.starts[0] = floor
  }

  /** The smallest ID >= `from` that is not in the set. */
  nextMissing (from: number): number {
    const i = this.find(from)
    return i >= 0 && from <= this.ends[i]! ? this.ends[i]! + 1 : from
  }

  toJSON (): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i]!])
  }
}
