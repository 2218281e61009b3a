import { EvaqError, fromLevel, hasCode } from '../errors.js'
import { levelLogBytes, type DiskBudget } from '../log/budget.js'
import type { Log } from '../log/log.js'
import type { ResolvedOptions } from '../options.js'
import { SYNC_KEY } from '../schema.js'
import { repairInPlace, type RepairFixes } from '../store/repair.js'
import type { Store } from '../store/store.js'

/** Reopen attempts after a failed write: 100 ms, doubling up to 5 s. */
const RECOVERY_FIRST_MS = 100
const RECOVERY_MAX_MS = 5000
/** Free space a reopen needs beyond the size of LevelDB's log, which it turns into a table. */
const RECOVERY_ROOM_BYTES = 1024 * 1024

/** What the health of a queue reads and tells (Evaq). */
export interface HealthHost {
  readonly location: string
  readonly store: Store
  readonly options: ResolvedOptions
  readonly budget: DiskBudget
  readonly logs: readonly Log[]
  /** The queue's status: only an open queue degrades or repairs, only a degraded one recovers. */
  status (): string
  /** The queue degraded: its status becomes `degraded` and `degraded` is emitted. */
  degraded (err: EvaqError): void
  /** The database took writes again: status `open`, interrupted moves settled, `recovered` emitted. */
  recovered (): void
  /** What a repair took out (dropped events), and what LevelDB dropped while it reopened. */
  repaired (fixed: RepairFixes | undefined): void
  reportError (err: unknown): void
}

/**
 * The health of a queue's database: a write that failed degrades the queue, and the database is
 * reopened with backoff until it takes writes again; damage LevelDB met in its own files is
 * repaired while the queue stays open; under the interval durability, a timer syncs LevelDB's log.
 * While a reopen is under way (`reopening`), writes wait and reads retry after it.
 */
export class Health {
  /** The error that degraded the queue, while it is degraded. */
  degradedBy: EvaqError | undefined
  /**
   * Each log's high-water ID (watermark + 1) when a write first failed in this process. A batch
   * whose write failed may still be in LevelDB's log and come back when the database reopens, with
   * IDs above this: a backup's high-water never goes past it, so that an incremental backup
   * carries such a batch instead of referring to a base that lacks it.
   */
  failedAt: Map<string, number> | undefined
  /** A write was made without sync since the last sync (interval durability). */
  dirty = false
  private recoveryTimer: NodeJS.Timeout | undefined
  private recovering: Promise<void> | undefined
  private syncing: Promise<void> | undefined

  constructor (private readonly host: HealthHost) {}

  /** The reopen under way (a recovery or a repair), if any. */
  get reopening (): Promise<void> | undefined {
    return this.recovering
  }

  degrade (err: EvaqError): void {
    if (this.host.status() !== 'open') return
    this.degradedBy = err
    this.failedAt ??= new Map(this.host.logs.map(log => [log.name, log.watermark + 1]))
    this.host.degraded(err)
    this.scheduleRecovery(RECOVERY_FIRST_MS)
  }

  private scheduleRecovery (delayMs: number): void {
    this.recoveryTimer = setTimeout(() => { void this.recover(delayMs) }, delayMs)
    this.recoveryTimer.unref()
  }

  /**
   * Reopen the database once writes can work again: after a failed write LevelDB refuses every
   * later one until it is reopened, and on a full disk it cannot even reopen. Backs off from
   * RECOVERY_FIRST_MS to RECOVERY_MAX_MS while the cause persists.
   */
  private async recover (lastDelayMs: number): Promise<void> {
    this.recoveryTimer = undefined
    if (this.host.status() !== 'degraded') return
    const { store, budget, location, options } = this.host
    const retry = (): void => this.scheduleRecovery(Math.min(RECOVERY_MAX_MS, lastDelayMs * 2))
    let repaired: RepairFixes | undefined
    try {
      // Let the writes already under way fail first.
      await Promise.all(this.host.logs.map(log => log.drain())).catch(() => {})
      // Reopening closes the database first, and LevelDB cannot open again without room to flush
      // its log: closing it on a full disk would take the reads down with the writes.
      await budget.measure()
      const needed = (await levelLogBytes(location)) + RECOVERY_ROOM_BYTES
      if (budget.freeBytes < Math.max(options.minFreeDiskBytes, needed)) { retry(); return }
      // A write fails with LEVEL_CORRUPTION when LevelDB met damage in its own files, typically a
      // compaction reading a data block that cannot be read. That error is sticky too, and every
      // compaction of that table would set it again: reopening alone would only flap. So repair
      // while the database is closed: LevelDB rewrites the damaged table without the blocks it
      // cannot read (reads already quarantined and reported them), and evaq's counters are
      // rebuilt from what survived, IDs kept above every ID issued.
      const repair = hasCode(this.degradedBy, 'LEVEL_CORRUPTION')
      this.recovering = store.reopen(repair ? async () => { repaired = await repairInPlace(location, store.claim) } : undefined)
      await this.recovering
    } catch (err) {
      this.host.reportError(err)
      if (store.db.status === 'closed') await store.db.open().catch(() => {})
      retry()
      return
    } finally {
      this.recovering = undefined
    }
    if (this.host.status() !== 'degraded') return
    this.host.repaired(repaired)
    this.degradedBy = undefined
    this.host.recovered()
  }

