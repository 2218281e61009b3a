import test from 'ava'
import { readFile } from 'node:fs/promises'
import { ERROR_CODES, EvaqError, fromLevel, isEvaqError } from '../../src/errors.js'

test('the error table of docs/api.md lists exactly the codes evaq has, with their HTTP status', async t => {
  const page = await readFile(new URL('../../docs/api.md', import.meta.url), 'utf8')
  const rows = [...page.matchAll(/^\| `(EVAQ_[A-Z_]+)` \| (\d{3}) \|/gm)].map(m => [m[1], Number(m[2])])
  t.deepEqual(
    rows.sort(),
    Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status]).sort()
  )
})

test('EvaqError carries a stable code, cause and retriable flag', t => {
  const cause = new Error('inner')
  const err = new EvaqError('EVAQ_IO', 'outer', { cause, ids: [3] })
  t.is(err.code, 'EVAQ_IO')
  t.is(err.cause, cause)
  t.true(err.retriable)
  t.is(err.status, 503)
  t.deepEqual(err.ids, [3])
  t.true(isEvaqError(err, 'EVAQ_IO'))
  t.false(isEvaqError(err, 'EVAQ_CLOSED'))
  t.true(err instanceof Error)
})

test('LevelDB errors are wrapped and kept as cause', t => {
  const locked = Object.assign(new Error('not open'), { code: 'LEVEL_DATABASE_NOT_OPEN', cause: Object.assign(new Error('lock'), { code: 'LEVEL_LOCKED' }) })
  t.is(fromLevel(locked, 'open').code, 'EVAQ_LOCKED')
  t.is(fromLevel(locked, 'open').cause, locked)
  t.is(fromLevel(Object.assign(new Error('x'), { code: 'LEVEL_CORRUPTION' }), 'read').code, 'EVAQ_CORRUPTION')
  t.is(fromLevel(Object.assign(new Error('x'), { code: 'LEVEL_IO_ERROR' }), 'write').code, 'EVAQ_IO')
  t.is(fromLevel(Object.assign(new Error('x'), { code: 'LEVEL_DATABASE_NOT_OPEN' }), 'read').code, 'EVAQ_CLOSED')
})
