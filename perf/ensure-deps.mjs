#!/usr/bin/env node
// The benchmarks' own dependencies (better-sqlite3, bullmq, ioredis, autocannon) live in perf/package.json so that the
// root `npm install` does not build better-sqlite3 from source for users of evaq. The bench scripts call this first:
// it runs `npm ci --prefix perf` when perf/node_modules is missing or older than perf/package-lock.json, and does
// nothing otherwise. Plain JavaScript, so that it runs before anything else is installed.
import { spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const perfDir = path.dirname(fileURLToPath(import.meta.url))

/** Modification time in ms, or undefined when the file does not exist. */
function mtime (file) {
  try {
    return statSync(file).mtimeMs
  } catch (err) {
    if (err.code === 'ENOENT') return undefined
    throw err
  }
}

// npm writes node_modules/.package-lock.json at the end of every install, so it dates the last complete install
// (node_modules' own mtime does not: a half-finished install has touched it too).
const installed = mtime(path.join(perfDir, 'node_modules', '.package-lock.json'))
const locked = mtime(path.join(perfDir, 'package-lock.json'))
if (locked === undefined) throw new Error(`${path.join(perfDir, 'package-lock.json')} is missing`)

if (installed === undefined || installed < locked) {
  console.error(installed === undefined
    ? 'perf/node_modules is missing: installing the benchmarks\' dependencies (npm ci --prefix perf; better-sqlite3 may build from source)'
    : 'perf/package-lock.json changed since the last install: reinstalling the benchmarks\' dependencies (npm ci --prefix perf)')
  // Under `npm run`, npm_execpath is the npm that runs us; reuse it rather than whatever `npm` is first on PATH.
  const npmCli = process.env.npm_execpath
  const [cmd, pre] = npmCli !== undefined && /\.[cm]?js$/.test(npmCli) ? [process.execPath, [npmCli]] : ['npm', []]
  const r = spawnSync(cmd, [...pre, 'ci', '--prefix', perfDir, '--no-audit', '--no-fund'], {
    cwd: perfDir,
    stdio: 'inherit',
    shell: cmd === 'npm' && process.platform === 'win32',
  })
  if (r.error !== undefined) throw r.error
  if (r.status !== 0) {
    console.error(`npm ci --prefix perf failed (${r.signal ?? `exit ${r.status}`})`)
    process.exit(r.status ?? 1)
  }
}
