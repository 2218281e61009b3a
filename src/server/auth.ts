import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import { lookup } from 'node:dns/promises'
import { EvaqError } from '../errors.js'

/**
 * A bearer-token check in constant time: both sides are hashed first, so neither the comparison
 * nor the length of the token the client sent tells anything about the expected one.
 */
export function bearerCheck (token: string): (header: string | undefined) => boolean {
  const expected = createHash('sha256').update(token, 'utf8').digest()
  return header => {
    if (typeof header !== 'string' || header.length < 7 || header.slice(0, 7).toLowerCase() !== 'bearer ') return false
    const got = createHash('sha256').update(header.slice(7).trim(), 'utf8').digest()
    return timingSafeEqual(got, expected)
  }
}

/** Whether an IP address is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x). */
export function isLoopbackAddress (address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, '')
  if (isIP(a) === 4) return a.startsWith('127.')
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 && a.slice(7).startsWith('127.')
}

/**
 * Whether `host` binds to loopback only: an address, or a name all of whose addresses are loopback.
 * `0.0.0.0` and `::` bind every interface and are not.
 */
export async function bindsLoopbackOnly (host: string): Promise<boolean> {
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0) return isLoopbackAddress(host)
  let addresses: Array<{ address: string }>
  try {
    addresses = await lookup(host, { all: true })
  } catch (err) {
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Cannot resolve the host \`${host}\` to bind`, { cause: err })
  }
  return addresses.length > 0 && addresses.every(a => isLoopbackAddress(a.address))
}
