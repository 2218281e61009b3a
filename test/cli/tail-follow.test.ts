/**
 * `evaq tail LOG --follow --subscriber NAME --url URL` (the built binary, in a child process)
 * against a service: it prints records as the change stream delivers them and acks each once
 * printed; with a token; and its usage errors.
 */
import test from 'ava'
import { spawn } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { BIN, evaq, serveInBackground } from '../fixtures/cli.js'
import { send, startServer, type TestServer } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

test.before(async () => {
  await stat(BIN).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function subscriber (s: TestServer, name: string): Promise<{ ackFloor: number, inFlight: number } | undefined> {
  return (await s.evaq.wal.stats()).subscribers.find(x => x.name === name)
}

test('tail --follow prints records pushed before and after it started, and acks each', async t => {
  const s = await startServer(t)
  // An existing subscriber resumes where it is: 1 and 2 are waiting for it.
  await s.json('PUT', '/v1/logs/wal/subscribers/cli', { start: 'earliest' })
  await s.json('POST', '/v1/logs/wal/records', [b64('first'), b64('second')])
  const child = spawn(process.execPath, [BIN, 'tail', 'wal', '--follow', '--subscriber', 'cli', '--url', s.url, '--count', '4', '--json'],
    { env: { ...process.env, EVAQ_TOKEN: undefined }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const lines = (): string[] => stdout.split('\n').filter(l => l !== '')
  let printedTwo: () => void
  const two = new Promise<void>(resolve => { printedTwo = resolve })
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; if (lines().length >= 2) printedTwo() })
  const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
  await two
  await s.json('POST', '/v1/logs/wal/records', [b64('third'), b64('fourth')])
  t.is(await exited, 0, stderr)
  const records = lines().map(l => JSON.parse(l) as { id: number, payload: string })
  t.deepEqual(records.map(r => r.id), [1, 2, 3, 4])
  t.deepEqual(records.map(r => Buffer.from(r.payload, 'base64').toString()), ['first', 'second', 'third', 'fourth'])
  const after = await subscriber(s, 'cli')
  t.is(after?.ackFloor, 5, 'every printed record was acked')
  t.is(after?.inFlight, 0)
})

test('tail --follow creates a missing subscriber at the next record pushed (or --from), and goes with a token', async t => {
  const s = await startServer(t, { token: 'tok' })
  const auth = { authorization: 'Bearer tok' }
  await s.json('POST', '/v1/logs/wal/records', [b64('old')], auth)
  const noToken = await evaq(['tail', 'wal', '--follow', '--subscriber', 'new', '--url', s.url, '--count', '1'])
  t.is(noToken.code, 1)
  t.regex(noToken.stderr, /EVAQ_UNAUTHORIZED/)
  const run = evaq(['tail', 'wal', '--follow', '--subscriber', 'new', '--url', s.url, '--count', '1'], { env: { EVAQ_TOKEN: 'tok' } })
  // It prints the next record pushed, not the old one.
  while ((await subscriber(s, 'new')) === undefined) await new Promise(resolve => setTimeout(resolve, 20))
  await s.json('POST', '/v1/logs/wal/records', [b64('new one')], auth)
  const done = await run
  t.is(done.code, 0, done.stderr)
  t.regex(done.stdout, /^2\t\S+\t"new one"\n$/)
  const fromOne = await evaq(['tail', 'wal', '--follow', '--subscriber', 'replay', '--from', '1', '--url', s.url, '--token', 'tok', '--count', '2'])
  t.is(fromOne.code, 0, fromOne.stderr)
  t.deepEqual(fromOne.stdout.split('\n').filter(l => l !== '').map(l => l.split('\t')[0]), ['1', '2'])
})

test('tail --follow: usage errors exit 2', async t => {
  for (const args of [['--follow', '--url', 'http://127.0.0.1:1'], ['--subscriber', 'x', '--url', 'http://127.0.0.1:1'],
    ['--follow', '--subscriber', 'x', '--url', 'http://127.0.0.1:1', '--data', '.']]) {
    const run = await evaq(['tail', 'wal', ...args])
    t.is(run.code, 2, args.join(' '))
  }
})

test('tail --follow without --url reads the service that serves --data, and says so when none does', async t => {
  const dir = join(await tmpDir(t, 'evaq-follow-'), 'q')
  const none = await evaq(['tail', 'wal', '--follow', '--subscriber', 'x', '--data', dir])
  t.is(none.code, 1)
  t.regex(none.stderr, /EVAQ_NOT_FOUND/)
  const service = await serveInBackground(t, ['--data', dir])
  const run = evaq(['tail', 'wal', '--follow', '--subscriber', 'x', '--from', '1', '--data', dir, '--count', '1', '--json'])
  const pushed = await send(service.url, 'POST', '/v1/logs/wal/records', { headers: { 'content-type': 'application/octet-stream' }, body: 'via EVAQ-SERVICE' })
  t.deepEqual(pushed.json, { ids: [1] })
  const done = await run
  t.is(done.code, 0, done.stderr)
  t.is(Buffer.from((JSON.parse(done.stdout) as { payload: string }).payload, 'base64').toString(), 'via EVAQ-SERVICE')
})

test('tail --follow ends on SIGINT (Ctrl-C) with exit code 0', async t => {
  const s = await startServer(t)
  const child = spawn(process.execPath, [BIN, 'tail', 'wal', '--follow', '--subscriber', 'sig', '--url', s.url],
    { env: { ...process.env, EVAQ_TOKEN: undefined }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
  // Streaming: the subscriber exists and the service holds its stream open.
  while ((await subscriber(s, 'sig')) === undefined || s.service.longPolls === 0) await new Promise(resolve => setTimeout(resolve, 20))
  child.kill('SIGINT')
  t.is(await exited, 0)
  while (s.service.longPolls > 0) await new Promise(resolve => setTimeout(resolve, 20))
  t.pass()
})

for (const follow of [false, true]) {
  test(`tail${follow ? ' --follow' : ''} interrupted says how many records it printed, through which ID`, async t => {
    const s = await startServer(t)
    await s.json('POST', '/v1/logs/wal/records', [b64('one')])
    const args = ['tail', 'wal', '--from', '1', '--url', s.url, ...(follow ? ['--follow', '--subscriber', 'int'] : [])]
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, EVAQ_TOKEN: undefined }, stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { child.kill('SIGKILL') })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const printed = new Promise<void>(resolve => child.stdout.setEncoding('utf8').once('data', () => resolve()))
    const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
    await printed
    // --follow acks after printing: wait for the ack, so that the count includes it.
    if (follow) while ((await subscriber(s, 'int'))?.ackFloor !== 2) await new Promise(resolve => setTimeout(resolve, 20))
    child.kill('SIGINT')
    t.is(await exited, 0, stderr)
    t.regex(stderr, /interrupted: 1 record\(s\) printed.*through ID 1\n$/)
  })
}
