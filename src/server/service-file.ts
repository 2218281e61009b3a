import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SERVICE_FILE } from '../schema.js'

/**
 * `EVAQ-SERVICE` in a data directory: where the `evaq serve` that holds the directory listens.
 * LevelDB lets one process hold a directory, so a command given `--data DIR` while a service runs
 * cannot open it; with this file, `evaq backup --data DIR` takes the backup through that service
 * instead of refusing. Written once the service listens, removed when it stops. A service that
 * crashed leaves it behind, but then nothing holds the directory's lock, and the file is only
 * read after the lock was found held (and the next service overwrites it).
 */
export { SERVICE_FILE }

export interface ServiceFile {
  /** A URL this machine reaches the service at (a wildcard address is given as loopback). */
  readonly url: string
  readonly pid: number
}

/** Record where the service listens (replacing any earlier file, atomically). */
export async function writeServiceFile (dir: string, url: string): Promise<void> {
  const u = new URL(url)
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1'
  else if (u.hostname === '[::]') u.hostname = '[::1]'
  const body: ServiceFile = { url: u.origin, pid: process.pid }
  const tmp = join(dir, `${SERVICE_FILE}.${process.pid}.tmp`)
  await writeFile(tmp, `${JSON.stringify(body)}\n`)
  await rename(tmp, join(dir, SERVICE_FILE))
}

export async function removeServiceFile (dir: string): Promise<void> {
  await rm(join(dir, SERVICE_FILE), { force: true })
}

/** The service file of `dir`, or undefined when there is none (or it cannot be read). */
export async function readServiceFile (dir: string): Promise<ServiceFile | undefined> {
  let text: string
  try {
    text = await readFile(join(dir, SERVICE_FILE), 'utf8')
  } catch {
    return undefined
  }
  try {
    const v = JSON.parse(text) as Partial<ServiceFile>
    if (typeof v.url !== 'string' || typeof v.pid !== 'number') return undefined
    const u = new URL(v.url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined
    return { url: u.origin, pid: v.pid }
  } catch {
    return undefined
  }
}
