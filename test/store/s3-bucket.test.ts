import test, { type ExecutionContext } from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { EvaqError } from '../../src/errors.js'
import { Bucket, digestFile, type ObjectDigest, type S3Options } from '../../src/store/s3-bucket.js'
import { S3Proxy } from '../helpers/s3-proxy.js'
import { S3Server } from '../helpers/s3.js'
import { tmpDir } from '../helpers/tmp.js'
import { eventually } from '../helpers/wait.js'

const MiB = 1024 * 1024

// Every warning this test process is given (the SDK's NodeVersionSupportWarning among them).
const warnings: Error[] = []
process.on('warning', w => warnings.push(w))

async function open (t: ExecutionContext, options: S3Options): Promise<Bucket> {
  const bucket = await Bucket.open(options)
  t.teardown(() => bucket.close())
  return bucket
}

/** A server, a proxy in front of it and a bucket through the proxy. */
async function setup (t: ExecutionContext, more: Partial<S3Options> = {}): Promise<{ server: S3Server, proxy: S3Proxy, bucket: Bucket, dir: string }> {
  const dir = await tmpDir(t, 'evaq-s3-test-')
  const server = await S3Server.start(t)
  const proxy = await S3Proxy.start(t, server)
  // Generous: the machine running the tests may be busy (the tests about timeouts set their own).
  const bucket = await open(t, proxy.options('tier', { requestTimeoutMs: 30_000, ...more }))
  return { server, proxy, bucket, dir }
}

/** A file of `bytes` random bytes. */
async function randomFile (dir: string, name: string, bytes: number): Promise<{ path: string, data: Buffer }> {
  const path = join(dir, name)
  const data = randomBytes(bytes)
  await writeFile(path, data)
  return { path, data }
}

function digestOf (data: Buffer): ObjectDigest {
  return { bytes: data.byteLength, crc32: crc32(data), md5: createHash('md5').update(data).digest('hex') }
}

async function isIo (t: ExecutionContext, p: Promise<unknown>, what: string): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: EvaqError }, what)
  t.is(err?.code, 'EVAQ_IO', what)
}

/** `n` small objects named `<prefix>/<i, 5 digits>` (a few PUTs at a time). */
async function putMany (bucket: Bucket, dir: string, prefix: string, n: number): Promise<string[]> {
  const { path } = await randomFile(dir, `small-${prefix.replace(/\//g, '_')}`, 16)
  const digest = await digestFile(path, 16)
  const keys = Array.from({ length: n }, (_, i) => bucket.key(prefix, String(i).padStart(5, '0')))
  for (let i = 0; i < keys.length; i += 8) {
    await Promise.all(keys.slice(i, i + 8).map(k => bucket.putFile(k, path, digest)))
  }
  return keys
}

async function listAll (bucket: Bucket, prefix: string): Promise<string[]> {
  const out: string[] = []
  for await (const o of bucket.list(prefix)) out.push(o.key)
  return out
}

test('putFile stores the first bytes of a larger file: head has its size, getFile its digest, getBytes a range of it', async t => {
  const { server, bucket, dir } = await setup(t)
  const { path, data } = await randomFile(dir, 'segment', 3 * MiB + 123)
  const bytes = 2 * MiB + 7
  const digest = await digestFile(path, bytes)
  t.deepEqual(digest, digestOf(data.subarray(0, bytes)))
  const key = bucket.key('wal', '0000000000000001-0000000001.seg')
  await bucket.putFile(key, path, digest)
  t.deepEqual(await server.keys(), [key])
  t.deepEqual(await bucket.head(key), { key, bytes })
  const copy = join(dir, 'copy')
  t.deepEqual(await bucket.getFile(key, copy), digest)
  t.true((await readFile(copy)).equals(data.subarray(0, bytes)))
  t.deepEqual(await bucket.getBytes(key, 'bytes=1000-1099'), data.subarray(1000, 1100))
  t.deepEqual(await bucket.getBytes(key, `bytes=${bytes - 5}-`), data.subarray(bytes - 5, bytes))
})

test('a missing key is undefined for head, getFile and getBytes (and getFile makes no file); a zero-byte object round-trips', async t => {
  const { bucket, dir } = await setup(t)
  const absent = bucket.key('absent')
  t.is(await bucket.head(absent), undefined)
  t.is(await bucket.getFile(absent, join(dir, 'absent')), undefined)
  t.false(existsSync(join(dir, 'absent')))
  t.is(await bucket.getBytes(absent), undefined)
  t.is(await bucket.getStream(absent), undefined)

  const { path } = await randomFile(dir, 'empty', 0)
  const empty = await digestFile(path, 0)
  const key = bucket.key('empty')
  await bucket.putFile(key, path, empty)
  t.deepEqual(await bucket.head(key), { key, bytes: 0 })
  t.deepEqual(await bucket.getFile(key, join(dir, 'empty-copy')), empty)
  t.deepEqual(await bucket.getBytes(key), Buffer.alloc(0))
})

