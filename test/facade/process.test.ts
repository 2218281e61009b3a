import test, { type ExecutionContext } from 'ava'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { Evaq, EvaqError, type Durability, type EvaqOptions, type Log, type QueueRecord, type Subscriber } from '../../src/index.js'
import { tmpDir } from '../helpers/tmp.js'

const INDEX = new URL('../../src/index.ts', import.meta.url).href

/** `code` of an error and of each error in its `cause` chain. */
function codeChain (err: unknown): unknown[] {
  const codes: unknown[] = []
  for (let e = err as { code?: unknown, cause?: unknown } | undefined, depth = 0; e != null && depth < 10; e = e.cause as typeof e, depth++) {
    codes.push(e.code)
  }
  return codes
}

/** Run `code` (an ES module that may import `INDEX`) in a child Node process with `env`. */
function child (t: ExecutionContext, code: string, env: Record<string, string>): ChildProcessWithoutNullStreams {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  proc.stdout.setEncoding('utf8')
  proc.stderr.setEncoding('utf8')
  return proc
}

/** Resolves with the child's first stdout line; rejects if it exits first. */
function firstLine (proc: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    proc.stderr.on('data', (s: string) => { err += s })
    const onData = (s: string): void => {
      out += s
      const nl = out.indexOf('\n')
      if (nl >= 0) { proc.stdout.off('data', onData); proc.off('close', onClose); resolve(out.slice(0, nl)) }
    }
    const onClose = (code: number | null): void => reject(new Error(`child exited (${code}) before writing a line; stderr: ${err}`))
    proc.stdout.on('data', onData)
    proc.once('close', onClose)
  })
}

async function readAll (log: Log): Promise<QueueRecord[]> {
  const out: QueueRecord[] = []
  for (let from = 0; ;) {
    const page = await log.read({ from, maxBytes: 64 * 1024, maxCount: 500 })
    if (page.length === 0) return out
    out.push(...page)
    from = page[page.length - 1]!.id + 1
  }
}

const DURABILITIES: Array<[string, Durability]> = [['sync', 'sync'], ['none', 'none'], ['interval', { intervalMs: 10 }]]

// ---------------------------------------------------------------------------------------------
// (a) One process per directory

test('a second process cannot open a directory this process holds: EVAQ_LOCKED', async t => {
  const dir = await tmpDir(t)
  const evaq = await Evaq.open(dir)
  t.teardown(() => evaq.close())
  await evaq.pushWal('held')

  const proc = child(t, `
    import { Evaq } from ${JSON.stringify(INDEX)}
    const codes = []
    try {
      const evaq = await Evaq.open(process.env.EVAQ_DIR)
      await evaq.close()
    } catch (err) {
      for (let e = err, depth = 0; e != null && depth < 10; e = e.cause, depth++) codes.push(e.code ?? null)
    }
    process.stdout.write(JSON.stringify({ codes }) + '\\n')
  `, { EVAQ_DIR: dir })
  const line = await firstLine(proc)
  const [exitCode] = await once(proc, 'close') as [number | null]
  t.is(exitCode, 0)
  const { codes } = JSON.parse(line) as { codes: unknown[] }
  t.is(codes[0], 'EVAQ_LOCKED')
  t.true(codes.includes('LEVEL_LOCKED'), `cause chain: ${JSON.stringify(codes)}`)

  // The failed attempt did not disturb the holder.
  t.is(evaq.status, 'open')
  const id = await evaq.pushWal('still mine')
  t.deepEqual((await evaq.wal.read()).map(r => [r.id, r.payload.toString()]), [[1, 'held'], [id, 'still mine']])
})

test('this process cannot open a directory another process holds: EVAQ_LOCKED caused by LEVEL_LOCKED, and can once it is released', async t => {
  const dir = await tmpDir(t)
  const proc = child(t, `
    import { Evaq } from ${JSON.stringify(INDEX)}
    const evaq = await Evaq.open(process.env.EVAQ_DIR)
    await evaq.pushWal('from the child')
    process.stdout.write('ready\\n')
    process.stdin.resume()
    process.stdin.on('end', async () => {
      await evaq.close()
      process.stdout.write('closed\\n')
    })
  `, { EVAQ_DIR: dir })
  t.is(await firstLine(proc), 'ready')

  const err = await t.throwsAsync(Evaq.open(dir), { instanceOf: EvaqError, code: 'EVAQ_LOCKED' })
  t.true(err?.retriable)
  t.true(codeChain(err).includes('LEVEL_LOCKED'), `cause chain: ${JSON.stringify(codeChain(err))}`)
  // Still locked on a second try: the failed open left nothing behind that changes the answer.
  await t.throwsAsync(Evaq.open(dir), { code: 'EVAQ_LOCKED' })

  const closed = firstLine(proc)
  proc.stdin.end()
  t.is(await closed, 'closed')
  const [exitCode] = await once(proc, 'close') as [number | null]
  t.is(exitCode, 0)

  const evaq = await Evaq.open(dir)
  try {
    t.deepEqual((await evaq.wal.read()).map(r => r.payload.toString()), ['from the child'])
  } finally {
    await evaq.close()
  }
})

