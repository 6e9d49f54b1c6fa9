// Rule names whose 32-bit name hashes collide, found the way an attacker would (a birthday search, well under a
// second): the control-plane and the kernel tests of collision-free rule ids start from such a pair.
import { ruleIdFor } from '../../src/policy/rule-ids.js';

/** A rule name in policy `policyA` and one in `policyB` (both in `namespace`) with the same ruleIdFor hash. */
export function collidingRules(namespace: string, policyA: string, policyB: string): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const a = ruleIdFor(namespace, policyA, `r${i}`);
    const b = ruleIdFor(namespace, policyB, `r${i}`);
    const hitA = seen.get(a);
    if (hitA?.startsWith('b:')) return [`r${i}`, hitA.slice(2)];
    const hitB = seen.get(b);
    if (hitB?.startsWith('a:')) return [hitB.slice(2), `r${i}`];
    seen.set(a, `a:r${i}`);
    seen.set(b, `b:r${i}`);
  }
}
