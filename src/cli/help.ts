import { S3_FLAG_HELP } from './s3-flags.js'

/**
 * What `evaq help`, `evaq --help` and `evaq help COMMAND` (or `evaq COMMAND --help`) print. Every
 * line fits in 80 columns (test/cli/cli-help.test.ts checks each text).
 */

const TARGET = `The queue: --data DIR (default ./data). While \`evaq serve\` holds DIR, the
command goes through that service (found in DIR/EVAQ-SERVICE), with --token T
or EVAQ_TOKEN when it has one. --url URL names a service directly.`

const S3_HELP = `Archives in object storage (s3://BUCKET/KEY) use the AWS SDK's credentials
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile):
${S3_FLAG_HELP}`

export const GENERAL = `Usage: evaq <command> [options]        (--data defaults to ./data)

Run the service:
  serve           serve the queue in DIR over HTTP until SIGTERM or SIGINT

Inspect and operate (on DIR, or through the service that holds it):
  stats           counts, bytes and ID range of each log
  peek LOG        print records of LOG (wal, dlq or parked), leaving them
  tail LOG        print records of LOG as they are pushed
  subscribers     subscribers, their progress and lag
  dlq             list, requeue (to the WAL) or purge DLQ records
  parked          list, requeue (to the DLQ) or purge parked records
  export LOG      write LOG's records as NDJSON
  import LOG      push records from NDJSON written by export (new IDs)

Back up and restore:
  backup          write a consistent snapshot of every log, while the queue runs
  restore         restore archives into a new or empty directory

Need the directory to themselves (stop the service first):
  check           verify every record's checksum and evaq's metadata
  repair          copy DIR aside, then repair damaged records and metadata

Measure:
  bench           push to a fresh temporary queue; prints msg/s and latency

evaq help COMMAND (or evaq COMMAND --help) prints a command's options.
  --help, -h      this text
  --version, -v   the evaq version

Environment: EVAQ_TOKEN is the default of --token.
Exit codes: 0 success; 1 an evaq error (its code is printed) or damage found;
2 bad usage; check: 3 LOCKED, 4 NOT FOUND; 130 / 143 interrupted by Ctrl-C
(SIGINT) / SIGTERM.`

const LIST = '[--from ID] [--max-bytes N] [--max-count N] [--json]'
const READ_FLAGS = `  --from ID       the first record ID (default: the oldest)
  --max-bytes N   stop after this many payload bytes (default 65536)
  --max-count N   at most N records, 1 to 10000 (default 100)
  --json          one JSON line per record: id, pushedAt, payload (base64)`

function retryLog (log: 'dlq' | 'parked', what: string, to: string): string {
  return `Usage: evaq ${log} list ${LIST}
       evaq ${log} requeue (ID... | --all) [--json]
       evaq ${log} purge (ID... | --all) [--json]

list:    ${what}
requeue: ${to} (they get new IDs)
purge:   delete records

${READ_FLAGS}
  --all           every record (requeue, purge)

${TARGET}`
}

