#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { EvaqError, isEvaqError } from '../errors.js'
import type { LogStats } from '../log/log.js'
import type { ServiceStats } from '../server/queue-service.js'
import { heldByAnotherProcess, removeCheckCopies } from '../store/check-copy.js'
import type { Backend } from './backend.js'
import { backupCommand, restoreCommand } from './backup.js'
import { check, repair, type CheckReport, type CheckStatus } from '../store/check.js'
import { recordLine, recordText, writeOut } from './output.js'
import { followCommand } from './follow.js'
import { progress } from './progress.js'
import { dataDir, exclusiveDir, holderOf, openTarget, serviceHolding } from './target.js'
import { assertNewOutput, exportLog } from './export.js'
import { importLog } from './transfer.js'
import { closest, parseFlags, type Flags, type Values } from './args.js'
import { COMMAND_HELP, GENERAL } from './help.js'
import { S3_FLAGS } from './s3-flags.js'
import { idArgs, intFlag, UsageError } from './usage.js'

/** The exit code of `evaq check` per status; 2 is bad usage, as for every command. */
const CHECK_EXIT_CODES: Readonly<Record<CheckStatus, number>> = Object.freeze({ ok: 0, damaged: 1, locked: 3, 'not-found': 4, tiered: 5 })

/**
 * The `evaq` command. Exit codes: 0 success, 1 an evaq error (its code is printed) or damage
 * found, 2 bad usage (EVAQ_INVALID_ARGUMENT included).
 */

type Options = Flags

/** Flags that take a value, by name. */
function valued (...names: string[]): Options {
  return Object.fromEntries(names.map(name => [name, { type: 'string' }]))
}

const HELP: Options = { help: { type: 'boolean', short: 'h' } }
const TARGET: Options = { data: { type: 'string' }, url: { type: 'string' }, token: { type: 'string' } }
const JSON_FLAG: Options = { json: { type: 'boolean' } }
/** Where s3:// archives of backup and restore are (credentials: the AWS SDK's default chain). */
const READ: Options = { from: { type: 'string' }, 'max-bytes': { type: 'string' }, 'max-count': { type: 'string' } }
/** How long an interrupted `check` waits for LevelDB to let go of its copy before it exits anyway. */
const EXIT_GRACE_MS = 2000

interface Command {
  readonly options: Options
  run (values: Values, args: string[]): Promise<number>
}

