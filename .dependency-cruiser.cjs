/**
 * The layers of src/, bottom to top (docs/architecture.md). A module may import from its own
 * layer and the ones below it, never from one above (type-only imports aside: types do not make a
 * module load another), and no import circle is allowed. `npm run lint` checks both.
 */
const LAYERS = [
  ['base', '^src/(errors|crash-points|schema|validate|options)\\.ts$'],
  ['store', '^src/store/'],
  ['write', '^src/write/'],
  ['log', '^src/log/'],
  ['dlq', '^src/(dlq|backup)/'],
  ['retry', '^src/retry/'],
  ['facade', '^src/((evaq|metrics|index)\\.ts$|facade/)'],
  ['kafka', '^src/kafka/'],
  ['server', '^src/server/'],
  ['cli', '^src/cli/'],
]

const upward = LAYERS.flatMap(([name, path], i) => LAYERS.slice(i + 1).map(([above, abovePath]) => ({
  name: `no-upward-${name}-to-${above}`,
  comment: `The ${name} layer must not import from the ${above} layer above it (see docs/architecture.md).`,
  severity: 'error',
  from: { path },
  to: { path: abovePath, dependencyTypesNot: ['type-only'] },
})))

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-circular',
      comment: 'Modules must not import each other in a circle (type-only imports aside).',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'every-module-in-a-layer',
      comment: 'A new folder of src/ needs its place in the layers (.dependency-cruiser.cjs and docs/architecture.md).',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.map(([, path]) => path) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/server/console/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
