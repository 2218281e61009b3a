import { statfs } from 'node:fs/promises'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Evaq, TierStats } from './evaq.js'
import type { DropEvent, FlushEvent, LogView as Log, LogStats } from './log/log.js'
import type { Delivery } from './log/subscriber.js'
import type { ParkedEvent, RetryDaemon } from './retry/retry-daemon.js'

/**
 * Prometheus metrics of one queue (prom-client), every name prefixed `evaq_`. Gauges are read from
 * `evaq.stats()` when scraped; counters of what went through the service (pushes, acks, removals,
 * deliveries) are counted by the service, and drops and degradations from the queue's events.
 */
export interface EvaqMetricsOptions {
  /** The registry to register in. @defaultValue a new `Registry` */
  registry?: Registry
  /**
   * Also collect Node's process metrics (CPU, memory, event-loop delay, GC) as `evaq_process_*`
   * and `evaq_nodejs_*`. @defaultValue true
   */
  processMetrics?: boolean
}

/** Upper bounds of the write-latency histogram, in seconds (100 µs to 2.5 s). */
/** Records per synced flush: powers of 4 from 1 to 16,384. */
const BATCH_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384]
const WRITE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const STATUSES = ['opening', 'open', 'degraded', 'closing', 'closed'] as const

export class EvaqMetrics {
  /** The registry holding evaq's metrics; serve `registry.metrics()` or call {@link metrics}. */
  readonly registry: Registry
  private readonly records: Gauge<'log'>
  private readonly bytes: Gauge<'log'>
  private readonly oldestAge: Gauge<'log'>
  private readonly nextId: Gauge<'log'>
  private readonly quarantined: Gauge<'log'>
  private readonly lagRecords: Gauge<'log' | 'subscriber'>
  private readonly lagBytes: Gauge<'log' | 'subscriber'>
  private readonly inFlight: Gauge<'log' | 'subscriber'>
  private readonly unackedAge: Gauge<'log' | 'subscriber'>
  private readonly status: Gauge<'status'>
  private readonly diskFree: Gauge
  private readonly diskUsed: Gauge
  private readonly diskMax: Gauge
  private readonly compactions: Counter<'log'>
  private readonly pushes: Counter<'log'>
  private readonly writeSeconds: Histogram<'log'>
  private readonly flushSeconds: Histogram<'log'>
  private readonly recordsPerFsync: Histogram<'log'>
  private readonly removals: Counter<'log'>
  private readonly deliveries: Counter<'log' | 'subscriber'>
  private readonly redeliveries: Counter<'log' | 'subscriber'>
  private readonly acks: Counter<'log' | 'subscriber'>
  private readonly nacks: Counter<'log' | 'subscriber'>
  private readonly requeues: Counter<'from'>
  private readonly drops: Counter<'log' | 'reason'>
  private readonly degradations: Counter
  private readonly errors: Counter
  private readonly responses: Counter<'method' | 'route' | 'status'>
  /** Only with a tier (options.tier): a queue without one exports none of these. */
  private readonly tier: TierMetrics | undefined
  private readonly retries: Counter<'outcome'>
  private readonly parkedRecords: Counter<'reason'>
  private readonly detach: () => void
  private readonly pushChildren = new Map<string, { pushes: { inc (n: number): void }, seconds: { observe (s: number): void } }>()
  private readonly responseChildren = new Map<string, { inc (): void }>()

