// Helpers for the tests that drive the datapath directly (no agent): a kernel rule with defaults, and waiting for an
// event. Their network (pod <-> node <-> inet, cgroups, pins) is the lab's: Lab.create({ services: false, ... }).
import type { DatapathSettings, KernelEvent, KernelRule } from '../../src/datapath/types.js';

/** Default deny, both layers, no DNS proxy: where the tests that enrol their workloads themselves start. */
export const DENY_BY_DEFAULT: DatapathSettings = {
  defaultAction: 'deny',
  dnsProxy: { ipv4: null, ipv6: null, port: 0 },
  denyEch: false,
  maxLearnedPerWorkload: 4096,
  features: { tls: true, packet: true },
};

export function rule(partial: Partial<KernelRule> & Pick<KernelRule, 'ruleId' | 'action'>): KernelRule {
  return {
    protocol: 'any',
    portLow: 0,
    portHigh: 65535,
    cidrs: [],
    anyDestination: false,
    web: false,
    anyName: false,
    watch: false,
    log: false,
    tlsRequired: false,
    domains: null,
    ...partial,
  };
}

/** Waits for a matching event (the deadline only guards against a hang). */
export async function eventMatching<E extends KernelEvent>(events: E[], predicate: (event: E) => boolean): Promise<E> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = events.find(predicate);
    if (found) return found;
    if (Date.now() > deadline) {
      const recent = JSON.stringify(events.slice(-5), (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
      throw new Error(`no matching event among ${events.length}: ${recent}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once the monotonic clock (the kernel's bpf_ktime_get_ns, learned expiries) has passed `ns`. */
export async function monotonicPast(ns: bigint): Promise<void> {
  const left = ns - process.hrtime.bigint();
  if (left >= 0n) await new Promise((resolve) => setTimeout(resolve, Number(left / 1_000_000n) + 1));
}
