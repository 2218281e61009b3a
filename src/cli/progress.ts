/**
 * A one-line progress bar for long commands (export, import, check, repair), drawn only on a
 * terminal: when the stream is a file or a pipe, nothing is written, so output stays parseable.
 */

/** The part of a stream the bar needs (a `tty.WriteStream`, or a fake in tests). */
export interface ProgressStream {
  readonly isTTY?: boolean
  readonly columns?: number
  write (chunk: string): unknown
}

export interface Progress {
  /** `done` units so far (absolute); `total` may be learned late. */
  update (done: number, total?: number): void
  /** Erase the bar (call before printing a result). */
  done (): void
}

const NONE: Progress = { update () {}, done () {} }
/** Redraw at most this often. */
const REDRAW_MS = 100

/**
 * A bar like `export wal [########------------]  40%  4,000/10,000 records` when `total` is
 * known, else a counter (`check 1,200 segments`). `now` is injectable for tests.
 */
export function progress (stream: ProgressStream, label: string, unit: string, total?: number, now: () => number = () => performance.now()): Progress {
  if (stream.isTTY !== true) return NONE
  let last = -Infinity
  let drawn = false
  let known = total
  const fmt = (n: number): string => n.toLocaleString('en-US')
  return {
    update (done, t) {
      if (t !== undefined) known = t
      const at = now()
      if (at - last < REDRAW_MS && !(known !== undefined && done >= known)) return
      last = at
      let line: string
      if (known !== undefined && known > 0) {
        const share = Math.min(1, done / known)
        const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - unit.length - 40))
        const full = Math.round(share * width)
        line = `${label} [${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.floor(share * 100)).padStart(3)}%  ${fmt(done)}/${fmt(known)} ${unit}`
      } else {
        line = `${label} ${fmt(done)} ${unit}`
      }
      stream.write(`\r${line}\x1b[K`)
      drawn = true
    },
    done () {
      if (drawn) stream.write('\r\x1b[K')
      drawn = false
    },
  }
}
