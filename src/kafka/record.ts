import { EvaqError, invalid } from '../errors.js'
import { rejectUnknown } from '../validate.js'

/**
 * Kafka messages as the WAL stores them. One message is one WAL record, so that the record ID is
 * the message's identity (its `evaq-id`) and a resend after a crash sends exactly what was
 * persisted. The encoding is evaq's own, versioned, and independent of kafkajs:
 *
 *   magic 0xEA 0x4B, version 1, flags (key, value, partition, acks present)
 *   [acks: i8] topic: u16 length + UTF-8 [partition: u32] timestamp: u8 length + ASCII digits
 *   [key: u32 length + bytes] [value: u32 length + bytes]
 *   header count: u16, then per header: name u16 length + UTF-8, value u32 length + bytes
 *
 * A header with several values is stored as several entries with the same name.
 */

/** The header that carries a message's identity: `<database identity>:<WAL record ID>`. */
export const EVAQ_ID_HEADER = 'evaq-id'

/** Header values as kafkajs takes them (`IHeaders`). */
export interface KafkaHeaders {
  [name: string]: Buffer | string | ReadonlyArray<Buffer | string> | undefined
}

/** A message as kafkajs takes it (`Message`). */
export interface KafkaMessage {
  key?: Buffer | string | null
  /** `null` is a tombstone. */
  value: Buffer | string | null
  /** Leave it out to let the producer's partitioner choose (by key, when there is one). */
  partition?: number
  headers?: KafkaHeaders
  /**
   * Milliseconds since the epoch, as kafkajs takes it (a string; a number is accepted too).
   * @defaultValue the time `send()` persisted the message, so that every resend carries the same timestamp
   */
  timestamp?: string | number
}

/** What `decodeKafkaRecord` returns: enough to send the message again with kafkajs. */
export interface KafkaRecord {
  readonly topic: string
  /** The `acks` the message was sent with, if `send()` was given one. */
  readonly acks: number | undefined
  readonly message: {
    readonly key: Buffer | null
    readonly value: Buffer | null
    readonly partition?: number
    readonly headers: Record<string, Buffer | Buffer[]>
    readonly timestamp: string
  }
}

const MAGIC_0 = 0xEA
const MAGIC_1 = 0x4B
const VERSION = 1
const HAS_KEY = 1
const HAS_VALUE = 2
const HAS_PARTITION = 4
const HAS_ACKS = 8
const MAX_U16 = 0xFFFF
const MAX_PARTITION = 0x7FFF_FFFF

/** A validated message, ready to encode. */
export interface CheckedMessage {
  readonly key: Uint8Array | null
  readonly value: Uint8Array | null
  readonly partition: number | undefined
  readonly headers: ReadonlyArray<readonly [string, Uint8Array]>
  readonly timestamp: string
}

function bytes (value: Buffer | Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value
}

function isBytes (value: unknown): value is Buffer | Uint8Array | string {
  return typeof value === 'string' || value instanceof Uint8Array
}

