/**
 * Spike (throwaway): the cost of recovering lost locators. A crash loses LevelDB's unsynced
 * locators, never the frames (they were fdatasynced before the push resolved), so open scans the
 * segment files' tails from the last locator it has: read each frame header, check its magic,
 * generation and CRC, verify the segment (and optionally every record's CRC), and put the
 * locators back. Here the worst bounded case: a whole 64 MiB file of frames with no locator.
 */
import { open, readFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { ClassicLevel } from 'classic-level'
import { encodeKey, encodeSegment } from '../../src/store/codec.js'
import { fileName, syncDir } from './files.js'
import { encodeFrame, FRAME_BYTES, readFrame, verifyBody } from './frame.js'

export interface RecoveryResult {
  readonly frames: number
  readonly records: number
  readonly bytes: number
  readonly readMs: number
  readonly headersMs: number
  readonly recordsMs: number
  readonly locatorsMs: number
  /** Level open + read + full verification + locator batch. */
  readonly totalMs: number
}

/** Fill file 1 of `dir` with frames of `group` payloads, leaving the zero-filled rest as the tail. */
export async function writeFrames (dir: string, fileBytes: number, payload: () => Buffer, group: number): Promise<void> {
  const h = await open(fileName(dir, 1), 'w')
  await h.truncate(fileBytes)
  let pos = 0
  let id = 1
  for (let seq = 0; ; seq++) {
    const payloads = Array.from({ length: group }, payload)
    const segment = encodeSegment(payloads, 0, group, Date.now())
    if (pos + FRAME_BYTES + segment.byteLength > fileBytes) break
    const header = encodeFrame({ generation: 1, seq, count: group, firstId: id, length: segment.byteLength }, segment)
    await h.writev([header, segment], pos)
    pos += FRAME_BYTES + segment.byteLength
    id += group
  }
  await h.datasync()
  await h.close()
  await syncDir(dir)
}

export async function recover (dir: string): Promise<RecoveryResult> {
  const t0 = performance.now()
  const db = new ClassicLevel<Buffer, Buffer>(`${dir}/index`, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  const tRead = performance.now()
  const buf = await readFile(fileName(dir, 1))
  const tScan = performance.now()
  const frames: Array<{ at: number, firstId: number, count: number, length: number }> = []
  for (let at = 0; ;) {
    const f = readFrame(buf, at, 1)
    if (f === undefined || !verifyBody(buf, at, f, false)) break
    frames.push({ at, firstId: f.firstId, count: f.count, length: f.length })
    at += FRAME_BYTES + f.length
  }
  const tRecords = performance.now()
  let records = 0
  for (const f of frames) {
    if (!verifyBody(buf, f.at, { generation: 1, seq: 0, count: f.count, firstId: f.firstId, length: f.length }, true)) throw new Error('record CRC')
    records += f.count
  }
  const tLocators = performance.now()
  const batch = db.batch()
  for (const f of frames) {
    const locator = Buffer.allocUnsafe(16)
    locator.writeUInt32BE(1, 0)
    locator.writeUInt32BE(f.at, 4)
    locator.writeUInt32BE(FRAME_BYTES + f.length, 8)
    locator.writeUInt32BE(f.count, 12)
    batch.put(encodeKey(f.firstId), locator)
  }
  await batch.write({ sync: true })
  const tEnd = performance.now()
  await db.close()
  const last = frames[frames.length - 1]
  return {
    frames: frames.length,
    records,
    bytes: last === undefined ? 0 : last.at + FRAME_BYTES + last.length,
    readMs: tScan - tRead,
    headersMs: tRecords - tScan,
    recordsMs: tLocators - tRecords,
    locatorsMs: tEnd - tLocators,
    totalMs: tEnd - t0,
  }
}
