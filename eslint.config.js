// ESLint flat config: typescript-eslint's type-aware recommended rules over all our
// TypeScript. `npm run lint` fails on any warning (--max-warnings 0).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

function layers(map) {
  return Object.entries(map).map(([files, above]) => ({
    files: [files],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: above.map((dir) => ({
          group: [1, 2, 3, 4].flatMap((d) => [`${'../'.repeat(d)}${dir}`, `${'../'.repeat(d)}${dir}/**`]),
          message: `${dir}/ is a layer above this one: imports only go down (README, "Code layout").`,
        })),
      }],
    },
  }));
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.run/', 'web/dist/', 'db/migrations/', '.tmp/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests, fixtures and benchmarks read rows straight from pg and JSON bodies: checking
    // those values is what their assertions do, so the no-unsafe-* family stays off there.
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  {
    files: ['web/src/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } },
  },
  { files: ['**/*.{js,mjs,cjs}'], extends: [tseslint.configs.disableTypeChecked] },
  // The layers (README, "Code layout"): entry points → workflows → steps → db → lib.
  // A module may import its own layer and those below it, never one above.
  ...layers({
    'workflows/**/*.ts': ['server', 'worker', 'scripts', 'sandbox'],
    'steps/**/*.ts': ['workflows', 'server', 'worker', 'scripts', 'sandbox'],
    'db/**/*.ts': ['steps', 'workflows', 'server', 'worker', 'scripts', 'sandbox'],
    'lib/**/*.ts': ['db', 'steps', 'workflows', 'server', 'worker', 'scripts', 'sandbox'],
  }),
);
