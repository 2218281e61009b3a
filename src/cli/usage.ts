import { EvaqError } from '../errors.js'

/** Bad usage: the command prints this and the usage on stderr, and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export const USAGE = `Usage: evaq <command> [options]

Run the service:
  serve --data DIR [--host 127.0.0.1] [--port 7070] [--token T] [--body-limit BYTES]
        [--durability sync|none|MS] [--max-disk-bytes N] [--log-level info] [--log-requests]
                                                     serve the queue in DIR over HTTP until SIGTERM or SIGINT;
                                                     a non-loopback --host needs --token (or EVAQ_TOKEN)

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
  check --data DIR [--json]                          verify every record's checksum and evaq's metadata;
                                                     exits 1 when anything is damaged
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
