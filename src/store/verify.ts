import { decodeHeader, isRemoved, payloadAt, type RemovalSet, type SegmentHeader } from './codec.js'

/** What verifySegment found in one stored segment. */
export interface SegmentVerdict {
  /** The decoded header; undefined when the header or index fails its checksum (the whole segment is damaged). */
  readonly header: SegmentHeader | undefined
  /** Indexes of live records (not removed) whose payload fails its checksum. */
  readonly badRecords: readonly number[]
  /** Live records that passed, and their payload bytes. */
  readonly goodRecords: number
  readonly goodBytes: number
}

/**
 * Check every live record of a stored segment against its checksums, the one definition of a
 * damaged segment or record that `evaq check` reports and `evaq repair` quarantines.
 */
export function verifySegment (first: number, value: Buffer, removal: RemovalSet | undefined): SegmentVerdict {
  let header: SegmentHeader
  try {
    header = decodeHeader(first, value)
  } catch {
    return { header: undefined, badRecords: [], goodRecords: 0, goodBytes: 0 }
  }
  const badRecords: number[] = []
  let goodRecords = 0
  let goodBytes = 0
  for (let i = 0; i < header.count; i++) {
    if (isRemoved(removal, i)) continue
    try {
      payloadAt(header, value, i)
      goodRecords++
      goodBytes += header.lengths[i]!
    } catch {
      badRecords.push(i)
    }
  }
  return { header, badRecords, goodRecords, goodBytes }
}
