import { EvaqError, invalid } from '../errors.js'
import type { DeadLetterLog, DeadLetterRecord } from '../dlq/dead-letter-log.js'
import type { Moves } from '../dlq/moves.js'
import type { ParkedLog, ParkedRecord } from '../dlq/parked-log.js'
import { redrivePage } from '../dlq/redrive.js'
import type { RecordInit, RecordSource, RetryState } from '../dlq/retry-state.js'
import { checkId, checkIds, encodeError, type Log, type PushOptions, type RecordError } from '../log/log.js'
import type { LogName, ResolvedOptions } from '../options.js'
import { rejectUnknown } from '../validate.js'

/** Records a requeue moves at once, and records a purge of everything reads per round. */
const REQUEUE_CONCURRENCY = 16
const PURGE_PAGE = 10_000
/** DLQ records a redrive moves in one write, at most (and at most maxBatchCount). */
const REDRIVE_PAGE = 1000

export interface RetryItemOptions extends PushOptions {
  /** Why the record failed: an Error (its `code` and `message` are kept), a string, or `{ code?, message }`. */
  error?: unknown
  /**
   * Delivery attempts already made (they count towards the retry daemon's `maxAttempts`).
   * @defaultValue 0
   */
  attempts?: number
  /** Where the record came from, for example `{ log: 'wal', id }`. @defaultValue none */
  source?: RecordSource
}

/** What the dead-letter operations use of the queue (Evaq). */
export interface DeadLetterHost {
  readonly wal: Log
  readonly dlq: DeadLetterLog
  readonly parked: ParkedLog
  readonly moves: Moves
  readonly options: ResolvedOptions
  assertOpen (): void
  assertWritable (): void
  /** A log's byte cap looks again at what the log holds (records left it). */
  recheck (log: LogName): Promise<void>
  /** Run work that close() lets finish (its writes are let through while the queue closes). */
  finishing<T> (task: () => Promise<T>): Promise<T>
}

/**
 * The queue's operations on dead letters (Evaq's pushRetryItem, moveWalToDlq, doneRetryItems,
 * firstNBytesFromDeadLetterQueue, requeueDeadLetters, requeueParked, purgeParked), on the DLQ
 * layer's logs and moves. Requeues and purges run one at a time, in one lane close() waits for.
 */
export class DeadLetters {
  /** Requeues and purges, one at a time. */
  private parkedLane: Promise<unknown> = Promise.resolve()

  constructor (private readonly host: DeadLetterHost) {}

  /** Resolves once the requeue or purge under way, if any, finished (for close()). */
  idle (): Promise<void> {
    return this.parkedLane.then(() => {}, () => {})
  }

  /**
   * Put a failed message in the DLQ, with the error that sent it there. Its retry state starts
   * with `attempts` (default 0) and is due at once; the record and its state are one write.
   */
  async pushRetryItem (payload: Buffer | Uint8Array | string, options: RetryItemOptions = {}): Promise<number> {
    this.host.assertOpen()
    const [init, rest] = this.retryInit(options)
    return this.host.dlq.pushRecord(payload, init, rest)
  }

