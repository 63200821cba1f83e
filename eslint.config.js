// Lint (npm test runs it): typescript-eslint's type-checked rules over src, test, bench, infra and
// scripts. The rules that catch real defects here: floating and misused promises (a rejected
// promise nobody awaits, an async callback where a sync one is expected), unsafe `any` flows.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'cdk.out/', 'infra/cdk.out/', 'node_modules/', 'bench/results/', 'bench/.cache/', 'bench/.scratch/', 'tools/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's describe/test return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'suite', 'test', 'it'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // Opcodes and error codes arrive as numbers read from datagrams; comparing them with the
      // enums that name them is the codec's job.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      // An abort rejects with the signal's reason, whatever the caller made it.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
);
