/**
 * A real S3-compatible server for the tests: s3rver (npm) in a child process on 127.0.0.1, on a
 * directory of the test's own, with a bucket made for it. The test can kill it (SIGKILL, e.g.
 * mid-upload) and start it again on the same directory and port.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExecutionContext } from 'ava'
import type { S3Options } from '../../src/store/s3-bucket.js'
import { tmpDir } from './tmp.js'

const SERVER = fileURLToPath(new URL('../fixtures/s3-server.cjs', import.meta.url))

/** s3rver takes any key pair; these are what it documents. */
export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const

export class S3Server {
  private child: ChildProcess | undefined
  port = 0

  private constructor (readonly dir: string, readonly bucket: string) {}

  /** Start a server for test `t` (stopped when the test ends). */
  static async start (t: ExecutionContext, bucket = 'evaq'): Promise<S3Server> {
    const dir = await tmpDir(t, 'evaq-s3-')
    const server = new S3Server(dir, bucket)
    t.teardown(() => server.kill())
    await server.run()
    return server
  }

  get endpoint (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** Tier or backup options for this server's bucket, under `prefix`. */
  options (prefix = '', more: Partial<S3Options> = {}): S3Options {
    return {
      endpoint: this.endpoint,
      region: 'us-east-1',
      bucket: this.bucket,
      prefix,
      forcePathStyle: true,
      credentials: S3_CREDENTIALS,
      requestTimeoutMs: 10_000,
      maxAttempts: 1,
      ...more,
    }
  }

  /** Start the server (again): on the same port once it had one. */
  async run (): Promise<void> {
    if (this.child !== undefined) return
    const child = spawn(process.execPath, ['--openssl-legacy-provider', SERVER, this.dir, String(this.port), this.bucket], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    let out = ''
    let err = ''
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s })
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s
        const m = /PORT (\d+)\n/.exec(out)
        if (m !== null) resolve(Number(m[1]))
      })
      child.once('exit', code => reject(new Error(`s3rver exited with ${String(code)} before it listened: ${err}`)))
    })
    this.port = port
  }

  /** SIGKILL the server (nothing if it is not running). */
  async kill (): Promise<void> {
    const child = this.child
    if (child === undefined) return
    this.child = undefined
    if (child.exitCode === null && child.signalCode === null) {
      const closed = once(child, 'exit')
      child.kill('SIGKILL')
      await closed
    }
  }

  /** The keys the bucket holds under `prefix`, read from the server's directory. */
  async keys (prefix = ''): Promise<string[]> {
    const root = join(this.dir, this.bucket)
    const out: string[] = []
    const walk = async (dir: string, rel: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const path = rel === '' ? e.name : `${rel}/${e.name}`
        if (e.isDirectory()) await walk(join(dir, e.name), path)
        else if (e.name.endsWith('._S3rver_object')) out.push(path.slice(0, -'._S3rver_object'.length))
      }
    }
    await walk(root, '')
    return out.filter(k => k.startsWith(prefix)).sort()
  }

  /** Flip one byte of the stored object `key` at `offset` (the server's own checksum is not updated). */
  async corrupt (key: string, offset: number): Promise<void> {
    const path = join(this.dir, this.bucket, `${key}._S3rver_object`)
    const bytes = await readFile(path)
    bytes[offset] = bytes[offset]! ^ 0xff
    await writeFile(path, bytes)
  }
}
