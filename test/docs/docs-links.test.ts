/**
 * Every relative link of the README, docs/ and perf/README.md lands on a file that exists, and
 * on a heading of it when it names one: the reference pages moved out of the README, and links
 * between them must follow.
 */
import test from 'ava'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { anchors, broken, linkedFile, links, slug } from '../helpers/markdown-links.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PAGES = ['README.md', 'perf/README.md', ...readdirSync(new URL('../../docs', import.meta.url)).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)]
// Announced in the README and written separately: checked like any page once it exists.
const PENDING = new Set(['docs/architecture.md'])

test('every relative link of the README, docs/ and perf/README.md resolves, anchors included', t => {
  const all = PAGES.flatMap(file => links(file, readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')))
  t.true(all.length > 50, `${all.length} links found`)
  const problems = all
    .filter(l => !(PENDING.has(linkedFile(l)) && !existsSync(new URL(`../../${linkedFile(l)}`, import.meta.url))))
    .map(l => broken(ROOT, l))
    .filter(p => p !== undefined)
  t.deepEqual(problems, [])
})

test('the checker finds a missing file and a missing heading, and slugs headings as GitHub does', t => {
  const text = '# Title\n\n## `Evaq.open(dir, options?)` → `Promise<Evaq>`\n\n## Title\n\n' +
    '[a](#title-1) [b](nowhere.md) [c](README.md#nowhere) [d](https://x.org/y) `[e](in-code.md)`\n\n```sh\n[f](in-a-block.md)\n```\n'
  t.is(slug('`Evaq.open(dir, options?)` → `Promise<Evaq>`'), 'evaqopendir-options--promiseevaq')
  t.is(slug('Why fastify, pino and prom-client'), 'why-fastify-pino-and-prom-client')
  t.deepEqual([...anchors(text)], ['title', 'evaqopendir-options--promiseevaq', 'title-1'])
  const found = links('README.md', text)
  t.deepEqual(found.map(l => l.target), ['#title-1', 'nowhere.md', 'README.md#nowhere'])
  t.is(broken(ROOT, { file: 'x.md', line: 1, target: '#anything' }), 'x.md:1: #anything: no file x.md')
  t.is(linkedFile({ file: 'docs/api.md', line: 1, target: '../perf/README.md#latest-results' }), 'perf/README.md')
  t.regex(broken(ROOT, found[1]!) ?? '', /no file nowhere\.md/)
  t.regex(broken(ROOT, found[2]!) ?? '', /no heading #nowhere in README\.md/)
})
