import { isEvaqError } from '../errors.js'
import { logSublevels } from '../schema.js'
import { Log, MAX_ID, type LogContext, type LogSidecar, type PushOptions, type QueueRecord, type ReadOptions, type RecordError } from '../log/log.js'
import { encodeKey } from '../store/codec.js'
import { Keyspace, type ChainedBatch, type Sublevel } from '../store/store.js'
import type { PendingSegment } from '../write/group-commit.js'
import type { Moves } from './moves.js'
import {
  attemptError, decodeDueKey, decodeInit, decodeState, encodeDueKey, encodeInit, encodeState, parseRecordError,
  scheduleTime, type MoveIntent, type ParkedState, type RecordInit, type RetryState,
} from './retry-state.js'

/** A DLQ record as reads return it: the record, and its retry state. */
export interface DeadLetterRecord extends QueueRecord {
  readonly retry: RetryState
}

/** A parked record as reads return it: the record, and the history it was parked with. */
export interface ParkedRecord extends QueueRecord {
  readonly retry: ParkedState
}

const EMPTY = Buffer.alloc(0)

/**
 * A log whose records carry a retry state beside the payload (`<name>-retry`, keyed by ID): the
 * DLQ and `parked`. The state is written in the batch that commits the record, and deleted in the
 * batch that removes, drops or quarantines it, through the hooks of Log; reads return it as
 * `record.retry`.
 */
export abstract class RetryLog<S extends RetryState | ParkedState = RetryState | ParkedState> extends Log {
  /** IDs a daemon, a requeue or a purge is working on in this process. */
  readonly busy = new Set<number>()
  protected readonly states: Sublevel
  protected readonly stateKeys: Keyspace
  /** The Log's own extras keyspace, written again here when a push carried a RecordInit. */
  private readonly extraKeyspace: Keyspace
  private readonly store: LogContext['store']

  constructor (name: string, ctx: LogContext, protected readonly moves: Moves) {
    const sidecar: LogSidecar = {}
    super(name, ctx, sidecar)
    sidecar.stageCommit = (batch, segment, pushedAt) => this.stageCommit(batch, segment, pushedAt)
    sidecar.stageRemoval = (batch, ids) => this.stageRemoval(batch, ids)
    sidecar.stageSegmentDeletion = (batch, first, count) => this.stageSegmentDeletion(batch, first, count)
    this.store = ctx.store
    this.states = ctx.store.sublevel(logSublevels(name).retry)
    this.stateKeys = new Keyspace(this.states)
    this.extraKeyspace = new Keyspace(ctx.store.sublevel(logSublevels(name).extra))
  }