test('a bucket that does not exist is EVAQ_IO for head, getFile and getBytes, not a missing object', async t => {
  const { proxy, dir } = await setup(t)
  const bucket = await open(t, proxy.options('tier', { bucket: 'no-such-bucket' }))
  const key = bucket.key('k')
  await isIo(t, bucket.head(key), 'head')
  await isIo(t, bucket.getFile(key, join(dir, 'copy')), 'getFile')
  await isIo(t, bucket.getBytes(key), 'getBytes')
  await isIo(t, listAll(bucket, 'tier/'), 'list')
})

test('list returns every key under a prefix in key order, paging past 1000 keys, and no key of another prefix', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const keys = await putMany(bucket, dir, 'a', 1203)
  // Neighbours that share the prefix's characters but not its folder.
  await putMany(bucket, dir, 'ab', 3)
  await putMany(bucket, dir, 'b', 2)
  const before = proxy.count('GET')
  const listed = await listAll(bucket, bucket.key('a') + '/')
  t.is(listed.length, 1203)
  t.deepEqual(listed, keys)
  t.is(proxy.count('GET') - before, 2, 'two pages of up to 1000')
  const sizes = []
  for await (const o of bucket.list(bucket.key('b') + '/')) sizes.push(o)
  t.deepEqual(sizes, [{ key: 'tier/b/00000', bytes: 16 }, { key: 'tier/b/00001', bytes: 16 }])
  t.deepEqual(await listAll(bucket, bucket.key('nothing') + '/'), [])
})

test('delete takes more than 1000 keys in one call, counts missing keys as deleted, and may be repeated', async t => {
  const { server, bucket, dir, proxy } = await setup(t)
  const keys = await putMany(bucket, dir, 'd', 1105)
  const kept = await putMany(bucket, dir, 'kept', 2)
  const missing = Array.from({ length: 10 }, (_, i) => bucket.key('never', String(i)))
  const before = proxy.count('POST')
  await bucket.delete([...keys, ...missing])
  t.is(proxy.count('POST') - before, 2, 'two DeleteObjects of up to 1000 keys (S3 takes no more)')
  t.deepEqual(await server.keys(), kept)
  await bucket.delete(keys)
  await bucket.delete([])
  t.deepEqual(await server.keys(), kept)
})

test('upload sends a ~20 MiB stream as a multipart upload that reads back byte for byte', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const parts = Array.from({ length: 20 }, (_, i) => randomBytes(MiB + i))
  async function * body (): AsyncGenerator<Buffer> {
    for (const p of parts) yield p
  }
  const key = bucket.key('backups', 'b1.evaq-backup')
  await bucket.upload(key, body())
  const whole = Buffer.concat(parts)
  t.true(proxy.count('POST') >= 2, 'created and completed as a multipart upload')
  t.true(proxy.count('PUT') >= 3, 'in parts')
  t.deepEqual(await bucket.head(key), { key, bytes: whole.byteLength })
  const copy = join(dir, 'backup-copy')
  t.deepEqual(await bucket.getFile(key, copy), digestOf(whole))
  t.true((await readFile(copy)).equals(whole))
})

const ERRORS = [
  { status: 500, code: 'InternalError' },
  { status: 503, code: 'SlowDown' },
  { status: 403, code: 'AccessDenied' },
] as const

test('500, 503 and 403 answers are EVAQ_IO for put, get, head, list, delete and upload', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'f', 4096)
  const digest = digestOf(data)
  const key = bucket.key('present')
  await bucket.putFile(key, path, digest)
  let n = 0
  for (const e of ERRORS) {
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['putFile', () => bucket.putFile(bucket.key('new'), path, digest)],
      ['getFile', () => bucket.getFile(key, join(dir, `copy-${n++}`))],
      ['getBytes', () => bucket.getBytes(key)],
      ['head', () => bucket.head(key)],
      ['list', () => listAll(bucket, 'tier/')],
      ['delete', () => bucket.delete([key])],
      ['upload', () => bucket.upload(bucket.key('up'), (async function * () { yield data })())],
    ]
    for (const [name, call] of calls) {
      proxy.fault = e
      await isIo(t, call(), `${name} under ${e.status} ${e.code}`)
    }
  }
  proxy.fault = undefined
  t.deepEqual(await bucket.getBytes(key), data, 'nothing reached the server')
})

