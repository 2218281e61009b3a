import { isEvaqError } from '../errors.js'
import {
  Log, logOwnKeys, type Carrier, type LogContext, type LogStats, type LogView, type PushOptions, type QueueRecord, type ReadOptions,
} from '../log/log.js'
import type { Subscriber, SubscribeOptions, SubscriberInfo } from '../log/subscriber.js'
import type { MoveIntents } from './move-intents.js'
import { RetryStates, type StatePolicy } from './retry-states.js'
import type { Schedule } from './schedule.js'
import { encodeInit, type MoveIntent, type ParkedState, type RecordInit, type RetryState } from './retry-state.js'

/** The log a record is moved from: its removal lane writes the batch of the push (see Log.removeCarried). */
export interface MoveSource {
  removeCarried (ids: readonly number[], carrier: Carrier): Promise<void>
}

/**
 * A log whose records carry a retry state beside the payload (`<name>-retry`, keyed by ID): the
 * DLQ and `parked`. A Log plus its sidecar (RetryStates), which writes the state in the batch that
 * commits the record and deletes it in the batch that removes, drops or quarantines it; reads
 * return it as `record.retry`. The log's own methods are passed through.
 */
export class RetryLog<S extends RetryState | ParkedState = RetryState | ParkedState> implements LogView<QueueRecord & { readonly retry: S }> {
  /** The log itself (segments, removal lane, subscribers), with `states` as its sidecar. */
  readonly log: Log
  /** IDs a daemon, a requeue or a purge is working on in this process. */
  readonly busy = new Set<number>()
  protected readonly states: RetryStates<S>

  constructor (name: string, ctx: LogContext, protected readonly intents: MoveIntents, policy: StatePolicy<S>, schedule?: Schedule) {
    this.states = new RetryStates(name, logOwnKeys(ctx.store, name, 'retry'), logOwnKeys(ctx.store, name, 'extra'), intents, policy, schedule)
    this.log = new Log(name, ctx, this.states)
  }

  // ---- the log's own methods ---------------------------------------------------------------------

  get name (): string { return this.log.name }
  get nextId (): number { return this.log.nextId }
  get watermark (): number { return this.log.watermark }
  get compactions (): number { return this.log.compactions }
  onCommitted (listener: () => void): () => void { return this.log.onCommitted(listener) }
  push (payload: unknown, options?: PushOptions): Promise<number> { return this.log.push(payload, options) }
  pushMany (payloads: unknown, options?: PushOptions): Promise<number[]> { return this.log.pushMany(payloads, options) }
  remove (ids: unknown): Promise<number | undefined> { return this.log.remove(ids) }
  removeCarried (ids: readonly number[], carrier: Carrier): Promise<void> { return this.log.removeCarried(ids, carrier) }
  stats (): Promise<LogStats> { return this.log.stats() }
  subscribe (name: string, options?: SubscribeOptions): Promise<Subscriber> { return this.log.subscribe(name, options) }
  unsubscribe (name: string): Promise<boolean> { return this.log.unsubscribe(name) }
  subscribers (): SubscriberInfo[] { return this.log.subscribers() }
  drain (): Promise<void> { return this.log.drain() }
  writeProgress (): Promise<void> { return this.log.writeProgress() }

  // ---- records with their retry state ------------------------------------------------------------

  /** Records with their retry state, like Log.read otherwise. */
  async read (options?: ReadOptions): Promise<Array<QueueRecord & { readonly retry: S }>> {
    return this.states.withStates(await this.log.read(options))
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
  getStates (ids: readonly number[], lenient = false): Promise<Array<S | undefined>> {
    return this.states.getStates(ids, lenient)
  }

  /** Push a record with its error and state (see RecordInit). */
  pushRecord (payload: Buffer | Uint8Array | string, init: RecordInit, options?: PushOptions): Promise<number> {
    return this.log.push(payload, options, encodeInit(init))
  }

  /**
   * Push a record moved from `from`: the push and the removal of `id` from `from` are one batch
   * (see Log.removeCarried). Rejects with EVAQ_NOT_FOUND, writing nothing, when `id` is gone.
   */
  pushMoved (payload: Buffer | Uint8Array | string, init: RecordInit, from: MoveSource, id: number): Promise<number> {
    return this.log.push(payload, undefined, encodeInit(init), (batch, delta) => from.removeCarried([id], { batch, delta }))
  }

  /** Remove `ids` and, in the same batch, the intent `seq` of the move they are part of. */
  removeForMove (ids: readonly number[], seq: number): Promise<number | undefined> {
    return this.log.removeStaged(ids, batch => this.intents.del(batch, seq))
  }

  async writeIntent (seq: number, intent: MoveIntent): Promise<void> {
    const batch = this.intents.batch()
    this.intents.put(batch, seq, intent)
    await this.log.writeOwn(batch, `Writing the intent to move record ${intent.id} of ${this.name} failed`)
  }

  async deleteIntent (seq: number): Promise<void> {
    const batch = this.intents.batch()
    this.intents.del(batch, seq)
    await this.log.writeOwn(batch, `Deleting move intent ${seq} failed`)
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
