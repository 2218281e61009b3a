/**
 * A bucket on S3-compatible object storage, as the tier (tier.ts) and backups to `s3://` use it:
 * a handful of calls over the AWS SDK v3 client, which is imported on first use only (users
 * without a tier never load it), with every failure turned into an EvaqError.
 *
 * Settings that keep S3-compatible servers honest: checksums are computed only where the API
 * requires them, and uploads carry a precomputed CRC32 and their length, so that the SDK sends a
 * plain PUT (with a streamed body and its default checksum mode it sends `aws-chunked` framing,
 * which some servers store verbatim). A call fails once its connection makes no progress for
 * `requestTimeoutMs`, and the SDK tries a call at most `maxAttempts` times in all (a call with a
 * streamed body, putFile's, only once): the tier's own backoff is what retries beyond that.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { crc32 } from 'node:zlib'
import type { S3Client } from '@aws-sdk/client-s3'
import { EvaqError } from '../errors.js'

/** Where a tier (or a backup) keeps its objects. */
export interface S3Options {
  /** An S3-compatible endpoint, e.g. `http://127.0.0.1:9000`; AWS's own when left out. */
  readonly endpoint?: string
  readonly region: string
  readonly bucket: string
  /** Keys start with this (no leading or trailing slash needed). @defaultValue '' */
  readonly prefix?: string
  /** `https://host/bucket/key` instead of `https://bucket.host/key` (most S3-compatible servers). */
  readonly forcePathStyle?: boolean
  /** Left out: the AWS SDK's default chain (environment variables, shared profiles, SSO, IMDS). */
  readonly credentials?: { readonly accessKeyId: string, readonly secretAccessKey: string, readonly sessionToken?: string }
  /**
   * A call whose connection makes no progress for this long (connecting, or not a byte sent or
   * received) fails, and is retried by the caller's backoff. Not a bound on a whole call: a large
   * transfer over a slow link runs as long as it moves. @defaultValue 60000
   */
  readonly requestTimeoutMs?: number
  /** Attempts of one call in all, the SDK's own retries included. @defaultValue 2 */
  readonly maxAttempts?: number
}

/** What an upload was checked against: the object's size, its CRC32 and its MD5 (hex). */
export interface ObjectDigest {
  readonly bytes: number
  readonly crc32: number
  readonly md5: string
}

export interface ObjectInfo {
  readonly key: string
  readonly bytes: number
}

/** `s3://bucket/some/prefix` -> bucket and prefix (EVAQ_INVALID_ARGUMENT when it is not one). */
export function parseS3Url (url: string): { bucket: string, key: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url)
  if (m === null) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `Not an s3://bucket/key URL: ${url.slice(0, 200)}`)
  return { bucket: m[1]!, key: (m[2] ?? '').replace(/^\/+|\/+$/g, '') }
}

/** Whether `target` names object storage (`s3://…`) rather than a file. */
export function isS3Url (target: string): boolean {
  return target.startsWith('s3://')
}

/** Join key parts with '/', leaving out empty ones. */
export function joinKey (...parts: string[]): string {
  return parts.map(p => p.replace(/^\/+|\/+$/g, '')).filter(p => p !== '').join('/')
}

type Sdk = typeof import('@aws-sdk/client-s3')

let sdk: Promise<Sdk> | undefined

/** The AWS SDK's S3 client module, imported once, on first use. */
async function loadSdk (): Promise<Sdk> {
  sdk ??= import('@aws-sdk/client-s3').catch((err: unknown) => {
    sdk = undefined
    throw new EvaqError('EVAQ_INVALID_ARGUMENT',
      'Object storage needs the AWS SDK: npm install @aws-sdk/client-s3 @aws-sdk/lib-storage', { cause: err })
  })
  return sdk
}

