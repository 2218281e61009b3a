/**
 * The progress bar of long commands: drawn on a terminal only, throttled, erased at the end.
 */
import test from 'ava'
import { progress, type ProgressStream } from '../../src/cli/progress.js'

function fake (isTTY: boolean): ProgressStream & { out: string[] } {
  const out: string[] = []
  return { isTTY, columns: 100, out, write: (chunk: string) => out.push(chunk) }
}

test('nothing is written when the stream is not a terminal', t => {
  const stream = fake(false)
  const bar = progress(stream, 'export wal', 'records', 10)
  for (let i = 0; i <= 10; i++) bar.update(i)
  bar.done()
  t.deepEqual(stream.out, [])
})

test('a bar with a percentage when the total is known; redrawn at most every 100 ms, and at the end', t => {
  const stream = fake(true)
  let now = 0
  const bar = progress(stream, 'export wal', 'records', 1000, () => now)
  bar.update(0)
  bar.update(100) // same instant: throttled
  now = 150
  bar.update(400)
  bar.update(1000) // the last one is always drawn
  t.is(stream.out.length, 3)
  // eslint-disable-next-line no-control-regex -- the bar ends its line with the terminal's erase sequence, ESC [K
  t.regex(stream.out[0]!, /^\rexport wal \[-+\]\s+0%\s+0\/1,000 records\x1b\[K$/)
  t.regex(stream.out[1]!, /\[#+-+\]\s+40%\s+400\/1,000 records/)
  t.regex(stream.out[2]!, /\[#+\] 100%\s+1,000\/1,000 records/)
  bar.done()
  t.is(stream.out.at(-1), '\r\x1b[K', 'erased')
})

test('a counter when the total is unknown', t => {
  const stream = fake(true)
  const bar = progress(stream, 'checked', 'segments', undefined, () => 0)
  bar.update(1234)
  t.deepEqual(stream.out, ['\rchecked 1,234 segments\x1b[K'])
  bar.done()
  const quiet = fake(true)
  progress(quiet, 'x', 'y').done()
  t.deepEqual(quiet.out, [], 'nothing to erase when nothing was drawn')
})
