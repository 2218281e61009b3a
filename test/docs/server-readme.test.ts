/**
 * The service's curl examples are run as written: the walk-through in docs/http-api.md ("Run it as
 * a service") and the short one in the README ("The service"). Every `curl` line of a tested block
 * goes to a fresh `evaq serve` (the host and port swapped for the test's), and its output must be
 * the comment lines that follow it. Times and messages are not compared (they change from run to
 * run; codes and data are).
 */
import anyTest from 'ava'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { serveInBackground } from '../fixtures/cli.js'
import { requiring } from '../helpers/prerequisites.js'
import { tmpDir } from '../helpers/tmp.js'

const test = requiring(anyTest, import.meta.url, 'curl')

interface Example { command: string, expected: string }

/** The curl lines of the first `sh` block after the "tested" note in `heading`'s section of `file`, each with the comment lines right after it. */
async function examples (file: string, heading: string): Promise<Example[]> {
  const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8')
  const at = text.indexOf(`\n${heading}\n`)
  if (at === -1) throw new Error(`${file}: no section "${heading}"`)
  const section = text.slice(at)
  const note = section.indexOf('test/docs/server-readme.test.ts')
  if (note === -1) throw new Error(`${file}: the "${heading}" section has no block marked as tested`)
  const start = section.indexOf('```sh\n', note) + '```sh\n'.length
  const block = section.slice(start, section.indexOf('\n```', start))
  const out: Example[] = []
  let current: Example | undefined
  for (const line of block.split('\n')) {
    if (/^(printf .*\| )?curl /.test(line)) {
      current = { command: line, expected: '' }
      out.push(current)
    } else if (current !== undefined && line.startsWith('# ')) {
      current.expected += (current.expected === '' ? '' : '\n') + line.slice(2)
    } else {
      current = undefined
    }
  }
  return out
}

const VARIABLE = new Set(['pushedAt', 'lastActiveAt', 'oldestUnackedAgeMs', 'firstFailedAt', 'lastFailedAt', 'nextAttemptAt', 'message'])

function normalize (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, VARIABLE.has(k) ? typeof v : normalize(v)]))
}

function sh (command: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile('/bin/sh', ['-c', command], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

const BLOCKS = [
  { file: 'docs/http-api.md', heading: '## Run it as a service', atLeast: 10 },
  { file: 'README.md', heading: '## The service', atLeast: 4 },
]

for (const { file, heading, atLeast } of BLOCKS) {
  test(`every curl example of ${file} "${heading.slice(3)}" gives the output it shows`, async t => {
    const list = await examples(file, heading)
    t.true(list.length >= atLeast, `the block has ${list.length} curl examples`)
    const service = await serveInBackground(t, ['--data', join(await tmpDir(t, 'evaq-readme-'), 'data')])
    const hostPort = new URL(service.url).host
    for (const { command, expected } of list) {
      t.true(command.includes('localhost:7070'), `${command}: aims at the default address`)
      const run = await sh(command.replaceAll('localhost:7070', hostPort))
      t.is(run.code, 0, `${command}: ${run.stderr}`)
      const got = run.stdout.trimEnd()
      let want: unknown
      try {
        want = JSON.parse(expected)
      } catch {
        t.is(got, expected, command)
        continue
      }
      t.deepEqual(normalize(JSON.parse(got)), normalize(want), command)
    }
    t.is((await service.stop()).code, 0)
  })
}
