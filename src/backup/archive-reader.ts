import { open, type FileHandle } from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import { EvaqError } from '../errors.js'
import { FileBytes, type ByteSource } from './byte-source.js'
import { placeOf } from '../store/snapshot.js'
import { ArchiveCorruption, type ArchiveDamage } from './archive-error.js'
import {
  ARCHIVE_MAGIC, ARCHIVE_VERSION, chainDigest, FrameKind, HEAD_BYTES, MAX_JSON_BYTES, MAX_KEY_BYTES,
  MAX_VALUE_BYTES, PREAMBLE_BYTES,
} from './format.js'
import { parseManifest, parseSummary, type BackupManifest, type BackupSummary } from './manifest.js'

/** One database entry of an archive, verified. */
export interface Frame {
  readonly kind: typeof FrameKind.ENTRY | typeof FrameKind.REFERENCE
  /** Byte offset of the frame in the archive. */
  readonly offset: number
  readonly key: Buffer
  readonly valueLength: number
  readonly valueCrc: number
  /** The value; undefined for a reference (it is in the base archive). */
  readonly value: Buffer | undefined
  /** Byte offset of the value in the archive (where it would be, for a reference). */
  readonly valueOffset: number
}

/**
 * An archive that is not a local file (an object in a bucket): what messages call it, and its
 * bytes from the start. `headOnly`: only the manifest will be read (`--since`, the chain check),
 * so a source may fetch just the first bytes.
 */
export interface ArchiveSource {
  readonly name: string
  open (headOnly: boolean): Promise<ByteSource>
}

/** An archive: the path of a file, or a source. */
export type ArchiveRef = string | ArchiveSource

/** What messages call `ref`. */
export function archiveName (ref: ArchiveRef): string {
  return typeof ref === 'string' ? ref : ref.name
}

async function openFile (file: string): Promise<FileBytes> {
  let handle: FileHandle
  try {
    handle = await open(file, 'r')
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT') throw new EvaqError('EVAQ_NOT_FOUND', `There is no archive at ${file}`, { cause: err })
    if (code === 'EISDIR') throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} is a directory, not an archive`, { cause: err })
    throw new EvaqError('EVAQ_IO', `Cannot open ${file}`, { cause: err })
  }
  try {
    const info = await handle.stat()
    if (!info.isFile()) throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} is not a file`)
    return new FileBytes(handle, info.size)
  } catch (err) {
    await handle.close().catch(() => {})
    throw err
  }
}

/**
 * Reads an archive (see format.ts) front to back and verifies everything it reads: open() reads
 * the manifest; frames() yields the database entries and ends by checking the summary. Damage is
 * an ArchiveCorruption (EVAQ_CORRUPTION) saying where; a file that is not an archive is
 * EVAQ_INVALID_ARGUMENT, another archive version EVAQ_UNSUPPORTED_FORMAT, a missing file
 * EVAQ_NOT_FOUND.
 */
export class ArchiveReader {
  /** Set once frames() has read the summary. */
  summary: BackupSummary | undefined
  private digest = 0
  private started = false

  private constructor (
    readonly file: string,
    private readonly bytes: ByteSource,
    readonly manifest: BackupManifest,
    digest: number
  ) {
    this.digest = digest
  }

  /** Size of the archive in bytes (of what was read so far, when a stream does not say). */
  get size (): number {
    return this.bytes.size ?? this.bytes.position
  }

  /** Bytes read so far. */
  get position (): number {
    return this.bytes.position
  }

