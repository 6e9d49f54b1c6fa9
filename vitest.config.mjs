// The test suite on vitest, over the compiled tests in dist/ (tests find the BPF object and the CLI relative to their
// compiled location). Unit tests run first, in parallel forks; the privileged integration and e2e tests (real kernel,
// network namespaces) then run one file after another in a single forked worker. `make test` builds first.
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const privileged = { pool: 'forks', poolOptions: { forks: { singleFork: true } } };

export default defineConfig({
  test: {
    // node:test had no timeouts; these only stop a hang (the slowest integration hook builds a lab and an agent).
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // vitest would use one worker less than the CPUs, which is a single one on a 2-core machine.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The default excludes skip dist/, where the compiled tests are.
    exclude: ['**/node_modules/**'],
    reporters: ['default', './scripts/vitest-summary.mjs'],
    coverage: {
      enabled: true,
      provider: 'v8',
      include: ['dist/src/**/*.js', 'dist/lab/**/*.js'],
      exclude: ['**/node_modules/**'],
      reporter: ['text-summary', 'html'],
      reportsDirectory: 'dist/coverage',
    },
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['dist/test/unit/**/*.test.js'], pool: 'forks', sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['dist/test/integration/**/*.test.js'], ...privileged, sequence: { groupOrder: 1 } },
      },
      { extends: true, test: { name: 'e2e', include: ['dist/test/e2e/**/*.test.js'], ...privileged, sequence: { groupOrder: 2 } } },
    ],
  },
});
