/**
 * Spike (throwaway): the frame that wraps one evaq segment (src/store/codec.ts) in a segment
 * file of storage format 2.
 *
 *   0  u32  magic 'EVS2'
 *   4  u32  file generation (a recycled file gets a new one: its old frames no longer match)
 *   8  u32  sequence of the frame in the log
 *  12  u32  record count
 *  16  f64  first ID
 *  24  u32  segment length in bytes (the frame's body)
 *  28  u32  CRC32 of bytes 0..28, chained with the segment's own header CRC (which covers the
 *           segment header and its index of per-record lengths and CRCs)
 *
 * The body is the segment exactly as codec.ts builds it, so payloads are copied once (into the
 * SegmentBuilder) and written with writev([frame header, segment]). Payload bytes are guarded by
 * the per-record CRCs already in the segment's index: a torn frame fails them.
 */
import { crc32 } from 'node:zlib'
import { decodeHeader, payloadAt } from '../../src/store/codec.js'

export const FRAME_BYTES = 32
export const MAGIC = 0x45565332

export interface FrameInfo {
  readonly generation: number
  readonly seq: number
  readonly count: number
  readonly firstId: number
  readonly length: number
}

export function encodeFrame (f: FrameInfo, segment: Buffer): Buffer {
  const h = Buffer.allocUnsafe(FRAME_BYTES)
  h.writeUInt32BE(MAGIC, 0)
  h.writeUInt32BE(f.generation, 4)
  h.writeUInt32BE(f.seq >>> 0, 8)
  h.writeUInt32BE(f.count, 12)
  h.writeDoubleBE(f.firstId, 16)
  h.writeUInt32BE(f.length, 24)
  h.writeUInt32BE(crc32(h.subarray(0, 28), segment.readUInt32BE(16)), 28)
  return h
}

/** The frame at `at` of `buf` if it is whole, of this generation and its header checks; else undefined (the tail). */
export function readFrame (buf: Buffer, at: number, generation: number): FrameInfo | undefined {
  if (at + FRAME_BYTES > buf.byteLength) return undefined
  if (buf.readUInt32BE(at) !== MAGIC || buf.readUInt32BE(at + 4) !== generation) return undefined
  const length = buf.readUInt32BE(at + 24)
  if (length < 20 || at + FRAME_BYTES + length > buf.byteLength) return undefined
  const body = at + FRAME_BYTES
  if (crc32(buf.subarray(at, at + 28), buf.readUInt32BE(body + 16)) !== buf.readUInt32BE(at + 28)) return undefined
  return {
    generation,
    seq: buf.readUInt32BE(at + 8),
    count: buf.readUInt32BE(at + 12),
    firstId: buf.readDoubleBE(at + 16),
    length,
  }
}

/** Verify a frame's body: the segment header and index, and optionally every record's CRC. */
export function verifyBody (buf: Buffer, at: number, f: FrameInfo, records: boolean): boolean {
  const body = buf.subarray(at + FRAME_BYTES, at + FRAME_BYTES + f.length)
  try {
    const header = decodeHeader(f.firstId, body)
    if (header.count !== f.count) return false
    if (records) for (let i = 0; i < header.count; i++) payloadAt(header, body, i)
    return true
  } catch {
    return false
  }
}