const COMMANDS: Record<string, Command> = {
  serve: {
    options: {
      ...valued('data', 'host', 'port', 'token', 'body-limit', 'durability', 'max-disk-bytes', 'min-free-disk-bytes', 'on-full', 'push-timeout',
        'log-level', 'tier'),
      ...S3_FLAGS,
      'log-requests': { type: 'boolean' },
      'allowed-host': { type: 'string', multiple: true },
      'allowed-origin': { type: 'string', multiple: true },
    },
    run: (values, args) => {
      noArgs(args)
      // fastify and pino load only for this command.
      return import('./serve.js').then(m => m.serveCommand(values))
    },
  },
  stats: {
    options: { ...TARGET, ...JSON_FLAG },
    run: (values, args) => withTarget(values, async q => {
      noArgs(args)
      const stats = await q.stats()
      if (values.json === true) {
        await writeOut(`${JSON.stringify(stats)}\n`)
        return 0
      }
      let out = ''
      for (const log of q.logNames) {
        const s = logStats(stats, log)
        out += `${log}\t${s.count} record(s)\t${s.bytes} bytes\tIDs ${s.firstId ?? '-'}..${s.lastId ?? '-'}\tnext ${s.nextId}\n`
      }
      await writeOut(out)
      return 0
    }),
  },
  peek: {
    options: { ...TARGET, ...READ, ...JSON_FLAG },
    run: (values, args) => {
      const log = logArg(args, 'peek')
      const read = readFlags(values)
      return withTarget(values, async q => {
        await printRecords(q, log, values, read)
        return 0
      })
    },
  },
  tail: {
    options: { ...TARGET, from: { type: 'string' }, count: { type: 'string' }, ...JSON_FLAG, follow: { type: 'boolean' }, subscriber: { type: 'string' } },
    run: (values, args) => {
      const log = logArg(args, 'tail')
      const count = intFlag(values.count as string | undefined, '--count', Number.MAX_SAFE_INTEGER, 1)
      // A consumer: the service's change stream of a subscriber, each record acked once printed.
      if (values.follow === true || values.subscriber !== undefined) return followCommand(log, count, values)
      return withTarget(values, async q => {
        const stop = new AbortController()
        const onSignal = (): void => stop.abort()
        process.once('SIGINT', onSignal)
        process.once('SIGTERM', onSignal)
        try {
          let from = values.from === undefined ? logStats(await q.stats(), log).nextId : intFlag(values.from as string, '--from', 0)
          let printed = 0
          while (printed < count && !stop.signal.aborted) {
            let records
            try {
              records = await q.read(log, { from, maxBytes: 1024 * 1024, maxCount: Math.min(1000, count - printed), waitMs: 30_000, signal: stop.signal })
            } catch (err) {
              if (stop.signal.aborted && isEvaqError(err, 'EVAQ_ABORTED')) break
              throw err
            }
            if (records.length === 0) continue
            await writeOut(records.map(r => values.json === true ? recordLine(r) : recordText(r)).join('\n') + '\n')
            printed += records.length
            from = records[records.length - 1]!.id + 1
          }
          if (stop.signal.aborted) console.error(`evaq: tail interrupted: ${printed} record(s) printed${printed === 0 ? '' : `, through ID ${from - 1}`}`)
        } finally {
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
        }
        return 0
      })
    },
  },
  subscribers: {
    options: { ...TARGET, ...JSON_FLAG },
    run: (values, args) => {
      if (args.length > 1) throw new UsageError('subscribers takes at most one log name')
      return withTarget(values, async q => {
        const subs = await q.subscribers(args[0])
        if (values.json === true) await writeOut(`${JSON.stringify(subs)}\n`)
        else {
          await writeOut(subs.map(s => `${s.log}\t${s.name}\tacked below ${s.ackFloor}` +
            `\tlag ${s.lagRecords} record(s), ${s.lagBytes} bytes\tin flight ${s.inFlight}` +
            `\tlease ${s.leaseMs} ms\tlast active ${new Date(s.lastActiveAt).toISOString()}\n`).join(''))
        }
        return 0
      })
    },
  },
  dlq: retryLogCommand('dlq', 'the WAL'),
  parked: retryLogCommand('parked', 'the DLQ'),
  export: {
    options: { ...TARGET, out: { type: 'string' }, from: { type: 'string' }, format: { type: 'string' } },
    run: async (values, args) => {
      const log = logArg(args, 'export')
      format(values)
      const from = intFlag(values.from as string | undefined, '--from', 0)
      // Before the queue is opened: an existing file is refused at once, whatever the queue.
      if (typeof values.out === 'string') await assertNewOutput(values.out, '--out')
      return withTarget(values, q => exportLog(q, log, { out: values.out as string | undefined, from }))
    },
  },
  import: {
    options: { ...TARGET, in: { type: 'string' }, format: { type: 'string' }, ...JSON_FLAG },
    run: (values, args) => {
      const log = logArg(args, 'import')
      format(values)
      // The target's identity keys the progress of an import from a file (import-marker.ts).
      const target = typeof values.url === 'string' ? values.url : resolve(dataDir(values))
      return withTarget(values, q => importLog(q, log, { in: values.in as string | undefined, json: values.json === true, target }), { create: true })
    },
  },
  check: {
    options: { data: { type: 'string' }, ...JSON_FLAG },
    run: async (values, args) => {
      noArgs(args)
      const dir = exclusiveDir(values, 'check')
      const bar = progress(process.stdout, 'checked', 'segments')
      // check reads a copy of the directory: an interrupt must not leave it behind.
      // (Exits rather than raising the signal again: a signal ignored when the process started
      // stays ignored once the handler is gone.)
      // LevelDB may be opening the copy from its own threads, and its open creates the directory
      // again: so the copy is removed at once, and again once the check has let go of it (or
      // after EXIT_GRACE_MS at most), and then the command exits.
      let interrupted: NodeJS.Signals | undefined
      const exit = (): never => {
        removeCheckCopies()
        process.exit(interrupted === 'SIGINT' ? 130 : 143)
      }
      const onSignal = (signal: NodeJS.Signals): void => {
        if (interrupted !== undefined) return
        interrupted = signal
        removeCheckCopies()
        setTimeout(exit, EXIT_GRACE_MS)
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      let report: CheckReport
      try {
        report = await check(dir, n => bar.update(n))
      } catch (err) {
        if (interrupted === undefined) throw err
        return exit()
      } finally {
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
      }
      if (interrupted !== undefined) return exit()
      bar.done()
      // Who holds the directory: the service's address and pid when it is `evaq serve`.
      const service = report.status === 'locked' ? await serviceHolding(dir) : undefined
      if (values.json === true) console.log(JSON.stringify(service === undefined ? report : { ...report, holder: service }))
      else printCheck(report, service === undefined ? undefined : `the evaq service at ${service.url} (pid ${service.pid})`)
      return CHECK_EXIT_CODES[report.status]
    },
  },
  repair: {
    options: { data: { type: 'string' }, backup: { type: 'string' }, ...JSON_FLAG },
    run: async (values, args) => {
      noArgs(args)
      const dir = exclusiveDir(values, 'repair')
      if (values.backup === undefined) throw new UsageError('repair needs --backup OUT: the directory is copied there first')
      const locked = async (cause?: unknown): Promise<never> => {
        throw new EvaqError('EVAQ_LOCKED', `${dir} is held by ${await holderOf(dir)}; repair needs the directory to itself: stop it first`, { cause })
      }
      // Before the copy to OUT: a held directory is refused with nothing written.
      if (await heldByAnotherProcess(dir)) await locked()
      const bar = progress(process.stdout, 'repair: checked', 'segments')
      const report = await repair(dir, values.backup as string, n => bar.update(n)).catch(async (err: unknown) => {
        if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
        return locked(err)
      })
      bar.done()
      if (values.json === true) console.log(JSON.stringify(report))
      else {
        console.log(`backup: ${report.backup}`)
        for (const log of Object.keys(report.fixed)) {
          const b = report.before.logs[log]
          const a = report.after.logs[log]
          const f = report.fixed[log]!
          const lost = f.ranges.map(r => r.firstId === r.lastId ? `${r.firstId}` : `${r.firstId}..${r.lastId}`).join(',')
          const lostIds = lost === '' ? '' : ` (IDs ${lost})`
          console.log(`${log}\trecords before ${f.before}, after ${f.after}, taken out ${f.before - f.after}${lostIds}` +
            `\tquarantined ${f.quarantinedSegments} segment(s), ${f.quarantinedRecords} record(s), lost ${f.lostRecords}` +
            `\tsummaries rewritten ${f.summariesRewritten}\t(readable before the repair: ${b?.records ?? '?'}, after: ${a?.records ?? '?'})`)
        }
        console.log(report.after.damaged ? 'still damaged: see `evaq check`' : 'ok')
      }
      return report.after.damaged ? 1 : 0
    },
  },
  backup: {
    options: { ...TARGET, out: { type: 'string' }, since: { type: 'string' }, ...S3_FLAGS, ...JSON_FLAG },
    run: (values, args) => {
      noArgs(args)
      return backupCommand(values)
    },
  },
  restore: {
    options: {
      from: { type: 'string', multiple: true }, data: { type: 'string' }, url: { type: 'string' }, verify: { type: 'boolean' }, ...S3_FLAGS, ...JSON_FLAG,
    },
    run: (values, args) => {
      noArgs(args)
      return restoreCommand(values)
    },
  },
  bench: {
    options: {
      ...valued('dir', 'seconds', 'concurrency', 'size', 'durability'),
      ...JSON_FLAG,
    },
    run: (values, args) => {
      noArgs(args)
      return import('./bench.js').then(m => m.bench(values as Record<string, string | boolean | undefined>))
    },
  },
}

/** `dlq` and `parked`: list, requeue (one level up: DLQ to WAL, parked to DLQ), purge. */
function retryLogCommand (log: 'dlq' | 'parked', target: string): Command {
  return {
    options: { ...TARGET, ...READ, all: { type: 'boolean' }, ...JSON_FLAG },
    run: (values, args) => {
      const [action, ...ids] = args
      switch (action) {
        case 'list': {
          noArgs(ids)
          const read = readFlags(values)
          return withTarget(values, async q => { await printRecords(q, log, values, read); return 0 })
        }
        case 'requeue':
        case 'purge': {
          const selection = select(values, ids, `${log} ${action}`)
          return withTarget(values, async q => {
            if (action === 'requeue') {
              const newIds = await q.requeue(log, selection)
              const listed = newIds.length > 0 ? `: IDs ${newIds.join(', ')}` : ''
              await writeOut(values.json === true ? `${JSON.stringify({ ids: newIds })}\n` : `requeued ${newIds.length} record(s) to ${target}${listed}\n`)
            } else {
              const purged = await q.purge(log, selection)
              await writeOut(values.json === true ? `${JSON.stringify({ purged })}\n` : `purged ${purged} record(s)\n`)
            }
            return 0
          })
        }
        default:
          throw new UsageError(`${log} takes list, requeue or purge`)
      }
    },
  }
}

/** The command being run, so that a usage error points to its help. */
let current: string | undefined

async function main (argv: string[]): Promise<number> {
  const first = argv[0]
  if (first === undefined) {
    console.log(GENERAL)
    return 2
  }
  if (first.startsWith('-')) {
    const { values, positionals } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } }, '')
    if (values.version === true) {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
      console.log(pkg.version)
      return 0
    }
    if (positionals.length > 1) throw new UsageError('the command comes first: evaq <command> [options]')
    console.log(positionals.length === 1 ? commandHelp(positionals[0]!) : GENERAL)
    return 0
  }
  if (first === 'help') {
    current = 'help'
    const { values, positionals: [topic, ...rest] } = parseFlags(argv.slice(1), HELP, 'help')
    noArgs(rest)
    console.log(values.help === true ? COMMAND_HELP.help : topic === undefined ? GENERAL : commandHelp(topic))
    return 0
  }
  const command = commandNamed(first)
  current = first
  const { values, positionals } = parseFlags(argv.slice(1), { ...HELP, ...command.options }, first)
  if (values.help === true) {
    console.log(COMMAND_HELP[first])
    return 0
  }
  return command.run(values, positionals)
}

