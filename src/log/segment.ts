import { decodeHeader, type SegmentHeader } from '../store/codec.js'

/** A segment value with its header decoded on first use (a fresh write may never need it). */
export class Segment {
  private decoded: SegmentHeader | undefined

  constructor (readonly firstId: number, readonly value: Buffer) {}

  get header (): SegmentHeader {
    return (this.decoded ??= decodeHeader(this.firstId, this.value))
  }
}
