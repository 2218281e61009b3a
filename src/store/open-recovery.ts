import { LOG_NAMES } from '../schema.js'
import { reconcile, type RepairFixes } from './repair.js'
import { pendingRecount, type Store } from './store.js'

/** What recoverAtOpen found: lines for `openReport.corruption`, and what a recount took out. */
export interface OpenRecovery {
  readonly corruption: string[]
  readonly fixed: RepairFixes | undefined
}

/**
 * Right after a store opened: say what LevelDB's own recovery lost, and make the counters tell
 * the truth again. LevelDB reports a damaged record of its log only in its info log (the store
 * read it), and a log that ended early not at all; after a clean close `EVAQ-IDS` still says how
 * far each log had committed. When LevelDB dropped damaged records, the batches after them were
 * replayed with counter snapshots that still count what was dropped: recount once, now (a scan,
 * but only after such damage, or when an earlier `evaq check` saw it and left EVAQ-RECOUNT).
 */
export async function recoverAtOpen (dir: string, store: Store): Promise<OpenRecovery> {
  const corruption = [...store.corruption]
  for (const log of LOG_NAMES) {
    const gap = store.ids.lost(log, store.journal.counters(log).next)
    if (gap === undefined) continue
    corruption.push(`${log}: LevelDB lost records it had acknowledged before the last clean close: ` +
      `its counters end at ID ${gap.found - 1}, they ended at ${gap.expected - 1}`)
  }
  if (store.ids.problem !== undefined) corruption.push(store.ids.problem)
  const earlier = await pendingRecount(dir)
  corruption.push(...earlier.map(line => `seen at an earlier open: ${line}`))
  let fixed: RepairFixes | undefined
  if (earlier.length > 0 || store.corruption.some(line => line.includes('dropping'))) {
    await store.reopen(async () => { fixed = await reconcile(dir, store.claim) })
  }
  return { corruption, fixed }
}
