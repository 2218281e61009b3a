/**
 * Where the built `evaq` binary finds its queue, in child processes run in a temporary working
 * directory: `--data` defaults to ./data; while `evaq serve` holds the directory every command
 * given it goes through that service (EVAQ-SERVICE), with --token or EVAQ_TOKEN; the commands that
 * need the directory to themselves say who holds it; read-only commands never create a queue.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Evaq } from '../../src/index.js'
import { background, BIN, type Run } from '../fixtures/cli.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }

test.before(async () => {
  await stat(BIN).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

/** `evaq args...` in `cwd`. */
function evaqIn (cwd: string, args: readonly string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, EVAQ_TOKEN: undefined, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }) })
    child.stdin.end('')
  })
}

/** A working directory whose ./data holds WAL 1..3 and a DLQ record. */
async function workdir (t: ExecutionContext): Promise<string> {
  const cwd = await tmpDir(t, 'evaq-cli-data-')
  const q = await Evaq.open(join(cwd, 'data'), OPTIONS)
  await q.pushWalMany(['a', 'b', 'c'])
  await q.pushRetryItem('d', { error: 'down' })
  await q.close()
  return cwd
}

async function list (dir: string): Promise<string[] | undefined> {
  return readdir(dir).then(names => names.sort(), () => undefined)
}

const READ_ONLY: string[][] = [
  ['stats'], ['peek', 'wal'], ['tail', 'wal', '--count', '1'], ['subscribers'], ['dlq', 'list'], ['parked', 'list'], ['export', 'wal'],
  ['dlq', 'purge', '--all'], ['backup', '--out', 'b.evaq'],
]

test('--data defaults to ./data: read from it; import creates it; the read-only commands never do', async t => {
  const cwd = await workdir(t)
  const stats = await evaqIn(cwd, ['stats', '--json'])
  t.is(stats.code, 0, stats.stderr)
  t.is(JSON.parse(stats.stdout).wal.count, 3)
  const peek = await evaqIn(cwd, ['peek', 'dlq', '--json'])
  t.is(JSON.parse(peek.stdout).id, 1)

  const empty = await tmpDir(t, 'evaq-cli-data-')
  for (const args of READ_ONLY) {
    const run = await evaqIn(empty, args)
    t.is(run.code, 1, `${args.join(' ')}: ${run.stderr}`)
    t.true(run.stderr.startsWith('evaq: EVAQ_NOT_FOUND'), `${args.join(' ')}: ${run.stderr}`)
  }
  t.deepEqual(await list(empty), [], 'nothing created')
  // An empty ./data (just made by hand) is no queue either, and stays empty.
  await mkdir(join(empty, 'data'))
  for (const args of [...READ_ONLY, ['check']]) {
    const run = await evaqIn(empty, args)
    t.is(run.code, args[0] === 'check' ? 4 : 1, `${args.join(' ')}: ${run.stderr}`)
  }
  t.deepEqual(await list(join(empty, 'data')), [], 'still empty')

  const imported = await evaqIn(empty, ['import', 'wal', '--json'], {})
  t.is(imported.code, 0, imported.stderr)
  t.true((await list(join(empty, 'data')))!.includes('CURRENT'), 'import created the queue in ./data')
})

test('a data directory that is a file, or holds other things, is refused (EVAQ_INVALID_ARGUMENT) and nothing is written', async t => {
  const cwd = await tmpDir(t, 'evaq-cli-data-')
  await writeFile(join(cwd, 'file'), 'mine')
  await mkdir(join(cwd, 'notes'))
  await writeFile(join(cwd, 'notes', 'todo.txt'), 'mine')
  for (const dir of ['file', 'notes']) {
    for (const args of [['stats'], ['import', 'wal'], ['serve', '--port', '0'], ['backup', '--out', 'x.evaq']]) {
      const run = await evaqIn(cwd, [...args, '--data', dir])
      t.is(run.code, 2, `${args.join(' ')} --data ${dir}: ${run.stderr}`)
      t.true(run.stderr.startsWith('evaq: EVAQ_INVALID_ARGUMENT'), `${args.join(' ')} --data ${dir}: ${run.stderr}`)
      t.is(run.stderr.trimEnd().split('\n').length, 1)
    }
  }
  t.is(await readFile(join(cwd, 'file'), 'utf8'), 'mine')
  t.deepEqual(await list(join(cwd, 'notes')), ['todo.txt'])
  t.deepEqual(await list(cwd), ['file', 'notes'])
})

