/**
 * Named points where the reliability tests kill the process, to crash evaq exactly between two
 * steps instead of at a random moment. `EVAQ_CRASH_POINT=name` kills at the first pass through
 * `name`, `name:N` at the Nth. Read once at load; when unset a pass costs one comparison.
 *
 * Points: segment-write:before, segment-write:after, progress-write:before,
 * progress-write:after, cleanup:before, cleanup:after, removal:before, removal:after, and
 * removal:staged (a removal group staged one more segment into its batch, not yet written); the
 * retry daemon's retry:counted (an attempt's count is written, the handler not yet called); and
 * move:before, move:after around the one write of a move between logs (WAL to DLQ, a
 * subscriber's dead-letter, DLQ to parked, parked to DLQ).
 */
const spec = process.env.EVAQ_CRASH_POINT
const [target, nth] = spec === undefined ? [undefined, 0] : parse(spec)
let passes = 0

function parse (value: string): [string, number] {
  const i = value.lastIndexOf(':')
  const n = Number(value.slice(i + 1))
  return i > 0 && Number.isSafeInteger(n) && n >= 1 ? [value.slice(0, i), n] : [value, 1]
}

export function crashPoint (name: string): void {
  if (name !== target) return
  if (++passes === nth) process.kill(process.pid, 'SIGKILL')
}
