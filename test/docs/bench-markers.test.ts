/**
 * The benchmark harness (perf/lib) rewrites the text between its markers in perf/README.md: each
 * pair must be there once, on lines of its own and in order, and no longer in the top-level README.
 */
import test from 'ava'
import { readFile } from 'node:fs/promises'

const BLOCKS = ['compare', 'core', 'http', 'kafka', 'tier']

test('perf/README.md holds each bench block\'s markers once, in order; the README none', async t => {
  const perf = await readFile(new URL('../../perf/README.md', import.meta.url), 'utf8')
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  for (const name of BLOCKS) {
    const start = `<!-- bench:${name}:start -->`
    const end = `<!-- bench:${name}:end -->`
    const lines = perf.split('\n')
    t.is(lines.filter(l => l === start).length, 1, start)
    t.is(lines.filter(l => l === end).length, 1, end)
    t.true(lines.indexOf(start) < lines.indexOf(end), `${name}: start before end`)
    t.false(readme.includes(`bench:${name}:`), `README.md: ${name}`)
  }
})
