/**
 * `evaq backup` and `evaq restore` from the built binary (dist/, built by `npm test` before ava
 * runs), in child processes: on a directory, through a running `evaq serve` (--url), and a raw
 * POST /v1/backup saved the way curl would. Exit codes: 0, 1 an evaq error, 2 bad usage.
 */
import test, { type ExecutionContext } from 'ava'
import { createWriteStream } from 'node:fs'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { ArchiveReader } from '../../src/backup/archive-reader.js'
import { Evaq } from '../../src/index.js'
import { placeOf } from '../../src/store/snapshot.js'
import { evaq, serveInBackground, type Run } from '../fixtures/cli.js'
import { tmpDir } from '../helpers/tmp.js'

const OPTIONS = { minFreeDiskBytes: 0, maintenanceIntervalMs: 3_600_000 }
const TOKEN = 'cli-backup-token'

test.before(async () => {
  await stat(new URL('../../dist/cli/main.js', import.meta.url)).catch(() => {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (npm test builds before ava)')
  })
})

/** A closed queue: WAL 1..4 (2 removed), DLQ 1..2 with errors, a subscriber. */
async function fixture (t: ExecutionContext, root: string): Promise<string> {
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
  t.pass()
  return dir
}

function ok (t: ExecutionContext, run: Run, what: string): string {
  t.is(run.code, 0, `${what}: exit 0 (stderr: ${run.stderr.slice(0, 400)})`)
  return run.stdout
}

/** The code an evaq error printed (`evaq: CODE: message` on stderr). */
function errorCode (run: Run): string | undefined {
  return /^evaq: (EVAQ_[A-Z_]+):/m.exec(run.stderr)?.[1]
}

/** What the commands show of a directory: records of every log, counts, subscribers' progress. */
async function view (t: ExecutionContext, dir: string): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const log of ['wal', 'dlq', 'parked']) out[log] = ok(t, await evaq(['peek', log, '--json', '--data', dir]), `peek ${log}`)
  const stats = JSON.parse(ok(t, await evaq(['stats', '--json', '--data', dir]), 'stats')) as Record<string, { count: number, bytes: number, nextId: number }>
  for (const log of ['wal', 'dlq', 'parked']) out[`${log} stats`] = { count: stats[log]!.count, bytes: stats[log]!.bytes, nextId: stats[log]!.nextId }
  const subscribers = ok(t, await evaq(['subscribers', '--json', '--data', dir]), 'subscribers')
  out.subscribers = (JSON.parse(subscribers) as Array<{ log: string, name: string, ackFloor: number }>)
    .map(s => [s.log, s.name, s.ackFloor])
  return out
}

test('backup --data, then restore --verify: the restored directory shows what the source shows', async t => {
  const root = await tmpDir(t, 'evaq-backup-cli-')
  const dir = await fixture(t, root)
  const file = join(root, 'full.evaq')
  const run = await evaq(['backup', '--data', dir, '--out', file, '--json'])
  const done = JSON.parse(ok(t, run, 'backup')) as {
    file: string
    bytes: number
    manifest: { kind: string, logs: Record<string, { nextId: number }> }
    summary: { entries: number }
  }
  t.is(done.file, file)
  t.is(done.bytes, (await stat(file)).size)
  t.is(done.manifest.kind, 'full')
  t.deepEqual(await readdir(root), ['full.evaq', 'q'], 'no temporary file is left')

  const restored = join(root, 'restored')
  const r = await evaq(['restore', '--from', file, '--data', restored, '--verify', '--json'])
  const result = JSON.parse(ok(t, r, 'restore')) as { entries: number, verified: boolean, nextIds: Record<string, number> }
  t.true(result.verified)
  t.is(result.entries, done.summary.entries)
  t.deepEqual(result.nextIds, { wal: 5, dlq: 3, parked: 1 })
  t.deepEqual(await view(t, restored), await view(t, dir))
  // IDs continue above the restored ones.
  const q = await Evaq.open(restored, OPTIONS)
  t.is(await q.pushWal('next'), 5)
  await q.close()
})

