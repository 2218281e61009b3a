/**
 * Spike (throwaway): where the time goes in a V8 CPU profile (node --cpu-prof): self time by
 * function, and by area (evaq's codec, the prototype, LevelDB, fs, GC, idle).
 * Run: npx tsx perf/spike/profile-summary.ts <file.cpuprofile> [top]
 */
import { readFileSync } from 'node:fs'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number }
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[] }

const [file, topArg] = process.argv.slice(2)
if (file === undefined) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]')
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map(n => [n.id, n]))
const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
let total = 0
const byFn = new Map<string, number>()
const byArea = new Map<string, number>()
const area = (url: string, fn: string): string => {
  if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)') return fn
  if (url.includes('/perf/spike/')) return 'prototype (perf/spike)'
  if (url.includes('/src/store/codec')) return 'codec (SegmentBuilder, crc32)'
  if (url.includes('/src/')) return 'evaq src (other)'
  if (url.includes('classic-level') || url.includes('abstract-level')) return 'classic-level (JS)'
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`
  if (url === '') return `native: ${fn}`
  return 'other JS'
}
for (const [id, us] of selfUs) {
  const n = byId.get(id)!
  const { functionName, url, lineNumber } = n.callFrame
  const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(src|perf|node_modules)\//, '$1/')}:${lineNumber + 1}`
  byFn.set(key, (byFn.get(key) ?? 0) + us)
  const a = area(url, functionName)
  byArea.set(a, (byArea.get(a) ?? 0) + us)
  total += us
}
const print = (title: string, m: Map<string, number>, top: number): void => {
  console.log(`\n| ${title} | self ms | share |\n|---|---|---|`)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`| ${k} | ${(us / 1000).toFixed(0)} | ${(100 * us / total).toFixed(1)}% |`)
  }
}
console.log(`profile: ${(total / 1e6).toFixed(2)} s sampled`)
print('area', byArea, 20)
print('function', byFn, Number(topArg ?? 25))
