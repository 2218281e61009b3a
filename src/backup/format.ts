import { crc32 } from 'node:zlib'

/**
 * The backup archive, version 1: every entry of the database at one snapshot, each with its own
 * checksum, between a manifest and a summary. All integers big-endian.
 *
 *   magic     8 bytes   `EVAQBAK\n`
 *   version   u32       ARCHIVE_VERSION (a reader refuses any other with EVAQ_UNSUPPORTED_FORMAT)
 *   frames    one after another:
 *
 *     0   u8    kind
 *     1   u32   key length k
 *     5   u32   value length v
 *     9   u32   CRC32 of the value
 *    13   k     the key
 *  13+k   u32   CRC32 of bytes 0 .. 13+k (the frame head)
 *  17+k   v     the value; present in MANIFEST, ENTRY and SUMMARY frames, absent in a REFERENCE
 *
 *   kinds, in this order:
 *     MANIFEST (1)  exactly one, first: the key is empty, the value the manifest as UTF-8 JSON
 *                   (see manifest.ts: archive id, full or incremental and its base, per log the
 *                   high-water ID and the next ID).
 *     ENTRY (2)     one database entry: its key (sublevel prefix included) and value.
 *     REFERENCE (3) one database entry whose value is not carried: the value of the same key in
 *                   the base archive's state, which has this length and CRC (incremental only).
 *     SUMMARY (4)   exactly one, last: the key is empty, the value JSON (see manifest.ts):
 *                   counts, and a digest that chains the head CRC of every frame before it.
 *
 * ENTRY and REFERENCE frames are in strictly increasing key order (LevelDB's byte order), and
 * together list every key of the snapshot: an archive states the whole database, an incremental
 * one included, whose references keep it small. A segment's value is checked by its own CRC (the
 * "checksum per segment"), the head CRC guards the lengths before they are trusted, and the
 * summary's count and digest catch a frame dropped, duplicated or moved whole. A file without
 * its summary was cut short.
 */

export const ARCHIVE_MAGIC = Buffer.from('EVAQBAK\n', 'latin1')
export const ARCHIVE_VERSION = 1
/** Magic and version. */
export const PREAMBLE_BYTES = ARCHIVE_MAGIC.byteLength + 4
/** Kind, key length, value length, value CRC. */
export const HEAD_BYTES = 13

export const FrameKind = Object.freeze({ MANIFEST: 1, ENTRY: 2, REFERENCE: 3, SUMMARY: 4 } as const)
// eslint-disable-next-line @typescript-eslint/no-redeclare -- the value and its type share a name, as an enum would
export type FrameKind = typeof FrameKind[keyof typeof FrameKind]

/** Media type of an archive (the HTTP route answers with it) and the usual file extension. */
export const ARCHIVE_MEDIA_TYPE = 'application/vnd.evaq.backup'
export const ARCHIVE_EXTENSION = '.evaq'

/** Largest key and manifest/summary a reader accepts: anything larger is damage, not data. */
export const MAX_KEY_BYTES = 64 * 1024
export const MAX_JSON_BYTES = 16 * 1024 * 1024
/** Largest value a reader accepts (LevelDB values are far smaller; a flipped length is not). */
export const MAX_VALUE_BYTES = 1024 * 1024 * 1024

export function preamble (version = ARCHIVE_VERSION): Buffer {
  const out = Buffer.allocUnsafe(PREAMBLE_BYTES)
  ARCHIVE_MAGIC.copy(out, 0)
  out.writeUInt32BE(version, ARCHIVE_MAGIC.byteLength)
  return out
}

/**
 * The head of a frame: everything but the value. `valueCrc` is the value's CRC (for a
 * reference, of the value it stands for). Returns the head and its CRC (for the digest).
 */
export function frameHead (kind: FrameKind, key: Uint8Array, valueLength: number, valueCrc: number): { head: Buffer, crc: number } {
  const head = Buffer.allocUnsafe(HEAD_BYTES + key.byteLength + 4)
  head.writeUInt8(kind, 0)
  head.writeUInt32BE(key.byteLength, 1)
  head.writeUInt32BE(valueLength, 5)
  head.writeUInt32BE(valueCrc, 9)
  head.set(key, HEAD_BYTES)
  const crc = crc32(head.subarray(0, HEAD_BYTES + key.byteLength))
  head.writeUInt32BE(crc, HEAD_BYTES + key.byteLength)
  return { head, crc }
}

/** The summary's digest: the head CRCs of the frames, in order, chained. */
export function chainDigest (digest: number, headCrc: number): number {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(headCrc, 0)
  return crc32(b, digest)
}
