import { endianness } from 'node:os'
import { crc32 } from 'node:zlib'
import { EvaqError } from '../errors.js'
import { crc32 as payloadCrc } from './crc32.js'

/**
 * On-disk encodings. A segment is one LevelDB entry holding a contiguous run of records:
 *
 *   0  u8   format version (1)
 *   1  u8   flags (0)
 *   2  u16  reserved (0)
 *   4  u32  record count n
 *   8  f64  push time, ms since the epoch
 *  16  u32  CRC32 of bytes 0..16 and of the index at the end
 *  20       the payloads, back to back
 *  end-8n   the index: n × (u32 payload length, u32 CRC32 of the payload)
 *
 * All integers big-endian. The index comes last so that a segment can be built while pushes
 * arrive: each payload is copied once, straight into the buffer that becomes the LevelDB value.
 * The header CRC guards the lengths, so a damaged index is reported as corruption instead of
 * being used to slice wrong payloads; each record's CRC guards its payload.
 */
export const SEGMENT_VERSION = 1
export const HEADER_BYTES = 20
export const INDEX_ENTRY_BYTES = 8
const INDEX_ENTRY = INDEX_ENTRY_BYTES
const LITTLE_ENDIAN = endianness() === 'LE'

/** Keys are fixed-width big-endian IDs, so LevelDB's byte order is ID order. */
export function encodeKey (id: number): Buffer {
  const key = Buffer.allocUnsafe(8)
  key.writeUInt32BE(Math.floor(id / 0x1_0000_0000), 0)
  key.writeUInt32BE(id >>> 0, 4)
  return key
}

export function decodeKey (key: Uint8Array): number {
  if (key.byteLength !== 8) throw new EvaqError('EVAQ_CORRUPTION', `A key of ${key.byteLength} bytes is not an ID key`)
  const view = Buffer.from(key.buffer, key.byteOffset, 8)
  return view.readUInt32BE(0) * 0x1_0000_0000 + view.readUInt32BE(4)
}

export interface SegmentHeader {
  readonly firstId: number
  readonly count: number
  readonly pushedAt: number
  /** Payload length of each record. */
  readonly lengths: Uint32Array
  readonly crcs: Uint32Array
  /** Byte offset of each record's payload in the segment value. */
  readonly offsets: Float64Array
  readonly payloadBytes: number
}

/**
 * Builds one segment as payloads arrive. `append` copies the payload and computes its CRC at
 * once, so the caller may reuse its buffer as soon as push returns; `finish` writes the header
 * and the index and returns the LevelDB value without another copy of the payloads.
 */
export class SegmentBuilder {
  count = 0
  payloadBytes = 0
  private buf: Buffer
  private pos = HEADER_BYTES
  private index: Uint32Array