test('export --out onto an existing file is refused in one line, the file untouched; interrupted, an export leaves nothing', async t => {
  const cwd = await workdir(t)
  await writeFile(join(cwd, 'out.ndjson'), 'keep')
  const run = await evaqIn(cwd, ['export', 'wal', '--out', 'out.ndjson'])
  t.is(run.code, 2, run.stderr)
  t.true(run.stderr.startsWith('evaq: EVAQ_INVALID_ARGUMENT'), run.stderr)
  t.is(run.stderr.trimEnd().split('\n').length, 1)
  t.is(await readFile(join(cwd, 'out.ndjson'), 'utf8'), 'keep')

  // 1,500 records: two pages; SIGINT after the first.
  const q = await Evaq.open(join(cwd, 'data'), OPTIONS)
  await q.pushWalMany(Array.from({ length: 1500 }, (_, i) => `r${i}`))
  await q.close()
  const crash = { EVAQ_CRASH_POINT: 'export:page', EVAQ_CRASH_SIGNAL: 'SIGINT' }
  const toFile = await evaqIn(cwd, ['export', 'wal', '--out', 'all.ndjson'], crash)
  t.is(toFile.code, 130, toFile.stderr)
  t.regex(toFile.stderr, /interrupted \(SIGINT\)/)
  t.deepEqual(await list(cwd), ['data', 'out.ndjson'], 'no file, no temporary file')
  const toStdout = await evaqIn(cwd, ['export', 'wal'], { ...crash, EVAQ_CRASH_SIGNAL: 'SIGTERM' })
  t.is(toStdout.code, 143, toStdout.stderr)
  const lines = toStdout.stdout.trimEnd().split('\n')
  t.is(lines.length, 1000, 'the first page, whole')
  t.regex(toStdout.stderr, /1000 record\(s\) of wal were written to stdout, through ID 1000/)
  const whole = await evaqIn(cwd, ['export', 'wal', '--out', 'all.ndjson'])
  t.is(whole.code, 0, whole.stderr)
  t.is((await readFile(join(cwd, 'all.ndjson'), 'utf8')).trimEnd().split('\n').length, 1503)
})