test('a server slower than requestTimeoutMs fails each call with EVAQ_IO within a bound instead of hanging', async t => {
  const { bucket: setter, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'f', 4096)
  const key = setter.key('present')
  await setter.putFile(key, path, digestOf(data))
  const bucket = await open(t, proxy.options('tier', { requestTimeoutMs: 300 }))
  proxy.fault = { delayMs: 10_000 }
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['putFile', () => bucket.putFile(bucket.key('new'), path, digestOf(data))],
    ['getFile', () => bucket.getFile(key, join(dir, 'copy'))],
    ['head', () => bucket.head(key)],
    ['list', () => listAll(bucket, 'tier/')],
    ['delete', () => bucket.delete([key])],
  ]
  for (const [name, call] of calls) {
    const start = Date.now()
    await isIo(t, call(), name)
    const took = Date.now() - start
    t.true(took >= 250 && took < 5000, `${name} failed after ${took} ms`)
  }
})

test('requestTimeoutMs bounds a pause, not a whole call: a download over a slow link that keeps moving succeeds', async t => {
  const { bucket: setter, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', 2 * MiB)
  const digest = digestOf(data)
  const key = setter.key('wal', 'slow.seg')
  await setter.putFile(key, path, digest)
  const bucket = await open(t, proxy.options('tier', { requestTimeoutMs: 2000 }))
  // 32 pauses of 150 ms: the download takes over 4 s, and never stops for 2 s. (An upload is not
  // timed so: its last few MB wait in socket buffers, where the sender sees no progress.)
  proxy.fault = { stallEveryBytes: 64 * 1024, stallMs: 150 }
  const start = Date.now()
  t.deepEqual(await bucket.getFile(key, join(dir, 'copy')), digest)
  t.true(Date.now() - start > 4000, `the download took ${Date.now() - start} ms`)
})

test('a connection cut mid-upload is EVAQ_IO, and a new put of the same key then succeeds and verifies', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', 8 * MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'cut.seg')
  proxy.fault = { cutAfterBytes: MiB, method: 'PUT', times: 1 }
  await isIo(t, bucket.putFile(key, path, digest), 'cut upload')
  // (read through `unknown`: the assignment above narrowed the property's type)
  t.is((proxy as { fault: unknown }).fault, undefined, 'the fault met one request')
  await bucket.putFile(key, path, digest)
  t.deepEqual(await bucket.getFile(key, join(dir, 'copy')), digest)
})

test('putFile refuses an upload damaged in transit: the server stores and acknowledges other bytes of the right size', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'flipped.seg')
  proxy.fault = { flipByteAt: 4321, method: 'PUT', times: 1 }
  await isIo(t, bucket.putFile(key, path, digest), 'damaged upload')
  t.deepEqual(await bucket.head(key), { key, bytes: digest.bytes }, 'the size alone would not have told')
  await bucket.putFile(key, path, digest)
  t.deepEqual(await bucket.getFile(key, join(dir, 'copy')), digest)
})

