// @ts-check
/** The page's modal dialogs: open one and give the focus back after it; ask before a change. */
import { byId, byIdAs, setText } from './dom.js'

/**
 * Open a dialog as modal, and give the focus back to where it was when it closes.
 * @param {HTMLDialogElement} dialog
 */
export function showModal (dialog) {
  const before = document.activeElement
  dialog.addEventListener('close', () => {
    if (before instanceof HTMLElement && before.isConnected && document.activeElement !== before) before.focus()
  }, { once: true })
  dialog.showModal()
}

/**
 * Ask before a change; resolves true for the OK button, false for Cancel or Escape.
 * @param {string} title
 * @param {string} text
 * @param {string} okLabel
 * @returns {Promise<boolean>}
 */
export function confirmAction (title, text, okLabel) {
  const dialog = byIdAs('confirm', HTMLDialogElement)
  setText(byId('confirm-title'), title)
  setText(byId('confirm-text'), text)
  setText(byId('confirm-ok'), okLabel)
  dialog.returnValue = ''
  return new Promise(resolve => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true })
    showModal(dialog)
  })
}
