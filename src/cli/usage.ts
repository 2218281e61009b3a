import { EvaqError } from '../errors.js'

/** Bad usage: the command prints this and the usage on stderr, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export const USAGE = `Usage: evaq <command> [options]

Run the service:
  serve --data DIR [--host 127.0.0.1] [--port 7070] [--token T] [--body-limit BYTES]
        [--durability sync|none|MS] [--log-level info] [--log-requests]
        [--max-disk-bytes BYTES] [--min-free-disk-bytes BYTES] [--on-full backpressure|reject|drop-oldest]
        [--push-timeout 5s] [--allowed-host NAME...] [--allowed-origin URL...]
                                                     serve the queue in DIR over HTTP until SIGTERM or SIGINT;
                                                     a non-loopback --host needs --token (or EVAQ_TOKEN);
                                                     the disk budget: at most --max-disk-bytes in DIR (default:
                                                     no bound), at least --min-free-disk-bytes left free on its
                                                     filesystem (default 64 MiB; 0, or at least 32 MiB); at the
                                                     budget a push waits (backpressure, the default), fails, or
                                                     drops the oldest records; a push that waits is answered
                                                     503 EVAQ_AT_CAPACITY with Retry-After after --push-timeout
                                                     (MS, or seconds as 5s; 0 answers at once);
                                                     requests must name localhost, an IP address or an
                                                     --allowed-host in Host, and web pages of other origins
                                                     than an --allowed-origin are refused (docs/security.md)

Inspect and operate (on --data DIR, or through a running service with --url URL [--token T]):
  stats [--json]                                     counts, bytes and ID range of each log
  peek LOG [--from ID] [--max-bytes N] [--max-count N] [--json]
                                                     print records of LOG (wal, dlq or parked) without removing them
  tail LOG [--from ID] [--count N] [--json]          print records of LOG as they are pushed (from the next
                                                     one unless --from), until interrupted or --count records
  subscribers [LOG] [--json]                         subscribers, their progress and lag
  dlq list [--from ID] [--max-bytes N] [--max-count N] [--json]
                                                     DLQ records with their error and retry state
  dlq requeue (ID... | --all) [--json]               move DLQ records back to the WAL (new IDs)
  dlq purge (ID... | --all) [--json]                 delete DLQ records
  parked list [--from ID] [--max-bytes N] [--max-count N] [--json]
                                                     records the retry daemon gave up on, with their history
  parked requeue (ID... | --all) [--json]            put parked records back in the DLQ, due now (new IDs)
  parked purge (ID... | --all) [--json]              delete parked records
  export LOG [--out FILE] [--from ID] [--format ndjson]
                                                     write LOG's records as NDJSON (one JSON line each)
  import LOG [--in FILE] [--format ndjson] [--json]  push records from NDJSON written by export (new IDs);
                                                     interrupted, the same command continues (FILE.evaq-import)

Back up and restore (backup works on --data DIR, through the service that holds it if one runs,
or on a running service with --url URL; --token T or EVAQ_TOKEN for a service with a token):
  backup --out FILE [--since FILE] [--json]          write a consistent snapshot of every log, taken while the
                                                     queue runs, as a verified archive; --since an earlier archive
                                                     makes an incremental one (what changed since, plus references)
  restore --from FILE [--from FILE...] --data NEWDIR [--verify] [--json]
                                                     restore a full archive and the incremental ones built on it
                                                     (oldest first) into a new or empty directory; --verify reads it
                                                     back and checks every record; IDs continue above the backup's;
                                                     nothing is at NEWDIR until it completes

Need the directory to themselves (stop the service first):
  check --data DIR [--json]                          verify every record's checksum and evaq's metadata on a copy
                                                     (DIR is not changed); exits 1 DAMAGED, 3 LOCKED (a process
                                                     holds DIR), 4 NOT FOUND (no queue in DIR)
  repair --data DIR --backup OUT [--json]            copy DIR to OUT, run LevelDB's repair, quarantine damaged
                                                     records, rebuild counters; reports records before and after

Measure:
  bench [--dir PARENT] [--seconds 5] [--concurrency 256] [--size 1024] [--durability sync|none|MS] [--json]
                                                     push to a fresh queue in a temporary directory; prints msg/s
                                                     and latency

Options:
  --help, -h      this text
  --version, -v   the evaq version

Environment: EVAQ_TOKEN is the default of --token.
Exit codes: 0 success, 1 an evaq error (its code is printed on stderr) or damage found, 2 bad usage;
130 / 143 when restore, import or bench stopped on Ctrl-C (SIGINT) / SIGTERM.`

/** A decimal flag value from `min` to `max`; EVAQ_INVALID_ARGUMENT (exit 2) otherwise. */
export function intFlag (value: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = /^(0|[1-9][0-9]{0,15})$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${value.slice(0, 40)}\``)
  }
  return n
}

/** A duration flag: milliseconds (`1500`, `1500ms`) or seconds (`5s`, `0.5s`), at most 24 days. */
export function durationFlag (value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const m = /^(0|[1-9][0-9]{0,9})(ms)?$/.exec(value) ?? undefined
  const s = m === undefined ? /^([0-9]{1,7}(?:\.[0-9]{1,3})?)s$/.exec(value) ?? undefined : undefined
  const ms = m !== undefined ? Number(m[1]) : s !== undefined ? Math.round(Number(s[1]) * 1000) : NaN
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be milliseconds (1500) or seconds (5s), up to 24 days, got \`${value.slice(0, 40)}\``)
  }
  return ms
}

/** IDs given as positional arguments. */
export function idArgs (values: readonly string[]): number[] {
  return values.map((v, i) => intFlag(v, `ID ${i + 1}`, 0, 1))
}

/** `--durability`: `sync`, `none`, or a number of milliseconds for `{ intervalMs }`. */
export function durabilityFlag (value: string | undefined): 'sync' | 'none' | { intervalMs: number } | undefined {
  if (value === undefined) return undefined
  if (value === 'sync' || value === 'none') return value
  return { intervalMs: intFlag(value, '--durability', 0, 1) }
}
