/**
 * A private redis-server for the BullMQ baseline: started by the harness on a free loopback port,
 * with its own config and directory under the run's temporary directory, stopped at the end.
 * Nothing else on the machine is touched (no system service, no default port).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { trackServer } from './common.js'

export interface RedisServer {
  readonly port: number
  readonly pid: number
  readonly version: string
  /** `appendfsync always` (durable) or `everysec` (redis's default). */
  setFsync (mode: 'always' | 'everysec'): Promise<void>
  /** Empty the server and shrink its append-only file, so the next measurement starts clean. */
  reset (): Promise<void>
  stop (): Promise<void>
}

/** `redis-server --version`, or undefined when it is not installed. */
export function redisVersion (): string | undefined {
  try {
    const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim()
  } catch {
    return undefined
  }
}

async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export async function startRedis (root: string): Promise<RedisServer> {
  const version = redisVersion()
  if (version === undefined) throw new Error('redis-server is not installed')
  const dir = path.join(root, 'redis')
  await mkdir(dir, { recursive: true })
  const port = await freePort()
  const conf = path.join(dir, 'redis.conf')
  // Append-only file on the same disk as every other system, no RDB snapshots, no automatic AOF
  // rewrites (a background rewrite would land in some later measurement); `reset` rewrites it.
  await writeFile(conf, [
    `port ${port}`,
    'bind 127.0.0.1',
    'protected-mode yes',
    `dir ${dir}`,
    'appendonly yes',
    'appendfsync always',
    'auto-aof-rewrite-percentage 0',
    'save ""',
    'daemonize no',
    'loglevel warning',
    `logfile ${path.join(dir, 'redis.log')}`,
    'maxmemory 0',
    '',
  ].join('\n'))
  const child: ChildProcess = spawn('redis-server', [conf], { stdio: 'ignore' })
  const tracked = trackServer(child.pid!)
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  // Refused connections while the server starts are expected; the loop below reports a failure.
  client.on('error', () => {})
  for (let i = 0; ; i++) {
    try {
      await client.connect()
      await client.ping()
      break
    } catch (err) {
      if (i >= 50 || child.exitCode !== null) {
        child.kill('SIGKILL')
        tracked.forget()
        throw new Error(`redis-server did not start on port ${port}`, { cause: err })
      }
      client.disconnect()
      await sleep(100)
    }
  }
  const rewriteDone = async (): Promise<void> => {
    for (;;) {
      const info = await client.info('persistence')
      if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return
      await sleep(20)
    }
  }
  return {
    port,
    pid: child.pid!,
    version,
    setFsync: async mode => { await client.config('SET', 'appendfsync', mode) },
    reset: async () => {
      await client.flushall()
      await rewriteDone()
      await client.bgrewriteaof()
      await rewriteDone()
    },
    stop: async () => {
      try {
        await client.shutdown('NOSAVE')
      } catch {
        // The connection closes as the server exits.
      }
      client.disconnect()
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(killer)
      tracked.forget()
    },
  }
}