// ---------------------------------------------------------------------------------------------
// (b) Closed means closed

/** Every public data method, called with arguments that would be valid on an open queue. */
function everyMethod (evaq: Evaq, walId: number, dlqId: number, sub: Subscriber): Array<[string, () => Promise<unknown>]> {
  return [
    ['stats', () => evaq.stats()],
    ['wal.subscribe', () => evaq.wal.subscribe('other')],
    ['wal.subscribe existing', () => evaq.wal.subscribe('s')],
    ['wal.unsubscribe', () => evaq.wal.unsubscribe('s')],
    ['dlq.subscribe', () => evaq.dlq.subscribe('d')],
    ['sub.next', () => sub.next()],
    ['sub.next waiting', () => sub.next({ waitMs: 60_000 })],
    ['sub.ack', () => sub.ack([walId])],
    ['sub.nack', () => sub.nack([walId])],
    ['pushWal', () => evaq.pushWal('x')],
    ['pushWal with signal', () => evaq.pushWal('x', { signal: new AbortController().signal })],
    ['pushWalMany', () => evaq.pushWalMany(['x', 'y'])],
    ['pushWalMany []', () => evaq.pushWalMany([])],
    ['removeWal id', () => evaq.removeWal(walId)],
    ['removeWal ids', () => evaq.removeWal([walId])],
    ['pushRetryItem', () => evaq.pushRetryItem('x', { error: new Error('boom') })],
    ['pushRetryItem without options', () => evaq.pushRetryItem('x')],
    ['doneRetryItems', () => evaq.doneRetryItems([dlqId])],
    ['doneRetryItems []', () => evaq.doneRetryItems([])],
    ['firstNBytesFromDeadLetterQueue', () => evaq.firstNBytesFromDeadLetterQueue(0, 1024)],
    ['wal.push', () => evaq.wal.push('x')],
    ['wal.pushMany', () => evaq.wal.pushMany(['x'])],
    ['wal.remove', () => evaq.wal.remove([walId])],
    ['wal.read', () => evaq.wal.read()],
    ['wal.read from', () => evaq.wal.read({ from: walId, maxBytes: 10, maxCount: 1 })],
    ['wal.stats', () => evaq.wal.stats()],
    ['dlq.push', () => evaq.dlq.push('x')],
    ['dlq.pushMany', () => evaq.dlq.pushMany(['x'])],
    ['dlq.remove', () => evaq.dlq.remove([dlqId])],
    ['dlq.read', () => evaq.dlq.read()],
    ['dlq.stats', () => evaq.dlq.stats()],
    ['pushRetryItem with attempts and source', () => evaq.pushRetryItem('x', { attempts: 2, source: { log: 'wal', id: walId } })],
    ['parked.read', () => evaq.parked.read()],
    ['parked.stats', () => evaq.parked.stats()],
    ['requeueParked', () => evaq.requeueParked('all')],
    ['purgeParked', () => evaq.purgeParked([1])],
    // retry() returns the daemon itself, so it throws rather than rejects.
    ['retry', async () => evaq.retry(() => {})],
  ]
}

test('every method of a closed queue rejects with EVAQ_CLOSED; close() twice is fine', async t => {
  const dir = await tmpDir(t)
  const evaq = await Evaq.open(dir)
  t.is(evaq.status, 'open')
  const walId = await evaq.pushWal('w')
  const dlqId = await evaq.pushRetryItem('d', { error: 'e' })
  const sub = await evaq.wal.subscribe('s')
  const events: string[] = []
  evaq.on('closing', () => events.push('closing'))
  evaq.on('closed', () => events.push('closed'))

  await Promise.all([evaq.close(), evaq.close()])
  t.is(evaq.status, 'closed')
  await evaq.close()
  t.is(evaq.status, 'closed')
  t.deepEqual(events, ['closing', 'closed'])

  for (const [name, call] of everyMethod(evaq, walId, dlqId, sub)) {
    // throwsAsync fails if the call throws synchronously instead of returning a rejection.
    await t.throwsAsync(call, { instanceOf: EvaqError, code: 'EVAQ_CLOSED' }, name)
  }
  t.is(evaq.status, 'closed')

  // Nothing those calls attempted reached the directory.
  const again = await Evaq.open(dir)
  try {
    t.deepEqual((await again.wal.read()).map(r => r.id), [walId])
    t.deepEqual((await again.dlq.read()).map(r => r.id), [dlqId])
  } finally {
    await again.close()
  }
})