  /** `capacity`: bytes to start with; `records`: how many records to make room for in the index. */
  constructor (readonly firstId: number, capacity = 16 * 1024, records = 16) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, HEADER_BYTES + 64))
    this.index = new Uint32Array(2 * Math.max(16, records))
  }

  /** Bytes the segment can reach (header, payloads and index) before its buffer grows. */
  get capacity (): number {
    return this.buf.byteLength
  }

  append (payload: Uint8Array): void {
    const n = this.count
    const need = this.pos + payload.byteLength
    if (need > this.buf.byteLength) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.byteLength * 2))
      this.buf.copy(grown, 0, 0, this.pos)
      this.buf = grown
    }
    if (2 * n + 2 > this.index.length) {
      const grown = new Uint32Array(this.index.length * 2)
      grown.set(this.index)
      this.index = grown
    }
    this.buf.set(payload, this.pos)
    this.pos = need
    this.index[2 * n] = payload.byteLength
    this.index[2 * n + 1] = payloadCrc(payload)
    this.count = n + 1
    this.payloadBytes += payload.byteLength
  }

  /** The finished segment value. The builder must not be used afterwards. */
  finish (pushedAt: number): Buffer {
    const n = this.count
    const total = this.pos + n * INDEX_ENTRY
    let out = this.buf
    if (total > out.byteLength) {
      out = Buffer.allocUnsafe(total)
      this.buf.copy(out, 0, 0, this.pos)
    } else if (out.byteLength > 2 * total) {
      // Do not let a large, mostly empty buffer live on in caches.
      out = Buffer.from(out.subarray(0, total))
    }
    out.writeUInt8(SEGMENT_VERSION, 0)
    out.writeUInt8(0, 1)
    out.writeUInt16BE(0, 2)
    out.writeUInt32BE(n, 4)
    out.writeDoubleBE(pushedAt, 8)
    // The index is kept in the platform's byte order: one copy, then swapped to big-endian in
    // place (not in this.index: a flush retried after CommitLater finishes the builder again).
    out.set(new Uint8Array(this.index.buffer, 0, n * INDEX_ENTRY), this.pos)
    if (LITTLE_ENDIAN) out.subarray(this.pos, total).swap32()
    const value = out.subarray(0, total)
    value.writeUInt32BE(headerCrc(value, n), 16)
    return value
  }
}

/** Encode `payloads[from..to)` as one segment. */
export function encodeSegment (payloads: readonly Uint8Array[], from: number, to: number, pushedAt: number): Buffer {
  let bytes = 0
  for (let i = from; i < to; i++) bytes += payloads[i]!.byteLength
  const builder = new SegmentBuilder(0, HEADER_BYTES + bytes + (to - from) * INDEX_ENTRY)
  for (let i = from; i < to; i++) builder.append(payloads[i]!)
  return builder.finish(pushedAt)
}

function headerCrc (buf: Buffer, n: number): number {
  return crc32(buf.subarray(buf.byteLength - n * INDEX_ENTRY), crc32(buf.subarray(0, 16)))
}

/** Decode and verify a segment's header and index; payloads are verified per record on read. */
export function decodeHeader (firstId: number, value: Buffer): SegmentHeader {
  const bad = (why: string): EvaqError =>
    new EvaqError('EVAQ_CORRUPTION', `Segment at ID ${firstId} is damaged: ${why}`, { ids: [firstId] })
  if (value.byteLength < HEADER_BYTES) throw bad(`only ${value.byteLength} bytes`)
  const version = value.readUInt8(0)
  if (version !== SEGMENT_VERSION) throw bad(`unknown segment version ${version}`)
  const n = value.readUInt32BE(4)
  if (n === 0 || HEADER_BYTES + n * INDEX_ENTRY > value.byteLength) throw bad(`record count ${n} does not fit`)
  if (headerCrc(value, n) !== value.readUInt32BE(16)) throw bad('header checksum mismatch')
  const lengths = new Uint32Array(n)
  const crcs = new Uint32Array(n)
  const offsets = new Float64Array(n)
  let pos = HEADER_BYTES
  for (let i = 0, index = value.byteLength - n * INDEX_ENTRY; i < n; i++, index += INDEX_ENTRY) {
    lengths[i] = value.readUInt32BE(index)
    crcs[i] = value.readUInt32BE(index + 4)
    offsets[i] = pos
    pos += lengths[i]!
  }
  const payloadBytes = pos - HEADER_BYTES
  if (pos !== value.byteLength - n * INDEX_ENTRY) {
    throw bad(`payload lengths add up to ${payloadBytes} bytes, the segment has room for ${value.byteLength - n * INDEX_ENTRY - HEADER_BYTES}`)
  }
  return { firstId, count: n, pushedAt: value.readDoubleBE(8), lengths, crcs, offsets, payloadBytes }
}