  /**
   * @param evaq - the queue to observe; its `dropped`, `degraded` and `error` events are counted
   *   until {@link close}.
   */
  constructor (private readonly evaq: Evaq, options: EvaqMetricsOptions = {}) {
    const registers = [this.registry = options.registry ?? new Registry()]
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> =>
      new Gauge({ name: `evaq_${name}`, help, labelNames, registers })
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> =>
      new Counter({ name: `evaq_${name}`, help, labelNames, registers })
    this.records = gauge('records', 'Live records (depth) of each log.', ['log'])
    this.bytes = gauge('bytes', 'Live payload bytes of each log.', ['log'])
    this.oldestAge = gauge('oldest_record_age_seconds', 'Age of the oldest live record of each log (0 when empty).', ['log'])
    this.nextId = gauge('next_id', 'The ID the next push to each log gets.', ['log'])
    this.quarantined = gauge('quarantined_records', 'Records taken out of each log because they failed their checksum (persisted).', ['log'])
    this.lagRecords = gauge('subscriber_lag_records', 'Records a subscriber has not acknowledged yet.', ['log', 'subscriber'])
    this.lagBytes = gauge('subscriber_lag_bytes',
      'Payload bytes a subscriber has not acknowledged yet (estimated from the mean record size).', ['log', 'subscriber'])
    this.inFlight = gauge('subscriber_in_flight_records', 'Records delivered to a subscriber and leased, not yet acknowledged.', ['log', 'subscriber'])
    this.unackedAge = gauge('subscriber_oldest_unacked_age_seconds', 'Age of the oldest record a subscriber has not acknowledged.', ['log', 'subscriber'])
    this.status = gauge('status', 'The queue\'s status: 1 for the current one.', ['status'])
    this.diskFree = gauge('disk_free_bytes', 'Free bytes on the filesystem of the data directory (available to this user).')
    this.diskUsed = gauge('disk_used_bytes',
      'Bytes the data directory occupies (the disk budget\'s running figure under maxDiskBytes, otherwise measured at each scrape).')
    this.diskMax = gauge('disk_max_bytes', 'The disk budget maxDiskBytes (0 without one).')
    this.compactions = counter('compactions_total', 'Compactions of deleted ranges in this process.', ['log'])
    this.pushes = counter('pushes_total', 'Records pushed through the service.', ['log'])
    this.writeSeconds = new Histogram({
      name: 'evaq_push_duration_seconds',
      help: 'Time from a push request to its records being durable (per the durability setting), in seconds.',
      labelNames: ['log'],
      buckets: WRITE_BUCKETS,
      registers,
    })
    this.flushSeconds = new Histogram({
      name: 'evaq_flush_duration_seconds',
      help: 'Time one flush of the write buffer (one LevelDB batch, with its fsync under durability sync) took, in seconds.',
      labelNames: ['log'],
      buckets: WRITE_BUCKETS,
      registers,
    })
    this.recordsPerFsync = new Histogram({
      name: 'evaq_fsync_records',
      help: 'Records written by each synced flush: how many pushes share one fsync (group commit).',
      labelNames: ['log'],
      buckets: BATCH_BUCKETS,
      registers,
    })
    this.removals = counter('removals_total', 'Records removed by ID through the service.', ['log'])
    this.deliveries = counter('deliveries_total', 'Records delivered to subscribers through the service.', ['log', 'subscriber'])
    this.redeliveries = counter('redeliveries_total',
      'Deliveries of a record delivered before (lease expired or nacked): retries of consumers.', ['log', 'subscriber'])
    this.acks = counter('acks_total', 'Records acknowledged by subscribers through the service.', ['log', 'subscriber'])
    this.nacks = counter('nacks_total', 'Records given back by subscribers through the service.', ['log', 'subscriber'])
    this.requeues = counter('requeued_total', 'Records requeued (DLQ to WAL, parked to DLQ) through the service.', ['from'])
    this.drops = counter('dropped_records_total', 'Records dropped by retention, drop-oldest, corruption, in this process.', ['log', 'reason'])
    this.degradations = counter('degraded_total', 'Times the queue became degraded after a failed write, in this process.')
    this.errors = counter('errors_total', 'Background errors the queue reported, in this process.')
    this.retries = counter('retry_attempts_total', 'Attempts of watched retry daemons, by outcome (succeeded, rescheduled, parked).', ['outcome'])
    this.parkedRecords = counter('parked_total', 'Records watched retry daemons parked, by reason (max-attempts, permanent).', ['reason'])
    this.responses = counter('http_responses_total', 'Responses of the HTTP service by route pattern and status.', ['method', 'route', 'status'])
    this.tier = evaq.options.tier === undefined ? undefined : tierMetrics(gauge, counter)
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'evaq_' })

    const onDropped = (e: DropEvent): void => { if (e.records > 0) this.drops.inc({ log: e.log, reason: e.reason }, e.records) }
    const onDegraded = (): void => { this.degradations.inc() }
    const onError = (): void => { this.errors.inc() }
    const onFlush = (e: FlushEvent): void => {
      this.flushSeconds.observe({ log: e.log }, e.durationMs / 1000)
      if (e.synced) this.recordsPerFsync.observe({ log: e.log }, e.records)
    }
    evaq.on('flush', onFlush)
    evaq.on('dropped', onDropped)
    evaq.on('degraded', onDegraded)
    evaq.on('error', onError)
    this.detach = () => {
      evaq.off('flush', onFlush)
      evaq.off('dropped', onDropped)
      evaq.off('degraded', onDegraded)
      evaq.off('error', onError)
    }
  }

  /** Count a push of `records` to `log` that took `seconds` until durable. */
  pushed (log: string, records: number, seconds: number): void {
    let child = this.pushChildren.get(log)
    if (child === undefined) {
      child = { pushes: this.pushes.labels({ log }), seconds: this.writeSeconds.labels({ log }) }
      this.pushChildren.set(log, child)
    }
    child.pushes.inc(records)
    child.seconds.observe(seconds)
  }

  /** Count records removed by ID. */
  removed (log: string, records: number): void {
    this.removals.inc({ log }, records)
  }

  /** Count records delivered to a subscriber, and those among them delivered before. */
  delivered (log: string, subscriber: string, records: readonly Delivery[]): void {
    this.deliveries.inc({ log, subscriber }, records.length)
    let again = 0
    for (const r of records) if (r.deliveryCount > 1) again++
    if (again > 0) this.redeliveries.inc({ log, subscriber }, again)
  }

  /** Count acknowledged records. */
  acked (log: string, subscriber: string, records: number): void {
    this.acks.inc({ log, subscriber }, records)
  }

  /** Count records given back. */
  nacked (log: string, subscriber: string, records: number): void {
    this.nacks.inc({ log, subscriber }, records)
  }

  /** Count records requeued out of `from` (`'dlq'` or `'parked'`). */
  requeued (from: string, records: number): void {
    this.requeues.inc({ from }, records)
  }

  /**
   * Count the attempts of a retry daemon (`evaq.retry(...)`) by outcome, and the records it
   * parked, until it stops. Returns a function that stops counting earlier.
   */
  watchRetryDaemon (daemon: RetryDaemon): () => void {
    const onSucceeded = (): void => { this.retries.inc({ outcome: 'succeeded' }) }
    const onRescheduled = (): void => { this.retries.inc({ outcome: 'rescheduled' }) }
    const onParked = (e: ParkedEvent): void => {
      this.retries.inc({ outcome: 'parked' })
      this.parkedRecords.inc({ reason: e.reason })
    }
    const stop = (): void => {
      daemon.off('succeeded', onSucceeded)
      daemon.off('rescheduled', onRescheduled)
      daemon.off('parked', onParked)
      daemon.off('stopped', stop)
    }
    daemon.on('succeeded', onSucceeded)
    daemon.on('rescheduled', onRescheduled)
    daemon.on('parked', onParked)
    daemon.on('stopped', stop)
    return stop
  }

  /** Count an HTTP response of the service (`route` is the route's pattern, not the URL). */
  httpResponse (method: string, route: string, status: number): void {
    // Per-request path: look the labelled child up by one string instead of hashing the labels.
    const key = `${method} ${status} ${route}`
    let child = this.responseChildren.get(key)
    if (child === undefined) {
      child = this.responses.labels({ method, route, status: String(status) })
      this.responseChildren.set(key, child)
    }
    child.inc()
  }

  /** Refresh the gauges from the queue, then render every metric in Prometheus' text format. */
  async metrics (): Promise<string> {
    await this.refresh()
    return this.registry.metrics()
  }

  /** The Content-Type of {@link metrics}' output. */
  get contentType (): string {
    return this.registry.contentType
  }

  /** Stop counting the queue's events. */
  close (): void {
    this.detach()
  }

  private async refresh (): Promise<void> {
    const evaq = this.evaq
    const stats = await evaq.stats()
    const now = evaq.options.clock.now()
    this.lagRecords.reset()
    this.lagBytes.reset()
    this.inFlight.reset()
    this.unackedAge.reset()
    this.compactions.reset()
    const logs: Array<[string, Log, LogStats]> = [['wal', evaq.wal, stats.wal], ['dlq', evaq.dlq, stats.dlq], ['parked', evaq.parked, stats.parked]]
    for (const [name, log, l] of logs) {
      this.records.set({ log: name }, l.count)
      this.bytes.set({ log: name }, l.bytes)
      this.nextId.set({ log: name }, l.nextId)
      this.quarantined.set({ log: name }, l.quarantined)
      this.oldestAge.set({ log: name }, l.firstPushedAt === undefined ? 0 : Math.max(0, now - l.firstPushedAt) / 1000)
      this.compactions.inc({ log: name }, log.compactions)
      for (const sub of l.subscribers) {
        const labels = { log: name, subscriber: sub.name }
        this.lagRecords.set(labels, sub.lagRecords)
        this.lagBytes.set(labels, sub.lagBytes)
        this.inFlight.set(labels, sub.inFlight)
        this.unackedAge.set(labels, sub.oldestUnackedAgeMs / 1000)
      }
    }
    if (this.tier !== undefined) setTierMetrics(this.tier, stats.tier)
    for (const s of STATUSES) this.status.set({ status: s }, evaq.status === s ? 1 : 0)
    this.diskUsed.set(stats.disk.usedBytes)
    this.diskMax.set(stats.disk.maxDiskBytes ?? 0)
    try {
      const fs = await statfs(evaq.location)
      this.diskFree.set(fs.bavail * fs.bsize)
    } catch {
      // The directory vanished under us: keep the last value rather than fail the scrape.
    }
  }
}

