/**
 * Named points where the reliability tests kill the process, to crash evaq exactly between two
 * steps instead of at a random moment. `EVAQ_CRASH_POINT=name` kills at the first pass through
 * `name`, `name:N` at the Nth. Read once at load; when unset a pass costs one comparison.
 *
 * Points: segment-write:before, segment-write:after, progress-write:before,
 * progress-write:after, cleanup:before, cleanup:after, removal:before, removal:after, and
 * removal:staged (a removal group staged one more segment into its batch, not yet written); the
 * retry daemon's retry:counted (an attempt's count is written, the handler not yet called);
 * move:before, move:after around the one write of a move between logs (WAL to DLQ, a
 * subscriber's dead-letter, DLQ to parked, parked to DLQ, a page of a DLQ to WAL redrive); a restore's restore:loaded (entries
 * written, IDs not reserved), restore:synced (complete and fsynced under its work name),
 * restore:renamed (in place, parent not fsynced), restore:moved (a file moved into a mount-point
 * target); an import's import:pending (progress file names the batch, not pushed) and
 * import:pushed (batch stored, progress file not updated); an export's export:page (a page
 * written) and a backup's backup:chunk (a chunk of the archive written).
 *
 * `EVAQ_CRASH_SIGNAL=SIGINT` (or SIGTERM) sends that signal instead of SIGKILL, to interrupt a
 * command at an exact step; the process goes on and handles it as it would a Ctrl-C there.
 */
const spec = process.env.EVAQ_CRASH_POINT
const signal = (process.env.EVAQ_CRASH_SIGNAL ?? 'SIGKILL') as NodeJS.Signals
const [target, nth] = spec === undefined ? [undefined, 0] : parse(spec)
let passes = 0

function parse (value: string): [string, number] {
  const i = value.lastIndexOf(':')
  const n = Number(value.slice(i + 1))
  return i > 0 && Number.isSafeInteger(n) && n >= 1 ? [value.slice(0, i), n] : [value, 1]
}

export function crashPoint (name: string): void {
  if (name !== target) return
  if (++passes === nth) process.kill(process.pid, signal)
}
