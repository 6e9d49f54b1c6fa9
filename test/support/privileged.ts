// Gate for tests that need root and a BPF-capable kernel. Off CI they are skipped with a reason when not root;
// in CI (CI=true) a missing privilege is a failure, never a skip.
import { randomBytes } from 'node:crypto';

export const inCi = process.env.CI === 'true';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

let skipReported = false;

/** Pass as the `skip` option of describe()/test(): false when the test can run; the reason to skip is printed once. */
export function privilegedSkip(): boolean {
  if (isRoot) return false;
  if (inCi) throw new Error('privileged tests must run in CI: run .ci/run as root');
  if (!skipReported) console.warn('skipping privileged tests: they need root (CAP_BPF, CAP_NET_ADMIN, cgroup and netns access)');
  skipReported = true;
  return true;
}

/** A short unique prefix for everything a test creates (netns, veth, cgroups, pins). Interface names cap at 15 chars. */
export function uniquePrefix(tag = 't'): string {
  return `eg${tag.slice(0, 2)}${randomBytes(2).toString('hex')}`;
}