/** Validate one message of `send()`; `name` is how errors refer to it (`messages[3]`). */
export function checkMessage (message: unknown, name: string, now: number): CheckedMessage {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) throw invalid(name, 'a message object like { key, value, headers }', message)
  rejectUnknown(message, ['key', 'value', 'partition', 'headers', 'timestamp'], ` in ${name}`)
  const { key, value, partition, headers, timestamp } = message as Record<string, unknown>
  if (value !== null && !isBytes(value)) throw invalid(`${name}.value`, 'a Buffer, a string or null', value)
  if (key !== undefined && key !== null && !isBytes(key)) throw invalid(`${name}.key`, 'a Buffer, a string, null or undefined', key)
  if (partition !== undefined && (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition > MAX_PARTITION)) {
    throw invalid(`${name}.partition`, `an integer from 0 to ${MAX_PARTITION}`, partition)
  }
  let stamp: string
  if (timestamp === undefined) stamp = String(now)
  else if (typeof timestamp === 'number' && Number.isSafeInteger(timestamp) && timestamp >= 0) stamp = String(timestamp)
  else if (typeof timestamp === 'string' && /^\d{1,16}$/.test(timestamp)) stamp = timestamp
  else throw invalid(`${name}.timestamp`, 'milliseconds since the epoch (a string of digits or an integer)', timestamp)
  const list: Array<readonly [string, Uint8Array]> = []
  if (headers !== undefined) {
    if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) throw invalid(`${name}.headers`, 'an object', headers)
    for (const [header, v] of Object.entries(headers)) {
      if (v === undefined) continue
      if (Buffer.byteLength(header) > MAX_U16) throw invalid(`${name}.headers`, `header names of at most ${MAX_U16} bytes`, header)
      const values = Array.isArray(v) ? v as unknown[] : [v]
      for (const one of values) {
        if (!isBytes(one)) throw invalid(`${name}.headers[${JSON.stringify(header)}]`, 'a Buffer, a string or an array of them', one)
        list.push([header, bytes(one)])
      }
    }
    if (list.length > MAX_U16) throw invalid(`${name}.headers`, `at most ${MAX_U16} header values`, list.length)
  }
  return {
    key: key === undefined || key === null ? null : bytes(key as Buffer | string),
    value: value === null ? null : bytes(value as Buffer | string),
    partition: partition as number | undefined,
    headers: list,
    timestamp: stamp,
  }
}

/** Encode a message of `topic` for the WAL. `extraHeaders` go after the message's own. */
export function encodeRecord (
  topic: string,
  acks: number | undefined,
  m: CheckedMessage,
  extraHeaders: ReadonlyArray<readonly [string, Uint8Array]> = []
): Buffer {
  const topicBytes = Buffer.from(topic, 'utf8')
  const headers = extraHeaders.length === 0 ? m.headers : [...m.headers, ...extraHeaders]
  const headerBytes = headers.map(([h, v]) => [Buffer.from(h, 'utf8'), v] as const)
  let size = 4 + (acks === undefined ? 0 : 1) + 2 + topicBytes.byteLength + (m.partition === undefined ? 0 : 4) + 1 + m.timestamp.length +
    (m.key === null ? 0 : 4 + m.key.byteLength) + (m.value === null ? 0 : 4 + m.value.byteLength) + 2
  for (const [h, v] of headerBytes) size += 2 + h.byteLength + 4 + v.byteLength
  const buf = Buffer.allocUnsafe(size)
  let at = 0
  buf[at++] = MAGIC_0
  buf[at++] = MAGIC_1
  buf[at++] = VERSION
  buf[at++] = (m.key === null ? 0 : HAS_KEY) |
    (m.value === null ? 0 : HAS_VALUE) |
    (m.partition === undefined ? 0 : HAS_PARTITION) |
    (acks === undefined ? 0 : HAS_ACKS)
  if (acks !== undefined) at = buf.writeInt8(acks, at)
  at = buf.writeUInt16BE(topicBytes.byteLength, at)
  at += topicBytes.copy(buf, at)
  if (m.partition !== undefined) at = buf.writeUInt32BE(m.partition, at)
  buf[at++] = m.timestamp.length
  at += buf.write(m.timestamp, at, 'latin1')
  for (const field of [m.key, m.value]) {
    if (field === null) continue
    at = buf.writeUInt32BE(field.byteLength, at)
    buf.set(field, at)
    at += field.byteLength
  }
  at = buf.writeUInt16BE(headerBytes.length, at)
  for (const [h, v] of headerBytes) {
    at = buf.writeUInt16BE(h.byteLength, at)
    at += h.copy(buf, at)
    at = buf.writeUInt32BE(v.byteLength, at)
    buf.set(v, at)
    at += v.byteLength
  }
  return buf
}

/** A decoded WAL record: the message, its headers in stored order, and where it goes. */
export interface DecodedRecord {
  readonly topic: string
  readonly acks: number | undefined
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly partition: number | undefined
  readonly headers: ReadonlyArray<readonly [string, Buffer]>
  readonly timestamp: string
}

