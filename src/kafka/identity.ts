import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EvaqError } from '../errors.js'
import { KAFKA_IDENTITY_FILE } from '../schema.js'
import { replaceFileDurably } from '../store/durable-file.js'

/**
 * The identity of a data directory, the first half of every `evaq-id`. WAL record IDs are unique
 * only within one directory; two producers (or a directory that was deleted and created again)
 * reuse them. A random 96-bit identity, created on first use and kept in a small file beside
 * LevelDB's, tells them apart. A copy of the directory keeps the identity: so a restored backup
 * continues the same ID sequence without reissuing IDs, which the queue already guarantees.
 */
export const IDENTITY_FILE = KAFKA_IDENTITY_FILE
const FORMAT = /^[A-Za-z0-9_-]{16}$/

/** Read the directory's identity, creating it (written and fsynced before use) if there is none. */
export async function loadIdentity (dir: string): Promise<string> {
  const file = join(dir, IDENTITY_FILE)
  const existing = await readIdentity(file)
  if (existing !== undefined) return existing
  const identity = randomBytes(12).toString('base64url')
  try {
    await replaceFileDurably(file, `${identity}\n`, { tmp: `${file}.${process.pid}.tmp` })
  } catch (cause) {
    throw new EvaqError('EVAQ_IO', `Cannot write ${file}`, { cause })
  }
  return identity
}

async function readIdentity (file: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (cause) {
    if ((cause as { code?: unknown }).code === 'ENOENT') return undefined
    throw new EvaqError('EVAQ_IO', `Cannot read ${file}`, { cause })
  }
  const identity = text.trim()
  if (!FORMAT.test(identity)) throw new EvaqError('EVAQ_CORRUPTION', `${file} does not hold an identity (16 characters of base64url)`)
  return identity
}
