// @ts-check
/**
 * Building elements. Text goes in as text nodes only (never innerHTML): payloads and error
 * messages are data from anyone who could push a record.
 */

/**
 * @typedef {string | number | Node | null | undefined | false} Child
 */

/**
 * An element with attributes (`on*` functions become listeners, `false`/`undefined` are left out).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false || v === null) continue
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v))
    else if (k === 'class') el.className = String(v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

/**
 * @param {Node} el
 * @param {Array<Child | Child[]>} children
 */
function append (el, children) {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c)
    else if (c === null || c === undefined || c === false) continue
    else el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)))
  }
}

/**
 * An element that must be in the page.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId (id) {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`#${id} is missing from the page`)
  return el
}

/**
 * Set an element's text if it changed (keeps screen readers and selections calm).
 * @param {Element} el
 * @param {string} text
 */
export function setText (el, text) {
  if (el.textContent !== text) el.textContent = text
}

/**
 * An element of a kind that must be in the page.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} kind
 * @returns {T}
 */
export function byIdAs (id, kind) {
  const el = byId(id)
  if (!(el instanceof kind)) throw new Error(`#${id} is not a ${kind.name}`)
  return el
}