/** Decode a WAL record written by {@link encodeRecord}; EVAQ_CORRUPTION for anything else. */
export function decodeRecord (payload: Buffer): DecodedRecord {
  let at = 0
  const need = (n: number): void => {
    if (at + n > payload.byteLength) throw notARecord(`it ends after ${payload.byteLength} bytes`)
  }
  need(4)
  if (payload[0] !== MAGIC_0 || payload[1] !== MAGIC_1) throw notARecord('it does not start with the Kafka record mark')
  if (payload[2] !== VERSION) throw notARecord(`its format version is ${payload[2]}`)
  const flags = payload[3]!
  at = 4
  let acks: number | undefined
  if ((flags & HAS_ACKS) !== 0) { need(1); acks = payload.readInt8(at); at += 1 }
  need(2)
  const topicLength = payload.readUInt16BE(at)
  at += 2
  need(topicLength)
  const topic = payload.toString('utf8', at, at + topicLength)
  at += topicLength
  let partition: number | undefined
  if ((flags & HAS_PARTITION) !== 0) { need(4); partition = payload.readUInt32BE(at); at += 4 }
  need(1)
  const stampLength = payload[at++]!
  need(stampLength)
  const timestamp = payload.toString('latin1', at, at + stampLength)
  at += stampLength
  const field = (): Buffer => {
    need(4)
    const length = payload.readUInt32BE(at)
    at += 4
    need(length)
    const out = payload.subarray(at, at + length)
    at += length
    return out
  }
  const key = (flags & HAS_KEY) !== 0 ? field() : null
  const value = (flags & HAS_VALUE) !== 0 ? field() : null
  need(2)
  const count = payload.readUInt16BE(at)
  at += 2
  const headers: Array<readonly [string, Buffer]> = []
  for (let i = 0; i < count; i++) {
    need(2)
    const nameLength = payload.readUInt16BE(at)
    at += 2
    need(nameLength)
    const name = payload.toString('utf8', at, at + nameLength)
    at += nameLength
    headers.push([name, field()])
  }
  if (at !== payload.byteLength) throw notARecord(`${payload.byteLength - at} bytes follow its last header`)
  return { topic, acks, key, value, partition, headers, timestamp }
}

function notARecord (why: string): EvaqError {
  return new EvaqError('EVAQ_CORRUPTION', `Not a Kafka record of evaq: ${why}`)
}

/** Headers as kafkajs takes them: one Buffer per name, or an array for a repeated name. */
export function toKafkaHeaders (headers: ReadonlyArray<readonly [string, Buffer]>): Record<string, Buffer | Buffer[]> {
  const out: Record<string, Buffer | Buffer[]> = Object.create(null) as Record<string, Buffer | Buffer[]>
  for (const [name, value] of headers) {
    const seen = out[name]
    if (seen === undefined) out[name] = value
    else if (Array.isArray(seen)) seen.push(value)
    else out[name] = [seen, value]
  }
  return out
}

/** The message's `evaq-id`, when it carries one already (a message resent from the DLQ keeps its first identity). */
export function existingEvaqId (headers: ReadonlyArray<readonly [string, Uint8Array]>): string | undefined {
  for (const [name, value] of headers) if (name === EVAQ_ID_HEADER) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')
  return undefined
}

/**
 * Decode the payload of a record the Kafka producer put in the WAL or the DLQ, for example in a
 * retry handler: `const { topic, acks, message } = decodeKafkaRecord(record.payload)` then
 * `producer.send({ topic, acks, messages: [message] })`. A DLQ record carries its `evaq-id`
 * header, so the resend has the identity of the first attempt. Throws EVAQ_CORRUPTION for a
 * payload that is not such a record.
 */
export function decodeKafkaRecord (payload: Buffer | Uint8Array): KafkaRecord {
  if (!(payload instanceof Uint8Array)) throw invalid('payload', 'a Buffer', payload)
  const r = decodeRecord(Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))
  const message = {
    key: r.key,
    value: r.value,
    ...(r.partition === undefined ? {} : { partition: r.partition }),
    headers: toKafkaHeaders(r.headers),
    timestamp: r.timestamp,
  }
  return { topic: r.topic, acks: r.acks, message }
}
