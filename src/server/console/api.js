// @ts-check
/** The `/v1` API with the bearer token the page keeps in sessionStorage. */

const TOKEN_KEY = 'evaq.token'

/** An answer of the API that was not 2xx: its status and the `code` of the evaq error body. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor (status, code, message) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

/** @returns {string | undefined} */
export function storedToken () {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined
  } catch {
    return undefined // storage disabled: the token then lives as long as the page
  }
}

/** @param {string | undefined} token */
export function storeToken (token) {
  try {
    if (token === undefined) sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, token)
  } catch {}
}

export class Api {
  /** @param {string | undefined} token */
  constructor (token) {
    /** @type {string | undefined} */
    this.token = token
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {string} [token] overrides the current token (to try one before keeping it)
   * @returns {Promise<any>}
   */
  async call (method, path, body, token = this.token) {
    /** @type {Record<string, string>} */
    const headers = { accept: 'application/json' }
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(path, { method, headers, cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    const text = await res.text()
    /** @type {any} */
    let json
    try {
      json = text === '' ? undefined : JSON.parse(text)
    } catch {
      json = undefined
    }
    if (!res.ok) {
      const code = typeof json?.code === 'string' ? json.code : `HTTP_${res.status}`
      throw new ApiError(res.status, code, typeof json?.message === 'string' ? json.message : text.slice(0, 200))
    }
    return json
  }

  /** @param {string} path @param {string} [token] */
  get (path, token) {
    return this.call('GET', path, undefined, token)
  }

  /** @param {string} path @param {unknown} body */
  post (path, body) {
    return this.call('POST', path, body)
  }
}
