import { LOG_NAMES } from '../schema.js'
import { decodeKey } from './codec.js'

/** One database entry: its root key (sublevel prefix included) and its value. */
export type Entry = [key: Buffer, value: Buffer]

/** Where a root key belongs. */
export interface KeyPlace {
  /** The sublevel (`wal`, `wal-index`, `snap`, …), or `''` for a key of the root itself. */
  readonly sublevel: string
  /** The key inside the sublevel. */
  readonly key: Buffer
  /** For an entry of a log's segment sublevel: the log and the segment's first ID. */
  readonly log?: string
  readonly segment?: number
}

const BANG = 0x21
const SEGMENT_LOGS: ReadonlySet<string> = new Set(LOG_NAMES)

/** Split a root key into its sublevel (abstract-level prefixes them `!name!`) and the rest. */
export function placeOf (key: Buffer): KeyPlace {
  if (key.byteLength > 1 && key[0] === BANG) {
    const end = key.indexOf(BANG, 1)
    if (end > 0) {
      const sublevel = key.toString('utf8', 1, end)
      const rest = key.subarray(end + 1)
      if (SEGMENT_LOGS.has(sublevel) && rest.byteLength === 8) return { sublevel, key: rest, log: sublevel, segment: decodeKey(rest) }
      return { sublevel, key: rest }
    }
  }
  return { sublevel: '', key }
}
