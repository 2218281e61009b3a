/**
 * `npm start` as a newcomer runs it: the service comes up, takes pushes and reads over HTTP, stops
 * on SIGTERM (sent to the process group as a terminal's Ctrl-C does, or to npm alone as a
 * supervisor does) with exit 0, and after a restart every acknowledged record is still there.
 */
import test from 'ava'
import { join } from 'node:path'
import { background, ROOT } from '../fixtures/cli.js'
import { send } from '../fixtures/http.js'
import { tmpDir } from '../helpers/tmp.js'

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'

test('npm start serves, stops cleanly on SIGTERM, and a restart finds the data', async t => {
  const dir = join(await tmpDir(t, 'evaq-start-'), 'data')
  // The README's command (`npm start`), with a data directory and a free port for the test.
  const start = (): ReturnType<typeof background> => background(t, NPM, ['start', '--', '--data', dir, '--port', '0'], { cwd: ROOT, detached: true })

  let service = await start()
  const ready = await send(service.url, 'GET', '/readyz')
  t.deepEqual([ready.status, ready.json], [200, { status: 'open' }])
  const pushed = await send(service.url, 'POST', '/v1/logs/wal/records', {
    headers: { 'content-type': 'application/x-ndjson' },
    body: '{"order":1}\n{"order":2}\n',
  })
  t.deepEqual([pushed.status, pushed.json], [201, { ids: [1, 2] }])
  const single = await send(service.url, 'POST', '/v1/logs/wal/records', {
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from([1, 2, 3]),
  })
  t.deepEqual(single.json, { ids: [3] })
  const read = await send(service.url, 'GET', '/v1/logs/wal/records')
  t.deepEqual(read.json.records.map((r: { payload: string }) => Buffer.from(r.payload, 'base64')),
    [Buffer.from('{"order":1}'), Buffer.from('{"order":2}'), Buffer.from([1, 2, 3])])

  const stopped = await service.stop('SIGTERM')
  t.is(stopped.code, 0, `npm start exited with ${String(stopped.code ?? stopped.signal)}: ${service.other.join('\n').slice(0, 1000)}`)
  t.true(service.logs.some(l => l.msg === 'evaq stopped: queue flushed and closed'))

  service = await start()
  const again = await send(service.url, 'GET', '/v1/logs/wal/records')
  t.deepEqual(again.json.records.map((r: { id: number }) => r.id), [1, 2, 3])
  t.deepEqual((await send(service.url, 'GET', '/v1/stats')).json.wal.nextId, 4)
  // A supervisor signals npm alone: npm passes it on, and the service stops just as cleanly.
  t.is((await service.stop('SIGTERM', { leaderOnly: true })).code, 0)
  t.true(service.logs.some(l => l.msg === 'evaq stopped: queue flushed and closed'))
})
