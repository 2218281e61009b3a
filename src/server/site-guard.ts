import type { IncomingHttpHeaders } from 'node:http'
import { isIP } from 'node:net'
import { EvaqError } from '../errors.js'

/**
 * The Host and Origin checks of the service: the defence of loopback services (Jupyter, Docker's
 * API, …) against the web pages of the browser on the same machine. See docs/security.md.
 *
 * - **Host** (DNS rebinding): a page of `attacker.example` whose name the attacker re-points at
 *   127.0.0.1 reaches the service as its own origin, and the browser lets it read the answers.
 *   Its requests still carry `Host: attacker.example`. The service answers only a Host that is
 *   `localhost`, an IP address (a page whose origin is an address is not rebound: its origin is
 *   the service's own) or a name the operator allowed. The port is not compared: an SSH tunnel or
 *   a proxy may change it, and it plays no part in rebinding.
 * - **Origin** (cross-site requests): a page can send a "simple" request (a form post, `fetch` in
 *   `no-cors` mode, an image) to any address without asking first; it cannot read the answer,
 *   but the request has done its work. Browsers name the sending page in `Origin` (every
 *   non-GET request) and `Sec-Fetch-Site` (every request). The service answers a request whose
 *   `Origin` is neither its own (the origin whose host is the request's `Host`) nor an allowed
 *   one, and a request without `Origin` that `Sec-Fetch-Site` says came from another site,
 *   except a top-level GET navigation (a link to the console), which shows the answer to the
 *   user and not to the page that linked it. `Origin: null` (sandboxed frames, `file:` pages) is
 *   another origin. Clients that are not browsers (curl, SDKs, the CLI) send neither header.
 *
 * Both run in the `onRequest` hook, before the body is read and before any route runs.
 */

export interface SiteGuardOptions {
  /**
   * Host names (without a port) that requests may name besides `localhost` and IP addresses;
   * `'*'` allows any. `undefined` turns the Host check off.
   */
  readonly allowedHosts?: readonly string[] | undefined
  /** Origins (`scheme://host[:port]`) besides the service's own whose requests are answered. */
  readonly allowedOrigins?: readonly string[] | undefined
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/

/** An `--allowed-host` value, lower-cased; EVAQ_INVALID_ARGUMENT unless a host name, an IP address or `*`. */
export function allowedHost (value: string): string {
  const v = value.toLowerCase()
  const bare = v.replace(/^\[(.*)\]$/, '$1')
  if (v === '*' || HOST_NAME.test(v) || isIP(bare) !== 0) return bare.replace(/\.$/, '')
  throw new EvaqError('EVAQ_INVALID_ARGUMENT',
    `Expected an allowed host to be a host name without a port (e.g. evaq.internal) or \`*\`, got \`${value.slice(0, 80)}\``)
}

/** An `--allowed-origin` value as browsers send it (`scheme://host[:port]`, lower case, no path). */
export function allowedOrigin (value: string): string {
  let origin: string | undefined
  try {
    const url = new URL(value)
    if ((url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' && `${url.origin}/` === url.href.replace(/\/?$/, '/')) origin = url.origin
  } catch {}
  if (origin === undefined) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected an allowed origin to be scheme://host[:port] (e.g. https://evaq.example.com), got \`${value.slice(0, 80)}\``)
  return origin
}

/** The host name of a `Host` header value: without its port and, for IPv6, its brackets; lower case. */
function hostName (host: string): string {
  const h = host.toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end === -1 ? h : h.slice(1, end)
  }
  const colon = h.indexOf(':')
  return colon === -1 ? h : h.slice(0, colon)
}

/**
 * The check of one request's headers: undefined when it may go on, else the error to answer
 * (EVAQ_MISDIRECTED for a Host, EVAQ_FORBIDDEN for an Origin, EVAQ_INVALID_ARGUMENT for an
 * HTTP/1.1 request without a Host).
 */
export function siteGuard (options: SiteGuardOptions): (method: string, headers: IncomingHttpHeaders, httpVersion: string) => EvaqError | undefined {
  const hosts = options.allowedHosts === undefined ? undefined : new Set(options.allowedHosts.map(allowedHost))
  const anyHost = hosts === undefined || hosts.has('*')
  const origins = new Set((options.allowedOrigins ?? []).map(allowedOrigin))
  // The last Host that passed: a client sends the same one on every request.
  let lastHost = ''
  return (method, headers, httpVersion) => {
    const host = headers.host
    if (host === undefined || host === '') {
      if (httpVersion !== '1.0') return new EvaqError('EVAQ_INVALID_ARGUMENT', 'An HTTP/1.1 request needs a Host header')
    } else if (!anyHost && host !== lastHost) {
      const name = hostName(host)
      if (name !== 'localhost' && isIP(name) === 0 && !hosts!.has(name) && !hosts!.has(name.replace(/\.$/, ''))) {
        return new EvaqError('EVAQ_MISDIRECTED', `This service does not serve the host \`${name.slice(0, 80)}\` (allow it with --allowed-host)`)
      }
      lastHost = host
    }
    const origin = headers.origin
    if (origin !== undefined) {
      if (host !== undefined && (origin.length === host.length + 7 || origin.length === host.length + 8)) {
        const o = origin.toLowerCase()
        const h = host.toLowerCase()
        if (o === `http://${h}` || o === `https://${h}`) return undefined
      }
      if (origins.has(origin.toLowerCase())) return undefined
      return new EvaqError('EVAQ_FORBIDDEN', `Refused a request from the web page origin \`${origin.slice(0, 80)}\` (allow it with --allowed-origin)`)
    }
    const site = headers['sec-fetch-site']
    if (site === 'cross-site' || site === 'same-site') {
      if ((method === 'GET' || method === 'HEAD') && headers['sec-fetch-mode'] === 'navigate') return undefined
      return new EvaqError('EVAQ_FORBIDDEN', `Refused a request a web page of another site sent (Sec-Fetch-Site: ${site})`)
    }
    return undefined
  }
}