  /** The state a record gets when it is committed. */
  protected abstract initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): S

  /** The state of a record that has none on disk (it cannot be found in the schedule). */
  protected abstract fallbackState (record: QueueRecord): S

  protected stageState (batch: ChainedBatch, id: number, state: S): void {
    this.stateKeys.put(batch, id, encodeState(state))
  }

  protected stageCommit (batch: ChainedBatch, segment: PendingSegment, pushedAt: number): void {
    const { firstId, count } = segment.builder
    const extras = segment.extras.length === 0 ? undefined : new Map(segment.extras)
    for (let id = firstId; id < firstId + count; id++) {
      const extra = extras?.get(id)
      const init = extra === undefined ? undefined : decodeInit(extra)
      if (init !== undefined) {
        // The Log staged the extra as given; what it keeps is the error alone (or nothing).
        if (init.error === undefined) this.extraKeyspace.del(batch, id)
        else this.extraKeyspace.put(batch, id, Buffer.from(JSON.stringify(init.error)))
        if (init.move !== undefined) this.moves.put(batch, init.move.seq, { ...init.move.intent, toId: id })
      }
      this.stageState(batch, id, this.initialState(pushedAt, init, init === undefined ? parseRecordError(extra) : init.error))
    }
  }

  protected async stageRemoval (batch: ChainedBatch, ids: readonly number[]): Promise<void> {
    for (const id of ids) this.stateKeys.del(batch, id)
  }

  protected stageSegmentDeletion (batch: ChainedBatch, first: number, count: number): void {
    for (let id = first; id < first + count; id++) this.stateKeys.del(batch, id)
  }

  /** Records with their retry state, like Log.read otherwise. */
  override async read (options?: ReadOptions): Promise<Array<QueueRecord & { readonly retry: S }>> {
    return this.withStates(await super.read(options))
  }

  private async withStates (records: QueueRecord[]): Promise<Array<QueueRecord & { readonly retry: S }>> {
    if (records.length === 0) return []
    const values = await this.states.getMany(records.map(r => encodeKey(r.id)))
    return records.map((r, i) => {
      const value = values[i]
      const retry = value === undefined ? this.fallbackState(r) : decodeState<S>(this.name, r.id, value)
      return Object.assign(r, { retry })
    })
  }

  /** The record with ID `id`, if it is live. */
  async get (id: number): Promise<(QueueRecord & { readonly retry: S }) | undefined> {
    const [record] = await this.read({ from: id, maxCount: 1, maxBytes: 0 })
    return record?.id === id ? record : undefined
  }

  async has (id: number): Promise<boolean> {
    return await this.get(id) !== undefined
  }

  /**
   * The stored states of `ids` (undefined where there is none). A state that cannot be decoded
   * throws EVAQ_CORRUPTION, or with `lenient` counts as none.
   */
  async getStates (ids: readonly number[], lenient = false): Promise<Array<S | undefined>> {
    if (ids.length === 0) return []
    const values = await this.states.getMany(ids.map(id => encodeKey(id)))
    return values.map((v, i) => {
      if (v === undefined) return undefined
      try {
        return decodeState<S>(this.name, ids[i]!, v)
      } catch (err) {
        if (lenient) return undefined
        throw err
      }
    })
  }

  /** Push a record with its error and state (see RecordInit). */
  pushRecord (payload: Buffer | Uint8Array | string, init: RecordInit, options?: PushOptions): Promise<number> {
    return this.push(payload, options, encodeInit(init))
  }

  /**
   * Push a record moved from `from`: the push and the removal of `id` from `from` are one batch
   * (see Log.removeCarried). Rejects with EVAQ_NOT_FOUND, writing nothing, when `id` is gone.
   */
  pushMoved (payload: Buffer | Uint8Array | string, init: RecordInit, from: Log, id: number): Promise<number> {
    return this.push(payload, undefined, encodeInit(init), (batch, delta) => from.removeCarried([id], { batch, delta }))
  }

  /** Remove `ids` and, in the same batch, the intent `seq` of the move they are part of. */
  removeForMove (ids: readonly number[], seq: number): Promise<number | undefined> {
    return this.removeStaged(ids, batch => this.moves.del(batch, seq))
  }

  async writeIntent (seq: number, intent: MoveIntent): Promise<void> {
    const batch = this.ctxBatch()
    this.moves.put(batch, seq, intent)
    await this.writeOwn(batch, `Writing the intent to move record ${intent.id} of ${this.name} failed`)
  }

  async deleteIntent (seq: number): Promise<void> {
    const batch = this.ctxBatch()
    this.moves.del(batch, seq)
    await this.writeOwn(batch, `Deleting move intent ${seq} failed`)
  }

  protected ctxBatch (): ChainedBatch {
    return this.store.db.batch()
  }

  /** Remove `ids` that are still there; the ones already gone are ignored. Returns the ones removed. */
  async removeExisting (ids: readonly number[]): Promise<number[]> {
    let list = [...ids]
    while (list.length > 0) {
      try {
        await this.remove(list)
        return list
      } catch (err) {
        if (!isEvaqError(err, 'EVAQ_NOT_FOUND') || err.ids === undefined) throw err
        const gone = new Set(err.ids)
        list = list.filter(id => !gone.has(id))
      }
    }
    return list
  }
}

/** The dead-letter queue: a RetryLog with the schedule index `dlq-due`. */
export class DeadLetterLog extends RetryLog<RetryState> {
  private readonly due: Sublevel
  private readonly duePrefix: Buffer

  constructor (name: string, ctx: LogContext, moves: Moves) {
    super(name, ctx, moves)
    this.due = ctx.store.sublevel(logSublevels(name).due)
    this.duePrefix = Buffer.from(this.due.prefix, 'utf8')
  }

