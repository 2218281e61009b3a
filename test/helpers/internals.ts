import type { Evaq } from '../../src/index.js'
import type { DeadLetterLog } from '../../src/dlq/dead-letter-log.js'
import type { ParkedLog } from '../../src/dlq/parked-log.js'
import type { Log } from '../../src/log/log.js'

/**
 * The logs of `q` with their machinery (drain, compact, progress writes, the DLQ's schedule and
 * states, moves): `evaq.wal`, `evaq.dlq` and `evaq.parked` show users only the QueueLog surface.
 */
export function internals (q: Evaq): { wal: Log, dlq: DeadLetterLog, parked: ParkedLog } {
  const logs = q as unknown as { walLog: Log, dlqLog: DeadLetterLog, parkedLog: ParkedLog }
  return { wal: logs.walLog, dlq: logs.dlqLog, parked: logs.parkedLog }
}
