/**
 * What `npm test` needs beyond Node, and what a test file does when one is missing.
 *
 * In CI (`CI` set to `true` or `1`; `.ci/run` sets it) every test must run: a missing tool is a
 * broken setup, so the tests run and fail with the package to install. Elsewhere (a newcomer's
 * laptop) the tests that need the tool are skipped, and the file prints one loud line naming the
 * Debian package, so that nobody mistakes a skipped browser test for a passing one.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TestFn } from 'ava'

export interface Prerequisite {
  /** What the tests use it for, in a few words. */
  readonly purpose: string
  /** Debian packages that provide it (`apt-get install …`). */
  readonly packages: readonly string[]
  /** How to install it when it is not a Debian package. */
  readonly install?: string
  /** Whether this machine has it. */
  readonly present: () => boolean
}

/** Whether @confluentinc/kafka-javascript (test/kafka/confluent) loads in this Node: installed and built for its ABI. */
function confluentLoads (): boolean {
  const dir = fileURLToPath(new URL('../kafka/confluent/', import.meta.url))
  return spawnSync(process.execPath, ['-e', "require('@confluentinc/kafka-javascript')"], { cwd: dir, stdio: 'ignore' }).status === 0
}

function onPath (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** The console's and the change stream's browser tests drive Chromium through playwright-core. */
export function chromiumPath (): string | undefined {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
    .filter((p): p is string => p !== undefined && p !== '')
  return candidates.find(p => existsSync(p))
}

export const PREREQUISITES = {
  chromium: {
    purpose: 'the browser tests of the console and the change stream',
    packages: ['chromium'],
    present: () => chromiumPath() !== undefined,
  },
  kafka: {
    purpose: "the Kafka tests (librdkafka's mock cluster, built with gcc)",
    packages: ['gcc', 'librdkafka-dev'],
    present: () => onPath('gcc') && existsSync('/usr/include/librdkafka/rdkafka_mock.h'),
  },
  strace: {
    purpose: 'the I/O-error tests (faults injected with strace)',
    packages: ['strace'],
    present: () => onPath('strace'),
  },
  e2fsprogs: {
    purpose: 'the disk-full and power-cut tests (ext4 images)',
    packages: ['e2fsprogs'],
    present: () => onPath('mkfs.ext4'),
  },
  curl: {
    purpose: "the README's and docs/http-api.md's curl examples",
    packages: ['curl'],
    present: () => onPath('curl'),
  },
  confluent: {
    purpose: "the Kafka tests of @confluentinc/kafka-javascript's producer (a native module built from source)",
    packages: ['python3', 'make', 'g++', 'libssl-dev', 'zlib1g-dev'],
    install: 'npm run test:confluent-install',
    present: () => confluentLoads(),
  },
} as const satisfies Record<string, Prerequisite>

export type PrerequisiteName = keyof typeof PREREQUISITES

/** True in CI, where every test must run. */
export function inCi (): boolean {
  return process.env.CI === 'true' || process.env.CI === '1'
}

/**
 * The prerequisites of `names` this machine lacks. `EVAQ_TEST_MISSING=chromium,kafka` pretends
 * those are missing, to see what a machine without them gets.
 */
export function missingPrerequisites (...names: PrerequisiteName[]): PrerequisiteName[] {
  const pretend = (process.env.EVAQ_TEST_MISSING ?? '').split(',')
  return names.filter(name => pretend.includes(name) || !PREREQUISITES[name].present())
}

/** One line naming what is missing and how to install it. */
export function missingLine (file: string, missing: readonly PrerequisiteName[]): string {
  const packages = [...new Set(missing.flatMap(name => PREREQUISITES[name].packages))]
  const purposes = missing.map(name => PREREQUISITES[name].purpose).join('; ')
  const steps = missing.map(name => (PREREQUISITES[name] as Prerequisite).install).filter(s => s !== undefined)
  const then = steps.length === 0 ? '' : `, then ${steps.join(', ')}`
  return `\n*** SKIPPED ${file}: ${purposes} need ${packages.join(', ')} (apt-get install -y ${packages.join(' ')}${then}) ***\n`
}

/**
 * `test` as it is when this machine has everything `names` lists, or in CI; otherwise a `test`
 * whose tests (and `serial` tests) are all skipped, after one loud line on stderr. ava runs no
 * hook of a file whose tests are all skipped, so a `test.before` that launches Chromium does not
 * run either. Use it in place of ava's default export: `const test = requiring(anyTest, import.meta.url, 'chromium')`.
 */
export function requiring<Context = unknown> (test: TestFn<Context>, fileUrl: string, ...names: PrerequisiteName[]): TestFn<Context> {
  const missing = missingPrerequisites(...names)
  if (missing.length === 0 || inCi()) return test
  const file = new URL(fileUrl).pathname.replace(/^.*\/test\//, 'test/')
  process.stderr.write(missingLine(file, missing))
  const skipping = Object.assign((...args: Parameters<TestFn<Context>['skip']>) => test.skip(...args), test)
  skipping.serial = Object.assign((...args: Parameters<TestFn<Context>['serial']['skip']>) => test.serial.skip(...args), test.serial)
  return skipping as TestFn<Context>
}

/**
 * For tests with their own check (root, loop devices, ptrace): `reason` why they cannot run
 * here, or undefined. In CI it is always undefined (the tests run and fail on the broken setup);
 * elsewhere a reason is printed once, loudly, and returned so that the caller skips.
 */
export function skipUnlessCi (file: string, reason: string | undefined): string | undefined {
  if (reason === undefined || inCi()) return undefined
  process.stderr.write(`\n*** SKIPPED tests of ${file}: ${reason} ***\n`)
  return reason
}
