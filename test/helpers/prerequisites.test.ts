/**
 * A machine without a tool the tests need: outside CI the file's tests are skipped after one
 * loud line naming the Debian package; in CI they run (and would fail on the missing tool).
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { missingPrerequisites, requiring, skipUnlessCi } from './prerequisites.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function ava (env: Record<string, string | undefined>): { status: number | null, output: string } {
  const r = spawnSync(process.execPath, ['node_modules/ava/entrypoints/cli.mjs', '--tap', 'test/docs/server-readme.test.ts'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  })
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

test('outside CI, a missing prerequisite skips its tests and names the package', t => {
  const r = ava({ CI: undefined, EVAQ_TEST_MISSING: 'curl' })
  t.is(r.status, 0, r.output)
  t.regex(r.output, /SKIPPED test\/docs\/server-readme\.test\.ts: .*apt-get install -y curl/)
  t.regex(r.output, /# skip 2/)
  t.notRegex(r.output, /# pass [1-9]/)
})

test.serial('in CI, the file keeps its tests whatever is missing', t => {
  const saved = { CI: process.env.CI, EVAQ_TEST_MISSING: process.env.EVAQ_TEST_MISSING }
  try {
    process.env.EVAQ_TEST_MISSING = 'curl,chromium'
    process.env.CI = 'true'
    t.is(requiring(test, import.meta.url, 'curl', 'chromium'), test)
    t.is(skipUnlessCi('here', 'no root'), undefined)
    process.env.CI = ''
    t.deepEqual(missingPrerequisites('curl', 'chromium', 'strace'), ['curl', 'chromium'])
    // What they print is checked, not shown: this run skips nothing.
    const printed: string[] = []
    const write = process.stderr.write
    process.stderr.write = ((chunk: string) => { printed.push(chunk); return true }) as typeof process.stderr.write
    try {
      t.not(requiring(test, import.meta.url, 'curl'), test)
      t.is(skipUnlessCi('here', 'no root'), 'no root')
    } finally {
      process.stderr.write = write
    }
    t.is(printed.length, 2)
    t.true(printed[0]!.includes('apt-get install -y curl'))
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
})