/**
 * The tier's metrics (a queue with `tier`, docs/metrics.md), read from `stats().tier` at each
 * scrape like the others: what the bucket holds now and the fetched files kept for reads
 * (gauges), what moved since the queue opened (counters, set from the queue's own counts), and
 * whether the tier fails now.
 */
interface TierMetrics {
  readonly segments: Gauge
  readonly bytes: Gauge
  readonly cachedBytes: Gauge
  readonly failing: Gauge
  readonly counters: Readonly<Record<TierCounter, Counter>>
}

type TierCounter = 'uploads' | 'uploadedBytes' | 'downloads' | 'downloadedBytes' | 'deletes' | 'errors'

type MakeGauge = (name: string, help: string) => Gauge
type MakeCounter = (name: string, help: string) => Counter

function tierMetrics (gauge: MakeGauge, counter: MakeCounter): TierMetrics {
  return {
    segments: gauge('tier_segments', 'Segment files the tier\'s bucket holds.'),
    bytes: gauge('tier_bytes', 'Bytes of the segment files the tier\'s bucket holds.'),
    cachedBytes: gauge('tier_cached_bytes', 'Bytes of segment files fetched back from the bucket, kept in the data directory for reads.'),
    failing: gauge('tier_failing', '1 while calls to the tier\'s bucket fail (until one succeeds again), else 0.'),
    counters: {
      uploads: counter('tier_uploads_total', 'Segment files uploaded to the tier\'s bucket (verified), since the queue opened.'),
      uploadedBytes: counter('tier_uploaded_bytes_total', 'Bytes uploaded to the tier\'s bucket, since the queue opened.'),
      downloads: counter('tier_downloads_total', 'Segment files fetched back from the tier\'s bucket, since the queue opened.'),
      downloadedBytes: counter('tier_downloaded_bytes_total', 'Bytes fetched back from the tier\'s bucket, since the queue opened.'),
      deletes: counter('tier_deletes_total', 'Objects deleted from the tier\'s bucket once their records were gone, since the queue opened.'),
      errors: counter('tier_errors_total', 'Failed calls to the tier\'s bucket (each one retried), since the queue opened.'),
    },
  }
}

/** Set the tier's metrics from `stats().tier` (zero while the queue reports none). */
function setTierMetrics (m: TierMetrics, tier: TierStats | undefined): void {
  m.segments.set(tier?.segments ?? 0)
  m.bytes.set(tier?.bytes ?? 0)
  m.cachedBytes.set(tier?.cachedBytes ?? 0)
  m.failing.set(tier?.lastError === undefined ? 0 : 1)
  for (const [key, c] of Object.entries(m.counters) as Array<[TierCounter, Counter]>) {
    // The queue counts; a counter's value can only be set by reset and inc.
    c.reset()
    c.inc(tier?.[key] ?? 0)
  }
}
