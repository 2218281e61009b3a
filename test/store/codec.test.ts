import test from 'ava'
import fc from 'fast-check'
import { crc32 as zlibCrc32 } from 'node:zlib'
import {
  decodeHeader, decodeKey, encodeKey, encodeSegment, HEADER_BYTES, INDEX_ENTRY_BYTES, isRemoved, markRemoved,
  newRemovalSet, payloadAt, decodeRemovalSet, SegmentBuilder, encodeRemovalSet, decodeSummary, encodeSummary,
} from '../../src/store/codec.js'
import type { EvaqError } from '../../src/errors.js'

test('keys are fixed-width big-endian, so byte order is ID order', t => {
  fc.assert(fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (a, b) => {
    const ka = encodeKey(a)
    const kb = encodeKey(b)
    t.is(decodeKey(ka), a)
    return Math.sign(Buffer.compare(ka, kb)) === Math.sign(a - b)
  }))
  t.throws(() => decodeKey(Buffer.alloc(7)), { code: 'EVAQ_CORRUPTION' })
})

test('a segment round-trips its payloads', t => {
  const arraysOfBytes = fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 50 })
  fc.assert(fc.property(arraysOfBytes, fc.integer({ min: 1, max: 2 ** 40 }), (arrays, firstId) => {
    const payloads = arrays.map(a => Buffer.from(a))
    const value = encodeSegment(payloads, 0, payloads.length, 1234.5)
    const header = decodeHeader(firstId, value)
    t.is(header.count, payloads.length)
    t.is(header.pushedAt, 1234.5)
    t.is(header.payloadBytes, payloads.reduce((n, p) => n + p.byteLength, 0))
    payloads.forEach((p, i) => t.deepEqual(payloadAt(header, value, i), p))
  }), { numRuns: 200 })
})

test('a builder grows as payloads arrive and copies them at once', t => {
  const builder = new SegmentBuilder(7, 8)
  const scratch = Buffer.from('reused')
  builder.append(scratch)
  scratch.fill(0)
  const big = Buffer.alloc(100_000, 0x61)
  builder.append(big)
  const value = builder.finish(5)
  const header = decodeHeader(7, value)
  t.is(header.count, 2)
  t.is(value.byteLength, HEADER_BYTES + 6 + 100_000 + 2 * INDEX_ENTRY_BYTES)
  t.is(payloadAt(header, value, 0).toString(), 'reused')
  t.deepEqual(payloadAt(header, value, 1), big)
})

test('the index is stored big-endian, (length, CRC-32) per record, after the payloads', t => {
  const payloads = ['a', 'bb', 'x'.repeat(300)].map(s => Buffer.from(s))
  // Room for one record only: the index grows.
  const builder = new SegmentBuilder(1, 64, 1)
  for (const p of payloads) builder.append(p)
  const value = builder.finish(0)
  const expected = Buffer.alloc(payloads.length * INDEX_ENTRY_BYTES)
  payloads.forEach((p, i) => {
    expected.writeUInt32BE(p.byteLength, i * INDEX_ENTRY_BYTES)
    expected.writeUInt32BE(zlibCrc32(p), i * INDEX_ENTRY_BYTES + 4)
  })
  t.deepEqual(value.subarray(value.byteLength - expected.byteLength), expected)
  t.deepEqual(value.subarray(HEADER_BYTES, value.byteLength - expected.byteLength), Buffer.concat(payloads))
})

test('finishing a builder again (a flush retried after CommitLater) gives the same segment', t => {
  const builder = new SegmentBuilder(3, 4096, 4)
  for (let i = 0; i < 40; i++) builder.append(Buffer.alloc(i, i))
  const first = Buffer.from(builder.finish(42))
  const again = builder.finish(42)
  t.deepEqual(again, first)
  const header = decodeHeader(3, again)
  for (let i = 0; i < 40; i++) t.deepEqual(payloadAt(header, again, i), Buffer.alloc(i, i))
})

test('a segment can hold a slice of the payloads', t => {
  const payloads = ['a', 'bb', 'ccc', 'dddd'].map(s => Buffer.from(s))
  const value = encodeSegment(payloads, 1, 3, 0)
  const header = decodeHeader(10, value)
  t.is(header.count, 2)
  t.is(payloadAt(header, value, 0).toString(), 'bb')
  t.is(payloadAt(header, value, 1).toString(), 'ccc')
})

test('a flipped payload byte fails the record checksum and names the ID', t => {
  const payloads = ['first', 'second', 'third'].map(s => Buffer.from(s))
  const value = encodeSegment(payloads, 0, 3, 0)
  const header = decodeHeader(100, value)
  value[header.offsets[1]! + 2]! ^= 0x01
  t.is(payloadAt(header, value, 0).toString(), 'first')
  const err = t.throws<EvaqError>(() => payloadAt(header, value, 1), { code: 'EVAQ_CORRUPTION' })
  t.deepEqual(err?.ids, [101])
})

test('every single-byte flip in a header or index is detected', t => {
  const payloads = ['x', 'yy', 'zzz'].map(s => Buffer.from(s))
  const clean = encodeSegment(payloads, 0, 3, 42)
  const index = clean.length - 3 * INDEX_ENTRY_BYTES
  const positions = [...Array.from({ length: HEADER_BYTES }, (_, i) => i), ...Array.from({ length: 3 * INDEX_ENTRY_BYTES }, (_, i) => index + i)]
  for (const i of positions) {
    for (const bit of [0x01, 0x80]) {
      const value = Buffer.from(clean)
      value[i]! ^= bit
      t.throws(() => decodeHeader(1, value), { code: 'EVAQ_CORRUPTION' }, `byte ${i} bit ${bit}`)
    }
  }
})

test('truncated and empty segments are corruption', t => {
  const value = encodeSegment([Buffer.from('hello')], 0, 1, 0)
  t.throws(() => decodeHeader(1, value.subarray(0, value.length - 1)), { code: 'EVAQ_CORRUPTION' })
  t.throws(() => decodeHeader(1, Buffer.alloc(0)), { code: 'EVAQ_CORRUPTION' })
  t.throws(() => decodeHeader(1, Buffer.concat([value, Buffer.from([0])])), { code: 'EVAQ_CORRUPTION' })
})

test('removal sets keep one bit per record and their totals', t => {
  const set = newRemovalSet(17)
  t.is(set.bits.byteLength, 3)
  markRemoved(set, 0, 10)
  markRemoved(set, 16, 5)
  t.true(isRemoved(set, 0))
  t.false(isRemoved(set, 1))
  t.true(isRemoved(set, 16))
  t.false(isRemoved(undefined, 0))
  const back = decodeRemovalSet(1, 17, encodeRemovalSet(set))
  t.deepEqual([back.removed, back.removedBytes, [...back.bits]], [2, 15, [...set.bits]])
  t.throws(() => decodeRemovalSet(1, 17, new Uint8Array(2)), { code: 'EVAQ_CORRUPTION' })
  const lying = encodeRemovalSet(set)
  lying.writeUInt32BE(3, 0)
  t.throws(() => decodeRemovalSet(1, 17, lying), { code: 'EVAQ_CORRUPTION' })
})

test('segment summaries round-trip', t => {
  t.deepEqual(decodeSummary(9, encodeSummary(3, 300, 12.5)), { firstId: 9, count: 3, payloadBytes: 300, pushedAt: 12.5 })
  t.throws(() => decodeSummary(9, Buffer.alloc(15)), { code: 'EVAQ_CORRUPTION' })
  t.throws(() => decodeSummary(9, encodeSummary(0, 0, 0)), { code: 'EVAQ_CORRUPTION' })
})