test('while `evaq serve` holds ./data: every command goes through it (with the token); check and repair name it; a second serve too', async t => {
  const cwd = await workdir(t)
  const token = 'sesame'
  const service = await background(t, process.execPath, [BIN, 'serve', '--port', '0', '--token', token], { cwd })
  const file = JSON.parse(await readFile(join(cwd, 'data', 'EVAQ-SERVICE'), 'utf8')) as { url: string, pid: number }
  t.is(file.pid, service.child.pid!)

  for (const env of [{ EVAQ_TOKEN: token }, {}]) {
    const args = env.EVAQ_TOKEN === undefined ? ['--token', token] : []
    const stats = await evaqIn(cwd, ['stats', '--json', ...args], env)
    t.is(stats.code, 0, stats.stderr)
    t.is(JSON.parse(stats.stdout).wal.count, 3)
    t.true(stats.stderr.includes(service.url), 'it says it goes through the service')
  }
  const ops: Array<[string[], (r: Run) => void]> = [
    [['peek', 'wal', '--json', '--max-count', '2'], r => t.deepEqual(r.stdout.trimEnd().split('\n').map(l => JSON.parse(l).id), [1, 2])],
    [['subscribers', '--json'], r => t.deepEqual(JSON.parse(r.stdout), [])],
    [['export', 'wal'], r => t.is(r.stdout.trimEnd().split('\n').length, 3)],
    [['dlq', 'requeue', '1', '--json'], r => t.deepEqual(JSON.parse(r.stdout).ids, [4])],
    [['tail', 'wal', '--from', '1', '--count', '4', '--json'], r => t.is(r.stdout.trimEnd().split('\n').length, 4)],
    [['backup', '--out', 'b.evaq', '--json'], r => t.is(JSON.parse(r.stdout).file, 'b.evaq')],
  ]
  for (const [args, expect] of ops) {
    const run = await evaqIn(cwd, args, { EVAQ_TOKEN: token })
    t.is(run.code, 0, `${args.join(' ')}: ${run.stderr}`)
    expect(run)
  }
  const imported = await evaqIn(cwd, ['import', 'wal', '--json'], { EVAQ_TOKEN: token })
  t.is(imported.code, 0, imported.stderr)
  // Without the token the service refuses, and the command says so.
  const refused = await evaqIn(cwd, ['stats'])
  t.is(refused.code, 1)
  t.true(refused.stderr.includes('EVAQ_UNAUTHORIZED'), refused.stderr)

  const check = await evaqIn(cwd, ['check', '--json'])
  t.is(check.code, 3, check.stderr)
  const report = JSON.parse(check.stdout) as { status: string, holder?: { url: string, pid: number } }
  t.is(report.status, 'locked')
  t.deepEqual(report.holder, { url: service.url, pid: service.child.pid })
  const checkText = await evaqIn(cwd, ['check'])
  t.is(checkText.code, 3)
  t.true(checkText.stdout.startsWith('LOCKED') && checkText.stdout.includes(`pid ${service.child.pid!}`), checkText.stdout)

  const repair = await evaqIn(cwd, ['repair', '--backup', 'bak'])
  t.is(repair.code, 1)
  t.true(repair.stderr.startsWith('evaq: EVAQ_LOCKED') && repair.stderr.includes(`pid ${service.child.pid!}`), repair.stderr)
  t.false((await list(cwd))!.includes('bak'), 'nothing copied to --backup')

  const second = await evaqIn(cwd, ['serve', '--port', '0'])
  t.is(second.code, 1)
  t.true(second.stderr.startsWith('evaq: EVAQ_LOCKED'), second.stderr)
  t.true(second.stderr.includes(service.url) && second.stderr.includes(`pid ${service.child.pid!}`), second.stderr)

  t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })
  const after = await evaqIn(cwd, ['stats', '--json'])
  t.is(JSON.parse(after.stdout).wal.count, 4, 'the requeued record is in the WAL, read from the directory again')
})

test('serve on a port in use is refused before the data directory is opened or created', async t => {
  const cwd = await tmpDir(t, 'evaq-cli-data-')
  const blocker = createServer()
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as AddressInfo).port
  const run = await evaqIn(cwd, ['serve', '--port', String(port), '--data', 'fresh'])
  t.is(run.code, 2, run.stderr)
  t.true(run.stderr.startsWith('evaq: EVAQ_INVALID_ARGUMENT'), run.stderr)
  t.deepEqual(await list(cwd), [], 'no data directory created')
})

test('backup interrupted (SIGINT, SIGTERM) leaves no archive and no partial file, and says so', async t => {
  const cwd = await workdir(t)
  // Many segments: an archive of many chunks, so that the signal comes while it is written.
  const q = await Evaq.open(join(cwd, 'data'), OPTIONS)
  for (let i = 0; i < 20; i++) await q.pushWalMany(Array.from({ length: 200 }, () => Buffer.alloc(1024, i)))
  await q.close()
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const run = await evaqIn(cwd, ['backup', '--out', 'b.evaq'], { EVAQ_CRASH_POINT: 'backup:chunk', EVAQ_CRASH_SIGNAL: signal })
    t.is(run.code, signal === 'SIGINT' ? 130 : 143, run.stderr)
    t.regex(run.stderr, new RegExp(`backup interrupted \\(${signal}\\)`))
    t.deepEqual(await list(cwd), ['data'], 'nothing beside the queue')
  }
  const whole = await evaqIn(cwd, ['backup', '--out', 'b.evaq'])
  t.is(whole.code, 0, whole.stderr)
})
