// Runs every compiled test file with node's test runner and ends with a plain `N passed, N failed` line.
// Unit tests run first and in parallel; integration and e2e tests (real kernel, network namespaces) one file at a time.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function testFiles(dir) {
  let found = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return found;
  }
  for (const entry of entries.sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found = found.concat(testFiles(path));
    else if (entry.endsWith('.test.js')) found.push(path);
  }
  return found;
}

function run(files, concurrency) {
  return new Promise((resolve) => {
    if (files.length === 0) return resolve({ pass: 0, fail: 0, skipped: 0 });
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, ...files], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let tail = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    });
    child.on('close', (code) => {
      const count = (name) => Number(new RegExp(`(?:ℹ|#) ${name} (\\d+)`).exec(tail)?.[1] ?? 0);
      const result = { pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
      // A runner that died without a summary must not read as green.
      if (code !== 0 && result.fail === 0) result.fail = 1;
      resolve(result);
    });
  });
}

const only = process.argv.slice(2);
const suites =
  only.length > 0
    ? [['selected', only, 1]]
    : [
        ['unit', testFiles('dist/test/unit'), 2],
        ['integration', testFiles('dist/test/integration'), 1],
        ['e2e', testFiles('dist/test/e2e'), 1],
      ];
let pass = 0;
let fail = 0;
let skipped = 0;
for (const [, files, concurrency] of suites) {
  const result = await run(files, concurrency);
  pass += result.pass;
  fail += result.fail;
  skipped += result.skipped;
}
console.log(`${pass} passed, ${fail} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(fail === 0 && pass > 0 ? 0 : 1);