  static async open (ref: ArchiveRef, options: { headOnly?: boolean } = {}): Promise<ArchiveReader> {
    const file = archiveName(ref)
    const bytes = typeof ref === 'string' ? await openFile(ref) : await ref.open(options.headOnly === true)
    try {
      const pre = await bytes.read(PREAMBLE_BYTES)
      if (pre === undefined || !pre.subarray(0, ARCHIVE_MAGIC.byteLength).equals(ARCHIVE_MAGIC)) {
        throw new EvaqError('EVAQ_INVALID_ARGUMENT', `${file} is not an evaq backup archive`)
      }
      const version = pre.readUInt32BE(ARCHIVE_MAGIC.byteLength)
      if (version !== ARCHIVE_VERSION) {
        throw new EvaqError('EVAQ_UNSUPPORTED_FORMAT', `${file} is a backup archive of version ${version}; this evaq reads version ${ARCHIVE_VERSION}`)
      }
      const head = await readHead(bytes, file, 0)
      if (head.kind !== FrameKind.MANIFEST || head.key.byteLength !== 0) {
        throw damaged(file, { offset: head.offset, reason: 'order' }, 'its first frame is not the manifest')
      }
      if (head.valueLength > MAX_JSON_BYTES) throw damaged(file, { offset: head.offset, reason: 'length' }, 'its manifest is too large')
      const value = await readValue(bytes, file, head)
      const manifest = parseManifest(value, file)
      return new ArchiveReader(file, bytes, manifest, chainDigest(0, head.crc))
    } catch (err) {
      await bytes.close()
      throw err
    }
  }

  /** The entries, verified, in key order; then the summary is read and checked. Call once. */
  async * frames (): AsyncGenerator<Frame> {
    if (this.started) throw new EvaqError('EVAQ_INTERNAL', 'An archive reader reads its frames once')
    this.started = true
    const { bytes, file } = this
    let previous: Buffer | undefined
    let entries = 0
    let references = 0
    for (;;) {
      const head = await readHead(bytes, file, entries)
      if (head.kind === FrameKind.SUMMARY) {
        if (head.key.byteLength !== 0 || head.valueLength > MAX_JSON_BYTES) {
          throw damaged(file, { offset: head.offset, reason: 'summary' }, 'its summary frame is malformed')
        }
        const summary = parseSummary(await readValue(bytes, file, head), file)
        if (summary.entries !== entries || summary.references !== references || summary.digest !== this.digest) {
          throw damaged(file, { offset: head.offset, reason: 'summary' },
            `its summary counts ${summary.entries} entries (${summary.references} references), ` +
            `the archive holds ${entries} (${references}), or frames were moved`)
        }
        if (!await bytes.atEnd()) {
          const more = bytes.size === undefined ? 'bytes follow' : `${bytes.size - bytes.position} bytes follow`
          throw damaged(file, { offset: bytes.position, reason: 'trailing' }, `${more} its summary`)
        }
        this.summary = summary
        return
      }
      const where = entryDamage(head.offset, head.key)
      if (head.kind !== FrameKind.ENTRY && head.kind !== FrameKind.REFERENCE) {
        throw damaged(file, { ...where, reason: 'order' }, `a frame of kind ${head.kind} stands among its entries`)
      }
      if (head.kind === FrameKind.REFERENCE && this.manifest.kind !== 'incremental') {
        throw damaged(file, { ...where, reason: 'reference' }, 'a full archive holds a reference')
      }
      if (previous !== undefined && Buffer.compare(previous, head.key) >= 0) throw damaged(file, { ...where, reason: 'order' }, 'its entries are out of order')
      previous = head.key
      this.digest = chainDigest(this.digest, head.crc)
      entries++
      const valueOffset = bytes.position
      let value: Buffer | undefined
      if (head.kind === FrameKind.ENTRY) value = await readValue(bytes, file, head)
      else references++
      yield { kind: head.kind, offset: head.offset, key: head.key, valueLength: head.valueLength, valueCrc: head.valueCrc, value, valueOffset }
    }
  }

  async close (): Promise<void> {
    await this.bytes.close()
  }
}

interface Head {
  readonly kind: number
  readonly offset: number
  readonly key: Buffer
  readonly valueLength: number
  readonly valueCrc: number
  readonly crc: number
}