function commandNamed (name: string): Command {
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (command !== undefined) return command
  const near = closest(name, [...Object.keys(COMMANDS), 'help'])
  throw new UsageError(`unknown command \`${name.slice(0, 40)}\`${near === undefined ? '' : `; did you mean ${near}?`}`)
}

function commandHelp (name: string): string {
  if (name !== 'help') commandNamed(name)
  return COMMAND_HELP[name]!
}

function logStats (stats: ServiceStats, log: string): LogStats {
  const s = (stats as unknown as Record<string, LogStats | undefined>)[log]
  if (s === undefined) throw new EvaqError('EVAQ_NOT_FOUND', `There is no log \`${log}\``)
  return s
}

function noArgs (args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument \`${args[0]}\``)
}

function logArg (args: readonly string[], command: string): string {
  if (args.length !== 1) throw new UsageError(`${command} takes a log name: wal, dlq or parked`)
  const log = args[0]!
  if (log !== 'wal' && log !== 'dlq' && log !== 'parked') throw new UsageError(`${command} takes a log name: wal, dlq or parked, got \`${log}\``)
  return log
}

function format (values: Values): void {
  if (values.format !== undefined && values.format !== 'ndjson') throw new UsageError(`the only --format is ndjson, got \`${String(values.format)}\``)
}