test('every method of a closing queue rejects with EVAQ_CLOSED', async t => {
  const dir = await tmpDir(t)
  const evaq = await Evaq.open(dir)
  const walId = await evaq.pushWal('w')
  const dlqId = await evaq.pushRetryItem('d')
  const sub = await evaq.wal.subscribe('s')
  const closing = evaq.close()
  t.is(evaq.status, 'closing')
  const calls = everyMethod(evaq, walId, dlqId, sub).map(([name, call]) => t.throwsAsync(call, { instanceOf: EvaqError, code: 'EVAQ_CLOSED' }, name))
  await Promise.all(calls)
  await closing
  t.is(evaq.status, 'closed')
})

// ---------------------------------------------------------------------------------------------
// (c) close() waits for pending writes

for (const [label, durability] of DURABILITIES) {
  test(`close() waits for pending pushes and removals, which all succeed and persist (durability ${label})`, async t => {
    const dir = await tmpDir(t)
    // A small buffer, so that many pushes are still waiting for space when close() is called.
    const options: EvaqOptions = { durability, maxBufferedBytes: 32 * 1024, maxPayloadBytes: 4096, maxBatchCount: 16 }
    const evaq = await Evaq.open(dir, options)
    const early = await evaq.pushWalMany(Array.from({ length: 40 }, (_, i) => `early ${i}`))
    const earlyDlq = await Promise.all(Array.from({ length: 10 }, (_, i) => evaq.pushRetryItem(`early dlq ${i}`)))

    const payload = (kind: string, i: number): string => `${kind} ${i} ${'.'.repeat((i * 37) % 1500)}`
    const settled: Array<{ done: boolean, ok: boolean }> = []
    const track = <T>(p: Promise<T>): Promise<T> => {
      const s = { done: false, ok: false }
      settled.push(s)
      p.then(() => { s.done = true; s.ok = true }, () => { s.done = true })
      return p
    }
    const single = Array.from({ length: 300 }, (_, i) => track(evaq.pushWal(payload('wal', i))))
    const many = Array.from({ length: 50 }, (_, i) => track(evaq.pushWalMany([payload('many', 2 * i), payload('many', 2 * i + 1)])))
    const dlq = Array.from({ length: 100 }, (_, i) => track(evaq.pushRetryItem(payload('dlq', i), { error: { code: 'E_DOWN', message: `down ${i}` } })))
    const removals = [
      track(evaq.removeWal(early.slice(0, 20))),
      track(evaq.removeWal(early[30]!)),
      track(evaq.doneRetryItems(earlyDlq.slice(0, 5))),
    ]
    t.true(settled.every(s => !s.done))

    await evaq.close()
    t.is(evaq.status, 'closed')
    const failed = settled.filter(s => !s.ok).length
    t.is(failed, 0, `${failed} of ${settled.length} operations had not succeeded when close() resolved`)
    const walIds = await Promise.all(single)
    const manyIds = await Promise.all(many)
    const dlqIds = await Promise.all(dlq)
    await Promise.all(removals)

    const reopened = await Evaq.open(dir, options)
    try {
      const wal = await readAll(reopened.wal)
      const expectedWal = new Map<number, string>()
      early.forEach((id, i) => { if (i >= 20 && i !== 30) expectedWal.set(id, `early ${i}`) })
      walIds.forEach((id, i) => expectedWal.set(id, payload('wal', i)))
      manyIds.forEach((ids, i) => { expectedWal.set(ids[0]!, payload('many', 2 * i)); expectedWal.set(ids[1]!, payload('many', 2 * i + 1)) })
      t.deepEqual(wal.map(r => [r.id, r.payload.toString()]), [...expectedWal].sort((a, b) => a[0] - b[0]))
      t.is((await reopened.wal.stats()).count, expectedWal.size)

      const dead = await readAll(reopened.dlq)
      const expectedDlq: Array<[number, string, unknown]> = [
        ...earlyDlq.slice(5).map((id, i): [number, string, unknown] => [id, `early dlq ${i + 5}`, undefined]),
        ...dlqIds.map((id, i): [number, string, unknown] => [id, payload('dlq', i), { code: 'E_DOWN', message: `down ${i}` }]),
      ]
      t.deepEqual(dead.map(r => [r.id, r.payload.toString(), r.error]), expectedDlq)
      t.is((await reopened.dlq.stats()).count, expectedDlq.length)
    } finally {
      await reopened.close()
    }
  })
}

