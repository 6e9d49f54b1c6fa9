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

/** Ids below this are reserved (0: no rule; 1: the fail-closed rule a workload gets when its rules cannot be enforced). */
export const FIRST_ALLOCATED_RULE_ID = 2;
const MAX_RULE_ID = 0xffffffff;

/**
 * Collision-free rule ids for the kernel, unique on the node at any moment. A 32-bit hash alone collides (a name
 * that collides with another policy's rule can be found in seconds, and would share that rule's domain set and
 * learned addresses). Each rule gets its ruleIdFor hash when that id is free, else the next free id; an id returns
 * to the pool when its rule is released. Allocating a whole policy set in sorted order (as the agent does at start)
 * gives the same ids as the previous run unless two rules collide.
 */
export class RuleIdAllocator {
  private readonly byKey = new Map<string, number>();
  private readonly byId = new Map<number, string>();

  /** The id of `namespace/policy/rule`, allocated on first use. */
  idFor(namespace: string, policyName: string, ruleName: string): number {
    const key = `${namespace}/${policyName}/${ruleName}`;
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (this.byId.size >= MAX_RULE_ID - FIRST_ALLOCATED_RULE_ID) throw new Error('no free rule id');
    let id = Math.max(ruleIdFor(namespace, policyName, ruleName), FIRST_ALLOCATED_RULE_ID);
    while (this.byId.has(id)) id = id >= MAX_RULE_ID ? FIRST_ALLOCATED_RULE_ID : id + 1;
    this.byKey.set(key, id);
    this.byId.set(id, key);
    return id;
  }

  release(namespace: string, policyName: string, ruleName: string): void {
    const key = `${namespace}/${policyName}/${ruleName}`;
    const id = this.byKey.get(key);
    if (id === undefined) return;
    this.byKey.delete(key);
    this.byId.delete(id);
  }
}
