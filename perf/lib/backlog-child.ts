/**
 * `backlog`, run by backlog.ts in a fresh process per open so that the RSS is evaq's alone: open
 * the directory, read one batch at the head, report the open time and RSS, close.
 * Usage: node --import tsx backlog-child.ts '<dir>'
 */
import { performance } from 'node:perf_hooks'
import { Evaq } from '../../src/index.js'
import { rssSplit, type RssSplit } from './common.js'

export interface OpenResult {
  /** Node, tsx and evaq loaded, nothing opened. */
  readonly rssBefore: number
  readonly openMs: number
  readonly keysRead: number
  readonly rssOpen: number
  /** `wal.read({ maxCount: 1000 })` at the head of the backlog. */
  readonly firstReadMs: number
  readonly firstReadRecords: number
  readonly rssAfterRead: number
  readonly splitAfterRead: RssSplit | undefined
  readonly count: number
  readonly closeMs: number
}

const dir = process.argv[2]!
const rssBefore = process.memoryUsage.rss()
let t = performance.now()
const q = await Evaq.open(dir)
const openMs = performance.now() - t
const rssOpen = process.memoryUsage.rss()
t = performance.now()
const records = await q.wal.read({ maxCount: 1000 })
const firstReadMs = performance.now() - t
const rssAfterRead = process.memoryUsage.rss()
const splitAfterRead = rssSplit()
const { count } = await q.wal.stats()
t = performance.now()
await q.close()
const result: OpenResult = {
  rssBefore, openMs, keysRead: q.openReport.keysRead, rssOpen, firstReadMs, firstReadRecords: records.length,
  rssAfterRead, splitAfterRead, count, closeMs: performance.now() - t,
}
process.send!(result, () => process.exit(0))