  /**
   * A compaction met a block of LevelDB's own files it cannot read, and LevelDB now refuses every
   * write until it is reopened (every later compaction of that table would fail again). Repair it
   * at once, while the queue stays open: the database closes (after the writes LevelDB is already
   * doing), LevelDB rewrites the damaged table without the blocks it cannot read, evaq recounts
   * what survived and names every range it lost in a `dropped` event, and the database opens
   * again. Meanwhile pushes keep filling the write buffer, and writes and reads wait; a write
   * LevelDB refused is built and written again afterwards. Only when the repair itself fails does
   * the queue degrade (and recover() tries again with backoff). Returns what writes wait for, or
   * undefined when the queue is not open.
   */
  repairDamage (err: EvaqError): Promise<void> | undefined {
    if (this.recovering !== undefined) return this.recovering
    if (this.host.status() !== 'open') return undefined
    const { store, location } = this.host
    const repair = (async () => {
      let repaired: RepairFixes | undefined
      try {
        await store.reopen(async () => { repaired = await repairInPlace(location, store.claim) })
      } catch (cause) {
        this.host.reportError(cause)
        if (store.db.status === 'closed') await store.db.open().catch(() => {})
        store.failed ??= err
        this.degrade(err)
        return
      }
      this.host.repaired(repaired)
    })()
    const guarded: Promise<void> = repair.finally(() => { if (this.recovering === guarded) this.recovering = undefined })
    this.recovering = guarded
    return guarded
  }

  /** fsync LevelDB's log now, if anything was written without sync since the last time. */
  syncNow (): Promise<void> {
    if (this.syncing !== undefined) return this.syncing
    const { store } = this.host
    if (!this.dirty || store.failed !== undefined || this.recovering !== undefined) return Promise.resolve()
    this.dirty = false
    // Frames first: a locator made durable must not point to a frame that is not.
    this.syncing = Promise.all([...store.files.values()].map(set => set.sync()))
      .then(() => store.db.put(SYNC_KEY, SYNC_KEY, { sync: true }))
      .catch((err: unknown) => {
        this.dirty = true
        const error = fromLevel(err, 'Periodic fsync failed')
        // Refused for damage met by a compaction, before anything was written: repair it.
        if (hasCode(err, 'LEVEL_CORRUPTION') && this.repairDamage(error) !== undefined) throw error
        store.failed ??= error
        this.degrade(error)
        throw error
      })
      .finally(() => { this.syncing = undefined })
    return this.syncing
  }

  /** For close() (the status is no longer open or degraded): no more recovery, and the reopen under way finished. */
  async stop (): Promise<void> {
    if (this.recoveryTimer !== undefined) clearTimeout(this.recoveryTimer)
    await this.recovering?.catch(() => {})
  }

  /** For close(): the last sync, after the last write. */
  async finalSync (): Promise<void> {
    if (this.syncing !== undefined) await this.syncing.catch(() => {})
    if (this.dirty && this.host.options.durability !== 'none') await this.syncNow()
  }

  /** An error for a write refused while degraded. */
  degradedError (location: string): EvaqError {
    const message = `The queue at ${location} is degraded after a failed write and takes no writes until it recovers`
    return new EvaqError('EVAQ_IO', message, { cause: this.degradedBy })
  }
}
