import test from 'ava'
import { DEFAULTS, resolveOptions } from '../../src/options.js'

test('no options resolves to the frozen defaults', t => {
  t.is(resolveOptions(undefined), DEFAULTS)
  t.true(Object.isFrozen(DEFAULTS))
  t.is(DEFAULTS.durability, 'sync')
})

test('options are validated and frozen', t => {
  const o = resolveOptions({ durability: { intervalMs: 50 }, flushWorkers: 4, lingerMs: 2 })
  t.deepEqual(o.durability, { intervalMs: 50 })
  t.is(o.flushWorkers, 4)
  t.true(Object.isFrozen(o))
})

const bad: Array<[string, unknown]> = [
  ['durability', 'always'],
  ['durability', { intervalMs: 0 }],
  ['durability', { intervalMs: 10, extra: 1 }],
  ['maxBatchBytes', 0],
  ['maxBatchBytes', 1.5],
  ['maxBatchCount', -1],
  ['flushWorkers', 0],
  ['flushWorkers', Number.NaN],
  ['lingerMs', '5'],
  ['maxBufferedBytes', Infinity],
  ['maxPayloadBytes', -1],
  ['compression', 'yes'],
  ['clock', {}],
]

for (const [name, value] of bad) {
  test(`rejects ${name} = ${JSON.stringify(value) ?? String(value)}`, t => {
    t.throws(() => resolveOptions({ [name]: value }), { code: 'EVAQ_INVALID_ARGUMENT' })
  })
}

test('rejects unknown options', t => {
  t.throws(() => resolveOptions({ flushWorker: 2 } as never), { code: 'EVAQ_INVALID_ARGUMENT' })
  t.throws(() => resolveOptions('sync' as never), { code: 'EVAQ_INVALID_ARGUMENT' })
})

test('maxPayloadBytes cannot exceed maxBufferedBytes', t => {
  t.throws(() => resolveOptions({ maxBufferedBytes: 1000, maxPayloadBytes: 1001 }), { code: 'EVAQ_INVALID_ARGUMENT' })
})
