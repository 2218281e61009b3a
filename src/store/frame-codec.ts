import zlib from 'node:zlib'
import { EvaqError } from '../errors.js'
import type { SegmentCompression } from '../options.js'

/**
 * Compression of segment-file frame bodies (storage format 2, the `segmentCompression` option).
 *
 * A frame's header names the codec of its body (frame.ts, byte 6). A compressed body is
 *
 *   0  u32  the decoded length (big-endian)
 *   4       the compressed stream (raw deflate, or a zstd frame)
 *
 * and the frame's body CRC covers these stored bytes, so damage is caught before anything is
 * decompressed. The decoded length bounds the decompression (maxOutputLength): a body that
 * decodes to any other length is EVAQ_CORRUPTION, and no body can make a read allocate more than
 * its frame says. A body that would not shrink by at least an eighth is stored as it is (codec
 * none): incompressible payloads cost one attempt, never a larger file or a slower read.
 */

export type { SegmentCompression }

/** The codec byte of a frame header. 0 is what every frame written before compression holds. */
export const CODEC_NONE = 0
export const CODEC_DEFLATE = 1
export const CODEC_ZSTD = 2
export type FrameCodec = typeof CODEC_NONE | typeof CODEC_DEFLATE | typeof CODEC_ZSTD

const CODEC_NAMES = ['none', 'deflate', 'zstd'] as const
export function codecName (codec: number): string {
  return CODEC_NAMES[codec] ?? `unknown codec ${codec}`
}

/** Fast levels: compression runs on the write path, synchronously. */
const DEFLATE_LEVEL = 1
const ZSTD_LEVEL = 1
const LENGTH_BYTES = 4

/** zstd as the running Node provides it (zlib.zstdCompressSync: Node >= 22.15 / 23.8). */
export interface Zstd {
  compress (data: Uint8Array): Buffer
  /** Throws when the output would pass `maxOutputLength`. */
  decompress (data: Uint8Array, maxOutputLength: number): Buffer
}

type SyncFn = (data: Uint8Array, options: object) => Buffer

function nodeZstd (): Zstd | undefined {
  const z = zlib as unknown as { zstdCompressSync?: SyncFn, zstdDecompressSync?: SyncFn, constants: Record<string, number> }
  const compress = z.zstdCompressSync
  const decompress = z.zstdDecompressSync
  const levelParam = z.constants['ZSTD_c_compressionLevel']
  if (typeof compress !== 'function' || typeof decompress !== 'function' || levelParam === undefined) return undefined
  return {
    compress: data => compress(data, { params: { [levelParam]: ZSTD_LEVEL } }),
    decompress: (data, maxOutputLength) => decompress(data, { maxOutputLength }),
  }
}

let zstd: Zstd | undefined = nodeZstd()

/**
 * The seam through which tests run the code paths of a Node without zstd (`undefined`), or with
 * another implementation: replaces what the running Node provides until the returned function is
 * called.
 */
export function useZstd (impl: Zstd | undefined): () => void {
  const before = zstd
  zstd = impl
  return () => { zstd = before }
}

export function zstdAvailable (): boolean {
  return zstd !== undefined
}

/** The codec `choice` writes with on this Node: 'auto' is zstd where available, else deflate. */
export function writeCodec (choice: SegmentCompression): FrameCodec {
  switch (choice) {
    case 'none': return CODEC_NONE
    case 'deflate': return CODEC_DEFLATE
    case 'auto': return zstd !== undefined ? CODEC_ZSTD : CODEC_DEFLATE
    case 'zstd':
      if (zstd === undefined) {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT',
          `Expected \`segmentCompression\` 'zstd' to be available, but Node ${process.version} has no zlib.zstdCompressSync (Node >= 22.15 / 23.8 has)`)
      }
      return CODEC_ZSTD
  }
}

function compress (data: Uint8Array, codec: FrameCodec): Buffer {
  return codec === CODEC_ZSTD ? zstd!.compress(data) : zlib.deflateRawSync(data, { level: DEFLATE_LEVEL })
}

/** Whether `packed` is worth storing instead of `raw`: at least an eighth smaller. */
function saves (raw: number, packed: number): boolean {
  return packed <= raw - raw / 8
}

/**
 * A body larger than this is probed first: its first PROBE_BYTES are compressed, and when they do
 * not shrink by an eighth the body is stored raw without compressing the rest. Random or already
 * compressed payloads then cost a probe per segment instead of a whole pass (deflate runs at
 * tens of MB/s over random bytes: compressing them whole cut the push rate of 1 KiB records by
 * more than half, perf/README.md).
 */
const PROBE_BYTES = 16 * 1024

/** The bytes to store for `body` and their codec: `body` itself unless compressing saves an eighth. */
export function packBody (body: Uint8Array, codec: FrameCodec): { body: Uint8Array, codec: FrameCodec } {
  if (codec === CODEC_NONE || body.byteLength < 64) return { body, codec: CODEC_NONE }
  if (body.byteLength > 4 * PROBE_BYTES && !saves(PROBE_BYTES, compress(body.subarray(0, PROBE_BYTES), codec).byteLength)) {
    return { body, codec: CODEC_NONE }
  }
  const packed = compress(body, codec)
  if (!saves(body.byteLength, LENGTH_BYTES + packed.byteLength)) return { body, codec: CODEC_NONE }
  const out = Buffer.allocUnsafe(LENGTH_BYTES + packed.byteLength)
  out.writeUInt32BE(body.byteLength, 0)
  packed.copy(out, LENGTH_BYTES)
  return { body: out, codec }
}

/**
 * The segment a stored body of `codec` holds. `where` names the segment in errors: a codec this
 * Node cannot decode is EVAQ_UNSUPPORTED_FORMAT (the frame is intact: never reported as damage),
 * a body that does not decode to its stated length EVAQ_CORRUPTION.
 */
export function unpackBody (stored: Buffer, codec: number, where: { firstId: number, describe: string }): Buffer {
  if (codec === CODEC_NONE) return stored
  const ids = [where.firstId]
  if (codec !== CODEC_DEFLATE && codec !== CODEC_ZSTD) {
    throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT', `${where.describe} is stored with ${codecName(codec)}, which this version of evaq does not know`, { ids })
  }
  if (codec === CODEC_ZSTD && zstd === undefined) {
    throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT',
      `${where.describe} is compressed with zstd, which Node ${process.version} cannot decompress (Node >= 22.15 / 23.8 can); the segment is intact`, { ids })
  }
  const bad = (why: string, cause?: unknown): EvaqError =>
    new EvaqError('EVAQ_CORRUPTION', `${where.describe} is damaged: ${why}`, { ids, cause })
  if (stored.byteLength < LENGTH_BYTES) throw bad('its compressed body is shorter than its length field')
  const length = stored.readUInt32BE(0)
  if (length === 0) throw bad('its stated decoded length is 0')
  const data = stored.subarray(LENGTH_BYTES)
  let out: Buffer
  try {
    // One byte more than stated: a longer output is caught as too long, not cut to length.
    out = codec === CODEC_ZSTD
      ? zstd!.decompress(data, length + 1)
      : zlib.inflateRawSync(data, { maxOutputLength: length + 1 })
  } catch (err) {
    throw bad(`its ${codecName(codec)} body does not decode to ${length} bytes`, err)
  }
  if (out.byteLength !== length) throw bad(`its ${codecName(codec)} body decodes to ${out.byteLength} bytes, not ${length}`)
  return out
}
