import test from 'ava'
import fc from 'fast-check'
import { crc32 as zlibCrc32 } from 'node:zlib'
import { crc32 } from '../../src/store/crc32.js'

// The CRC stored with each record is zlib's CRC-32: segments written before and after must verify alike.

test('crc32 gives zlib\'s CRC-32 at every length, small (JavaScript) and large (zlib)', t => {
  for (let n = 0; n <= 600; n++) {
    const data = Buffer.alloc(n)
    for (let i = 0; i < n; i++) data[i] = (i * 131 + n * 7) & 0xff
    t.is(crc32(data), zlibCrc32(data), `length ${n}`)
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 1024 }), data => crc32(data) === zlibCrc32(data)))
})

test('crc32 reads only the view it is given', t => {
  const whole = Buffer.from('xxhello, world, these are the payload bytesyy')
  const view = whole.subarray(2, whole.length - 2)
  t.is(crc32(view), zlibCrc32(Buffer.from(view)))
  t.is(crc32(new Uint8Array(whole.buffer, whole.byteOffset + 2, 5)), zlibCrc32(Buffer.from('hello')))
})