  protected initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): RetryState {
    const s = (init?.state ?? {}) as Partial<RetryState>
    return { ...failureHistory(s, pushedAt, error), nextAttemptAt: scheduleTime(s.nextAttemptAt ?? pushedAt) }
  }

  protected fallbackState (record: QueueRecord): RetryState {
    return this.initialState(record.pushedAt, undefined, record.error)
  }

  protected override stageState (batch: ChainedBatch, id: number, state: RetryState): void {
    super.stageState(batch, id, state)
    batch.put(encodeDueKey(this.duePrefix, state.nextAttemptAt, id), EMPTY)
  }

  protected override async stageRemoval (batch: ChainedBatch, ids: readonly number[]): Promise<void> {
    const states = await this.getStates(ids, true)
    states.forEach((state, i) => {
      if (state !== undefined) batch.del(encodeDueKey(this.duePrefix, state.nextAttemptAt, ids[i]!))
    })
    await super.stageRemoval(batch, ids)
  }

  /**
   * Entries of the schedule due at `now` (nextAttemptAt <= now), earliest first, at most `limit`:
   * one bounded range read of the index. An entry is stale when its record left by a whole-segment
   * deletion (retention, drop-oldest, cleanup), which deletes states by ID range without reading
   * them; callers check each entry against the state and drop the stale ones (dropStale).
   */
  async dueEntries (now: number, limit: number): Promise<Array<{ at: number, id: number }>> {
    const keys = await this.due.keys({ lte: encodeDueKey(EMPTY, scheduleTime(now), MAX_ID), limit }).all()
    return keys.map(k => decodeDueKey(k))
  }

  /** When the earliest entry of the schedule is due, if there is one. */
  async firstDueAt (): Promise<number | undefined> {
    const [key] = await this.due.keys({ limit: 1 }).all()
    return key === undefined ? undefined : decodeDueKey(key).at
  }

  /** Replace a record's state (and its schedule entry) in one batch. */
  async updateState (id: number, from: RetryState | undefined, to: RetryState, what: string): Promise<void> {
    const batch = this.ctxBatch()
    if (from !== undefined && from.nextAttemptAt !== to.nextAttemptAt) batch.del(encodeDueKey(this.duePrefix, from.nextAttemptAt, id))
    this.stageState(batch, id, to)
    await this.writeOwn(batch, what)
  }

  /** Delete schedule entries that no longer match a state, and the states of records that are gone. */
  async dropStale (entries: ReadonlyArray<{ at: number, id: number }>, orphans: ReadonlyArray<{ at: number, id: number }>): Promise<void> {
    if (entries.length === 0 && orphans.length === 0) return
    const batch = this.ctxBatch()
    for (const e of entries) batch.del(encodeDueKey(this.duePrefix, e.at, e.id))
    for (const e of orphans) {
      batch.del(encodeDueKey(this.duePrefix, e.at, e.id))
      this.stateKeys.del(batch, e.id)
    }
    await this.writeOwn(batch, `Cleaning ${entries.length + orphans.length} stale schedule entries of ${this.name} failed`)
  }
}

/** Records the daemon gave up on: a RetryLog without a schedule. */
export class ParkedLog extends RetryLog<ParkedState> {
  protected initialState (pushedAt: number, init: RecordInit | undefined, error: RecordError | undefined): ParkedState {
    const s = (init?.state ?? {}) as Partial<ParkedState>
    return {
      ...failureHistory(s, pushedAt, error),
      parkedAt: s.parkedAt ?? pushedAt,
      reason: s.reason ?? 'permanent',
      ...(s.dlqId === undefined ? {} : { dlqId: s.dlqId }),
    }
  }

  protected fallbackState (record: QueueRecord): ParkedState {
    return this.initialState(record.pushedAt, undefined, record.error)
  }
}

/**
 * The failure history both retry states carry (attempts, first and last failure, last error,
 * source): from what a record was pushed with, else from its stored error and push time.
 */
function failureHistory (s: Partial<RetryState> | Partial<ParkedState>, pushedAt: number, error: RecordError | undefined): Omit<RetryState, 'nextAttemptAt'> {
  const lastError = s.lastError ?? attemptError(error)
  const source = s.source ?? error?.source
  return {
    attempts: s.attempts ?? 0,
    firstFailedAt: s.firstFailedAt ?? pushedAt,
    lastFailedAt: s.lastFailedAt ?? pushedAt,
    ...(s.lastAttemptAt === undefined ? {} : { lastAttemptAt: s.lastAttemptAt }),
    ...(lastError === undefined ? {} : { lastError }),
    ...(source === undefined ? {} : { source: { log: source.log, id: source.id } }),
  }
}
