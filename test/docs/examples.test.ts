/**
 * The README's examples run as a newcomer runs them: each in its own data directory (never
 * ./data, which `npm start` serves), or in EVAQ_DATA; and a directory another process holds gets
 * one clear line and exit 1, not a stack trace.
 */
import test from 'ava'
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Evaq } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** tsx by path: the tests run an example from a directory outside the project too. */
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href

interface Run { code: number | null, stdout: string, stderr: string }

/** `npx tsx examples/NAME.ts` from `cwd`, with `env` added. */
function example (name: string, cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'examples', `${name}.ts`)], {
      cwd,
      env: { ...process.env, EVAQ_DATA: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

test('quickstart runs in a directory of its own and leaves nothing behind', async t => {
  const cwd = await tmpDir(t, 'evaq-example-cwd-')
  const r = await example('quickstart', cwd)
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /: 0 message\(s\) left in the WAL by an earlier run, next ID 1\n/)
  t.regex(r.stdout, /after reopen: WAL 1 record\(s\), \d+ bytes; DLQ 3 record\(s\)/)
  t.deepEqual(await readdir(cwd), [], 'no ./data (or anything else) in the working directory')
})

test('quickstart with EVAQ_DATA keeps the queue, and a second run finds what the first left', async t => {
  const dir = join(await tmpDir(t, 'evaq-example-'), 'q')
  const first = await example('quickstart', ROOT, { EVAQ_DATA: dir })
  t.is(first.code, 0, first.stderr)
  const second = await example('quickstart', ROOT, { EVAQ_DATA: dir })
  t.is(second.code, 0, second.stderr)
  t.regex(second.stdout, /: 1 message\(s\) left in the WAL by an earlier run, next ID 11\n/)
})

for (const name of ['quickstart', 'retry-daemon']) {
  test(`${name} on a directory another process holds: one line naming EVAQ_LOCKED, exit 1`, async t => {
    const dir = await tmpDir(t, 'evaq-example-locked-')
    const holder = await Evaq.open(dir)
    t.teardown(() => holder.close())
    const r = await example(name, ROOT, { EVAQ_DATA: dir })
    t.is(r.code, 1)
    t.is(r.stdout.trim().split('\n').filter(l => l !== '' && !l.startsWith('DLQ')).length, 0)
    const lines = r.stderr.trim().split('\n')
    t.is(lines.length, 1, r.stderr)
    t.true(lines[0]!.includes('EVAQ_LOCKED') && lines[0]!.includes(dir))
  })
}

test('retry-daemon drains its DLQ: every message delivered or parked', async t => {
  const r = await example('retry-daemon', ROOT)
  t.is(r.code, 0, r.stderr)
  const m = /(\d+) delivered, \d+ rescheduled, (\d+) parked as permanent \(HTTP 400\), (\d+) parked after/.exec(r.stdout)
  t.truthy(m, r.stdout)
  t.is(Number(m![1]) + Number(m![2]) + Number(m![3]), 200)
  t.regex(r.stdout, /now: DLQ 0, parked \d+/)
})
