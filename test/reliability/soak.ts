/**
 * The soak: the reliability battery with long cycle counts, then the table of
 * docs/reliability.md (between `<!-- soak:start -->` and `<!-- soak:end -->`) rewritten from what
 * the parts reported. Nothing in that table is typed by hand.
 *
 *   npm run test:soak                       # everything
 *   npm run test:soak -- crash-points leaks # only the reliability files whose name contains one of these
 *
 * - Every test/reliability/*.test.ts runs in its own `npx ava` (so a failure is pinned to its
 *   part), one after the other, with EVAQ_SOAK_DIR set to a fresh temp directory into which each
 *   part writes its result (test/reliability/report.ts).
 * - Cycle counts: every `cycles('NAME', short)` in those files is found here and NAME set to its
 *   soak value: SOAK_COUNTS below, or 20 × short for a count this script does not know. A NAME
 *   already set in the environment wins, so any count can be overridden.
 * - The SIGKILL loops of test/facade/crash.test.ts and test/log/subscriber-crash.test.ts have a
 *   fixed cycle count (no environment variable): they run EVAQ_SOAK_LEGACY_RUNS times each
 *   (default 10; 0 skips them), each run with a fresh random seed.
 * - Exit code 1 when anything failed; the table says what.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { PartResult } from './report.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const HERE = join(ROOT, 'test', 'reliability')
const DOC = join(ROOT, 'docs', 'reliability.md')
const START = '<!-- soak:start -->'
const END = '<!-- soak:end -->'

/** Soak values of the cycle counts this script knows (the short values are in the tests). */
const SOAK_COUNTS: Record<string, number> = {
  EVAQ_CRASH_CYCLES: 1000,
  EVAQ_LEAK_OPENS: 3000,
  EVAQ_LEAK_OPS: 100_000,
  // Each cycle reads the whole queue back through the bucket, and the queue grows between removals.
  EVAQ_TIER_CRASH_CYCLES: 40,
}
/** Soak value of a count not in SOAK_COUNTS: this many times its short value. */
const UNKNOWN_FACTOR = 20
const LEGACY_RUNS_DEFAULT = 10

/**
 * The rows of the table, in order, with what to show when a part did not report. A part that
 * reports but is not listed here gets a row after these; so does a test file nobody listed.
 */
