// The kernel's fixed capacities, in one place: docs/capacity.md explains each, `policy lint` checks policies against
// them, `egressguard status` reports how much of each is in use. test/unit/capacity.test.ts keeps every number equal
// to bpf/egressguard.h.

export interface KernelCapacity {
  /** What fills it, in the words of the docs and status. */
  what: string;
  /** The limit (entries, or characters for names). */
  max: number;
  /** The bpf/egressguard.h expression it mirrors. */
  header: string;
}

export const KERNEL_CAPACITY = {
  rulesPerWorkload: { what: 'tier-2 rules per workload (every selecting policy together)', max: 64, header: 'EG_MAX_RULES' },
  workloads: { what: 'enrolled workloads per node', max: 4096, header: 'EG_MAX_WORKLOADS' },
  ruleDestinations: { what: 'CIDR destinations of all rules of all workloads', max: 262144, header: 'EG_MAX_CIDRS' },
  domainPatterns: { what: 'webGroup domain patterns (per rule) on the node', max: 262144, header: 'EG_MAX_CIDRS' },
  domainNameChars: { what: 'characters of an exact webGroup name (or SNI) the kernel matches', max: 251, header: 'EG_DOMAIN_NAME_MAX' },
  learnedAddresses: { what: 'learned (workload, rule, address) entries on the node', max: 131072, header: 'EG_MAX_LEARNED' },
  sniCandidatesPerConnection: {
    what: 'webGroup/tlsRequired rules a TLS connection remembers for its ClientHello (more: judged by a walk over the rules)',
    max: 8,
    header: 'EG_TLS_MAX_CANDIDATES',
  },
  approvedFlows: { what: 'approved 5-tuples the packet layer remembers (node; never evicted)', max: 262144, header: 'EG_MAX_FLOWS' },
  approvedFlowsPerWorkload: {
    what: 'approved 5-tuples one workload may hold (past it, its new flows are judged per packet)',
    max: 4096,
    header: 'EG_MAX_FLOWS_PER_WORKLOAD',
  },
  firstFlights: {
    what: 'pending TLS first flights the packet layer compares segments with (node; past it, new ones are decided without their ClientHello)',
    max: 8192,
    header: 'EG_MAX_FIRST_FLIGHTS',
  },
  firstFlightsPerWorkload: {
    what: 'pending TLS first flights one workload may hold at once',
    max: 256,
    header: 'EG_MAX_FIRST_FLIGHTS_PER_WORKLOAD',
  },
  workloadAddresses: { what: 'workload source addresses', max: 65536, header: 'EG_MAX_ADDRESSES' },
  interfaces: { what: 'host-side interfaces under the backstop', max: 4096, header: 'EG_MAX_INTERFACES' },
} as const satisfies Record<string, KernelCapacity>;

export type CapacityName = keyof typeof KERNEL_CAPACITY;

/** One capacity as status reports it: in use now against the limit (null when the agent cannot count it cheaply). */
export interface CapacityUse {
  used: number | null;
  max: number;
  /** At 80 % or more: act before it is full (status prints it, the agent logs it). */
  nearlyFull: boolean;
}

export function capacityUse(name: CapacityName, used: number | null): CapacityUse {
  const { max } = KERNEL_CAPACITY[name];
  return { used, max, nearlyFull: used !== null && used >= max * 0.8 };
}
