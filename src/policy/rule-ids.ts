// Stable rule ids shared by the policy compiler, the kernel maps and the events.

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * 32-bit FNV-1a of `namespace/policy/rule`, never 0 (0 means "no rule" in kernel events).
 * Kubernetes names cannot contain `/`, so distinct triples cannot collide through the separator.
 */
export function ruleIdFor(namespace: string, policyName: string, ruleName: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (const byte of Buffer.from(`${namespace}/${policyName}/${ruleName}`, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash === 0 ? 1 : hash;
}
