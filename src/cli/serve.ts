import type { LevelWithSilent } from 'pino'
import { EvaqError } from '../errors.js'
import type { EvaqOptions, FullPolicy } from '../options.js'
import { serve, SERVE_DEFAULTS } from '../server/serve.js'
import { givenS3Flag, s3Options } from './s3-flags.js'
import { durabilityFlag, durationFlag, intFlag, UsageError } from './usage.js'

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const POLICIES: readonly FullPolicy[] = ['backpressure', 'reject', 'drop-oldest', 'offload']

/**
 * `evaq serve`: the service in the foreground until SIGTERM or SIGINT, then a graceful stop and
 * exit 0. Logs are JSON lines (pino) on stdout.
 */
export async function serveCommand (values: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const dir = typeof values.data === 'string' ? values.data : './data'
  const level = (values['log-level'] as string | undefined) ?? 'info'
  if (!LEVELS.includes(level)) throw new UsageError(`--log-level is one of ${LEVELS.join(', ')}, got \`${level}\``)
  const token = typeof values.token === 'string' ? values.token : process.env.EVAQ_TOKEN
  if (token !== undefined && token.length === 0) throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Expected the token to be non-empty')
  const evaq: EvaqOptions = {}
  const durability = durabilityFlag(values.durability as string | undefined)
  if (durability !== undefined) evaq.durability = durability
  if (values['max-disk-bytes'] !== undefined) evaq.maxDiskBytes = intFlag(values['max-disk-bytes'] as string, '--max-disk-bytes', 0, 1)
  if (values['min-free-disk-bytes'] !== undefined) evaq.minFreeDiskBytes = intFlag(values['min-free-disk-bytes'] as string, '--min-free-disk-bytes', 0)
  const onFull = values['on-full'] as string | undefined
  if (onFull !== undefined) {
    if (!POLICIES.includes(onFull as FullPolicy)) throw new UsageError(`--on-full is one of ${POLICIES.join(', ')}, got \`${onFull.slice(0, 40)}\``)
    evaq.onFull = onFull as FullPolicy
  }
  tierFlags(values, evaq)
  const pushTimeout = durationFlag(values['push-timeout'] as string | undefined, '--push-timeout')
  await serve({
    dir,
    host: (values.host as string | undefined) ?? SERVE_DEFAULTS.host,
    port: intFlag(values.port as string | undefined, '--port', SERVE_DEFAULTS.port, 0, 65535),
    ...(token === undefined ? {} : { token }),
    ...(Array.isArray(values['allowed-host']) ? { allowedHosts: values['allowed-host'] } : {}),
    ...(Array.isArray(values['allowed-origin']) ? { allowedOrigins: values['allowed-origin'] } : {}),
    ...(values['body-limit'] === undefined ? {} : { bodyLimit: intFlag(values['body-limit'] as string, '--body-limit', 0, 1) }),
    ...(pushTimeout === undefined ? {} : { pushTimeoutMs: pushTimeout }),
    logRequests: values['log-requests'] === true,
    logLevel: level as LevelWithSilent,
    evaq,
    exitOnSignal: true,
  })
  // Runs until a signal: serve() exits the process once it stopped.
  return new Promise<number>(() => {})
}

/**
 * `--tier s3://bucket/prefix` with `--s3-endpoint`, `--s3-region`, `--s3-force-path-style`: the
 * queue's tier (credentials from the AWS SDK's default chain). It offloads (`onFull: 'offload'`)
 * unless `--on-full` says otherwise, and offloading needs `--max-disk-bytes` (when to).
 */
function tierFlags (values: Record<string, string | boolean | string[] | undefined>, evaq: EvaqOptions): void {
  const tier = values.tier as string | undefined
  if (tier === undefined) {
    const flag = givenS3Flag(values)
    if (flag !== undefined) throw new UsageError(`--${flag} is for --tier s3://BUCKET/PREFIX, which is not given`)
    if (evaq.onFull === 'offload') throw new UsageError('--on-full offload needs --tier s3://BUCKET/PREFIX (where to offload to)')
    return
  }
  let s3
  try {
    s3 = s3Options(tier, values)
  } catch (err) {
    throw new UsageError(`--tier: ${(err as Error).message}`)
  }
  evaq.tier = { s3 }
  evaq.onFull ??= 'offload'
  if (evaq.onFull === 'offload' && evaq.maxDiskBytes === undefined) {
    throw new UsageError('--tier offloads when the data directory reaches --max-disk-bytes N, which is not given')
  }
}
