/**
 * A private S3-compatible server for the `tier` scenario: s3rver (npm, a devDependency of evaq)
 * in a child process on 127.0.0.1, on a directory under the run's temporary directory, started
 * through the same fixture the tests use (test/fixtures/s3-server.cjs) and stopped at the end.
 * Its CPU counts as the run's own (trackServer). It is a single-process JavaScript server on
 * loopback, writing its objects to the same disk as evaq: not AWS, and not a stand-in for AWS's
 * latency or throughput.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import type { S3Options } from '../../src/store/s3-bucket.js'
import { PERF_DIR, trackServer } from './common.js'

const FIXTURE = path.join(PERF_DIR, '..', 'test', 'fixtures', 's3-server.cjs')
const BUCKET = 'evaq-bench'

export interface S3Server {
  readonly pid: number
  readonly port: number
  /** s3rver's version (from its package.json). */
  readonly version: string | undefined
  /** Options for the bucket under `prefix`: explicit credentials, so that nothing probes beyond loopback. */
  options (prefix: string): S3Options
  stop (): Promise<void>
}

export async function s3rverVersion (): Promise<string | undefined> {
  try {
    const pkg = path.join(PERF_DIR, '..', 'node_modules', 's3rver', 'package.json')
    return (JSON.parse(await readFile(pkg, 'utf8')) as { version: string }).version
  } catch {
    return undefined
  }
}

export async function startS3Server (root: string): Promise<S3Server> {
  const dir = path.join(root, 's3rver')
  await mkdir(dir, { recursive: true })
  // --openssl-legacy-provider: s3rver encrypts ListObjectsV2 continuation tokens with DES.
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', FIXTURE, dir, '0', BUCKET], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const tracked = trackServer(child.pid!)
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s
      const m = /PORT (\d+)\n/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once('exit', code => reject(new Error(`s3rver exited with ${String(code)} before it listened: ${err.slice(0, 500)}`)))
  }).catch(e => { tracked.forget(); throw e })
  return {
    pid: child.pid!,
    port,
    version: await s3rverVersion(),
    options: prefix => ({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      bucket: BUCKET,
      prefix,
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(killer)
      }
      tracked.forget()
    },
  }
}
