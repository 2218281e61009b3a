import { crc32 } from 'node:zlib'
import { EvaqError } from '../errors.js'
import { CODEC_NONE, unpackBody, type FrameCodec } from './frame-codec.js'

/**
 * Storage format 2 keeps payload bytes out of LevelDB: each flush's segments are appended to a
 * *segment file* as frames, and LevelDB keeps only where each frame is (see segment-files.ts).
 * A frame is a 32-byte header followed by its body (a segment, as store/codec.ts encodes it):
 *
 *   0  u32  magic 0x45565146 ("EVQF")
 *   4  u8   frame version (2)
 *   5  u8   flags: bit 0 SELF_COMMITTED (the frame's own fdatasync is its commit point; see below),
 *           bit 1 JOINS_NEXT and bit 2 JOINS_PREVIOUS (one pushMany spread over several frames)
 *   6  u8   codec of the body: 0 none, 1 deflate, 2 zstd (frame-codec.ts)
 *   7  u8   reserved (0)
 *   8  u32  the number of the file the frame was written to
 *  12  u32  body length
 *  16  u64  first ID of the segment (two u32 halves: IDs are below 2^53)
 *  24  u32  CRC32 of the body
 *  28  u32  CRC32 of bytes 0..28
 *
 * All integers big-endian. Frames start at 8-byte boundaries.
 *
 * The codec byte was reserved (0) before segment compression: every frame written before it
 * reads as codec none, unchanged, so the frame version stays 2. The body length and the body CRC
 * are those of the stored (possibly compressed) bytes; a compressed body states its decoded
 * length (frame-codec.ts), and frameBody() returns the decoded segment.
 *
 * Files are written ahead and reused, so a file holds bytes of earlier frames past its last
 * frame. The file number in every header tells them apart: a recycled file gets a new number,
 * and a frame whose number is not its file's is an old one. Recovery reads frames from a known
 * position until the first one that is not whole and current (segment-files.ts scan()).
 *
 * SELF_COMMITTED: a push's frame is committed once its fdatasync returns; the LevelDB entry that
 * locates it is written afterwards without a sync, and rebuilt from the frame if it was lost. A
 * frame without the flag (a move between logs) is committed by the LevelDB batch that locates it,
 * synced, because that batch also removes the record from the log it leaves: without its
 * LevelDB entry such a frame is garbage, never recovered (it would duplicate a record).
 *
 * JOINS_NEXT / JOINS_PREVIOUS: a pushMany is all or nothing. When its records fill more than one
 * segment, its frames are appended together and carry these flags, and recovery indexes them only
 * as a whole group (file-recovery.ts).
 */
export const FRAME_MAGIC = 0x45565146
export const FRAME_VERSION = 2
export const FRAME_HEADER_BYTES = 32
export const FRAME_ALIGN = 8
export const SELF_COMMITTED = 1
export const JOINS_NEXT = 2
export const JOINS_PREVIOUS = 4

export interface FrameHeader {
  readonly flags: number
  readonly file: number
  readonly bodyLength: number
  readonly firstId: number
  readonly bodyCrc: number
  /** The codec of the stored body (frame-codec.ts); 0 (none) in every frame written before it existed. */
  readonly codec: number
}

/** Bytes a frame with a body of `bodyLength` takes in its file, padding included. */
export function frameSpan (bodyLength: number): number {
  const n = FRAME_HEADER_BYTES + bodyLength
  return n + ((FRAME_ALIGN - (n % FRAME_ALIGN)) % FRAME_ALIGN)
}

/** The header of a frame holding `body`. */
export function encodeFrameHeader (file: number, firstId: number, body: Uint8Array, flags: number, codec: FrameCodec = CODEC_NONE): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES)
  h.writeUInt32BE(FRAME_MAGIC, 0)
  h.writeUInt8(FRAME_VERSION, 4)
  h.writeUInt8(flags, 5)
  h.writeUInt8(codec, 6)
  h.writeUInt8(0, 7)
  h.writeUInt32BE(file, 8)
  h.writeUInt32BE(body.byteLength, 12)
  h.writeUInt32BE(Math.floor(firstId / 0x1_0000_0000), 16)
  h.writeUInt32BE(firstId >>> 0, 20)
  h.writeUInt32BE(crc32(body), 24)
  h.writeUInt32BE(crc32(h.subarray(0, 28)), 28)
  return h
}