export const COMMAND_HELP: Readonly<Record<string, string>> = Object.freeze({
  serve: `Usage: evaq serve [--data DIR] [options]

Serve the queue in DIR (default ./data) over HTTP until SIGTERM or SIGINT, then
finish the requests in flight, flush and exit 0. Logs are JSON lines on stdout.
The port is bound before DIR is opened; a DIR another service holds is refused
with that service's address and pid.

  --host H              address to bind (default 127.0.0.1); anything else
                        but loopback needs --token
  --port P              port (default 7070; 0 picks a free one)
  --token T             bearer token (default EVAQ_TOKEN)
  --body-limit BYTES    largest request body (default 8 MiB)
  --durability D        sync (default), none, or MS: fsync within MS
  --max-disk-bytes N    the data directory's disk budget (default: none)
  --min-free-disk-bytes N
                        free space kept on the filesystem (default 64 MiB)
  --on-full P           at the budget: backpressure (default), reject,
                        drop-oldest, or offload (with --tier)
  --push-timeout T      a waiting push is answered 503 after T (MS, or 5s)
  --allowed-host NAME   a Host name accepted besides localhost and IPs
                        (repeatable; docs/security.md)
  --allowed-origin URL  a web origin accepted besides the service's own
                        (repeatable)
  --log-level L         fatal, error, warn, info (default), debug, trace,
                        silent
  --log-requests        one log line per request

A tier on object storage (docs/tier.md): with --tier, the oldest WAL segment
files move to the bucket as DIR nears --max-disk-bytes (needed), and are
fetched back for reads. Credentials: the AWS SDK's (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, or a profile).
  --tier s3://BUCKET/PREFIX
                        where segment files go (sets --on-full offload)
${S3_FLAG_HELP}`,
  stats: `Usage: evaq stats [--data DIR | --url URL] [--json]

Counts, bytes and ID range of the WAL, the DLQ and the parked records.

  --json          the whole stats object as JSON

${TARGET}`,
  peek: `Usage: evaq peek LOG ${LIST}

Print records of LOG (wal, dlq or parked) without removing them; DLQ and parked
records with their error and retry state.

${READ_FLAGS}

${TARGET}`,
  tail: `Usage: evaq tail LOG [--from ID] [--count N] [--json]
       evaq tail LOG --follow --subscriber NAME [--from ID] [--count N] [--json]

Print records of LOG (wal, dlq or parked) as they are pushed, from the next one
(or --from ID), until Ctrl-C or --count records.

With --follow, consume instead: read the running service's change stream of
subscriber NAME (created at --from or the next record if it does not exist),
print each record and acknowledge it once printed (at least once). It needs the
service: --url, or the one serving --data.

  --from ID       the first record ID (default: the next one pushed)
  --count N       stop after N records
  --json          one JSON line per record
  --follow        consume through the change stream (with --subscriber)
  --subscriber N  the subscriber --follow reads and acknowledges as

${TARGET}`,
  subscribers: `Usage: evaq subscribers [LOG] [--json]

Subscribers (of every log, or of LOG), their progress, lag and lease.

  --json          the subscribers as a JSON array

${TARGET}`,
  dlq: retryLog('dlq', 'DLQ records with their error and retry state', 'move DLQ records back to the WAL'),
  parked: retryLog('parked', 'records the retry daemon gave up on, with their history',
    'put parked records back in the DLQ, due now'),
  export: `Usage: evaq export LOG [--out FILE] [--from ID] [--format ndjson]

Write LOG's records (up to those present when it started) as NDJSON, one JSON
line each: id, pushedAt, payload (base64), error?, retry?.

  --out FILE      write to FILE (never over an existing one; default stdout);
                  interrupted, nothing is left at FILE
  --from ID       the first record ID (default: the oldest)
  --format F      ndjson (the only format)

${TARGET}`,
  import: `Usage: evaq import LOG [--in FILE] [--format ndjson] [--json]

Push the payloads of NDJSON written by export to LOG (new IDs), in atomic
batches. A FILE is checked whole first; interrupted, the same command continues
after the records already imported (progress in FILE.evaq-import). Creates the
queue in DIR if there is none.

  --in FILE       read FILE (default stdin)
  --format F      ndjson (the only format)
  --json          print the result as JSON

${TARGET}`,
  check: `Usage: evaq check [--data DIR] [--json]

Verify every record's checksum and evaq's metadata on a copy of DIR (default
./data); DIR is not changed. Needs DIR to itself: stop the service first.

Prints ok, DAMAGED (exit 1), LOCKED (exit 3: a process holds DIR; the service's
address and pid when it is \`evaq serve\`), NOT FOUND (exit 4: no queue in DIR)
or TIERED (exit 5: files of DIR are in object storage, which check cannot read).

  --json          the report as JSON (status: ok, damaged, locked, not-found,
                  tiered)`,
  repair: `Usage: evaq repair [--data DIR] --backup OUT [--json]

Copy DIR (default ./data) to OUT, run LevelDB's repair, quarantine damaged
records and rebuild the counters; reports the records before and after. Needs
DIR to itself: stop the service first.

  --backup OUT    where DIR is copied first (a new or empty directory)
  --json          the report as JSON`,
  backup: `Usage: evaq backup [--data DIR | --url URL] --out FILE [--since FILE] [--json]
                   [--s3-endpoint URL] [--s3-region R] [--s3-force-path-style]

Write a consistent snapshot of every log, taken while the queue runs, as a
verified archive (never over an existing file or object).

  --out FILE      the archive to write: a file, or s3://BUCKET/KEY
  --since FILE    an earlier archive (a file or s3://BUCKET/KEY): write only
                  what changed since (only its head is read)
  --json          print the result as JSON

${S3_HELP}

${TARGET}`,
  restore: `Usage: evaq restore --from FILE [--from FILE...] [--data NEWDIR] [--verify]
                    [--json] [--s3-endpoint URL] [--s3-region R]
                    [--s3-force-path-style]

Restore a full archive and the incremental ones built on it (oldest first) into
NEWDIR (default ./data), which must be new or empty. Nothing is at NEWDIR until
it completes; IDs continue above the backup's.

  --from FILE     an archive, a file or s3://BUCKET/KEY (repeat: full first,
                  then incrementals)
  --verify        read the result back and check every record
  --json          print the result as JSON

${S3_HELP}`,
  bench: `Usage: evaq bench [--dir PARENT] [--seconds 5] [--concurrency 256] [--size 1024]
                  [--durability sync|none|MS] [--json]

Push to a fresh queue in a temporary directory under PARENT (default: the
system's temporary directory) and print msg/s and latency; the directory is
removed at the end, also on Ctrl-C.`,
  help: `Usage: evaq help [COMMAND]

Print the general help, or the options of COMMAND.`,
})
