/**
 * Relative links of Markdown files, and the anchors their headings get, the way GitHub renders
 * them: enough to tell whether every link of the README and docs/ lands on a file and a heading
 * that exist. External links (a scheme such as https:, or <…> autolinks) are not followed.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

export interface Link { file: string, line: number, target: string }

/** The lines outside fenced code blocks, with their 1-based numbers. */
function prose (text: string): Array<[number, string]> {
  const out: Array<[number, string]> = []
  let fence: string | undefined
  text.split('\n').forEach((line, i) => {
    const m = /^\s*(`{3,}|~{3,})/.exec(line)
    if (m !== null) {
      if (fence === undefined) fence = m[1]![0]
      else if (m[1]![0] === fence) fence = undefined
      return
    }
    if (fence === undefined) out.push([i + 1, line])
  })
  return out
}

/** GitHub's anchor for a heading's text (github-slugger): lower case, punctuation dropped, spaces to hyphens. */
export function slug (heading: string): string {
  const text = heading.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*]/g, '').trim().toLowerCase()
  return text.replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** Every anchor of a Markdown text, with -1, -2 … for repeated headings as GitHub numbers them. */
export function anchors (text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const [, line] of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (m === null) continue
    const base = slug(m[1]!)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** The relative link targets of a Markdown text (inline links and images, outside code). */
export function links (file: string, text: string): Link[] {
  const out: Link[] = []
  for (const [line, content] of prose(text)) {
    const outsideCode = content.replace(/`[^`]*`/g, '')
    for (const m of outsideCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = m[1]!
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue
      out.push({ file, line, target })
    }
  }
  return out
}

/** The file a link points at, relative to the repository root. */
export function linkedFile (link: Link): string {
  const path = link.target.split('#', 1)[0]!
  return path === '' ? link.file : join(dirname(link.file), decodeURIComponent(path))
}

/** Why `link` does not resolve from the repository at `root`, or undefined when it does. */
export function broken (root: string, link: Link): string | undefined {
  const anchor = link.target.split('#', 2)[1]
  const target = join(root, linkedFile(link))
  const where = `${link.file}:${link.line}: ${link.target}`
  if (!existsSync(target)) return `${where}: no file ${relative(root, target)}`
  if (anchor === undefined || anchor === '' || !target.endsWith('.md')) return undefined
  if (!anchors(readFileSync(target, 'utf8')).has(anchor)) return `${where}: no heading #${anchor} in ${relative(root, target)}`
  return undefined
}