/** The payload of record `index`, verified against its CRC. The returned Buffer is a view. */
export function payloadAt (header: SegmentHeader, value: Buffer, index: number): Buffer {
  const start = header.offsets[index]!
  const payload = value.subarray(start, start + header.lengths[index]!)
  if (payloadCrc(payload) !== header.crcs[index]) {
    const id = header.firstId + index
    throw new EvaqError('EVAQ_CORRUPTION', `Record ${id} failed its checksum`, { ids: [id] })
  }
  return payload
}

/**
 * Segment summaries: a 16-byte entry beside each segment (u32 record count, u32 payload bytes,
 * f64 push time), so that cleanup, retention and drop-oldest can walk the oldest segments and
 * keep exact counters without reading the segments themselves.
 */
export interface SegmentSummary {
  readonly firstId: number
  readonly count: number
  readonly payloadBytes: number
  readonly pushedAt: number
}

export function encodeSummary (count: number, payloadBytes: number, pushedAt: number): Buffer {
  const out = Buffer.allocUnsafe(16)
  out.writeUInt32BE(count, 0)
  out.writeUInt32BE(payloadBytes, 4)
  out.writeDoubleBE(pushedAt, 8)
  return out
}

export function decodeSummary (firstId: number, value: Uint8Array): SegmentSummary {
  if (value.byteLength !== 16) throw new EvaqError('EVAQ_CORRUPTION', `Summary of segment ${firstId} has ${value.byteLength} bytes`, { ids: [firstId] })
  const b = Buffer.from(value.buffer, value.byteOffset, 16)
  const count = b.readUInt32BE(0)
  if (count === 0) throw new EvaqError('EVAQ_CORRUPTION', `Summary of segment ${firstId} counts no records`, { ids: [firstId] })
  return { firstId, count, payloadBytes: b.readUInt32BE(4), pushedAt: b.readDoubleBE(8) }
}

/**
 * Removal sets: which records of a segment were removed one by one. Stored as u32 removed count,
 * u32 removed payload bytes, then one bit per record.
 */
export interface RemovalSet {
  readonly bits: Uint8Array
  removed: number
  removedBytes: number
}

export function newRemovalSet (count: number): RemovalSet {
  return { bits: new Uint8Array((count + 7) >>> 3), removed: 0, removedBytes: 0 }
}

export function copyRemovalSet (count: number, from: RemovalSet | undefined): RemovalSet {
  const set = newRemovalSet(count)
  if (from !== undefined) {
    set.bits.set(from.bits)
    set.removed = from.removed
    set.removedBytes = from.removedBytes
  }
  return set
}

export function isRemoved (set: RemovalSet | undefined, index: number): boolean {
  return set !== undefined && (set.bits[index >>> 3]! & (1 << (index & 7))) !== 0
}

export function markRemoved (set: RemovalSet, index: number, bytes: number): void {
  set.bits[index >>> 3]! |= 1 << (index & 7)
  set.removed++
  set.removedBytes += bytes
}

export function encodeRemovalSet (set: RemovalSet): Buffer {
  const out = Buffer.allocUnsafe(8 + set.bits.byteLength)
  out.writeUInt32BE(set.removed, 0)
  out.writeUInt32BE(set.removedBytes, 4)
  out.set(set.bits, 8)
  return out
}

export function decodeRemovalSet (firstId: number, count: number, value: Uint8Array): RemovalSet {
  if (value.byteLength !== 8 + ((count + 7) >>> 3)) {
    throw new EvaqError('EVAQ_CORRUPTION', `Removal set of segment ${firstId} has ${value.byteLength} bytes for ${count} records`, { ids: [firstId] })
  }
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  const set = { bits: new Uint8Array(b.subarray(8)), removed: b.readUInt32BE(0), removedBytes: b.readUInt32BE(4) }
  let popcount = 0
  for (let i = 0; i < count; i++) if (isRemoved(set, i)) popcount++
  if (popcount !== set.removed || popcount >= count) {
    throw new EvaqError('EVAQ_CORRUPTION', `Removal set of segment ${firstId} is inconsistent`, { ids: [firstId] })
  }
  return set
}
