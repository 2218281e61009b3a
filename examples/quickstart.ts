/**
 * The evacuation pattern in a few lines: persist before sending, remove once the downstream took
 * it, dead-letter what failed; then close, reopen and see what survived.
 *
 *   npx tsx examples/quickstart.ts                  # in a fresh temporary directory, removed at the end
 *   EVAQ_DATA=/tmp/q npx tsx examples/quickstart.ts # in /tmp/q, kept: run it again to see what a second run finds
 *
 * It never uses ./data, the directory `npm start` serves.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Evaq, isEvaqError } from '../src/index.js'

const dir = process.env.EVAQ_DATA ?? await mkdtemp(join(tmpdir(), 'evaq-quickstart-'))

/** Open the queue, or say in one line why not (another process holds it) and exit. */
async function open (): Promise<Evaq> {
  try {
    return await Evaq.open(dir)
  } catch (err) {
    if (!isEvaqError(err, 'EVAQ_LOCKED')) throw err
    console.error(`quickstart: ${dir} is in use by another process (EVAQ_LOCKED); stop it or set EVAQ_DATA to another directory`)
    process.exit(1)
  }
}

/** A stand-in for Kafka or an HTTP API that fails every third message. */
async function send (payload: Buffer): Promise<void> {
  if (payload.readUInt8(payload.length - 1) % 3 === 0) {
    throw Object.assign(new Error('downstream unavailable'), { code: 'ECONNREFUSED' })
  }
}

const evaq = await open()
const before = await evaq.wal.stats()
console.log(`opened ${dir}: ${before.count} message(s) left in the WAL by an earlier run, next ID ${before.nextId}`)

const messages = Array.from({ length: 9 }, (_, i) => `order ${before.nextId + i}`)
let sent = 0
let deadLettered = 0
for (const message of messages) {
  const id = await evaq.pushWal(message) // durable (fsynced) before we try the downstream
  try {
    await send(Buffer.from(message))
    await evaq.removeWal(id) // the downstream has it: the WAL no longer needs to
    sent++
  } catch (err) {
    await evaq.pushRetryItem(message, { error: err }) // park it for the retry path
    await evaq.removeWal(id)
    deadLettered++
  }
}
// One message is persisted but "never sent", as if the process died right here.
const orphan = await evaq.pushWal(`order left in flight at ${new Date().toISOString()}`)
console.log(`pushed ${messages.length + 1}: ${sent} sent and removed, ${deadLettered} dead-lettered, #${orphan} left in the WAL`)
await evaq.close()

const reopened = await open()
const wal = await reopened.wal.read({ maxCount: 5 })
const dlq = await reopened.firstNBytesFromDeadLetterQueue(0, 64 * 1024)
const walStats = await reopened.wal.stats()
const dlqStats = await reopened.dlq.stats()
console.log(`after reopen: WAL ${walStats.count} record(s), ${walStats.bytes} bytes; DLQ ${dlqStats.count} record(s)`)
for (const r of wal) console.log(`  wal #${r.id}: ${r.payload.toString()}`)
for (const r of dlq.slice(-3)) console.log(`  dlq #${r.id}: ${r.payload.toString()} (${r.error?.code ?? ''} ${r.error?.message ?? ''})`)

// Retry the DLQ by hand (the Evaq-compatible path): everything succeeds this time.
const done = await reopened.doneRetryItems(dlq.map(r => r.id))
console.log(`retried the DLQ: removed up to #${done ?? '-'}; next WAL ID is ${(await reopened.wal.stats()).nextId}`)
await reopened.close()
if (process.env.EVAQ_DATA === undefined) await rm(dir, { recursive: true, force: true })
