/**
 * evaq's on-disk layout, in one place. Every name a data directory holds is spelled here and
 * nowhere else; the encodings of the values are in store/codec.ts (segments, summaries, removal
 * sets), store/store.ts (commit snapshots) and dlq/retry-state.ts (retry states).
 *
 * A data directory is one LevelDB database, the WAL's segment files, and a few small files of
 * evaq's own:
 *
 *   LevelDB's files    CURRENT, MANIFEST-*, *.log, *.ldb, LOCK, LOG, LOG.old (and lost/ after a
 *                      repair: the files LevelDB replaced)
 *   segments/<log>/    the payload bytes of a log's pushes (format 2; store/segment-files.ts):
 *                      `NNNNNNNNNN.seg` files of frames (store/frame.ts), and `spare-*.seg`,
 *                      files whose segments were all deleted, kept to be reused
 *   EVAQ-IDS           IDs reserved ahead of the highest one issued, and after a clean close the
 *                      highest one committed (store/id-floor.ts): IDs are never issued twice,
 *                      even after LevelDB lost the end of its log
 *   EVAQ-RECOUNT       left by `evaq check` when LevelDB dropped data while it recovered its log:
 *                      the next open recounts
 *   EVAQ-SERVICE       the address and pid of the `evaq serve` holding the directory
 *   EVAQ-KAFKA-ID      the Kafka wrapper's producer identity
 *
 * Inside the database, abstract-level sublevels (keys prefixed `!name!`). IDs are 8-byte
 * big-endian integers, so LevelDB's byte order is ID order. For each log (`wal`, `dlq`,
 * `parked`):
 *
 *   <log>              first ID of a segment -> the segment: a run of records packed in one value
 *                      (store/codec.ts), or, for a segment in a segment file, its 16-byte locator
 *                      (store/frame.ts; a segment value is never 16 bytes long)
 *   <log>-index        first ID of a segment -> its summary (count, payload bytes, push time);
 *                      summaries live in other blocks than segments, so a damaged segment block
 *                      leaves its summary to name it
 *   <log>-removed      first ID of a segment -> its removal set (a bitmap of records removed),
 *                      absent while none is
 *   <log>-subs         subscriber name (UTF-8) -> its progress (JSON)
 *   <log>-extra        record ID -> the record's error (JSON; the DLQ and parked only)
 *   <log>-quarantine   record ID or segment first ID -> the stored bytes that failed a check
 *   <log>-retry        record ID -> its retry state (the DLQ and parked only)
 *   <log>-due          (due time, record ID), 16 bytes -> empty: the DLQ's schedule
 *   <log>-files        segment file number -> the ID after the last record written to it (a log
 *                      with segment files: a file is released once the log's floor passes it)
 *
 * and for the database as a whole:
 *
 *   meta               `format` -> `{ "version": FORMAT_VERSION }`
 *   snap               sequence -> a commit snapshot: every log's counters (store/store.ts)
 *   retry-moves        record ID -> a move intent, written only by versions before moves were
 *                      one batch; open settles any that are left
 *   root keys          the two sentinels below, and `sync` (rewritten with fsync to sync
 *                      LevelDB's log under the interval durability)
 *
 * A segment and its summary are written in one batch with the counters' snapshot. In a log with
 * segment files (FILE_LOGS) a push's segment is first appended to a segment file and synced,
 * which is its commit point; its locator, summary and snapshot are then written without a sync
 * and, if LevelDB lost them, written again at the next open from the frames after the last one
 * the counters know (store/file-recovery.ts). A segment that commits with a removal in another
 * log (a move) is written inline, in that one synced batch. A removal
 * writes the removal set (or deletes the segment, its summary and its set once all its records
 * are removed) in one batch with the snapshot; a move between logs is one batch too.
 */

/**
 * The version of this layout. Format 1 (every segment inline) is a subset of format 2 (segments
 * inline or in segment files): a format-1 directory is marked format 2 when it is opened, and its
 * inline segments are read as they are. A directory of any other version is refused
 * (EVAQ_UNSUPPORTED_FORMAT).
 */
export const FORMAT_VERSION = 2
/** The formats this version opens. */
export const READABLE_FORMATS: readonly number[] = [1, 2]

/** The directory of the segment files, and the logs whose pushes go to segment files. */
export const SEGMENTS_DIR = 'segments'
/**
 * The DLQ and the parked log keep their segments inline: a record there is written in one batch
 * with its retry state (which a frame does not hold), and their volume is that of failures.
 */
export const FILE_LOGS: readonly string[] = ['wal']

/** The logs of a queue, in the order stats and backups list them. */
export const LOG_NAMES = ['wal', 'dlq', 'parked'] as const
export type LogName = typeof LOG_NAMES[number]

/** The sublevels of log `log` (see above). */
export function logSublevels (log: string): {
  segments: string
  index: string
  removed: string
  subscribers: string
  extra: string
  quarantine: string
  retry: string
  due: string
  files: string
} {
  return {
    segments: log,
    index: `${log}-index`,
    removed: `${log}-removed`,
    subscribers: `${log}-subs`,
    extra: `${log}-extra`,
    quarantine: `${log}-quarantine`,
    retry: `${log}-retry`,
    due: `${log}-due`,
    files: `${log}-files`,
  }
}

/** Sublevels of the database as a whole. */
export const META_SUBLEVEL = 'meta'
export const SNAPSHOT_SUBLEVEL = 'snap'
export const MOVES_SUBLEVEL = 'retry-moves'

/** The key of the format in the `meta` sublevel. */
export const FORMAT_KEY = Buffer.from('format')

/**
 * Two root keys below and above every sublevel (their prefixes start with `!`), written once when
 * the directory is created. They make LevelDB's manual compaction give deleted space back:
 * CompactRange only compacts the levels above the deepest one holding data in the range, and a
 * flushed memtable that overlaps nothing deeper is placed at level 2, where the deletions in it
 * would never be compacted away. With the sentinels some deeper file always overlaps, so flushed
 * memtables stay above it and a manual compaction merges them down, dropping what was deleted.
 */
export const SENTINEL_LOW = Buffer.from('\x00evaq-sentinel', 'latin1')
export const SENTINEL_HIGH = Buffer.from('\xffevaq-sentinel', 'latin1')

/** The root key rewritten with fsync to sync LevelDB's log under the interval durability. */
export const SYNC_KEY = Buffer.from('sync')

/** evaq's own files in a data directory (see above). */
export const ID_FILE = 'EVAQ-IDS'
export const RECOUNT_FILE = 'EVAQ-RECOUNT'
export const SERVICE_FILE = 'EVAQ-SERVICE'
export const KAFKA_IDENTITY_FILE = 'EVAQ-KAFKA-ID'
/** LevelDB's files that a copy of a directory (check, backup) leaves out. */
export const LEVELDB_LOCK_FILE = 'LOCK'
export const LEVELDB_INFO_LOGS = ['LOG', 'LOG.old'] as const
