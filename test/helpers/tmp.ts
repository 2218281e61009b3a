import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'

/**
 * A fresh, empty directory under the OS temp dir, removed (recursively) when the test ends.
 * Teardowns run last-registered-first, so register anything that must be closed before the
 * directory goes (an open Evaq, a child process) after calling this.
 */
export async function tmpDir (t: ExecutionContext, prefix = 'evaq-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(async () => {
    // EVAQ_KEEP_TMP=1 keeps the directories of failed tests for a post-mortem.
    if (process.env.EVAQ_KEEP_TMP !== undefined && !t.passed) {
      t.log(`kept ${dir}`)
      return
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
  })
  return dir
}
