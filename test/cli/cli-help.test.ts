/**
 * The built `evaq` binary's help and usage errors, in child processes: help per command (`evaq
 * help X`, `evaq X --help`), every line within 80 columns, usage errors in at most two lines
 * with the nearest flag or command, and negative numbers taken as values.
 */
import test from 'ava'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { evaq } from '../fixtures/cli.js'
import { tmpDir } from '../helpers/tmp.js'

const COMMANDS = ['serve', 'stats', 'peek', 'tail', 'subscribers', 'dlq', 'parked', 'export', 'import', 'check', 'repair', 'backup', 'restore', 'bench', 'help']

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

function wide (text: string): string[] {
  return text.split('\n').filter(line => line.length > 80)
}

test('evaq help, --help and -h: the general help, every command listed, within 80 columns, exit 0', async t => {
  for (const args of [['help'], ['--help'], ['-h']]) {
    const run = await evaq(args)
    t.is(run.code, 0, args.join(' '))
    t.is(run.stderr, '')
    t.deepEqual(wide(run.stdout), [], `${args.join(' ')}: lines over 80 columns`)
    for (const command of COMMANDS.filter(c => c !== 'help')) t.regex(run.stdout, new RegExp(`^  ${command}\\b`, 'm'), `${args.join(' ')} lists ${command}`)
  }
})

test('help for each command: `evaq help X`, `evaq X --help` and `evaq X -h` print the same text, its own, within 80 columns', async t => {
  const texts = new Set<string>()
  for (const command of COMMANDS) {
    const runs = await Promise.all([['help', command], [command, '--help'], [command, '-h'], ['--help', command]].map(args => evaq(args)))
    for (const run of runs) {
      t.is(run.code, 0, `${command}: ${run.stderr}`)
      t.is(run.stdout, runs[0]!.stdout, `${command}: the same text every way`)
    }
    const text = runs[0]!.stdout
    t.true(text.startsWith(`Usage: evaq ${command}`), `${command}: ${text.slice(0, 80)}`)
    t.deepEqual(wide(text), [], `${command}: lines over 80 columns`)
    texts.add(text)
  }
  t.is(texts.size, COMMANDS.length, 'each command has its own help')
})

/** A usage error: exit 2, nothing on stdout, one or two lines on stderr. */
async function usageError (t: import('ava').ExecutionContext, args: string[]): Promise<string> {
  const run = await evaq(args)
  t.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`)
  t.is(run.stdout, '', args.join(' '))
  const lines = run.stderr.trimEnd().split('\n')
  t.true(lines.length >= 1 && lines.length <= 2, `${args.join(' ')}: ${lines.length} lines: ${run.stderr.slice(0, 300)}`)
  return run.stderr
}

test('usage errors are at most two lines, exit 2; unknown flags and commands name the nearest one', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-help-'), 'q')
  t.regex(await usageError(t, ['stats', '--jsn', '--data', dir]), /--json\b/)
  t.regex(await usageError(t, ['peek', 'wal', '--max-cont', '5', '--data', dir]), /--max-count\b/)
  t.regex(await usageError(t, ['stts']), /\bstats\b/)
  t.regex(await usageError(t, ['exprot', 'wal']), /\bexport\b/)
  t.regex(await usageError(t, ['help', 'chek']), /\bcheck\b/)
  // Nothing near: no suggestion, still short.
  t.notRegex(await usageError(t, ['frobnicate']), /did you mean/)
  for (const args of [['peek', '--data', dir], ['peek', 'queue', '--data', dir], ['stats', '--data'], ['stats', '--json=1'],
    ['dlq', 'frob', '--data', dir], ['repair', '--data', dir], ['stats', '-x'], ['--data', dir, 'stats']]) {
    await usageError(t, args)
  }
})

test('negative numbers are values: the command says its own range (EVAQ_INVALID_ARGUMENT, exit 2), before opening anything', async t => {
  const dir = join(await tmpDir(t, 'evaq-cli-help-'), 'q')
  const q = await Evaq.open(dir, { minFreeDiskBytes: 0 })
  await q.pushWal('x')
  await q.close()
  const missing = join(dir, 'missing')
  for (const d of [dir, missing]) {
    for (const args of [['peek', 'wal', '--max-count', '-1'], ['peek', 'wal', '--from', '-5'], ['dlq', 'list', '--max-bytes', '-1'],
      ['export', 'wal', '--from', '-2'], ['tail', 'wal', '--count', '-3'], ['dlq', 'requeue', '-1']]) {
      const run = await evaq([...args, '--data', d])
      t.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`)
      t.true(run.stderr.startsWith('evaq: EVAQ_INVALID_ARGUMENT'), `${args.join(' ')}: ${run.stderr}`)
      t.is(run.stderr.trimEnd().split('\n').length, 1)
    }
  }
  // And a valid value after them still works.
  const ok = await evaq(['peek', 'wal', '--max-count=1', '--json', '--data', dir])
  t.is(ok.code, 0, ok.stderr)
  t.is(JSON.parse(ok.stdout).id, 1)
})
