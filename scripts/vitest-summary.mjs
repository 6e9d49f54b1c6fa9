// Vitest reporter that ends the run with the plain `N passed, N failed` line CI reads (.ci/run), printed last (after
// vitest's own summary and the coverage report). Errors outside a test (a file that fails to load, a failing
// beforeAll/afterAll, an unhandled error) count as failures, and a run where nothing passed is not green.
export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const testModule of testModules) {
      for (const test of testModule.children.allTests()) {
        const { state } = test.result();
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A module or suite that failed without a failed test of its own (load error, hook error).
      for (const suite of [testModule, ...testModule.children.allSuites()]) {
        if (suite.state() === 'failed' && [...suite.children.allTests('failed')].length === 0) failed++;
      }
    }
    if (passed === 0 && failed === 0) failed = 1;
    // Writes to pipes and files are synchronous on Linux, so the line is out before the process ends.
    process.once('exit', () => {
      if (skipped > 0) console.log(`${skipped} skipped`);
      console.log(`${passed} passed, ${failed} failed`);
      if (failed > 0) process.exitCode = 1;
    });
  }
}