function select (values: Values, ids: readonly string[], command: string): number[] | 'all' {
  if (values.all === true && ids.length > 0) throw new UsageError(`${command} takes IDs or --all, not both`)
  if (values.all === true) return 'all'
  if (ids.length === 0) throw new UsageError(`${command} needs IDs or --all`)
  return idArgs(ids)
}

/** Run `task` on the queue of --data DIR (opened here, or through the service holding it) or on the service at --url. */
async function withTarget (values: Values, task: (q: Backend) => Promise<number>, options: { create?: boolean } = {}): Promise<number> {
  const q = await openTarget(values, options)
  try {
    return await task(q)
  } finally {
    await q.close()
  }
}

/** The read of `peek`, `dlq list` and `parked list`: its flags checked before the queue is opened. */
function readFlags (values: Values): { from: number, maxBytes: number, maxCount: number } {
  return {
    from: intFlag(values.from as string | undefined, '--from', 0),
    maxBytes: intFlag(values['max-bytes'] as string | undefined, '--max-bytes', 64 * 1024),
    maxCount: intFlag(values['max-count'] as string | undefined, '--max-count', 100, 1, 10_000),
  }
}

async function printRecords (q: Backend, log: string, values: Values, read: ReturnType<typeof readFlags>): Promise<void> {
  const records = await q.read(log, read)
  if (records.length > 0) await writeOut(records.map(r => values.json === true ? recordLine(r) : recordText(r)).join('\n') + '\n')
}