interface Row { part: string, failure: string, guarantee: string, test: string }
const CATALOG: Row[] = [
  {
    part: 'crash-loop',
    failure: 'Process crash (SIGKILL) at random moments and at named points inside evaq',
    guarantee: 'No acknowledged push lost (every durability mode), IDs never reused, subscribers at-least-once ' +
      "(nothing acked with ackDurability 'sync' redelivered, nothing unacked missing), every in-flight removeWal call all or nothing, " +
      'the database always opens',
    test: 'test/reliability/crash-points.test.ts',
  },
  {
    part: 'crash-writer-loop',
    failure: 'Process crash (SIGKILL) while 64 callers push and remove',
    guarantee: 'Acknowledged pushes and removals survive, nothing else changes, IDs never reused, counters exact',
    test: 'test/facade/crash.test.ts',
  },
  {
    part: 'subscriber-crash-loop',
    failure: 'Process crash (SIGKILL) while subscribers consume, ack and nack',
    guarantee: 'Acknowledged records never redelivered, unacknowledged ones never lost or cleaned up, fresh deliveries in ID order',
    test: 'test/log/subscriber-crash.test.ts',
  },
  {
    part: 'power-cut',
    failure: 'OS crash / power loss (what reached the device, on an ext4 loop image)',
    guarantee: "'sync': no acknowledged push lost; 'none' can lose acknowledged pushes (negative control)",
    test: 'test/reliability/power-cut.test.ts',
  },
  {
    part: 'disk-full',
    failure: 'Disk full (small tmpfs and ext4 loop image)',
    guarantee: "EVAQ_AT_CAPACITY before ENOSPC; on ENOSPC: EVAQ_IO, status 'degraded', reads go on, recovery by itself once space is freed; " +
      'every acknowledged record intact',
    test: 'test/reliability/disk-full.test.ts',
  },
  {
    part: 'io-errors',
    failure: 'EIO / ENOSPC injected into write and fdatasync (strace)',
    guarantee: 'An error, never a false acknowledgement; evaq recovers; every acknowledged record present (a failed one may be too)',
    test: 'test/reliability/io-errors.test.ts',
  },
  {
    part: 'corruption',
    failure: 'Flipped bytes, truncated log, missing or empty table, damaged MANIFEST and CURRENT',
    guarantee: 'No record failing its CRC returned; damaged records quarantined and counted; consumers get past unreadable blocks; ' +
      'a compaction meeting one is repaired by evaq itself; a lost log tail is reported and its IDs never issued again; ' +
      'evaq check reports, evaq repair backs up and repairs',
    test: 'test/reliability/corruption.test.ts',
  },
  {
    part: 'segment-corruption',
    failure: 'A torn tail, flipped frame bytes (body and header), a truncated and a missing segment file',
    guarantee: 'Every acknowledged push recovered after a torn tail; damaged segments named once and quarantined, every other record read intact',
    test: 'test/reliability/segment-corruption.test.ts',
  },
  {
    part: 'tier-crash',
    failure: 'Process crash (SIGKILL) at the crash points of the tier on object storage (s3rver on loopback)',
    guarantee: 'No acknowledged push lost (offloaded ones read back through the bucket), never neither copy of an offloaded file, ' +
      'nothing of the queue left in the bucket once everything is removed',
    test: 'test/reliability/tier-crash.test.ts',
  },
  {
    part: 'flip-sweep',
    failure: 'Bytes flipped in table and log files at many seeds, and the 50,000-record experiment with 20 flips in tables',
    guarantee: 'Every ID pushed is returned intact or named (EVAQ_CORRUPTION ids, dropped events, quarantine counters) and never returned changed; ' +
      'repair counts add up; new IDs above every ID issued',
    test: 'test/reliability/flip-sweep.test.ts',
  },
  {
    part: 'disk-full-service',
    failure: 'Disk full under the service (tmpfs 16 MiB, 8 HTTP pushers of 64 KiB)',
    guarantee: 'A push waiting for room is answered 503 EVAQ_AT_CAPACITY with Retry-After within the push timeout and stores nothing; ' +
      '/readyz says full; once space is freed the same pushers succeed',
    test: 'test/reliability/disk-full-service.test.ts',
  },
  {
    part: 'model-crash',
    failure: 'Process crash at moments fast-check picks while producers, removers and consumers run concurrently in scheduler-chosen orders',
    guarantee: 'Acknowledged pushes, removals and acks survive; in-flight ones are whole or absent; IDs never reused; ' +
      'subscribers at-least-once, never a record twice under one lease',
    test: 'test/reliability/model-crash.test.ts',
  },
  {
    part: 'leaks',
    failure: 'Long runs: open/close cycles; push/ack cycles with abandoned iterators, aborted and timed-out waits',
    guarantee: 'File descriptors and active handles flat, heap bounded, every record pushed delivered and acknowledged',
    test: 'test/reliability/leaks.test.ts',
  },
]
const LEGACY = [
  { part: 'crash-writer-loop', file: 'test/facade/crash.test.ts' },
  { part: 'subscriber-crash-loop', file: 'test/log/subscriber-crash.test.ts' },
]

interface Outcome {
  /** Exit code of every ava run of the file (one for a reliability file, several for a legacy loop). */
  codes: number[]
  ms: number
}

async function ava (files: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // Ava's default timeout (2 minutes without a result) is for the short battery.
  const child = spawn('npx', ['ava', '--timeout', '12h', ...files], { cwd: ROOT, env, stdio: 'inherit' })
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  return code ?? (signal === null ? 1 : 128)
}