// ---------------------------------------------------------------------------------------------
// (d) IDs are never reused, across reopen, even when nothing is left

for (const [label, durability] of DURABILITIES) {
  test(`WAL IDs continue above the last one issued after reopen, even after removing everything (durability ${label})`, async t => {
    const dir = await tmpDir(t)
    const N = 250
    let evaq = await Evaq.open(dir, { durability })
    const ids = [
      ...await evaq.pushWalMany(Array.from({ length: 100 }, (_, i) => `m${i}`)),
      ...await Promise.all(Array.from({ length: N - 100 }, (_, i) => evaq.pushWal(`s${i}`))),
    ]
    t.is(Math.max(...ids), N)
    await evaq.removeWal(ids)
    t.like(await evaq.wal.stats(), { count: 0, bytes: 0, firstId: undefined, lastId: undefined, nextId: N + 1 })
    await evaq.close()

    // Twice: an open and close without writes must not forget the counter either.
    for (let round = 0; round < 2; round++) {
      evaq = await Evaq.open(dir, { durability })
      t.like(await evaq.wal.stats(), { count: 0, bytes: 0, firstId: undefined, lastId: undefined }, `round ${round}`)
      t.true((await evaq.wal.stats()).nextId > N, `round ${round}`)
      t.deepEqual(await evaq.wal.read(), [], `round ${round}`)
      await evaq.close()
    }

    evaq = await Evaq.open(dir, { durability })
    try {
      const next = await evaq.pushWal('after')
      t.true(next > N, `got ${next}`)
      const [a, b] = await evaq.pushWalMany(['x', 'y'])
      t.true(a! > next && b === a! + 1)
      t.deepEqual((await evaq.wal.read()).map(r => [r.id, r.payload.toString()]), [[next, 'after'], [a, 'x'], [b, 'y']])
    } finally {
      await evaq.close()
    }
  })

  test(`WAL IDs continue above the last one issued after reopen when only the newest records were removed (durability ${label})`, async t => {
    const dir = await tmpDir(t)
    let evaq = await Evaq.open(dir, { durability })
    const ids = await evaq.pushWalMany(Array.from({ length: 50 }, (_, i) => `r${i}`))
    const last = ids.at(-1)!
    await evaq.removeWal(ids.slice(10))
    t.like(await evaq.wal.stats(), { count: 10, lastId: ids[9] })
    await evaq.close()

    evaq = await Evaq.open(dir, { durability })
    try {
      t.like(await evaq.wal.stats(), { count: 10, firstId: ids[0], lastId: ids[9] })
      const next = await evaq.pushWal('after')
      t.true(next > last, `got ${next}, last issued ${last}`)
    } finally {
      await evaq.close()
    }
  })

  test(`DLQ IDs continue above the last one issued after reopen, even after removing everything (durability ${label})`, async t => {
    const dir = await tmpDir(t)
    const N = 120
    let evaq = await Evaq.open(dir, { durability })
    const ids = await Promise.all(Array.from({ length: N }, (_, i) => evaq.pushRetryItem(`d${i}`, { error: new Error(`e${i}`) })))
    t.is(Math.max(...ids), N)
    t.is(await evaq.doneRetryItems(ids), N)
    t.like(await evaq.dlq.stats(), { count: 0, nextId: N + 1 })
    await evaq.close()

    evaq = await Evaq.open(dir, { durability })
    await evaq.close()

    evaq = await Evaq.open(dir, { durability })
    try {
      t.like(await evaq.dlq.stats(), { count: 0, firstId: undefined, lastId: undefined })
      t.deepEqual(await evaq.firstNBytesFromDeadLetterQueue(0, 1024), [])
      const next = await evaq.pushRetryItem('after', { error: 'again' })
      t.true(next > N, `got ${next}`)
      const records = await evaq.firstNBytesFromDeadLetterQueue(0, 1024)
      t.deepEqual(records.map(r => [r.id, r.payload.toString(), r.error]), [[next, 'after', { message: 'again' }]])
      // The WAL's counter is separate and untouched.
      t.is(await evaq.pushWal('w'), 1)
    } finally {
      await evaq.close()
    }
  })
}
