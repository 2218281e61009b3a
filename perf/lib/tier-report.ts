/**
 * The `tier` scenario's tables (lib/tier.ts), and where a run keeps them: results/<date>-tier.json
 * and the block between perf/README.md's `bench:tier` markers; a quick run, results/quick-tier.json.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { gitRevision, int, localDate, loadRecord, machineLine, markdownTable, RESULTS_DIR, type RunInfo, textTable, updateReadme } from './common.js'
import { sizeName, type TierCase, type TierResult, tierSummary } from './tier.js'

const MiB = 2 ** 20
const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(n >= 100 ? 0 : 1) : 'n/a'
const ratio = (r: number): string => Number.isFinite(r) ? `${r.toFixed(2)}×` : 'n/a'
const k = (n: number): string => Number.isFinite(n) ? (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`) : 'n/a'

const OFFLOAD_HEADER = [
  'payload', 'pushed', 'push, no budget', "push, `onFull: 'offload'`", 'ratio', 'push while offloading',
  'offload (files)', 'bucket PUT', 'offload / PUT', 'peak directory',
]
const READ_HEADER = [
  'payload', 'drain, local queue', 'drain, from the tier', 'ratio', 'fetched from the bucket', 'bucket GET', 'fetch / GET',
]

function tables (r: TierResult): { offload: string[][], read: string[][] } {
  const offload: string[][] = []
  const read: string[][] = []
  for (const { size, pick } of tierSummary(r)) {
    const c = (f: (c: TierCase) => number): number => pick(f)
    offload.push([
      sizeName(size),
      `${(c(x => x.tier.push.payloadBytes) / MiB).toFixed(0)} MiB`,
      `${f1(c(x => x.local.push.mbPerSec))} MB/s`,
      `${f1(c(x => x.tier.push.mbPerSec))} MB/s`,
      ratio(c(x => x.ratios.push)),
      `${f1(c(x => x.tier.offload.pushMbPerSecWhileOffloading))} MB/s`,
      `${f1(c(x => x.tier.offload.mbPerSec))} MB/s (${int(c(x => x.tier.offload.uploads))} × ${f1(c(x => x.bucket.objectBytes) / MiB)} MiB)`,
      `${f1(c(x => x.bucket.putMbPerSec))} MB/s`,
      ratio(c(x => x.ratios.offloadOfPut)),
      `${f1(c(x => x.tier.offload.peakUsedBytes) / MiB)} of ${r.config.budgetBytes / MiB} MiB`,
    ])
    read.push([
      sizeName(size),
      `${f1(c(x => x.local.drain.mbPerSec))} MB/s, ${k(c(x => x.local.drain.recordsPerSec))} rec/s`,
      `${f1(c(x => x.tier.drain.mbPerSec))} MB/s, ${k(c(x => x.tier.drain.recordsPerSec))} rec/s`,
      ratio(c(x => x.ratios.drain)),
      `${f1(c(x => x.tier.drain.fetchMbPerSec ?? NaN))} MB/s (${int(c(x => x.tier.drain.downloads ?? NaN))} files)`,
      `${f1(c(x => x.bucket.getMbPerSec))} MB/s`,
      ratio(c(x => x.ratios.fetchOfGet)),
    ])
  }
  return { offload, read }
}

/** How it was measured, for under the tables. */
function caption (r: TierResult, info: RunInfo | undefined): string {
  const c = r.config
  const others = r.cases.flatMap(x => [x.local.push, x.tier.push, x.local.drain, x.tier.drain, x.bucket].map(p => p.cpu.otherCpus))
    .filter((n): n is number => n !== undefined)
  const avg = (l: readonly number[]): string => l.map(x => x.toFixed(2)).join(', ')
  const spread = others.length === 0
    ? '.'
    : `; other processes used ${Math.min(...others).toFixed(2)} to ${Math.max(...others).toFixed(2)} CPUs during the measurements.`
  const load = info === undefined
    ? ''
    : ` Load average (1, 5, 15 min) ${avg(info.loadBefore)} at the start of the run, ${avg(info.loadAfter)} at its end${spread}`
  const when = info === undefined ? '' : `Measured ${localDate(info.startedAt)} on ${machineLine(info.machine)}. `
  return `${when}**The bucket is ${r.server.note}** (s3rver ${r.server.version ?? '?'}); its numbers say nothing about AWS. ` +
    `${c.callers} callers push ${c.factor} × \`maxDiskBytes\` (${c.budgetBytes / MiB} MiB) of distinct random payloads into a queue with ` +
    `\`onFull: 'offload'\` and into one without a budget (both: segment files of ${c.segmentFileBytes / MiB} MiB, \`segmentCacheBytes\` ` +
    `${c.segmentCacheBytes / 1024} KiB, durability 'sync'); then a new subscriber drains each from its first record ` +
    `(\`next({ maxBytes: ${c.drainMaxBytes / MiB} MiB })\` + \`ack()\`). MB/s are 10^6 payload bytes per second; the offload and fetch ` +
    "rates count the segment files' bytes (stats().tier.uploadedBytes, sampled every 100 ms, from the last sample with nothing uploaded to the " +
    'first with every upload done; downloadedBytes over the drain). The bucket alone: `Bucket.putFile` (PUT and HEAD) and `getFile` of ' +
    `${c.bucketObjects} objects the size of the tier's, one call at a time. Medians of ${c.rounds} round(s), the order alternating ` +
    `(ratios: medians of the per-round ratios).${load}`
}

export function printTier (r: TierResult): void {
  const t = tables(r)
  console.log(textTable(OFFLOAD_HEADER, t.offload))
  console.log()
  console.log(textTable(READ_HEADER, t.read))
  console.log(`(the bucket: ${r.server.note})`)
}

/**
 * Keep a run's result: results/quick-tier.json for a quick run; otherwise results/<date>-tier.json
 * and the `bench:tier` block of perf/README.md. Returns what it wrote.
 */
export async function writeTier (r: TierResult, info: RunInfo, quick: boolean): Promise<string[]> {
  await mkdir(RESULTS_DIR, { recursive: true })
  const file = path.join(RESULTS_DIR, quick ? 'quick-tier.json' : `${localDate(info.startedAt)}-tier.json`)
  const record = {
    benchmark: 'tier',
    mode: info.config.mode,
    startedAt: info.startedAt.toISOString(),
    finishedAt: info.finishedAt.toISOString(),
    git: gitRevision(),
    machine: info.machine,
    loadAverage: loadRecord(info),
    cpu: info.cpu.tier ?? [],
    result: r,
  }
  await writeFile(file, JSON.stringify(record, null, 2) + '\n')
  const out = [`wrote ${path.relative(process.cwd(), file)}`]
  if (quick) return out
  const t = tables(r)
  const block = [
    'Offload:',
    '',
    markdownTable(OFFLOAD_HEADER, ['---', ...OFFLOAD_HEADER.slice(1).map(() => '---:')], t.offload),
    '',
    'Read-back:',
    '',
    markdownTable(READ_HEADER, ['---', ...READ_HEADER.slice(1).map(() => '---:')], t.read),
    '',
    caption(r, info),
  ].join('\n')
  if (await updateReadme('<!-- bench:tier:start -->', '<!-- bench:tier:end -->', block)) out.push('updated perf/README.md (tier block)')
  return out
}
