import { EvaqError } from '../errors.js'
import { checkS3 } from '../options.js'
import { parseS3Url, type S3Options } from '../store/s3-bucket.js'
import type { Flags, Values } from './args.js'

/**
 * The flags that say where a bucket is, shared by every command that reaches object storage
 * (`serve --tier`, `backup`/`restore` with s3:// archives). Credentials are never flags: the AWS
 * SDK's default chain finds them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, ...).
 */
export const S3_FLAGS: Flags = Object.freeze({
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  's3-force-path-style': { type: 'boolean' },
})

export const S3_FLAG_NAMES = Object.freeze(Object.keys(S3_FLAGS))

/** The help lines of {@link S3_FLAGS} (22 columns of flag, as the commands' help has them). */
export const S3_FLAG_HELP = `  --s3-endpoint URL     an S3-compatible server (default: AWS's own)
  --s3-region R         the region (default AWS_REGION, else us-east-1)
  --s3-force-path-style URL/BUCKET/KEY addressing, which most S3-compatible
                        servers need`

/** Where a bucket is, without which bucket: what the flags give. */
export interface S3Place {
  readonly endpoint?: string
  readonly region: string
  readonly forcePathStyle?: boolean
}

const REGION = /^[a-z0-9-]{1,64}$/

/**
 * The place the flags give: `--s3-endpoint` (an http:// or https:// URL), `--s3-region` (else
 * `AWS_REGION`, else us-east-1) and `--s3-force-path-style`. Bad values are
 * EVAQ_INVALID_ARGUMENT (exit 2), naming the flag.
 */
export function s3Place (values: Values, env: NodeJS.ProcessEnv = process.env): S3Place {
  const endpoint = values['s3-endpoint'] as string | undefined
  if (endpoint !== undefined) {
    let url: URL | undefined
    try { url = new URL(endpoint) } catch { url = undefined }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || /\s/.test(endpoint)) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`--s3-endpoint\` to be an http:// or https:// URL, got \`${endpoint.slice(0, 200)}\``)
    }
  }
  const flagRegion = values['s3-region'] as string | undefined
  const region = flagRegion ?? (env.AWS_REGION === undefined || env.AWS_REGION === '' ? undefined : env.AWS_REGION) ?? 'us-east-1'
  if (!REGION.test(region)) {
    const from = flagRegion === undefined ? 'AWS_REGION' : '--s3-region'
    throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Expected \`${from}\` to be a region such as us-east-1, got \`${region.slice(0, 64)}\``)
  }
  return {
    region,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(values['s3-force-path-style'] === true ? { forcePathStyle: true } : {}),
  }
}

/**
 * S3Options for `s3://bucket/prefix` (parseS3Url: EVAQ_INVALID_ARGUMENT when it is not one) at
 * the place the flags give, checked as `Evaq.open` checks a tier's.
 */
export function s3Options (url: string, values: Values, env: NodeJS.ProcessEnv = process.env): S3Options {
  const { bucket, key } = parseS3Url(url)
  return checkS3({ ...s3Place(values, env), bucket, ...(key === '' ? {} : { prefix: key }) }, url.slice(0, 200))
}

/** The first of the S3 flags given, if any (for commands that refuse them without a bucket). */
export function givenS3Flag (values: Values): string | undefined {
  return S3_FLAG_NAMES.find(f => values[f] !== undefined)
}
