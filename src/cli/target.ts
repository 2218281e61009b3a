import { EvaqError, isEvaqError } from '../errors.js'
import { readServiceFile, type ServiceFile } from '../server/service-file.js'
import { openLocal, openRemote, type Backend } from './backend.js'
import { UsageError } from './usage.js'

/**
 * Which queue a command works on. `--url URL`: that service. Otherwise the directory of `--data`
 * (default `./data`, relative to the working directory), opened here; but LevelDB lets one
 * process hold a directory, so when `evaq serve` holds it the command goes through that service,
 * found in the directory's EVAQ-SERVICE file (service-file.ts), as `--url` would.
 */

type Values = Record<string, string | boolean | string[] | undefined>

/** The default of `--data`, relative to the working directory (what `npm start` serves). */
export const DEFAULT_DATA = './data'

/** `--data`, or its default. */
export function dataDir (values: Values): string {
  return typeof values.data === 'string' ? values.data : DEFAULT_DATA
}

/** `--token`, or EVAQ_TOKEN. */
export function tokenOf (values: Values): string | undefined {
  return typeof values.token === 'string' ? values.token : process.env.EVAQ_TOKEN
}

/**
 * The service that holds `dir`, by its EVAQ-SERVICE file. Only to be asked once the directory was
 * found held: a service that crashed leaves its file behind, but then nothing holds the lock.
 */
export function serviceHolding (dir: string): Promise<ServiceFile | undefined> {
  return readServiceFile(dir)
}

/** Who holds `dir`, for a message: the service's address and pid, or "another process". */
export async function holderOf (dir: string): Promise<string> {
  const service = await serviceHolding(dir)
  return service === undefined ? 'another process' : `the evaq service at ${service.url} (pid ${service.pid})`
}

/**
 * The queue of the command: the service at --url, the directory of --data (created first only
 * with `create`: the other commands refuse a missing or empty directory with EVAQ_NOT_FOUND), or
 * the service that holds that directory.
 */
export async function openTarget (values: Values, options: { create?: boolean } = {}): Promise<Backend> {
  const { url } = values
  if (values.data !== undefined && url !== undefined) throw new UsageError('give --data DIR or --url URL, not both')
  if (typeof url === 'string') return openRemote(url, tokenOf(values))
  const dir = dataDir(values)
  try {
    return await openLocal(dir, options)
  } catch (err) {
    if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
    const service = await serviceHolding(dir)
    if (service === undefined) {
      throw new EvaqError('EVAQ_LOCKED', `The data directory ${dir} is in use by another process, which is not an \`evaq serve\` ` +
        'that left its address in EVAQ-SERVICE. Stop it, or pass --url http://HOST:PORT of the service that holds it', { cause: err })
    }
    process.stderr.write(`evaq: ${dir} is held by the service at ${service.url} (pid ${service.pid}); going through it\n`)
    return openRemote(service.url, tokenOf(values))
  }
}

/**
 * The directory of a command that needs it to itself (check, repair): --data or its default;
 * never through a service.
 */
export function exclusiveDir (values: Values, command: string): string {
  if (values.url !== undefined) throw new UsageError(`${command} works on the directory itself (--data DIR), not through a service`)
  return dataDir(values)
}
