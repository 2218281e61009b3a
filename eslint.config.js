// The linter of `npm test` (`npm run lint`): neostandard's rules for TypeScript and a line-length
// limit, with zero warnings. Where evaq's style differs from neostandard's, the rule says why.
import globals from 'globals'
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'perf/node_modules/**', 'perf/results/**', 'data/**', '.tmp/**'],
  }),
  {
    rules: {
      '@stylistic/max-len': ['error', { code: 160, ignoreUrls: true, ignoreRegExpLiterals: true }],
      // `void promise` marks a promise deliberately not awaited (its errors are handled inside).
      'no-void': 'off',
      // Labeled loops are how the read paths leave two loops at once.
      'no-labels': ['error', { allowLoop: true }],
      // Wide objects wrap where the line ends rather than one property per line.
      '@stylistic/object-property-newline': 'off',
    },
  },
  {
    // The operator console runs in the browser.
    files: ['src/server/console/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
]
