// @ts-check
/** The token prompt: ask for the service's bearer token, and try one before it is kept. */
import { ApiError } from './api.js'
import { showModal } from './dialogs.js'
import { byId, byIdAs, setText } from './dom.js'

/** @param {boolean} refused whether the token the page had was refused */
export function openTokenDialog (refused) {
  const dialog = byIdAs('token-dialog', HTMLDialogElement)
  const error = byId('token-error')
  error.hidden = !refused
  if (refused) setText(error, 'The stored token was refused (EVAQ_UNAUTHORIZED). Enter the current one.')
  if (!dialog.open) showModal(dialog)
  byIdAs('token-input', HTMLInputElement).focus()
}

/**
 * Try the token typed in the prompt; say why when it is refused.
 * @param {import('./api.js').Api} api
 * @returns {Promise<string | undefined>} the token, accepted by the service
 */
export async function tryToken (api) {
  const input = byIdAs('token-input', HTMLInputElement)
  const error = byId('token-error')
  const token = input.value.trim()
  if (token === '') return undefined
  const submit = byIdAs('token-submit', HTMLButtonElement)
  submit.disabled = true
  try {
    await api.get('/v1/overview', token)
  } catch (err) {
    error.hidden = false
    setText(error, err instanceof ApiError && err.code === 'EVAQ_UNAUTHORIZED'
      ? 'That token was refused (EVAQ_UNAUTHORIZED).'
      : `Cannot check the token: ${err instanceof Error ? err.message : String(err)}`)
    input.select()
    return undefined
  } finally {
    submit.disabled = false
  }
  input.value = ''
  error.hidden = true
  return token
}
