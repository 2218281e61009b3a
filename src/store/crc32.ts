import { crc32 as zlibCrc32 } from 'node:zlib'

/**
 * CRC-32 (the zlib polynomial, the same values as node:zlib's crc32) of a whole buffer.
 *
 * zlib's crc32 costs some 60 ns a call before it reads a byte (argument checks and the crossing
 * into C++), more than the checksum itself of a small payload: at 100 B that call was the largest
 * single cost of a push. Below SMALL bytes a table-driven loop in JavaScript (slicing by 8) is
 * about twice as fast; above, zlib's vectorised code wins and is used.
 */
const SMALL = 256

/** T[k * 256 + b]: the CRC of byte b followed by k zero bytes (slicing-by-8 tables). */
const T = new Int32Array(8 * 256)
for (let b = 0; b < 256; b++) {
  let c = b
  for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1
  T[b] = c
}
for (let b = 0; b < 256; b++) {
  let c = T[b]!
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff]! ^ (c >>> 8)
    T[k * 256 + b] = c
  }
}

export function crc32 (data: Uint8Array): number {
  const n = data.length
  if (n >= SMALL) return zlibCrc32(data)
  let c = -1
  let i = 0
  for (const end = n - (n & 7); i < end; i += 8) {
    c ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)
    c = T[1792 + (c & 0xff)]! ^ T[1536 + ((c >>> 8) & 0xff)]! ^ T[1280 + ((c >>> 16) & 0xff)]! ^ T[1024 + (c >>> 24)]! ^
      T[768 + data[i + 4]!]! ^ T[512 + data[i + 5]!]! ^ T[256 + data[i + 6]!]! ^ T[data[i + 7]!]!
  }
  for (; i < n; i++) c = T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ -1) >>> 0
}