function fmt (n: number): string {
  return n.toLocaleString('en-US')
}

function cell (text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

function duration (ms: number): string {
  const s = Math.round(ms / 1000)
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`
}

async function main (): Promise<void> {
  const filters = process.argv.slice(2)
  const all = (await readdir(HERE)).filter(f => f.endsWith('.test.ts')).sort()
  const files = filters.length === 0 ? all : all.filter(f => filters.some(x => f.includes(x)))
  const legacyRuns = process.env.EVAQ_SOAK_LEGACY_RUNS === undefined ? LEGACY_RUNS_DEFAULT : Number(process.env.EVAQ_SOAK_LEGACY_RUNS)
  if (!Number.isSafeInteger(legacyRuns) || legacyRuns < 0) {
    throw new Error(`EVAQ_SOAK_LEGACY_RUNS must be a non-negative integer, got ${process.env.EVAQ_SOAK_LEGACY_RUNS}`)
  }
  const legacy = filters.length === 0 || filters.some(x => x === 'legacy') ? legacyRuns : 0

  // Cycle counts: every cycles('NAME', short) in the files that run.
  const counts = new Map<string, { short: number, soak: number, overridden: boolean }>()
  for (const f of files) {
    const text = await readFile(join(HERE, f), 'utf8')
    for (const m of text.matchAll(/cycles\(\s*'([A-Z0-9_]+)'\s*,\s*([\d_]+)\s*\)/g)) {
      const name = m[1]!
      const short = Number(m[2]!.replace(/_/g, ''))
      const own = process.env[name]
      const soak = own !== undefined ? Number(own) : SOAK_COUNTS[name] ?? short * UNKNOWN_FACTOR
      counts.set(name, { short, soak, overridden: own !== undefined })
    }
  }

  const soakDir = await mkdtemp(join(tmpdir(), 'evaq-soak-'))
  const env: NodeJS.ProcessEnv = { ...process.env, EVAQ_SOAK_DIR: soakDir }
  for (const [name, c] of counts) env[name] = String(c.soak)
  console.log(`soak: results in ${soakDir}; ${[...counts].map(([n, c]) => `${n}=${c.soak}`).join(' ')}; legacy loops ${legacy} run(s) each`)

  const started = new Date()
  const t0 = performance.now()
  const outcomes = new Map<string, Outcome>()
  for (const f of files) {
    const file = `test/reliability/${f}`
    console.log(`\nsoak: ${file}`)
    const t = performance.now()
    const code = await ava([file], env)
    outcomes.set(file, { codes: [code], ms: performance.now() - t })
  }
  for (const { file } of LEGACY) {
    if (legacy === 0) continue
    const outcome: Outcome = { codes: [], ms: 0 }
    for (let i = 0; i < legacy; i++) {
      console.log(`\nsoak: ${file}, run ${i + 1} of ${legacy}`)
      const t = performance.now()
      const e = { ...env }
      delete e.EVAQ_CRASH_SEED
      delete e.EVAQ_SUB_CRASH_SEED
      outcome.codes.push(await ava([file], e))
      outcome.ms += performance.now() - t
    }
    outcomes.set(file, outcome)
  }
  const totalMs = performance.now() - t0

  // What the parts reported.
  const reported = new Map<string, PartResult & { at: string }>()
  for (const f of (await readdir(soakDir)).filter(x => x.endsWith('.json')).sort()) {
    const r = JSON.parse(await readFile(join(soakDir, f), 'utf8')) as PartResult & { at: string }
    reported.set(r.part, r)
  }
  // The legacy loops do not report: their row comes from their runs.
  for (const { part, file } of LEGACY) {
    const outcome = outcomes.get(file)
    if (outcome === undefined) continue
    const cyclesPerRun = Number(/const CYCLES = (\d+)/.exec(await readFile(join(ROOT, file), 'utf8'))?.[1] ?? Number.NaN)
    const passed = outcome.codes.filter(c => c === 0).length
    const row = CATALOG.find(r => r.part === part)!
    reported.set(part, {
      ...row,
      cycles: cyclesPerRun * passed,
      acknowledged: Number.NaN,
      lost: 0,
      note: `${passed} of ${outcome.codes.length} runs of ${cyclesPerRun} kills passed (the test counts no acknowledged records for this table)`,
      at: new Date().toISOString(),
    })
  }

  const rows: Row[] = [...CATALOG]
  for (const r of reported.values()) if (!rows.some(x => x.part === r.part)) rows.push(r)
  for (const f of all) {
    const file = `test/reliability/${f}`
    if (!rows.some(x => x.test === file)) rows.push({ part: f.replace(/\.test\.ts$/, ''), failure: '(not described)', guarantee: '(not described)', test: file })
  }

  let failed = false
  const notes: string[] = []
  const lines = ['| failure | guarantee | test | last soak result |', '| --- | --- | --- | --- |']
  for (const row of rows) {
    const r = reported.get(row.part)
    const outcome = outcomes.get(row.test)
    const ok = outcome === undefined || outcome.codes.every(c => c === 0)
    if (!ok) failed = true
    let result: string
    if (r === undefined) {
      result = outcome === undefined ? 'not run' : ok ? 'not run (no report: skipped?)' : `**FAILED** (ava exit code ${outcome.codes.join(', ')}), no report`
    } else {
      const parts = [
        r.at.slice(0, 10),
        `${fmt(r.cycles)} cycles`,
        Number.isNaN(r.acknowledged) ? 'acknowledged records not counted' : `${fmt(r.acknowledged)} acknowledged records`,
        r.lost === 0 ? 'lost = 0' : `**lost = ${fmt(r.lost)}**`,
      ]
      if (outcome !== undefined) parts.push(duration(outcome.ms))
      if (r.lost !== 0) failed = true
      result = (ok && r.lost === 0 ? '' : '**FAILED** · ') + parts.join(' · ')
      if (r.note !== undefined) notes.push(`- ${row.part}: ${r.note}`)
    }
    const failure = r?.failure ?? row.failure
    const guarantee = r?.guarantee ?? row.guarantee
    lines.push(`| ${cell(failure)} | ${cell(guarantee)} | \`${row.test}\` | ${cell(result)} |`)
  }

  const countLine = [...counts].map(([n, c]) => `\`${n}=${fmt(c.soak)}\`${c.overridden ? ' (set by hand)' : ''}`).join(', ')
  const block = [
    START,
    '<!-- Written by `npm run test:soak` (test/reliability/soak.ts); edits here are overwritten. -->',
    '',
    ...lines,
    '',
    `Soak of ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC, ${duration(totalMs)}` +
      (filters.length > 0 ? ` (only ${filters.join(', ')})` : '') +
      `: ${countLine || 'no cycle counts'}; the SIGKILL loops of test/facade/crash.test.ts and test/log/subscriber-crash.test.ts` +
      ` ${legacy === 0 ? 'not run' : `${legacy} run(s) each`}.`,
    ...(notes.length > 0 ? ['', 'Notes reported by the parts:', '', ...notes.map(cell)] : []),
    END,
  ].join('\n')

  const doc = await readFile(DOC, 'utf8')
  const a = doc.indexOf(START)
  const b = doc.indexOf(END)
  if (a < 0 || b < a) throw new Error(`${relative(ROOT, DOC)} has no ${START} … ${END} block`)
  await writeFile(DOC, doc.slice(0, a) + block + doc.slice(b + END.length))
  console.log(`\nsoak: ${failed ? 'FAILED' : 'passed'} in ${duration(totalMs)}; table written to ${relative(ROOT, DOC)}`)
  if (!failed) await rm(soakDir, { recursive: true, force: true })
  else console.log(`soak: part results kept in ${soakDir}`)
  process.exitCode = failed ? 1 : 0
}

main().catch(err => {
  console.error(err)
  process.exitCode = 1
})
