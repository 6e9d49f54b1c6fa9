// What a rule's selectors stand for in one deployment mode. The compiler asks; host mode and Kubernetes mode answer.
import { parseCidr } from './cidr.js';
import type { SmartGroupSelector } from './manifest.js';
import type { Cidr } from './types.js';

/** The addresses a destination selector stands for, or why this mode cannot say (the rule then reports "not enforced"). */
export type DestinationResolution = { cidrs: Cidr[] } | { unsupported: string };

/** The pod labels a rule's `selector.service` stands for, or why this mode cannot say. */
export type ServiceResolution = { matchLabels: Record<string, string> } | { unsupported: string };

/**
 * Resolves the selectors of a FirewallPolicy in its namespace. `unsupported` completes a sentence about the selector
 * (`smartGroup "pods" <unsupported>`, `service selector "api" <unsupported>`), e.g. "cannot be resolved in host mode".
 * Answers may change over time (Kubernetes endpoints): the compiler asks on every compilation and caches nothing.
 */
export interface DestinationResolver {
  /** One selector of a destination smartGroup (validated: exactly one kind, a well-formed cidr). */
  resolve(selector: SmartGroupSelector, namespace: string): DestinationResolution;
  /** The Service a rule selects workloads by. */
  resolveService(service: string, namespace: string): ServiceResolution;
}

/** Host mode: `cidr` selectors only. Kubernetes selectors, services, `external` and `s2c` are unsupported. */
export const hostModeResolver: DestinationResolver = {
  resolve(selector) {
    if (selector.cidr !== undefined) {
      const cidr = parseCidr(selector.cidr);
      return typeof cidr === 'string' ? { unsupported: `has cidr "${selector.cidr}": ${cidr}` } : { cidrs: [cidr] };
    }
    const what = selector.type !== undefined ? `type ${selector.type}` : selector.external !== undefined ? 'external' : 's2c';
    return { unsupported: `selects by ${what}, which host mode cannot resolve to addresses` };
  },
  resolveService() {
    return { unsupported: 'cannot be resolved in host mode' };
  },
};
