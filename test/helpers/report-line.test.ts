import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const FLOOD = fileURLToPath(new URL('../fixtures/line-flood.ts', import.meta.url))

test('a line reported before a SIGKILL reaches the parent, even when the parent reads slowly', async t => {
  // About 1 MiB: far more than a pipe holds, written much faster than this process reads it.
  const count = 10_000
  const child = spawn(process.execPath, ['--import', 'tsx', FLOOD, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] })
  child.stdout.setEncoding('utf8')
  let text = ''
  child.stdout.on('data', (chunk: string) => {
    text += chunk
    // A busy parent: the child fills the pipe long before this reads it empty.
    const until = performance.now() + 5
    while (performance.now() < until);
  })
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  t.is(signal, 'SIGKILL')
  t.is(code, null)
  const lines = text.split('\n').filter(line => line !== '')
  t.is(lines.length, count)
  t.is(lines.at(-1)?.split(' ')[0], String(count))
})
