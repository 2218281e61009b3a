import type { CliRecord } from './backend.js'

/** How commands print records: one JSON object per line (`--json`), or tab-separated text. */

/** The JSON line of a record (what `peek --json`, `tail --json` and `export` print, and `import` reads). */
export function recordLine (r: CliRecord): string {
  return JSON.stringify({
    id: r.id,
    pushedAt: r.pushedAt,
    payload: r.payload.toString('base64'),
    ...(r.error === undefined ? {} : { error: r.error }),
    ...(r.retry === undefined ? {} : { retry: r.retry }),
  })
}

/** A record for people: ID, push time, the payload as a JSON string, and the error if any. */
export function recordText (r: CliRecord): string {
  let line = `${r.id}\t${new Date(r.pushedAt).toISOString()}\t${JSON.stringify(r.payload.toString('utf8'))}`
  if (r.error !== undefined) line += `\t${r.error.code ?? ''} ${r.error.message}`
  const retry = r.retry as { attempts?: number, nextAttemptAt?: number, reason?: string } | undefined
  if (retry !== undefined) {
    line += `\tattempts ${retry.attempts ?? 0}`
    if (typeof retry.nextAttemptAt === 'number') line += `, next ${new Date(retry.nextAttemptAt).toISOString()}`
    if (typeof retry.reason === 'string') line += `, parked: ${retry.reason}`
  }
  return line
}

/** A write to stdout that waits when the pipe is full, and ends quietly when it was closed (`| head`). */
export function writeOut (text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, err => {
      if (err == null || (err as NodeJS.ErrnoException).code === 'EPIPE') resolve()
      else reject(err)
    })
  })
}