/** CRC32 and MD5 of the first `bytes` bytes of the file at `path` (one sequential read). */
export async function digestFile (path: string, bytes: number): Promise<ObjectDigest> {
  const md5 = createHash('md5')
  let crc = 0
  let got = 0
  if (bytes > 0) {
    for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
      md5.update(chunk)
      crc = crc32(chunk, crc)
      got += chunk.byteLength
    }
  }
  if (got !== bytes) throw new EvaqError('EVAQ_IO', `${path} holds ${got} bytes, ${bytes} were expected`)
  return { bytes, crc32: crc, md5: md5.digest('hex') }
}

function crcBase64 (crc: number): string {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(crc >>> 0)
  return b.toString('base64')
}

/** The S3 error's name and HTTP status, for messages and for telling a missing object apart. */
function describe (err: unknown): { name: string, status: number | undefined } {
  const e = err as { name?: string, $metadata?: { httpStatusCode?: number } }
  return { name: e?.name ?? 'Error', status: e?.$metadata?.httpStatusCode }
}

function failed (what: string, err: unknown): EvaqError {
  if (err instanceof EvaqError) return err
  const { name, status } = describe(err)
  return new EvaqError('EVAQ_IO', `${what} failed: ${name}${status === undefined ? '' : ` (HTTP ${status})`}`, { cause: err })
}

/**
 * Whether a GET failed because there is no such object. Not any 404: a bucket that does not exist
 * (a wrong name in the settings) answers 404 NoSuchBucket, and must not look like an empty one.
 */
function noSuchKey (err: unknown): boolean {
  return describe(err).name === 'NoSuchKey'
}

/** A HEAD's 404 (it has no body, so NoSuchKey and NoSuchBucket look alike: see Bucket.head). */
function notFound (err: unknown): boolean {
  const { name, status } = describe(err)
  return status === 404 || name === 'NotFound'
}

/**
 * The SDK's logger: silent. With its default one (a NoOpLogger) the SDK still writes to the
 * console when a call with a streamed body fails ("An error was encountered in a non-retryable
 * streaming request."): every failed segment upload would print a line, although the failure is
 * already an EVAQ_IO the caller handles.
 */
const SILENT = { trace () {}, debug () {}, info () {}, warn () {}, error () {} }

const NODE_WARNING = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'

/**
 * Make the client without the SDK's NodeVersionSupportWarning: on Node 20 it warns that its
 * releases after the first week of January 2027 will require Node 22, which evaq's users cannot act
 * on (evaq supports Node 20, and picks no SDK release). AWS documents this variable for turning it
 * off (aws/aws-sdk-js-v3#7983); the SDK reads it while the client is made, so it is set for just
 * that and then removed again. A value the user set is left alone.
 */
function quietly<T> (make: () => T): T {
  if (process.env[NODE_WARNING] !== undefined) return make()
  process.env[NODE_WARNING] = 'true'
  try {
    return make()
  } finally {
    delete process.env[NODE_WARNING]
  }
}

export class Bucket {
  readonly name: string
  /** Keys this bucket object makes start with this (see S3Options.prefix). */
  readonly prefix: string

  private constructor (private readonly sdk: Sdk, private readonly client: S3Client, readonly options: S3Options) {
    this.name = options.bucket
    this.prefix = joinKey(options.prefix ?? '')
  }

  /** A client for `options` (imports the AWS SDK on first use). Nothing is sent until a call. */
  static async open (options: S3Options): Promise<Bucket> {
    const s = await loadSdk()
    const timeoutMs = options.requestTimeoutMs ?? 60_000
    const client = quietly(() => new s.S3Client({
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? false,
      // A copy: the SDK marks the object it is given (`$source`).
      ...(options.credentials === undefined ? {} : { credentials: { ...options.credentials } }),
      maxAttempts: options.maxAttempts ?? 2,
      // Timeouts of inactivity, not of the whole call: a 64 MiB segment over a slow link (or a
      // busy machine) takes as long as it takes, while a server that stops answering, reading or
      // sending is given up on after the same time however far the call got.
      requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      logger: SILENT,
    }))
    return new Bucket(s, client, options)
  }

  /** The full key of `name` under the prefix. */
  key (...parts: string[]): string {
    return joinKey(this.prefix, ...parts)
  }

