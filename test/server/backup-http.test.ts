/**
 * POST /v1/backup over real HTTP: the running service takes the snapshot (it holds the
 * directory's lock) and streams the archive as the response body.
 */
import test, { type ExecutionContext } from 'ava'
import { createWriteStream } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { request, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { ArchiveCorruption } from '../../src/backup/archive-error.js'
import { readManifest } from '../../src/backup/archive-reader.js'
import { ARCHIVE_MEDIA_TYPE } from '../../src/backup/format.js'
import { Evaq, isEvaqError } from '../../src/index.js'
import { send, snapshot, startServer, TEST_OPTIONS, type TestServer } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

const TOKEN = 'backup-secret'
const AUTH = { authorization: `Bearer ${TOKEN}` }

/** POST /v1/backup; resolves once the response headers arrived, with the body still unread. */
function post (s: TestServer, body?: unknown, headers: Record<string, string> = AUTH): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(s.url)
    const text = body === undefined ? undefined : JSON.stringify(body)
    const req = request({
      host: hostname,
      port,
      path: '/v1/backup',
      method: 'POST',
      agent: false,
      headers: { ...headers, ...(text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }) },
    }, resolve)
    req.on('error', reject)
    req.end(text)
  })
}

async function download (t: ExecutionContext, s: TestServer, file: string, body?: unknown): Promise<IncomingMessage> {
  const res = await post(s, body)
  t.is(res.statusCode, 200)
  await pipeline(res, createWriteStream(file))
  return res
}

async function restoredState (t: ExecutionContext, files: string[], dir: string): Promise<unknown> {
  await Evaq.restore(files, dir, { verify: true })
  const q = await Evaq.open(dir, TEST_OPTIONS)
  t.teardown(() => q.close())
  return snapshot(q)
}

test('POST /v1/backup streams an archive of the running queue, and it restores to the same queue', async t => {
  const root = await tmpDir(t, 'evaq-backup-http-')
  const s = await startServer(t, { token: TOKEN })
  await s.evaq.pushWalMany(['a', Buffer.from([0, 1, 255]), 'c'])
  await s.evaq.pushRetryItem('dead', { error: { code: 'E', message: 'down' } })
  const sub = await s.evaq.wal.subscribe('reader')
  await (await sub.next({ maxCount: 1 }))!.ack()

  const file = join(root, 'full.evaq')
  const res = await download(t, s, file)
  t.is(res.headers['content-type'], ARCHIVE_MEDIA_TYPE)
  t.regex(String(res.headers['content-disposition']), /^attachment; filename="evaq-.*-full\.evaq"$/)
  const manifest = await readManifest(file)
  t.is(res.headers['x-evaq-backup-id'], manifest.id)
  t.is(manifest.kind, 'full')
  t.deepEqual(await restoredState(t, [file], join(root, 'r')), await snapshot(s.evaq))
})

test('POST /v1/backup with `since` makes an incremental backup; the chain restores to the queue of that moment', async t => {
  const root = await tmpDir(t, 'evaq-backup-http-')
  const s = await startServer(t, { token: TOKEN })
  await s.evaq.pushWalMany(Array.from({ length: 50 }, (_, i) => Buffer.alloc(1000, i)))
  const full = join(root, 'full.evaq')
  await download(t, s, full)
  await s.evaq.removeWal([1, 2, 30])
  await s.evaq.pushWal('after the full backup')
  const inc = join(root, 'inc.evaq')
  const res = await download(t, s, inc, { since: await readManifest(full) })
  t.is(res.headers['x-evaq-backup-kind'], 'incremental')
  const manifest = await readManifest(inc)
  t.is(manifest.base?.id, (await readManifest(full)).id)
  t.true((await readFile(inc)).length < (await readFile(full)).length / 4, 'the segments of the base are not sent again')
  t.deepEqual(await restoredState(t, [full, inc], join(root, 'r')), await snapshot(s.evaq))
})

test('POST /v1/backup answers errors as JSON before the snapshot: no token, a bad `since`, another content type', async t => {
  const s = await startServer(t, { token: TOKEN })
  await s.evaq.pushWal('x')
  const noToken = await send(s.url, 'POST', '/v1/backup')
  t.is(noToken.status, 401)
  t.is(noToken.json.code, 'EVAQ_UNAUTHORIZED')
  // A manifest of another archive version is a bad argument here, not a server fault (500).
  const otherVersion = { format: 'evaq-backup', version: 99, id: 'x', kind: 'full', depth: 0, createdAt: 0, storeFormat: 1, logs: {} }
  for (const body of [{ since: { id: 'x' } }, { since: 5 }, { other: true }, [], { since: otherVersion }]) {
    const r = await send(s.url, 'POST', '/v1/backup', { headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    t.is(r.status, 400, JSON.stringify(body))
    t.is(r.json.code, 'EVAQ_INVALID_ARGUMENT', JSON.stringify(body))
  }
  const text = await send(s.url, 'POST', '/v1/backup', { headers: { ...AUTH, 'content-type': 'text/plain' }, body: 'hello' })
  t.is(text.status, 415)
  t.is(text.json.code, 'EVAQ_UNSUPPORTED_MEDIA_TYPE')
})

test('the service keeps serving while a backup streams, and what is pushed meanwhile is not in it', async t => {
  const root = await tmpDir(t, 'evaq-backup-http-')
  const s = await startServer(t, { token: TOKEN, evaq: { ...TEST_OPTIONS, maxPayloadBytes: 1024 * 1024 } })
  for (let i = 0; i < 16; i++) await s.evaq.pushWal(Buffer.alloc(512 * 1024, i))
  const before = await snapshot(s.evaq)
  const res = await post(s)
  t.is(res.statusCode, 200)
  res.pause()
  // The body waits on a paused socket: the queue takes pushes and removals meanwhile.
  const pushed = await send(s.url, 'POST', '/v1/logs/wal/records', {
    headers: { ...AUTH, 'content-type': 'application/octet-stream' },
    body: 'during the backup',
  })
  t.is(pushed.status, 201)
  await s.evaq.removeWal(1)
  const file = join(root, 'b.evaq')
  await pipeline(res, createWriteStream(file))
  t.deepEqual(await restoredState(t, [file], join(root, 'r')), before)
})

test('a backup cut short by the service stopping is refused by restore (EVAQ_CORRUPTION, truncated)', async t => {
  const root = await tmpDir(t, 'evaq-backup-http-')
  const s = await startServer(t, { token: TOKEN, evaq: { ...TEST_OPTIONS, maxPayloadBytes: 1024 * 1024 } })
  for (let i = 0; i < 32; i++) await s.evaq.pushWal(Buffer.alloc(1024 * 1024, i))
  const res = await post(s)
  t.is(res.statusCode, 200)
  const chunks: Buffer[] = []
  const ended = new Promise<void>(resolve => {
    res.on('data', (c: Buffer) => chunks.push(c))
    res.on('close', resolve)
    res.on('error', () => resolve())
  })
  res.pause()
  await s.app.close()
  res.resume()
  await ended
  const file = join(root, 'cut.evaq')
  await writeFile(file, Buffer.concat(chunks))
  const err = await Evaq.restore(file, join(root, 'r')).then(() => undefined, (e: unknown) => e)
  t.true(isEvaqError(err, 'EVAQ_CORRUPTION'), String(err))
  t.is((err as ArchiveCorruption).damage.reason, 'truncated')
})
