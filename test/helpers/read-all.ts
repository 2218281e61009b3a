import type { Log, QueueRecord } from '../../src/index.js'

/** Every record of `log`, in pages of at most `maxBytes` / `maxCount`. */
export async function readAll (log: Log, maxBytes = 1024 * 1024, maxCount = 5000): Promise<QueueRecord[]> {
  const out: QueueRecord[] = []
  for (let from = 0; ;) {
    const page = await log.read({ from, maxBytes, maxCount })
    if (page.length === 0) return out
    for (const r of page) out.push(r)
    from = page[page.length - 1]!.id + 1
  }
}
