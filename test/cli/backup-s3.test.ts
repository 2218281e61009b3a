/**
 * `evaq backup --out s3://…` and `evaq restore --from s3://…` from the built binary (dist/), in
 * child processes, against a real S3-compatible server (s3rver on loopback, test/helpers/s3.ts).
 * Credentials come from the environment (the AWS SDK's default chain), and the instance metadata
 * service is turned off, so that no child ever reaches beyond loopback.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readdir, readFile, stat } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import { join } from 'node:path'
import { ArchiveReader } from '../../src/backup/archive-reader.js'
import { Evaq } from '../../src/index.js'
import { placeOf } from '../../src/store/snapshot.js'
import { BIN, evaq, serveInBackground, type Run } from '../fixtures/cli.js'
import { S3Server } from '../helpers/s3.js'
import { readAll } from '../helpers/read-all.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }
const TOKEN = 'cli-backup-s3-token'
/** The children's environment: s3rver's keys, no instance metadata, no profile or region of the machine. */
const ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_SESSION_TOKEN: undefined,
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_PROFILE: undefined,
  AWS_REGION: undefined,
  AWS_CONFIG_FILE: '/nonexistent',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
}

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

function s3Flags (server: S3Server, endpoint = server.endpoint): string[] {
  return ['--s3-endpoint', endpoint, '--s3-force-path-style']
}

function run (args: readonly string[]): Promise<Run> {
  return evaq(args, { env: ENV })
}

function ok (t: ExecutionContext, r: Run, what: string): string {
  t.is(r.code, 0, `${what}: exit 0 (stderr: ${r.stderr.slice(0, 400)})`)
  return r.stdout
}

/** The code an evaq error printed (`evaq: CODE: message` on stderr). */
function errorCode (r: Run): string | undefined {
  return /^evaq: (EVAQ_[A-Z_]+):/m.exec(r.stderr)?.[1]
}

/** A closed queue: WAL 1..4 (2 removed), DLQ 1..2 with errors, a subscriber. */
async function fixture (root: string): Promise<string> {
  const dir = join(root, 'q')
  const q = await Evaq.open(dir, OPTIONS)
  try {
    await q.pushWalMany(['w1', Buffer.from([0, 255, 10]), 'w3', Buffer.alloc(4000, 'z')])
    await q.removeWal(2)
    await q.pushRetryItem('poison', { error: { code: 'E_REFUSED', message: 'refused' } })
    await q.pushRetryItem('later', { error: 'down', attempts: 3 })
    const sub = await q.wal.subscribe('reader')
    await (await sub.next({ maxCount: 1 }))!.ack()
  } finally {
    await q.close()
  }
  return dir
}

/** Changes after a full backup: removals, new records (one large), a DLQ record done. */
async function change (dir: string): Promise<void> {
  const q = await Evaq.open(dir, OPTIONS)
  try {
    await q.removeWal([1, 3])
    await q.pushWalMany(['n1', randomBytes(300_000)])
    await q.doneRetryItems([1])
  } finally {
    await q.close()
  }
}

/** What the commands show of a directory: records of every log byte for byte, counts, subscribers' progress. */
async function view (t: ExecutionContext, dir: string): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const log of ['wal', 'dlq', 'parked']) out[log] = ok(t, await evaq(['peek', log, '--json', '--max-bytes', '10000000', '--data', dir]), `peek ${log}`)
  const stats = JSON.parse(ok(t, await evaq(['stats', '--json', '--data', dir]), 'stats')) as Record<string, { count: number, bytes: number, nextId: number }>
  for (const log of ['wal', 'dlq', 'parked']) out[`${log} stats`] = { count: stats[log]!.count, bytes: stats[log]!.bytes, nextId: stats[log]!.nextId }
  const subscribers = ok(t, await evaq(['subscribers', '--json', '--data', dir]), 'subscribers')
  out.subscribers = (JSON.parse(subscribers) as Array<{ log: string, name: string, ackFloor: number }>).map(s => [s.log, s.name, s.ackFloor])
  return out
}

/** The stored bytes of `key` (read from the server's directory, not through it). */
function stored (server: S3Server, key: string): Promise<Buffer> {
  return readFile(join(server.dir, server.bucket, `${key}._S3rver_object`))
}