test('backup --since and restore of the chain; bad usage and bad archives exit with their codes and leave nothing', async t => {
  const root = await tmpDir(t, 'evaq-backup-cli-')
  const dir = await fixture(t, root)
  const f = (name: string): string => join(root, name)
  ok(t, await evaq(['backup', '--data', dir, '--out', f('full.evaq')]), 'full')
  const q = await Evaq.open(dir, OPTIONS)
  await q.removeWal([1, 3])
  await q.pushWalMany(['n1', 'n2'])
  await q.doneRetryItems([1])
  await q.close()
  ok(t, await evaq(['backup', '--data', dir, '--out', f('inc.evaq'), '--since', f('full.evaq')]), 'incremental')
  ok(t, await evaq(['restore', '--from', f('full.evaq'), '--from', f('inc.evaq'), '--data', f('chain'), '--verify']), 'restore the chain')
  t.deepEqual(await view(t, f('chain')), await view(t, dir))

  const usage: string[][] = [
    ['backup', '--data', dir],
    ['backup', '--data', dir, '--out'],
    ['backup', '--data', dir, '--url', 'http://127.0.0.1:1', '--out', f('x.evaq')],
    ['backup', '--data', dir, '--out', f('x.evaq'), 'extra'],
    ['restore', '--data', f('r')],
    ['restore', '--from', f('full.evaq'), '--data'],
    ['restore', '--from', f('full.evaq'), '--data', f('r'), '--url', 'http://127.0.0.1:1'],
  ]
  for (const args of usage) t.is((await evaq(args)).code, 2, args.join(' '))

  const coded: Array<[string[], number, string]> = [
    [['backup', '--data', dir, '--out', f('full.evaq')], 2, 'EVAQ_INVALID_ARGUMENT'],
    [['backup', '--data', f('missing'), '--out', f('x.evaq')], 1, 'EVAQ_NOT_FOUND'],
    [['backup', '--data', dir, '--out', f('x.evaq'), '--since', f('missing.evaq')], 1, 'EVAQ_NOT_FOUND'],
    [['restore', '--from', f('missing.evaq'), '--data', f('r')], 1, 'EVAQ_NOT_FOUND'],
    [['restore', '--from', f('inc.evaq'), '--data', f('r')], 2, 'EVAQ_INVALID_ARGUMENT'],
    [['restore', '--from', f('inc.evaq'), '--from', f('full.evaq'), '--data', f('r')], 2, 'EVAQ_INVALID_ARGUMENT'],
    [['restore', '--from', f('full.evaq'), '--data', dir], 2, 'EVAQ_INVALID_ARGUMENT'],
  ]
  for (const [args, code, error] of coded) {
    const run = await evaq(args)
    t.is(run.code, code, args.join(' '))
    t.is(errorCode(run), error, args.join(' '))
  }

  // A flipped byte in a segment's value.
  const reader = await ArchiveReader.open(f('full.evaq'))
  let at = -1
  for await (const frame of reader.frames()) if (placeOf(frame.key).log === 'wal' && at < 0) at = frame.valueOffset + 25
  await reader.close()
  const bytes = await readFile(f('full.evaq'))
  bytes[at]! ^= 0xff
  await writeFile(f('bad.evaq'), bytes)
  const bad = await evaq(['restore', '--from', f('bad.evaq'), '--data', f('r')])
  t.is(bad.code, 1)
  t.is(errorCode(bad), 'EVAQ_CORRUPTION')
  t.deepEqual((await readdir(root)).sort(), ['bad.evaq', 'chain', 'full.evaq', 'inc.evaq', 'q'], 'nothing was written: no x.evaq, no r')
})

test('backup --url through a running service (full and incremental), a raw POST saved like curl -o, and restores of each', async t => {
  const root = await tmpDir(t, 'evaq-backup-cli-')
  const dir = await fixture(t, root)
  const f = (name: string): string => join(root, name)
  const service = await serveInBackground(t, ['--data', dir, '--token', TOKEN])

  // The service holds the directory: --data finds it (EVAQ-SERVICE) and goes through it, which
  // needs the token like --url does.
  const viaDataNoToken = await evaq(['backup', '--data', dir, '--out', f('x.evaq')])
  t.is(viaDataNoToken.code, 1)
  t.is(errorCode(viaDataNoToken), 'EVAQ_UNAUTHORIZED')
  const noToken = await evaq(['backup', '--url', service.url, '--out', f('x.evaq')])
  t.is(errorCode(noToken), 'EVAQ_UNAUTHORIZED')
  await t.throwsAsync(stat(f('x.evaq')), { code: 'ENOENT' })
  ok(t, await evaq(['backup', '--data', dir, '--token', TOKEN, '--out', f('via-data.evaq')]), 'backup --data through the service')

  ok(t, await evaq(['backup', '--url', service.url, '--out', f('full.evaq')], { env: { EVAQ_TOKEN: TOKEN } }), 'backup --url')
  const push = await fetch(`${service.url}/v1/logs/wal/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' },
    body: 'after the full backup',
  })
  t.is(push.status, 201)
  const incremental = await evaq(['backup', '--url', service.url, '--token', TOKEN, '--out', f('inc.evaq'), '--since', f('full.evaq'), '--json'])
  const inc = JSON.parse(ok(t, incremental, 'incremental --url')) as { manifest: { kind: string } }
  t.is(inc.manifest.kind, 'incremental')

  // What `curl -H 'Authorization: Bearer …' -X POST URL/v1/backup -o raw.evaq` does.
  await new Promise<void>((resolve, reject) => {
    const { hostname, port } = new URL(service.url)
    request({ host: hostname, port, path: '/v1/backup', method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }, res => {
      t.is(res.statusCode, 200)
      pipeline(res, createWriteStream(f('raw.evaq'))).then(resolve, reject)
    }).on('error', reject).end()
  })

  t.deepEqual(await service.stop('SIGTERM'), { code: 0, signal: null })
  const expected = await view(t, dir)
  ok(t, await evaq(['restore', '--from', f('full.evaq'), '--from', f('inc.evaq'), '--data', f('chain'), '--verify']), 'restore the chain')
  ok(t, await evaq(['restore', '--from', f('raw.evaq'), '--data', f('raw'), '--verify']), 'restore the raw download')
  ok(t, await evaq(['restore', '--from', f('via-data.evaq'), '--data', f('via-data'), '--verify']), 'restore the backup taken with --data')
  t.deepEqual(await view(t, f('chain')), expected)
  t.deepEqual(await view(t, f('raw')), expected)
  // Taken before the push: the WAL as it was, without the record pushed after it.
  const before = await view(t, f('via-data')) as Record<string, unknown>
  t.notDeepEqual(before.wal, (expected as Record<string, unknown>).wal)
  // A service that stopped leaves no EVAQ-SERVICE behind, and --data opens the directory itself.
  t.false((await readdir(dir)).includes('EVAQ-SERVICE'))
  ok(t, await evaq(['backup', '--data', dir, '--out', f('after-stop.evaq')]), 'backup --data after the service stopped')
})
