/**
 * Byte-level access to a log's segment files (storage format 2, src/store/segment-files.ts) for
 * tests that damage them: list the files, find the frames in one, find a payload's bytes, flip a
 * byte, and write a frame's checksums again (so that only the per-record CRC inside the body can
 * catch a flip).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SEGMENTS_DIR } from '../../src/schema.js'
import type { FrameCodec } from '../../src/store/frame-codec.js'
import { decodeFrameHeader, encodeFrameHeader, frameSpan, FRAME_HEADER_BYTES, type FrameHeader } from '../../src/store/frame.js'

/** The directory of `log`'s segment files in the queue directory `dir`. */
export function segmentDir (dir: string, log = 'wal'): string {
  return join(dir, SEGMENTS_DIR, log)
}

/** The numbered segment files of `log` (spares left out), ascending, with their paths. */
export async function segmentFiles (dir: string, log = 'wal'): Promise<Array<{ number: number, path: string }>> {
  const d = segmentDir(dir, log)
  const names = await readdir(d).catch(() => [] as string[])
  return names.map(n => /^(\d{10})\.seg$/.exec(n)).filter(m => m !== null)
    .map(m => ({ number: Number(m[1]), path: join(d, m[0]) })).sort((a, b) => a.number - b.number)
}

export interface FoundFrame extends FrameHeader {
  /** Offset of the frame's header in its file. */
  readonly offset: number
  /** The offset after the frame (padding included). */
  readonly end: number
}

/** The whole frames of file `number` (bytes `buf`), from its start up to the first one that is not. */
export function framesIn (buf: Buffer, number: number): FoundFrame[] {
  const out: FoundFrame[] = []
  for (let at = 0; ;) {
    const h = decodeFrameHeader(buf, at, number)
    if (h === undefined || at + FRAME_HEADER_BYTES + h.bodyLength > buf.byteLength) return out
    const end = at + frameSpan(h.bodyLength)
    out.push({ ...h, offset: at, end })
    at = end
  }
}

/** Every frame of `log`, with its file. */
export async function allFrames (dir: string, log = 'wal'): Promise<Array<FoundFrame & { path: string }>> {
  const out: Array<FoundFrame & { path: string }> = []
  for (const f of await segmentFiles(dir, log)) {
    for (const frame of framesIn(await readFile(f.path), f.number)) out.push({ ...frame, path: f.path })
  }
  return out
}

/** Where `needle` is in `log`'s segment files: the file, the offset, and the frame holding it. */
export async function findBytes (dir: string, needle: Buffer | string, log = 'wal'): Promise<{ path: string, number: number, at: number, frame: FoundFrame }> {
  for (const f of await segmentFiles(dir, log)) {
    const buf = await readFile(f.path)
    const at = buf.indexOf(needle)
    if (at < 0) continue
    const frame = framesIn(buf, f.number).find(fr => at >= fr.offset && at < fr.end)
    if (frame === undefined) throw new Error(`${String(needle)} is in ${f.path} at ${at}, outside every whole frame`)
    return { path: f.path, number: f.number, at, frame }
  }
  throw new Error(`${String(needle)} is in no segment file of ${log} in ${dir}`)
}

/** XOR the byte at `at` of `path` with `mask`. */
export async function flipAt (path: string, at: number, mask = 0x20): Promise<void> {
  const buf = await readFile(path)
  buf[at]! ^= mask
  await writeFile(path, buf)
}

/**
 * Write the header of the frame at `offset` of file `number` again from its body as it is now:
 * its body CRC (and header CRC) then match a body that was damaged after it was written.
 */
export async function resealFrame (path: string, number: number, offset: number): Promise<void> {
  const buf = await readFile(path)
  const flags = buf.readUInt8(offset + 5)
  const length = buf.readUInt32BE(offset + 12)
  const firstId = buf.readUInt32BE(offset + 16) * 0x1_0000_0000 + buf.readUInt32BE(offset + 20)
  const body = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length)
  encodeFrameHeader(number, firstId, body, flags, buf.readUInt8(offset + 6) as FrameCodec).copy(buf, offset)
  await writeFile(path, buf)
}