function entryDamage (offset: number, key: Buffer): Omit<ArchiveDamage, 'archive' | 'reason'> {
  const place = placeOf(key)
  return {
    offset,
    sublevel: place.sublevel,
    key: place.key.toString('hex'),
    ...(place.log === undefined ? {} : { log: place.log, segment: place.segment! }),
  }
}

function damaged (archive: string, damage: Omit<ArchiveDamage, 'archive'>, why: string): ArchiveCorruption {
  const what = damage.segment !== undefined
    ? ` (segment ${damage.segment} of ${damage.log})`
    : damage.sublevel !== undefined ? ` (an entry of ${damage.sublevel === '' ? 'the root' : damage.sublevel})` : ''
  return new ArchiveCorruption(`The archive ${archive} is damaged at byte ${damage.offset}${what}: ${why}`, { archive, ...damage })
}

async function readHead (bytes: ByteSource, file: string, entries: number): Promise<Head> {
  const offset = bytes.position
  const fixed = await bytes.read(HEAD_BYTES)
  if (fixed === undefined) throw damaged(file, { offset, reason: 'truncated' }, `it ends after ${entries} entries, without its summary: it was cut short`)
  const keyLength = fixed.readUInt32BE(1)
  if (keyLength > MAX_KEY_BYTES) throw damaged(file, { offset, reason: 'head-checksum' }, 'a frame head is damaged (key length)')
  const rest = await bytes.read(keyLength + 4)
  if (rest === undefined) throw damaged(file, { offset, reason: 'truncated' }, 'it ends inside a frame: it was cut short')
  const crc = crc32(rest.subarray(0, keyLength), crc32(fixed))
  if (crc !== rest.readUInt32BE(keyLength)) throw damaged(file, { offset, reason: 'head-checksum' }, 'a frame head failed its checksum')
  const head = {
    kind: fixed.readUInt8(0),
    offset,
    key: Buffer.from(rest.subarray(0, keyLength)),
    valueLength: fixed.readUInt32BE(5),
    valueCrc: fixed.readUInt32BE(9),
    crc,
  }
  if (head.valueLength > MAX_VALUE_BYTES) throw damaged(file, { ...entryDamage(offset, head.key), reason: 'length' }, `a value of ${head.valueLength} bytes`)
  return head
}

async function readValue (bytes: ByteSource, file: string, head: Head): Promise<Buffer> {
  const value = await bytes.read(head.valueLength)
  const where = head.kind === FrameKind.ENTRY || head.kind === FrameKind.REFERENCE ? entryDamage(head.offset, head.key) : { offset: head.offset }
  if (value === undefined) throw damaged(file, { ...where, reason: 'truncated' }, 'it ends inside a value: it was cut short')
  if (crc32(value) !== head.valueCrc) throw damaged(file, { ...where, reason: 'value-checksum' }, 'a value failed its checksum')
  return value
}

/** The manifest of the archive in `file` (read and checked; the rest is not read). */
export function readManifest (file: string): Promise<BackupManifest> {
  return manifestOf(file)
}

/** The manifest of an archive, a file or a source (only its head is read). */
export async function manifestOf (ref: ArchiveRef): Promise<BackupManifest> {
  const reader = await ArchiveReader.open(ref, { headOnly: true })
  await reader.close()
  return reader.manifest
}

/** Read and verify a whole archive; resolves with its manifest and summary. */
export async function verifyArchive (
  file: string,
  onProgress?: (bytes: number, total: number) => void
): Promise<{ manifest: BackupManifest, summary: BackupSummary }> {
  const reader = await ArchiveReader.open(file)
  try {
    let n = 0
    for await (const frame of reader.frames()) {
      void frame
      if ((++n & 255) === 0) onProgress?.(reader.position, reader.size)
    }
    onProgress?.(reader.position, reader.size)
    return { manifest: reader.manifest, summary: reader.summary! }
  } finally {
    await reader.close()
  }
}
