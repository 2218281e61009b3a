#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Evaq } from '../evaq.js'
import { EvaqError, isEvaqError } from '../errors.js'
import { check, repair, type CheckReport } from './check.js'

/**
 * The `evaq` command. Exit codes: 0 success, 1 an evaq error (its code is printed), 2 bad usage.
 */

const USAGE = `Usage: evaq <command> [options]

Commands:
  stats --data DIR [--json]                          counts, bytes and ID range of the WAL and DLQ
  peek LOG --data DIR [--from ID] [--max-bytes N] [--max-count N] [--json]
                                                     print records of LOG (wal, dlq or parked) without removing them
  check --data DIR [--json]                          verify every record's checksum and evaq's metadata;
                                                     exits 1 when anything is damaged
  repair --data DIR --backup OUT [--json]            copy DIR to OUT, run LevelDB's repair, quarantine damaged
                                                     records, rebuild counters; reports records before and after

Options:
  --help, -h      this text
  --version, -v   the evaq version`

const LOGS = ['wal', 'dlq', 'parked'] as const

async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      data: { type: 'string' },
      json: { type: 'boolean', default: false },
      from: { type: 'string' },
      'max-bytes': { type: 'string' },
      'max-count': { type: 'string' },
      backup: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', short: 'v', default: false },
    },
  })
  if (values.version) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    console.log(pkg.version)
    return 0
  }
  const [command, ...rest] = positionals
  if (values.help || command === undefined) {
    console.log(USAGE)
    return values.help ? 0 : 2
  }
  if (values.data === undefined) return usage('--data DIR is required')
  if ((command === 'stats' || command === 'peek') && !existsSync(values.data)) {
    throw new EvaqError('EVAQ_NOT_FOUND', `There is no queue at ${values.data}`)
  }
  switch (command) {
    case 'stats': {
      const evaq = await Evaq.open(values.data)
      try {
        const stats = { wal: await evaq.wal.stats(), dlq: await evaq.dlq.stats(), parked: await evaq.parked.stats() }
        if (values.json) console.log(JSON.stringify(stats))
        else {
          for (const log of LOGS) {
            const s = stats[log]
            console.log(`${log}\t${s.count} record(s)\t${s.bytes} bytes\tIDs ${s.firstId ?? '-'}..${s.lastId ?? '-'}\tnext ${s.nextId}`)
          }
        }
      } finally {
        await evaq.close()
      }
      return 0
    }
    case 'peek': {
      const log = rest[0]
      if (log !== 'wal' && log !== 'dlq' && log !== 'parked') return usage('peek takes a log name: wal, dlq or parked')
      const evaq = await Evaq.open(values.data)
      try {
        const records = await evaq[log].read({
          from: number(values.from, '--from', 0),
          maxBytes: number(values['max-bytes'], '--max-bytes', 64 * 1024),
          maxCount: number(values['max-count'], '--max-count', 100),
        })
        for (const r of records) {
          const retry = 'retry' in r ? r.retry as { attempts: number } : undefined
          if (values.json) console.log(JSON.stringify({ id: r.id, pushedAt: r.pushedAt, payload: r.payload.toString('base64'), ...(r.error === undefined ? {} : { error: r.error }), ...(retry === undefined ? {} : { retry }) }))
          else console.log(`${r.id}\t${new Date(r.pushedAt).toISOString()}\t${JSON.stringify(r.payload.toString('utf8'))}${r.error === undefined ? '' : `\t${r.error.code ?? ''} ${r.error.message}`}${retry === undefined ? '' : `\tattempts ${retry.attempts}`}`)
        }
      } finally {
        await evaq.close()
      }
      return 0
    }
    case 'check': {
      const report = await check(values.data, progress('checked', 'segments'))
      endProgress()
      if (values.json) console.log(JSON.stringify(report))
      else printCheck(report)
      return report.damaged ? 1 : 0
    }
    case 'repair': {
      if (values.backup === undefined) return usage('repair needs --backup OUT: the directory is copied there first')
      const report = await repair(values.data, values.backup)
      if (values.json) console.log(JSON.stringify(report))
      else {
        console.log(`backup: ${report.backup}`)
        for (const log of LOGS) {
          const b = report.before.logs[log]
          const a = report.after.logs[log]
          const f = report.fixed[log]!
          console.log(`${log}\trecords before ${b?.records ?? '?'}, after ${a?.records ?? '?'}\tquarantined ${f.quarantinedSegments} segment(s), ${f.quarantinedRecords} record(s)\tsummaries rewritten ${f.summariesRewritten}`)
        }
        console.log(report.after.damaged ? 'still damaged: see `evaq check`' : 'ok')
      }
      return report.after.damaged ? 1 : 0
    }
    default:
      return usage(`unknown command \`${command}\``)
  }
}

function printCheck (report: CheckReport): void {
  if (!report.opened || report.error !== undefined) {
    console.log(`cannot check ${report.dir}: ${report.error?.code ?? ''} ${report.error?.message ?? ''}`)
  }
  for (const [log, l] of Object.entries(report.logs)) {
    console.log(`${log}\t${l.segments} segment(s), ${l.records} record(s), ${l.bytes} bytes\tdamaged: ${l.badSegments} segment(s), ${l.badRecords} record(s)\tinconsistencies ${l.inconsistencies}${l.unreadable ? '\tUNREADABLE' : ''}\tcounted ${l.counted.records}\tquarantined ${l.quarantined}`)
  }
  if (report.subscribers.bad > 0) console.log(`subscribers: ${report.subscribers.bad} damaged`)
  for (const line of report.engine) console.log(`leveldb: ${line}`)
  console.log(report.damaged ? 'DAMAGED' : 'ok')
}

/** A one-line progress counter on a TTY; nothing when stdout is a file or a pipe. */
function progress (verb: string, unit: string): ((n: number) => void) | undefined {
  if (process.stdout.isTTY !== true) return undefined
  let last = 0
  return n => {
    const now = Date.now()
    if (now - last < 100) return
    last = now
    process.stdout.write(`\r${verb} ${n} ${unit}`)
  }
}

function endProgress (): void {
  if (process.stdout.isTTY === true) process.stdout.write('\r\x1b[K')
}

function number (value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${name}\` to be a non-negative integer, got \`${value}\``)
  }
  return n
}

function usage (message: string): number {
  console.error(`evaq: ${message}\n\n${USAGE}`)
  return 2
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
  if (isEvaqError(err)) {
    console.error(`evaq: ${err.code}: ${err.message}`)
    process.exitCode = err.code === 'EVAQ_INVALID_ARGUMENT' ? 2 : 1
  } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
    process.exitCode = usage((err as Error).message)
  } else {
    console.error(err)
    process.exitCode = 1
  }
})
