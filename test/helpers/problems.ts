/**
 * What the long crash tests found wrong, collected instead of failing at the first: each problem
 * is prefixed with where the checks were (cycle, seed, plan), and only the first `limit` are kept
 * so that one bad cycle does not bury the report.
 */
export class Problems {
  /** `where: text` of each problem found, the first `limit` of them. */
  readonly found: string[] = []
  /** Where the checks are now: set before each cycle. */
  where = ''

  constructor (private readonly limit = 30) {}

  /** Note a problem (an arrow, so it can be passed around detached). */
  readonly add = (text: string): void => {
    if (this.found.length < this.limit) this.found.push(`${this.where}: ${text}`)
  }

  /** One message listing them all, for t.fail. */
  summary (): string {
    return `${this.found.length} problem(s):\n${this.found.join('\n')}`
  }
}
