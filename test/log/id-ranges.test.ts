import test from 'ava'
import fc from 'fast-check'
import { IdRanges } from '../../src/log/id-ranges.js'

test('IdRanges behaves like a set of IDs', t => {
  fc.assert(fc.property(
    fc.array(fc.oneof(
      fc.record({ op: fc.constant('add' as const), id: fc.integer({ min: 1, max: 60 }) }),
      fc.record({ op: fc.constant('range' as const), id: fc.integer({ min: 1, max: 60 }), len: fc.integer({ min: 0, max: 8 }) }),
      fc.record({ op: fc.constant('prune' as const), id: fc.integer({ min: 1, max: 60 }) })
    ), { maxLength: 60 }),
    ops => {
      const set = new IdRanges()
      const model = new Set<number>()
      for (const o of ops) {
        if (o.op === 'add') { set.add(o.id); model.add(o.id) } else if (o.op === 'range') {
          set.addRange(o.id, o.id + o.len)
          for (let i = o.id; i <= o.id + o.len; i++) model.add(i)
        } else {
          set.pruneBelow(o.id)
          for (const id of [...model]) if (id < o.id) model.delete(id)
        }
      }
      for (let id = 0; id <= 70; id++) {
        if (set.has(id) !== model.has(id)) return false
        let missing = id
        while (model.has(missing)) missing++
        if (set.nextMissing(id) !== missing) return false
      }
      const ranges = set.toJSON()
      for (let i = 1; i < ranges.length; i++) if (ranges[i]![0] <= ranges[i - 1]![1] + 1) return false
      return set.size === model.size && IdRanges.from(ranges).size === model.size
    }
  ), { numRuns: 500 })
  t.pass()
})
