import { randomUUID } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { EvaqError } from '../errors.js'
import { placeOf, type StoreSnapshot } from '../store/snapshot.js'
import { FORMAT_VERSION } from '../schema.js'
import { ARCHIVE_VERSION, chainDigest, frameHead, FrameKind, preamble } from './format.js'
import type { BackupBase, BackupLogMark, BackupManifest, BackupSummary } from './manifest.js'

/** Output is handed on in chunks of about this size; larger values go on their own, uncopied. */
const CHUNK_BYTES = 256 * 1024

/** Build the manifest of a backup taken now with these marks, on `base` if incremental. */
export function newManifest (logs: Record<string, BackupLogMark>, createdAt: number, base: BackupBase | undefined): BackupManifest {
  if (base !== undefined) {
    if (base.storeFormat !== FORMAT_VERSION) {
      throw new EvaqError('EVAQ_INVALID_ARGUMENT',
        `The base archive holds data directory format ${base.storeFormat}; this queue is format ${FORMAT_VERSION}: take a full backup`)
    }
    for (const [log, mark] of Object.entries(base.logs)) {
      const now = logs[log]
      if (now === undefined || mark.highWater > now.highWater) {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT',
          `The base archive ${base.id} is not an earlier backup of this queue: ` +
          `its high-water ID of ${log} (${mark.highWater}) lies above this queue's (${now?.highWater ?? 'none'})`)
      }
    }
  }
  return {
    format: 'evaq-backup',
    version: ARCHIVE_VERSION,
    id: randomUUID(),
    kind: base === undefined ? 'full' : 'incremental',
    ...(base === undefined ? {} : { base }),
    depth: base === undefined ? 0 : base.depth + 1,
    createdAt,
    storeFormat: FORMAT_VERSION,
    logs,
  }
}

/** Collects small pieces into chunks; big values pass through without a copy. */
class Chunker {
  private parts: Buffer[] = []
  private bytes = 0

  add (part: Buffer, out: Buffer[]): void {
    if (part.byteLength >= CHUNK_BYTES) {
      this.drain(out)
      out.push(part)
      return
    }
    this.parts.push(part)
    this.bytes += part.byteLength
    if (this.bytes >= CHUNK_BYTES) this.drain(out)
  }

  drain (out: Buffer[]): void {
    if (this.parts.length === 0) return
    out.push(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.bytes))
    this.parts = []
    this.bytes = 0
  }
}

/**
 * The archive of `snapshot`, as chunks of bytes (see format.ts). Segments of a log below the
 * base's high-water ID go as references: they were in the base's snapshot and segments are
 * written once. `done` receives the summary once the last chunk is out.
 */
export async function * writeArchive (manifest: BackupManifest, snapshot: StoreSnapshot, done: (summary: BackupSummary) => void): AsyncGenerator<Buffer> {
  const base = manifest.base
  const chunker = new Chunker()
  const segments: Record<string, { total: number, carried: number, carriedBytes: number }> = {}
  for (const log of Object.keys(manifest.logs)) segments[log] = { total: 0, carried: 0, carriedBytes: 0 }
  let digest = 0
  let entries = 0
  let references = 0
  let valueBytes = 0
  const frame = (kind: FrameKind, key: Buffer, value: Buffer, out: Buffer[]): void => {
    const { head, crc } = frameHead(kind, key, value.byteLength, crc32(value))
    digest = chainDigest(digest, crc)
    chunker.add(head, out)
    if (kind !== FrameKind.REFERENCE) chunker.add(value, out)
  }
  try {
    const first: Buffer[] = []
    chunker.add(preamble(), first)
    frame(FrameKind.MANIFEST, Buffer.alloc(0), Buffer.from(JSON.stringify(manifest)), first)
    yield * first
    for await (const page of snapshot.entries()) {
      const out: Buffer[] = []
      for (const [key, value] of page) {
        const place = placeOf(key)
        entries++
        let kind: FrameKind = FrameKind.ENTRY
        if (place.log !== undefined) {
          const s = (segments[place.log] ??= { total: 0, carried: 0, carriedBytes: 0 })
          s.total++
          const highWater = base?.logs[place.log]?.highWater
          if (highWater !== undefined && place.segment! < highWater) kind = FrameKind.REFERENCE
          else {
            s.carried++
            s.carriedBytes += value.byteLength
          }
        }
        if (kind === FrameKind.REFERENCE) references++
        else valueBytes += value.byteLength
        frame(kind, key, value, out)
      }
      yield * out
    }
    const summary: BackupSummary = { entries, references, valueBytes, segments, digest }
    const last: Buffer[] = []
    frame(FrameKind.SUMMARY, Buffer.alloc(0), Buffer.from(JSON.stringify(summary)), last)
    chunker.drain(last)
    yield * last
    done(summary)
  } finally {
    await snapshot.close()
  }
}