/**
 * The header at `buf[at..]`, or undefined when those bytes are not a whole, intact header of a
 * frame of file `file` (zeros, an older file's frame, a torn write): where a scan stops.
 */
export function decodeFrameHeader (buf: Uint8Array, at: number, file: number): FrameHeader | undefined {
  if (at + FRAME_HEADER_BYTES > buf.byteLength) return undefined
  const h = Buffer.from(buf.buffer, buf.byteOffset + at, FRAME_HEADER_BYTES)
  if (h.readUInt32BE(0) !== FRAME_MAGIC) return undefined
  if (crc32(h.subarray(0, 28)) !== h.readUInt32BE(28)) return undefined
  if (h.readUInt8(4) !== FRAME_VERSION || h.readUInt32BE(8) !== file) return undefined
  return {
    flags: h.readUInt8(5),
    file,
    bodyLength: h.readUInt32BE(12),
    firstId: h.readUInt32BE(16) * 0x1_0000_0000 + h.readUInt32BE(20),
    bodyCrc: h.readUInt32BE(24),
    codec: h.readUInt8(6),
  }
}

/** Where a frame is: what LevelDB keeps for each segment in format 2. */
export interface Locator {
  /** The segment file's number. */
  readonly file: number
  /** Byte offset of the frame's header in the file. */
  readonly offset: number
  /** The body's length. */
  readonly length: number
}

export const LOCATOR_BYTES = 16

/** A locator as LevelDB stores it: u32 file, u64 offset (two halves), u32 body length. */
export function encodeLocator (loc: Locator): Buffer {
  const b = Buffer.allocUnsafe(LOCATOR_BYTES)
  b.writeUInt32BE(loc.file, 0)
  b.writeUInt32BE(Math.floor(loc.offset / 0x1_0000_0000), 4)
  b.writeUInt32BE(loc.offset >>> 0, 8)
  b.writeUInt32BE(loc.length, 12)
  return b
}

export function decodeLocator (firstId: number, value: Uint8Array): Locator {
  if (value.byteLength !== LOCATOR_BYTES) {
    throw new EvaqError('EVAQ_CORRUPTION', `The locator of segment ${firstId} has ${value.byteLength} bytes, not ${LOCATOR_BYTES}`, { ids: [firstId] })
  }
  const b = Buffer.from(value.buffer, value.byteOffset, LOCATOR_BYTES)
  const high = b.readUInt32BE(4)
  // Offsets are safe integers (below 2^53): a larger one is a damaged locator, not a position.
  if (high >= 0x20_0000) {
    throw new EvaqError('EVAQ_CORRUPTION', `The locator of segment ${firstId} names an offset beyond any segment file`, { ids: [firstId] })
  }
  return { file: b.readUInt32BE(0), offset: high * 0x1_0000_0000 + b.readUInt32BE(8), length: b.readUInt32BE(12) }
}

/**
 * The segment in the frame at `buf[at..]`, checked against `loc` and `firstId` and decoded:
 * EVAQ_CORRUPTION naming the segment when the header or the body does not match what LevelDB
 * says is there (the CRC is checked before decompressing), EVAQ_UNSUPPORTED_FORMAT when the body
 * is intact but compressed with a codec this Node cannot decode (frame-codec.ts).
 */
export function frameBody (buf: Uint8Array, at: number, loc: Locator, firstId: number): Buffer {
  const bad = (why: string): EvaqError =>
    new EvaqError('EVAQ_CORRUPTION', `Segment ${firstId} in segment file ${loc.file} at offset ${loc.offset} is damaged: ${why}`, { ids: [firstId] })
  const h = decodeFrameHeader(buf, at, loc.file)
  if (h === undefined) throw bad('its frame header is not intact')
  if (h.firstId !== firstId || h.bodyLength !== loc.length) throw bad(`the frame holds segment ${h.firstId} of ${h.bodyLength} bytes`)
  const start = at + FRAME_HEADER_BYTES
  if (start + h.bodyLength > buf.byteLength) throw bad('the file ends inside the frame')
  const body = Buffer.from(buf.buffer, buf.byteOffset + start, h.bodyLength)
  if (crc32(body) !== h.bodyCrc) throw bad('body checksum mismatch')
  return unpackBody(body, h.codec, { firstId, describe: `Segment ${firstId} in segment file ${loc.file} at offset ${loc.offset}` })
}
