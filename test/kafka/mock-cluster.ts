/**
 * A real Kafka-protocol broker for the tests: librdkafka's mock cluster, started by the small C
 * launcher beside this file (mock-cluster.c), which is built here with gcc against librdkafka
 * (Debian: `apt-get install gcc librdkafka-dev`; `.ci/run` installs both). Without them the
 * tests are skipped outside CI, after one loud line, and fail in CI (helpers/prerequisites.ts).
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { access, mkdir, readFile, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const SOURCE = fileURLToPath(new URL('./mock-cluster.c', import.meta.url))
const CACHE = join(dirname(SOURCE), '..', '..', 'node_modules', '.cache', 'evaq-kafka')
const HEADER = '/usr/include/librdkafka/rdkafka_mock.h'
const run = promisify(execFile)

/** Kafka protocol API keys and error codes the tests use. */
export const API = { Produce: 0, Fetch: 1, Metadata: 3 } as const
export const KAFKA_ERRORS = {
  LEADER_NOT_AVAILABLE: 5,
  NOT_LEADER_FOR_PARTITION: 6,
  REQUEST_TIMED_OUT: 7,
  MESSAGE_TOO_LARGE: 10,
  INVALID_TOPIC_EXCEPTION: 17,
  NOT_ENOUGH_REPLICAS: 19,
  TOPIC_AUTHORIZATION_FAILED: 29,
} as const

let building: Promise<string> | undefined

/**
 * Build the launcher once per C source (the binary's name carries the source's hash, so an edit
 * rebuilds it) and return its path. Concurrent test processes each write a temporary file and
 * rename it into place.
 */
export function buildLauncher (): Promise<string> {
  building ??= (async () => {
    const source = await readFile(SOURCE)
    const hash = createHash('sha256').update(source).digest('hex').slice(0, 16)
    const binary = join(CACHE, `mock-cluster-${hash}`)
    try {
      await access(binary)
      return binary
    } catch {}
    try {
      await access(HEADER)
    } catch {
      throw new Error(`The Kafka tests need librdkafka's mock cluster (${HEADER}): apt-get install -y librdkafka-dev gcc`)
    }
    await mkdir(CACHE, { recursive: true })
    const tmp = `${binary}.${process.pid}.tmp`
    try {
      await run('gcc', ['-O2', '-Wall', '-o', tmp, SOURCE, '-lrdkafka', '-ldl', '-rdynamic'])
    } catch (err) {
      await rm(tmp, { force: true })
      const e = err as { code?: unknown, stderr?: string }
      if (e.code === 'ENOENT') throw new Error('The Kafka tests build their mock broker with gcc, which is missing: apt-get install -y gcc librdkafka-dev')
      throw new Error(`Building the Kafka mock cluster launcher failed: ${e.stderr ?? String(err)}`)
    }
    await rename(tmp, binary)
    return binary
  })()
  return building
}

export interface MockClusterOptions {
  /** @defaultValue 3 */
  brokers?: number
  /** Produce requests with a partition batch above this are refused with MESSAGE_TOO_LARGE. @defaultValue none */
  messageMaxBytes?: number
}

/** A running mock cluster; each method sends one command and waits for its answer. */
export class MockCluster {
  readonly brokers: string[]
  private readonly answers: string[] = []
  private wake: (() => void) | undefined
  private exited = false
  private lane: Promise<unknown> = Promise.resolve()

  private constructor (private readonly child: ChildProcessWithoutNullStreams, brokers: string[], lines: AsyncIterable<string>) {
    this.brokers = brokers
    void (async () => {
      for await (const line of lines) { this.answers.push(line); this.wake?.() }
      this.exited = true
      this.wake?.()
    })()
  }

  static async start (options: MockClusterOptions = {}): Promise<MockCluster> {
    const binary = await buildLauncher()
    const args = [String(options.brokers ?? 3)]
    if (options.messageMaxBytes !== undefined) args.push(String(options.messageMaxBytes))
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (s: string) => { stderr += s })
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
    const first = await Promise.race([
      lines.next(),
      once(child, 'exit').then(([code]) => { throw new Error(`The mock cluster exited with ${String(code)}: ${stderr}`) }),
    ])
    const [word, list] = (first.value as string | undefined ?? '').split(' ')
    if (word !== 'bootstrap' || list === undefined) throw new Error(`The mock cluster said ${JSON.stringify(first.value)}: ${stderr}`)
    return new MockCluster(child, list.split(','), { [Symbol.asyncIterator]: () => lines })
  }

  /** Send one command line; resolves with the answer after `ok`, rejects on `error`. */
  command (line: string): Promise<string> {
    const task = this.lane.then(async () => {
      if (this.exited) throw new Error(`The mock cluster has exited (command ${line})`)
      this.child.stdin.write(`${line}\n`)
      while (this.answers.length === 0) {
        if (this.exited) throw new Error(`The mock cluster exited during ${line}`)
        await new Promise<void>(resolve => { this.wake = resolve })
      }
      const answer = this.answers.shift()!
      if (!answer.startsWith('ok')) throw new Error(`Mock cluster command ${line}: ${answer}`)
      return answer.slice(2).trim()
    })
    this.lane = task.catch(() => {})
    return task
  }

  /** Close the broker's connections and refuse new ones (-1: every broker). Leadership stays. */
  async down (broker: number): Promise<void> { await this.command(`down ${broker}`) }
  async up (broker: number): Promise<void> { await this.command(`up ${broker}`) }
  async createTopic (name: string, partitions: number, replication = Math.min(3, this.brokers.length)): Promise<void> {
    await this.command(`topic ${name} ${partitions} ${replication}`)
  }

  async setLeader (topic: string, partition: number, broker: number): Promise<void> {
    await this.command(`leader ${topic} ${partition} ${broker}`)
  }

  /** Metadata answers `topic` with error `code` (0 clears it). */
  async topicError (topic: string, code: number): Promise<void> { await this.command(`topic-error ${topic} ${code}`) }
  /** The next requests of `apiKey`, on any broker, fail with these codes in turn. */
  async pushErrors (apiKey: number, codes: number[]): Promise<void> { await this.command(`errors ${apiKey} ${codes.join(' ')}`) }
  /** Produce requests refused as too large so far. */
  async rejectedTooLarge (): Promise<number> {
    return Number((await this.command('stats')).split(' ')[1])
  }

  async stop (): Promise<void> {
    if (this.exited || this.child.exitCode !== null) return
    const exit = once(this.child, 'exit')
    this.child.stdin.end()
    await exit
  }
}
