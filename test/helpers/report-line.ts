/**
 * How a child process that its parent SIGKILLs reports what happened: a line on stdout, written
 * only after what it reports happened, so the lines the parent has when the child dies are facts.
 *
 * That needs a write to be in the pipe once it returns. Node writes to a pipe synchronously only
 * while the pipe has room: when the parent falls behind (a busy machine), the rest is queued in
 * this process's memory and a kill loses it. A lost line about an acknowledgement that started
 * reads, to the parent, as a record acknowledged that nobody acknowledged (the crash loop
 * reported exactly that, once in 2,000 cycles, until the fixtures made stdout blocking). So
 * stdout is made blocking: a line waits for room in the pipe, and is in it when `report` returns.
 */
export function lineReporter (): (text: string) => void {
  let blocking = false
  return text => {
    // On the first line, not at import: the parent test imports fixtures for their helpers.
    if (!blocking) {
      blocking = true
      const handle = (process.stdout as unknown as { _handle?: { setBlocking?: (on: boolean) => number } })._handle
      // A file is written synchronously anyway (no handle); a pipe or a terminal has setBlocking.
      const err = handle?.setBlocking?.(true) ?? 0
      if (err !== 0) throw new Error(`stdout cannot be made blocking (libuv error ${err})`)
    }
    process.stdout.write(text)
  }
}
