/** IDs (sorted ascending) written as runs for a test message: `1..4,7,9..10`, or `none`. */
export function ranges (ids: readonly number[]): string {
  const out: string[] = []
  for (let i = 0; i < ids.length;) {
    let j = i
    while (j + 1 < ids.length && ids[j + 1] === ids[j]! + 1) j++
    out.push(i === j ? `${ids[i]}` : `${ids[i]}..${ids[j]}`)
    i = j + 1
  }
  return out.join(',') || 'none'
}