  /**
   * Move WAL record `id` to the DLQ, as pushRetryItem would put it there (`payload` replaces the
   * stored one if given; `source` defaults to the WAL record). The removal from the WAL and the push to the DLQ are one write: after a
   * crash the record is in exactly one of the two. Resolves with its DLQ ID; rejects with
   * EVAQ_NOT_FOUND, and moves nothing, when `id` is not in the WAL.
   */
  async moveWalToDlq (id: number, options: RetryItemOptions & { payload?: Buffer | Uint8Array | string } = {}): Promise<number> {
    this.host.assertWritable()
    checkId(id, 'id')
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    const { payload, ...rest } = options
    const [init] = this.retryInit({ source: { log: this.host.wal.name, id }, ...rest })
    let body: Buffer | Uint8Array | string
    if (payload !== undefined) body = payload
    else {
      const record = await this.host.wal.read({ from: id, maxCount: 1, maxBytes: 0 })
      if (record[0]?.id !== id) throw new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${id} in ${this.host.wal.name}; nothing was moved`, { ids: [id] })
      body = record[0].payload
    }
    const dlqId = await this.host.moves.move(this.host.wal, this.host.dlq, id, body, init)
    if (dlqId === undefined) throw new EvaqError('EVAQ_NOT_FOUND', `No record with ID ${id} in ${this.host.wal.name}; nothing was moved`, { ids: [id] })
    await this.host.recheck('wal')
    return dlqId
  }

  private retryInit (options: RetryItemOptions): [Omit<RecordInit, 'move'>, PushOptions] {
    if (options === null || typeof options !== 'object') throw invalid('options', 'an object', options)
    rejectUnknown(options, ['error', 'attempts', 'source', 'signal'], ' of pushRetryItem()')
    const { error, attempts, source, ...rest } = options
    const encoded = encodeError(error)
    const state: Partial<RetryState> = {}
    if (attempts !== undefined) {
      if (typeof attempts !== 'number' || !Number.isSafeInteger(attempts) || attempts < 0) throw invalid('attempts', 'an integer >= 0', attempts)
      Object.assign(state, { attempts })
    }
    if (source !== undefined) {
      if (source === null || typeof source !== 'object' || typeof source.log !== 'string' || source.log.length === 0) {
        throw invalid('source', 'an object like { log, id }', source)
      }
      Object.assign(state, { source: { log: source.log, id: checkId(source.id, 'source.id') } })
    }
    return [{
      ...(encoded === undefined ? {} : { error: JSON.parse(encoded.toString('utf8')) as RecordError }),
      state,
    }, rest]
  }

  /**
   * Remove retried records from the DLQ, atomically. Resolves with the highest ID removed, or
   * `undefined` for an empty list.
   */
  async doneRetryItems (ids: readonly number[]): Promise<number | undefined> {
    if (!Array.isArray(ids)) throw invalid('ids', 'an array of IDs', ids)
    const highest = await this.host.dlq.remove(ids)
    await this.host.recheck('dlq')
    return highest
  }

  /**
   * DLQ records with `id >= offset` in ID order, whole records, at most `maxBytes` of payload in all,
   * but always at least one record when one exists. Each carries its retry state (`retry`).
   */
  firstNBytesFromDeadLetterQueue (offset: number, maxBytes: number): Promise<DeadLetterRecord[]> {
    return this.host.dlq.read({ from: offset, maxBytes, maxCount: Infinity })
  }

  /**
   * Move DLQ records back to the WAL (a redrive): `ids` (all must be in the DLQ, or
   * EVAQ_NOT_FOUND and nothing is requeued) or `'all'` (the records in the DLQ when the call
   * starts). Resolves with their new WAL IDs, in DLQ order. Each page of records (up to
   * `maxBatchCount` and 1000 records, and about `maxBatchBytes`) is one write: after a crash every
   * record is in exactly one of the DLQ and the WAL. A record removed from the DLQ meanwhile is
   * left out.
   */
  requeueDeadLetters (ids: readonly number[] | 'all'): Promise<number[]> {
    return this.parkedWork(ids, async list => {
      const out: number[] = []
      const maxCount = Math.min(REDRIVE_PAGE, this.host.options.maxBatchCount)
      const maxBytes = this.host.options.maxBatchBytes
      if (list === 'all') {
        const end = this.host.dlq.nextId
        for (let from = 0; ;) {
          const page = (await this.host.dlq.read({ from, maxBytes, maxCount })).filter(r => r.id < end)
          if (page.length === 0) return out
          out.push(...await redrivePage(this.host.wal, this.host.dlq, page))
          from = page[page.length - 1]!.id + 1
        }
      }
      const wanted = [...new Set(list)].sort((a, b) => a - b)
      const records = await Promise.all(wanted.map(id => this.host.dlq.get(id)))
      const missing = wanted.filter((_, i) => records[i] === undefined)
      if (missing.length > 0) {
        throw new EvaqError('EVAQ_NOT_FOUND', `No DLQ record with ID ${missing.slice(0, 10).join(', ')}; nothing was requeued`, { ids: missing })
      }
      for (let i = 0; i < records.length;) {
        let bytes = 0
        let j = i
        while (j < records.length && j - i < maxCount && (j === i || bytes + records[j]!.payload.byteLength <= maxBytes)) {
          bytes += records[j++]!.payload.byteLength
        }
        out.push(...await redrivePage(this.host.wal, this.host.dlq, records.slice(i, j) as DeadLetterRecord[]))
        i = j
      }
      return out
    })
  }

  /**
   * Put parked records back in the DLQ, due at once, with `attempts` reset to 0 (the rest of
   * their history is kept, and `source` names the parked record). `ids` must all be parked
   * (EVAQ_NOT_FOUND otherwise, and nothing is requeued), or `'all'`. Resolves with their new DLQ
   * IDs, in the order of the parked IDs. Each record is moved crash-safely (see Guarantees).
   */
  requeueParked (ids: readonly number[] | 'all'): Promise<number[]> {
    return this.parkedWork(ids, async list => {
      const out: number[] = []
      const move = async (records: ParkedRecord[]): Promise<void> => {
        const now = this.host.options.clock.now()
        const ids = new Array<number | undefined>(records.length)
        let next = 0
        const worker = async (): Promise<void> => {
          for (let i = next++; i < records.length; i = next++) ids[i] = await this.requeueOne(records[i]!, now)
        }
        await Promise.all(Array.from({ length: Math.min(REQUEUE_CONCURRENCY, records.length) }, worker))
        for (const id of ids) if (id !== undefined) out.push(id)
      }
      if (list === 'all') {
        for (let from = 0; ;) {
          const page = await this.host.parked.read({ from, maxBytes: 4 * 1024 * 1024, maxCount: 1000 })
          if (page.length === 0) break
          await move(page)
          from = page[page.length - 1]!.id + 1
        }
      } else {
        const records = await Promise.all(list.map(id => this.host.parked.get(id)))
        const missing = list.filter((_, i) => records[i] === undefined)
        if (missing.length > 0) {
          const which = missing.slice(0, 10).join(', ')
          throw new EvaqError('EVAQ_NOT_FOUND', `No parked record with ID ${which}; nothing was requeued`, { ids: missing })
        }
        await move(records as ParkedRecord[])
      }
      return out
    })
  }

  private requeueOne (record: ParkedRecord, now: number): Promise<number | undefined> {
    const h = record.retry
    const source = { log: this.host.parked.name, id: record.id }
    const state: Partial<RetryState> = {
      attempts: 0,
      firstFailedAt: h.firstFailedAt,
      lastFailedAt: h.lastFailedAt,
      ...(h.lastError === undefined ? {} : { lastError: h.lastError }),
      nextAttemptAt: now,
      source,
    }
    const error = h.lastError === undefined ? undefined : { ...h.lastError, source }
    return this.host.moves.move(this.host.parked, this.host.dlq, record.id, record.payload, { ...(error === undefined ? {} : { error }), state })
  }

  /**
   * Delete parked records for good: `ids` atomically (EVAQ_NOT_FOUND if one is not parked, and
   * nothing is deleted), or `'all'`. Resolves with the number deleted.
   */
  purgeParked (ids: readonly number[] | 'all'): Promise<number> {
    return this.parkedWork(ids, async list => {
      if (list !== 'all') {
        await this.host.parked.remove(list)
        return list.length
      }
      let purged = 0
      for (;;) {
        const page = await this.host.parked.read({ maxBytes: 16 * 1024 * 1024, maxCount: PURGE_PAGE })
        if (page.length === 0) return purged
        purged += (await this.host.parked.removeExisting(page.map(r => r.id))).length
      }
    })
  }

  /** Run a requeue (either) or purge of parked records in one lane, one at a time, and let close() wait for it. */
  private parkedWork<T> (ids: unknown, task: (list: number[] | 'all') => Promise<T>): Promise<T> {
    let list: number[] | 'all'
    try {
      this.host.assertWritable()
      list = ids === 'all' ? 'all' : checkIds(ids, 'ids')
      if (typeof ids === 'number') throw invalid('ids', "an array of IDs or 'all'", ids)
    } catch (err) {
      return Promise.reject(err)
    }
    const run = this.parkedLane.then(() => this.host.finishing(async () => {
      this.host.assertWritable()
      try {
        return await task(list)
      } finally {
        await this.host.recheck('parked')
        await this.host.recheck('dlq')
      }
    }))
    this.parkedLane = run.catch(() => {})
    return run
  }
}