test('putFile refuses an upload the server acknowledged although it holds a truncated object', async t => {
  const { server, bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', 4 * MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'short.seg')
  // The ETag of what went through (an honest answer for the truncated object)...
  proxy.fault = { cutAfterBytes: MiB, method: 'PUT', times: 1, ack: { etag: digestOf(data.subarray(0, MiB)).md5 } }
  await isIo(t, bucket.putFile(key, path, digest), 'acknowledged with the short object\'s ETag')
  // ...or the ETag of the whole (a server echoing what it was told): the size check refuses it.
  proxy.fault = { cutAfterBytes: MiB, method: 'PUT', times: 1, ack: { etag: digest.md5 } }
  await isIo(t, bucket.putFile(key, path, digest), 'acknowledged with the whole file\'s ETag')
  // s3rver keeps what it got of a cut upload, visible to HEAD and LIST.
  await eventually(() => existsSync(join(server.dir, server.bucket, `${key}._S3rver_object`)))
  const partial = await bucket.head(key)
  t.true(partial !== undefined && partial.bytes < digest.bytes, `a partial object of ${String(partial?.bytes)} bytes`)
  await bucket.putFile(key, path, digest)
  t.deepEqual(await bucket.getFile(key, join(dir, 'copy')), digest)
})

test('a server killed during a large put is EVAQ_IO; after its restart a put of the same key succeeds and verifies', async t => {
  const { server, bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', 48 * MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'killed.seg')
  const put = bucket.putFile(key, path, digest)
  put.catch(() => {})
  await eventually(() => proxy.bodyBytes >= 4 * MiB)
  await server.kill()
  await isIo(t, put, 'put to a killed server')
  await isIo(t, bucket.head(key), 'head while the server is down')
  await server.run()
  await bucket.putFile(key, path, digest)
  t.deepEqual(await bucket.getFile(key, join(dir, 'copy')), digest)
})

test('a download cut by a killed server is EVAQ_IO and removes its partial file; after a restart the same path downloads', async t => {
  const { server, bucket, dir } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', 48 * MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'read.seg')
  await bucket.putFile(key, path, digest)
  const copy = join(dir, 'copy')
  const get = bucket.getFile(key, copy)
  get.catch(() => {})
  await eventually(() => existsSync(copy) && statSync(copy).size > 0)
  await server.kill()
  await isIo(t, get, 'download from a killed server')
  t.false(existsSync(copy), 'no partial file')
  await server.run()
  t.deepEqual(await bucket.getFile(key, copy), digest)
  // A file that was there before is an error, and is not removed.
  await isIo(t, bucket.getFile(key, copy), 'existing file')
  t.true(existsSync(copy))
})

test.serial('a failed streamed upload writes nothing to the console', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'f', 4096)
  const printed: unknown[] = []
  const warn = console.warn
  console.warn = (...args: unknown[]) => { printed.push(args) }
  try {
    proxy.fault = { status: 500, code: 'InternalError', method: 'PUT' }
    await isIo(t, bucket.putFile(bucket.key('k'), path, digestOf(data)), 'putFile')
  } finally {
    console.warn = warn
  }
  t.deepEqual(printed, [])
})

test('an object damaged in the bucket reads back through getFile with a digest that differs from the original', async t => {
  const { server, bucket, dir } = await setup(t)
  const { path, data } = await randomFile(dir, 'seg', MiB)
  const digest = digestOf(data)
  const key = bucket.key('wal', 'rot.seg')
  await bucket.putFile(key, path, digest)
  await server.corrupt(key, 12345)
  const got = await bucket.getFile(key, join(dir, 'copy'))
  t.is(got?.bytes, digest.bytes)
  t.not(got?.crc32, digest.crc32)
  t.not(got?.md5, digest.md5)
})

test('the SDK does not retry on its own under maxAttempts 1, and retries up to maxAttempts otherwise', async t => {
  const { bucket, dir, proxy } = await setup(t)
  const { path, data } = await randomFile(dir, 'f', 100)
  const key = bucket.key('present')
  await bucket.putFile(key, path, digestOf(data))
  for (const maxAttempts of [1, 3]) {
    const b = maxAttempts === 1 ? bucket : await open(t, proxy.options('tier', { maxAttempts }))
    const before = proxy.count('GET')
    proxy.fault = { status: 500, code: 'InternalError', method: 'GET' }
    await isIo(t, b.getBytes(key), `maxAttempts ${maxAttempts}`)
    t.is(proxy.count('GET') - before, maxAttempts, `maxAttempts ${maxAttempts}`)
    // putFile's body is a file stream, which the SDK never sends twice: one attempt whatever maxAttempts says.
    const puts = proxy.count('PUT')
    proxy.fault = { status: 500, code: 'InternalError', method: 'PUT' }
    await isIo(t, b.putFile(bucket.key('other'), path, digestOf(data)), `putFile, maxAttempts ${maxAttempts}`)
    t.is(proxy.count('PUT') - puts, 1, `putFile, maxAttempts ${maxAttempts}`)
  }
  // A fault for the next request only: the SDK's one retry under the default (2 attempts) succeeds.
  const b = await open(t, proxy.options('tier', { maxAttempts: undefined }))
  const before = proxy.count('GET')
  proxy.fault = { status: 500, code: 'InternalError', method: 'GET', times: 1 }
  t.deepEqual(await b.getBytes(key), data)
  t.is(proxy.count('GET') - before, 2)
})

test('opening a bucket prints no NodeVersionSupportWarning, and other warnings still show', async t => {
  await setup(t)
  await new Promise(resolve => setImmediate(resolve))
  t.deepEqual(warnings.filter(w => /NodeVersionSupportWarning/.test(w.message)).map(w => w.message), [])
  t.is(process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED, undefined, 'the environment is left as it was')
  process.emitWarning('evaq test warning')
  await new Promise(resolve => setImmediate(resolve))
  t.true(warnings.some(w => w.message === 'evaq test warning'))
})
