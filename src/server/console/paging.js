// @ts-check
/**
 * Paging back through a log that reads forward only. Pages walked forward are remembered (the
 * page before is the one the user came from); after a jump to an ID there is none, so the start of
 * the page before is searched for.
 */

/**
 * The ID to read a page from so that it ends just before `before`: the greatest `S` with
 * `pageSize` live records in `[S, before)`, or `firstId` when fewer than a page lie before. It
 * gallops back from `before` (doubling the span) and then bisects: a log with no gaps takes one
 * read, one with gaps about two reads per doubling of the gap.
 * @param {(from: number) => Promise<readonly number[]>} idsFrom the IDs of the first `pageSize` records from an ID
 * @param {number} before
 * @param {number} firstId the log's first live ID
 * @param {number} pageSize
 * @returns {Promise<number>}
 */
export async function previousStart (idsFrom, before, firstId, pageSize) {
  /** @param {number} s whether a page of records lies in [s, before) */
  const enough = async s => {
    const ids = await idsFrom(s)
    return ids.length >= pageSize && /** @type {number} */ (ids[pageSize - 1]) < before
  }
  // `good` has a page before `before`, `bad` has not: the answer is in [good, bad).
  let good
  let bad = before - pageSize + 1
  for (let span = pageSize; ; span *= 2) {
    const s = Math.max(firstId, before - span)
    if (s >= bad) return firstId
    if (await enough(s)) {
      good = s
      break
    }
    if (s === firstId) return firstId
    bad = s
  }
  while (bad - good > 1) {
    const mid = Math.floor((good + bad) / 2)
    if (await enough(mid)) good = mid
    else bad = mid
  }
  return good
}