  /**
   * Upload the first `digest.bytes` bytes of the file at `path` as `key`, then check that the
   * bucket holds exactly them: the CRC32 it echoes, else the ETag as the MD5 (a single PUT), and
   * the size a HEAD reports. EVAQ_IO when the upload fails or the object does not match.
   */
  async putFile (key: string, path: string, digest: ObjectDigest): Promise<void> {
    const s = this.sdk
    let answer: { ETag?: string, ChecksumCRC32?: string }
    try {
      answer = await this.client.send(new s.PutObjectCommand({
        Bucket: this.name,
        Key: key,
        Body: digest.bytes === 0 ? Buffer.alloc(0) : createReadStream(path, { start: 0, end: digest.bytes - 1, highWaterMark: 1024 * 1024 }),
        ContentLength: digest.bytes,
        ChecksumCRC32: crcBase64(digest.crc32),
        ContentType: 'application/octet-stream',
      }))
    } catch (err) {
      throw failed(`Uploading ${key} to bucket ${this.name}`, err)
    }
    const etag = answer.ETag?.replace(/"/g, '')
    if (answer.ChecksumCRC32 !== undefined ? answer.ChecksumCRC32 !== crcBase64(digest.crc32) : etag !== digest.md5) {
      throw new EvaqError('EVAQ_IO', `Bucket ${this.name} answered the upload of ${key} with a checksum that does not match what was sent`)
    }
    const head = await this.head(key)
    if (head === undefined || head.bytes !== digest.bytes) {
      throw new EvaqError('EVAQ_IO', `Bucket ${this.name} holds ${head?.bytes ?? 'no'} bytes under ${key} after an upload of ${digest.bytes}`)
    }
  }

  /**
   * The object's size, or undefined when there is none. A HEAD's 404 carries no body that tells a
   * missing object from a missing bucket, so it is confirmed by a GET, which does (a 404 only).
   */
  async head (key: string): Promise<ObjectInfo | undefined> {
    try {
      const h = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.name, Key: key }))
      return { key, bytes: h.ContentLength ?? 0 }
    } catch (err) {
      if (!notFound(err)) throw failed(`Looking up ${key} in bucket ${this.name}`, err)
    }
    try {
      const got = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.name, Key: key }))
      // It appeared in between: its size, without reading it.
      ;(got.Body as Readable | undefined)?.destroy()
      return { key, bytes: got.ContentLength ?? 0 }
    } catch (err) {
      if (noSuchKey(err)) return undefined
      throw failed(`Looking up ${key} in bucket ${this.name}`, err)
    }
  }

  /**
   * Download `key` into a new file at `path` (not synced) and return its digest; undefined when
   * the bucket has no such object. `signal` aborts it. A download that fails removes the file it
   * made, so that a retry to the same path can start afresh (a file that was already there is an
   * error, and is left alone).
   */
  async getFile (key: string, path: string, signal?: AbortSignal): Promise<ObjectDigest | undefined> {
    const body = await this.getStream(key, undefined, signal)
    if (body === undefined) return undefined
    const md5 = createHash('md5')
    let crc = 0
    let bytes = 0
    const file = createWriteStream(path, { flags: 'wx' })
    let made = false
    file.once('open', () => { made = true })
    try {
      await pipeline(body, async function * (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          md5.update(chunk)
          crc = crc32(chunk, crc)
          bytes += chunk.byteLength
          yield chunk
        }
      }, file, signal === undefined ? {} : { signal })
    } catch (err) {
      if (made) await rm(path, { force: true }).catch(() => {})
      throw failed(`Downloading ${key} from bucket ${this.name}`, err)
    }
    return { bytes, crc32: crc, md5: md5.digest('hex') }
  }

  /** The object's bytes (or `range`, e.g. `bytes=0-99`) as a stream; undefined when it is missing. */
  async getStream (key: string, range?: string, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const got = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.name, Key: key, ...(range === undefined ? {} : { Range: range }) }),
        signal === undefined ? {} : { abortSignal: signal })
      return got.Body as Readable
    } catch (err) {
      if (noSuchKey(err)) return undefined
      throw failed(`Downloading ${key} from bucket ${this.name}`, err)
    }
  }

  /** The whole object in memory (small objects only); undefined when it is missing. */
  async getBytes (key: string, range?: string): Promise<Buffer | undefined> {
    const body = await this.getStream(key, range)
    if (body === undefined) return undefined
    const chunks: Buffer[] = []
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk)
    } catch (err) {
      throw failed(`Downloading ${key} from bucket ${this.name}`, err)
    }
    return Buffer.concat(chunks)
  }

  /** Delete `keys` (up to 1000 a call); a key already gone counts as deleted. */
  async delete (keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const part = keys.slice(i, i + 1000)
      let errors: Array<{ Key?: string, Code?: string }> | undefined
      try {
        const out = await this.client.send(new this.sdk.DeleteObjectsCommand({
          Bucket: this.name,
          Delete: { Objects: part.map(Key => ({ Key })), Quiet: true },
        }))
        errors = out.Errors?.filter(e => e.Code !== 'NoSuchKey')
      } catch (err) {
        throw failed(`Deleting ${part.length} object(s) from bucket ${this.name}`, err)
      }
      if (errors !== undefined && errors.length > 0) {
        const e = errors[0]!
        throw new EvaqError('EVAQ_IO', `Bucket ${this.name} did not delete ${errors.length} object(s), e.g. ${e.Key ?? '?'}: ${e.Code ?? '?'}`)
      }
    }
  }

  /** Every object whose key starts with `prefix`, in key order (paged by StartAfter). */
  async * list (prefix: string): AsyncGenerator<ObjectInfo> {
    let after: string | undefined
    for (;;) {
      let page: { Contents?: Array<{ Key?: string, Size?: number }>, IsTruncated?: boolean }
      try {
        page = await this.client.send(new this.sdk.ListObjectsV2Command({
          Bucket: this.name,
          Prefix: prefix,
          ...(after === undefined ? {} : { StartAfter: after }),
        }))
      } catch (err) {
        throw failed(`Listing ${prefix} in bucket ${this.name}`, err)
      }
      const contents = page.Contents ?? []
      for (const c of contents) if (c.Key !== undefined) yield { key: c.Key, bytes: c.Size ?? 0 }
      if (page.IsTruncated !== true || contents.length === 0) return
      after = contents[contents.length - 1]!.Key
    }
  }

  /**
   * Upload a stream of unknown length as `key` (a multipart upload; lib-storage): backups. An
   * upload that fails is aborted where the server allows it, and nothing is left under `key`.
   */
  async upload (key: string, body: AsyncIterable<Uint8Array> | Readable, signal?: AbortSignal): Promise<void> {
    let lib: typeof import('@aws-sdk/lib-storage')
    try {
      lib = await import('@aws-sdk/lib-storage')
    } catch (err) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT', 'Backups to object storage need @aws-sdk/lib-storage: npm install @aws-sdk/lib-storage', { cause: err })
    }
    const { Readable: NodeReadable } = await import('node:stream')
    const upload = new lib.Upload({
      client: this.client,
      params: { Bucket: this.name, Key: key, Body: body instanceof NodeReadable ? body : NodeReadable.from(body), ContentType: 'application/octet-stream' },
      queueSize: 2,
      partSize: 8 * 1024 * 1024,
      leavePartsOnError: false,
    })
    const abort = (): void => { void upload.abort().catch(() => {}) }
    signal?.addEventListener('abort', abort, { once: true })
    try {
      await upload.done()
    } catch (err) {
      await upload.abort().catch(() => {})
      if (signal?.aborted === true) throw new EvaqError('EVAQ_ABORTED', `Uploading ${key} to bucket ${this.name} was interrupted`, { cause: err })
      throw failed(`Uploading ${key} to bucket ${this.name}`, err)
    } finally {
      signal?.removeEventListener('abort', abort)
    }
  }

  /** Stop the client's connections. */
  close (): void {
    this.client.destroy()
  }
}