/** A proxy in front of the server that counts the body bytes of its GET answers. */
async function countingProxy (t: ExecutionContext, server: S3Server): Promise<{ endpoint: string, gets: () => number, bytes: () => number }> {
  let gets = 0
  let bytes = 0
  const proxy: Server = createServer((req, res) => {
    const up = request({ host: '127.0.0.1', port: server.port, method: req.method, path: req.url, headers: req.headers }, answer => {
      res.writeHead(answer.statusCode!, answer.headers)
      if (req.method === 'GET') {
        gets++
        answer.on('data', (c: Buffer) => { bytes += c.byteLength })
      }
      answer.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  t.teardown(() => new Promise<void>(resolve => { proxy.closeAllConnections(); proxy.close(() => resolve()) }))
  const { port } = proxy.address() as { port: number }
  return { endpoint: `http://127.0.0.1:${port}`, gets: () => gets, bytes: () => bytes }
}

test('full backup to s3://, incremental with --since s3:// (only the head read), restore of the chain equals the source; files and objects mix', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await fixture(root)
  const s3 = s3Flags(server)
  const full = JSON.parse(ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/backups/full.evaq', ...s3, '--json']), 'full backup')) as {
    file: string
    bytes: number
    manifest: { kind: string, id: string }
  }
  t.is(full.file, 's3://evaq/backups/full.evaq')
  t.is(full.manifest.kind, 'full')
  t.is((await stored(server, 'backups/full.evaq')).byteLength, full.bytes)
  t.deepEqual(await readdir(root), ['q'], 'nothing written locally')
  t.deepEqual(await server.keys(), ['backups/full.evaq'])

  await change(dir)
  // A large base in the bucket (a record of 300 KB), then --since it through a proxy that counts
  // what the server sends: the head of the base, not all of it.
  ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/backups/large.evaq', ...s3]), 'a large full backup')
  const largeBytes = (await stored(server, 'backups/large.evaq')).byteLength
  t.true(largeBytes > 300_000)
  const proxy = await countingProxy(t, server)
  ok(t, await run(['backup', '--data', dir, '--out', join(root, 'on-large.evaq'), '--since', 's3://evaq/backups/large.evaq', ...s3Flags(server, proxy.endpoint)]),
    'incremental --since s3:// through the proxy')
  t.true(proxy.gets() >= 1)
  t.true(proxy.bytes() < 128 * 1024, `--since read ${proxy.bytes()} of ${largeBytes} bytes`)

  const inc = JSON.parse(ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/backups/inc.evaq', '--since', 's3://evaq/backups/full.evaq', ...s3, '--json']),
    'incremental')) as { manifest: { kind: string, base: { id: string } }, summary: { references: number } }
  t.is(inc.manifest.kind, 'incremental')
  t.is(inc.manifest.base.id, full.manifest.id)
  t.true(inc.summary.references > 0)

  const expected = await view(t, dir)
  const restored = JSON.parse(ok(t, await run(['restore', '--from', 's3://evaq/backups/full.evaq', '--from', 's3://evaq/backups/inc.evaq',
    '--data', join(root, 'chain'), '--verify', '--json', ...s3]), 'restore the chain from s3')) as { verified: boolean, archives: number }
  t.true(restored.verified)
  t.is(restored.archives, 2)
  t.deepEqual(await view(t, join(root, 'chain')), expected)

  // Mixed: the full backup from the bucket, an incremental from a file (and the other way round).
  ok(t, await run(['backup', '--data', dir, '--out', join(root, 'inc.evaq'), '--since', 's3://evaq/backups/full.evaq', ...s3]), 'incremental to a file')
  ok(t, await run(['restore', '--from', 's3://evaq/backups/full.evaq', '--from', join(root, 'inc.evaq'), '--data', join(root, 'mixed'), '--verify', ...s3]),
    'restore s3 + file')
  const wal = (expected as Record<string, string>).wal!
  t.is(ok(t, await evaq(['peek', 'wal', '--json', '--max-bytes', '10000000', '--data', join(root, 'mixed')]), 'peek'), wal)
  ok(t, await run(['backup', '--data', dir, '--out', join(root, 'full.evaq')]), 'a full backup to a file')
  ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/backups/on-file.evaq', '--since', join(root, 'full.evaq'), ...s3]), 'incremental on a file, to s3')
  ok(t, await run(['restore', '--from', join(root, 'full.evaq'), '--from', 's3://evaq/backups/on-file.evaq', '--data', join(root, 'mixed2'), '--verify', ...s3]),
    'restore file + s3')
  t.is(ok(t, await evaq(['peek', 'wal', '--json', '--max-bytes', '10000000', '--data', join(root, 'mixed2')]), 'peek'), wal)
})

test('backup to s3:// through the running service that holds the directory', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await fixture(root)
  const service = await serveInBackground(t, ['--data', dir, '--token', TOKEN])
  const s3 = s3Flags(server)
  const viaData = await run(['backup', '--data', dir, '--token', TOKEN, '--out', 's3://evaq/via-data.evaq', ...s3])
  ok(t, viaData, 'backup --data through the service')
  t.regex(viaData.stderr, /backing up through it/)
  ok(t, await run(['backup', '--url', service.url, '--token', TOKEN, '--out', 's3://evaq/via-url.evaq', ...s3]), 'backup --url')
  const push = await fetch(`${service.url}/v1/logs/wal/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' },
    body: 'after the full backup',
  })
  t.is(push.status, 201)
  ok(t, await run(['backup', '--url', service.url, '--token', TOKEN, '--out', 's3://evaq/inc.evaq', '--since', 's3://evaq/via-url.evaq', ...s3]), 'incremental')
  const noToken = await run(['backup', '--url', service.url, '--out', 's3://evaq/x.evaq', ...s3])
  t.is(errorCode(noToken), 'EVAQ_UNAUTHORIZED')
  t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })

  const expected = await view(t, dir)
  ok(t, await run(['restore', '--from', 's3://evaq/via-url.evaq', '--from', 's3://evaq/inc.evaq', '--data', join(root, 'chain'), '--verify', ...s3]), 'restore')
  t.deepEqual(await view(t, join(root, 'chain')), expected)
  ok(t, await run(['restore', '--from', 's3://evaq/via-data.evaq', '--data', join(root, 'before'), '--verify', ...s3]), 'restore the first')
  t.notDeepEqual((await view(t, join(root, 'before')) as Record<string, unknown>).wal, (expected as Record<string, unknown>).wal)
  t.deepEqual(await server.keys(), ['inc.evaq', 'via-data.evaq', 'via-url.evaq'])
})

test('an existing object is refused like an existing file; a damaged object is refused by restore and nothing is written', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await fixture(root)
  const s3 = s3Flags(server)
  ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/full.evaq', ...s3]), 'full')
  const before = await stored(server, 'full.evaq')
  await change(dir)
  const again = await run(['backup', '--data', dir, '--out', 's3://evaq/full.evaq', ...s3])
  t.is(again.code, 2)
  t.is(errorCode(again), 'EVAQ_INVALID_ARGUMENT')
  t.deepEqual(await stored(server, 'full.evaq'), before, 'the object is as it was')

  // A flipped byte in a segment's value, found the way backup-cli.test.ts finds it.
  const reader = await ArchiveReader.open(join(server.dir, server.bucket, 'full.evaq._S3rver_object'))
  let at = -1
  for await (const frame of reader.frames()) if (placeOf(frame.key).log === 'wal' && at < 0) at = frame.valueOffset + 25
  await reader.close()
  await server.corrupt('full.evaq', at)
  const bad = await run(['restore', '--from', 's3://evaq/full.evaq', '--data', join(root, 'r'), ...s3])
  t.is(bad.code, 1)
  t.is(errorCode(bad), 'EVAQ_CORRUPTION')
  t.deepEqual((await readdir(root)).sort(), ['q'], 'no target and no work directory left')
  // A missing object.
  const missing = await run(['restore', '--from', 's3://evaq/none.evaq', '--data', join(root, 'r'), ...s3])
  t.is(missing.code, 1)
  t.is(errorCode(missing), 'EVAQ_NOT_FOUND')
  const noBase = await run(['backup', '--data', dir, '--out', join(root, 'x.evaq'), '--since', 's3://evaq/none.evaq', ...s3])
  t.is(errorCode(noBase), 'EVAQ_NOT_FOUND')
  t.deepEqual((await readdir(root)).sort(), ['q'])
})

test('bad s3:// URLs and misplaced --s3-* flags are bad usage (exit 2); help names the flags', async t => {
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await fixture(root)
  const local = join(root, 'x.evaq')
  const coded: string[][] = [
    ['backup', '--data', dir, '--out', 's3://'],
    ['backup', '--data', dir, '--out', 's3://evaq'],
    ['backup', '--data', dir, '--out', 's3://evaq/dir/'],
    ['backup', '--data', dir, '--out', 's3://Bad_Bucket/k'],
    ['backup', '--data', dir, '--out', local, '--since', 's3://'],
    ['restore', '--from', 's3://', '--data', join(root, 'r')],
    ['backup', '--data', dir, '--out', 's3://evaq/k', '--s3-endpoint', 'ftp://127.0.0.1:1'],
  ]
  for (const args of coded) {
    const r = await run(args)
    t.is(r.code, 2, args.join(' '))
    t.is(errorCode(r), 'EVAQ_INVALID_ARGUMENT', args.join(' '))
  }
  // Usage errors: --s3-* where no archive is in a bucket, a typo named with its nearest flag.
  for (const args of [['backup', '--data', dir, '--out', local, '--s3-endpoint', 'http://127.0.0.1:1'], ['restore', '--from', local, '--s3-force-path-style']]) {
    const r = await run(args)
    t.is(r.code, 2, args.join(' '))
    t.is(errorCode(r), undefined)
  }
  const typo = await run(['backup', '--data', dir, '--out', 's3://evaq/k', '--s3-endpiont', 'http://127.0.0.1:1'])
  t.is(typo.code, 2)
  t.regex(typo.stderr, /did you mean --s3-endpoint\?/)
  t.deepEqual(await readdir(root), ['q'])
  for (const command of ['backup', 'restore']) {
    const help = ok(t, await evaq([command, '--help']), `${command} --help`)
    for (const flag of ['--s3-endpoint', '--s3-region', '--s3-force-path-style', 's3://BUCKET/KEY']) t.true(help.includes(flag), `${command}: ${flag}`)
  }
})

test('an archive that arrives cut short (a service that ends its answer early) is refused and never completed as an object', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await fixture(root)
  ok(t, await run(['backup', '--data', dir, '--out', join(root, 'full.evaq')]), 'full')
  const archive = await readFile(join(root, 'full.evaq'))
  const bodies = [['cut short', archive.subarray(0, archive.byteLength - 40)], ['a byte flipped', Buffer.from(archive).fill(0x55, 200, 201)]] as const
  for (const [what, body] of bodies) {
    // Something that answers POST /v1/backup with 200 and these bytes, ending the answer cleanly.
    const fake = createServer((req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'application/vnd.evaq.backup' })
      res.end(body)
    })
    fake.listen(0, '127.0.0.1')
    await once(fake, 'listening')
    const { port } = fake.address() as { port: number }
    const r = await run(['backup', '--url', `http://127.0.0.1:${port}`, '--out', 's3://evaq/cut.evaq', ...s3Flags(server)])
    fake.close()
    t.is(r.code, 1, `${what}: ${r.stderr}`)
    t.is(errorCode(r), 'EVAQ_CORRUPTION', what)
    t.deepEqual(await server.keys(), [], `${what}: nothing under the key`)
  }
})

/** A queue of about `mib` MiB of incompressible records. */
async function bigQueue (root: string, mib: number): Promise<string> {
  const dir = join(root, 'big')
  const q = await Evaq.open(dir, OPTIONS)
  try {
    for (let i = 0; i < mib; i++) await q.pushWalMany([randomBytes(512 * 1024), randomBytes(512 * 1024)])
  } finally {
    await q.close()
  }
  return dir
}

/** Start `evaq args` in the background; resolves with its exit. */
function start (args: readonly string[]): { child: ReturnType<typeof spawn>, exit: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, EVAQ_TOKEN: undefined, ...ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const exit = new Promise<Run>(resolve => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { child, exit }
}

/** The multipart uploads the server holds, by ID, with the number of parts stored (under `._S3rver_uploads`). */
async function uploads (server: S3Server): Promise<Map<string, number>> {
  const root = join(server.dir, server.bucket, '._S3rver_uploads')
  const out = new Map<string, number>()
  for (const id of await readdir(root).catch(() => [] as string[])) {
    out.set(id, (await readdir(join(root, id)).catch(() => [] as string[])).filter(name => /^\d+$/.test(name)).length)
  }
  return out
}

/** Wait until an upload that is not in `before` has a part stored, while `exit` has not settled. */
async function partStored (t: ExecutionContext, server: S3Server, before: Map<string, number>, exit: Promise<Run>): Promise<void> {
  let exited: Run | undefined
  void exit.then(r => { exited = r })
  for (;;) {
    if (exited !== undefined) return t.fail(`the backup ended before a part was stored: ${exited.code} ${exited.stderr}`)
    for (const [id, parts] of await uploads(server)) if (!before.has(id) && parts > 0) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Every WAL record of the closed queue in `dir`: ID and the SHA-256 of its payload. */
async function walRecords (dir: string): Promise<Array<[number, string]>> {
  const q = await Evaq.open(dir, OPTIONS)
  try {
    return (await readAll(q.wal, 8 * 1024 * 1024)).map(r => [r.id, createHash('sha256').update(r.payload).digest('hex')])
  } finally {
    await q.close()
  }
}

test('an archive of several parts is uploaded whole and restored through several ranged reads, byte for byte', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await bigQueue(root, 20)
  const s3 = s3Flags(server)
  const done = JSON.parse(ok(t, await run(['backup', '--data', dir, '--out', 's3://evaq/big.evaq', '--json', ...s3]), 'backup')) as { bytes: number }
  t.true(done.bytes > 2 * 8 * 1024 * 1024, 'more than two parts (and restore windows) of 8 MiB')
  t.is((await stored(server, 'big.evaq')).byteLength, done.bytes)
  t.deepEqual(await uploads(server), new Map(), 'the multipart upload was completed')
  ok(t, await run(['restore', '--from', 's3://evaq/big.evaq', '--data', join(root, 'r'), '--verify', ...s3]), 'restore')
  const [want, got] = [await walRecords(dir), await walRecords(join(root, 'r'))]
  t.is(got.length, 40)
  t.deepEqual(got, want)
})

test('the server killed mid-backup: exit 1, and no object under the key once it is back; Ctrl-C mid-upload: exit 130, no object', async t => {
  const server = await S3Server.start(t)
  const root = await tmpDir(t, 'evaq-backup-s3-')
  const dir = await bigQueue(root, 48)
  const s3 = s3Flags(server)

  const killed = start(['backup', '--data', dir, '--out', 's3://evaq/killed.evaq', ...s3])
  await partStored(t, server, new Map(), killed.exit)
  await server.kill()
  const k = await killed.exit
  t.is(k.code, 1, k.stderr)
  t.is(errorCode(k), 'EVAQ_IO', k.stderr)
  await server.run()
  t.deepEqual(await server.keys(), [], 'nothing under the key')

  const before = await uploads(server)
  const interrupted = start(['backup', '--data', dir, '--out', 's3://evaq/interrupted.evaq', ...s3])
  await partStored(t, server, before, interrupted.exit)
  interrupted.child.kill('SIGINT')
  const i = await interrupted.exit
  t.is(i.code, 130, i.stderr)
  t.regex(i.stderr, /backup interrupted \(SIGINT\)/)
  // The server stays up: nothing appears later either (the upload is never completed).
  await new Promise(resolve => setTimeout(resolve, 500))
  t.deepEqual(await server.keys(), [], 'nothing under the key')
  const missing = await run(['restore', '--from', 's3://evaq/interrupted.evaq', '--data', join(root, 'r'), ...s3])
  t.is(errorCode(missing), 'EVAQ_NOT_FOUND')
})