function printCheck (report: CheckReport, holder: string | undefined): void {
  if (report.status === 'locked') {
    console.log(`LOCKED: ${report.dir} is held by ${holder ?? 'another process'}; check needs the directory to itself: stop it first`)
    return
  }
  if (report.status === 'not-found') {
    console.log(`NOT FOUND: ${report.error?.message ?? report.dir}`)
    return
  }
  if (report.status === 'tiered') {
    console.log(`TIERED: ${report.error?.message ?? report.dir}`)
    return
  }
  if (!report.opened || report.error !== undefined) {
    console.log(`cannot check ${report.dir}: ${report.error?.code ?? ''} ${report.error?.message ?? ''}`)
  }
  for (const [log, l] of Object.entries(report.logs)) {
    console.log(`${log}\t${l.segments} segment(s), ${l.records} record(s), ${l.bytes} bytes` +
      `\tdamaged: ${l.badSegments} segment(s), ${l.badRecords} record(s)\tinconsistencies ${l.inconsistencies}` +
      `${l.unreadable ? '\tUNREADABLE' : ''}\tcounted ${l.counted.records}\tquarantined ${l.quarantined}`)
  }
  if (report.subscribers.bad > 0) console.log(`subscribers: ${report.subscribers.bad} damaged`)
  for (const line of report.engine) console.log(`leveldb: ${line}`)
  console.log(report.damaged ? 'DAMAGED' : 'ok')
}

function usage (message: string, command: string | undefined): number {
  const help = command === undefined || command === '' ? 'evaq help' : `evaq ${command} --help`
  console.error(`evaq: ${message}\n(see \`${help}\`)`)
  return 2
}

main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
  if (err instanceof UsageError) {
    process.exitCode = usage(err.message, err.command ?? current)
  } else if (isEvaqError(err)) {
    console.error(`evaq: ${err.code}: ${err.message}`)
    process.exitCode = err.code === 'EVAQ_INVALID_ARGUMENT' ? 2 : 1
  } else if (typeof (err as NodeJS.ErrnoException).syscall === 'string') {
    // A file the command was given cannot be read or written: one line, not the error object.
    const e = err as NodeJS.ErrnoException
    console.error(`evaq: ${e.code ?? 'error'}: ${e.message}`)
    process.exitCode = 1
  } else {
    console.error(err)
    process.exitCode = 1
  }
})
