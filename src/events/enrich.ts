// Enrichment: turns what the kernel and the DNS proxy report (ids, addresses) into FlowEvents a SOC can read
// (workload identity, rule and policy names, the destination's name as last resolved).
import type { KernelEvent, LearnedFrom } from '../model/decision.js';
import type { DnsDecisionEvent } from '../dns/types.js';
import type { Workload } from '../identity/registry.js';
import type { FlowEvent, Tier, WorkloadIdentity } from './types.js';

/** What an event says about the rule that decided it. */
export interface RuleLabel {
  tier: Tier;
  name: string;
  policy: FlowEvent['policy'];
}

export interface EnricherOptions {
  /** The node name events carry (read per event: a configuration reload may change it). */
  node(): string;
  /** Enrolled workloads by kernel workload id and by key (`namespace/name`). */
  workloads: { byId(workloadId: number): Workload | null; byKey(key: string): Workload | null };
  /** The label of a tier-0/1/2 rule id; undefined when it is not (or no longer) configured. */
  ruleLabel(ruleId: number): RuleLabel | undefined;
  /** The DNS proxy's listen addresses: a DNS event names the one the workload reached. */
  dnsListen: readonly string[];
  /** Addresses whose name is remembered (default 65,536); the oldest are forgotten first. */
  namesRemembered?: number;
}

function identityOf(w: Workload): WorkloadIdentity {
  return { namespace: w.namespace, name: w.name, labels: w.labels, podIps: w.addresses, cgroupId: w.cgroupId.toString() };
}

interface LearnedName {
  name: string;
  from: LearnedFrom;
}

const protocolNames: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };
/** The rule name of a packet-layer drop that no rule decided (the event's reason says why). */
export const PACKET_INTEGRITY_RULE = 'packet-integrity';
const DEFAULT_NAMES_REMEMBERED = 65_536;

export class Enricher {
  /** Last name each address was learned for, per workload (`id|ip`) and node-wide (`ip`), and how. */
  private readonly namesByAddress = new Map<string, LearnedName>();
  private readonly namesRemembered: number;

  constructor(private readonly options: EnricherOptions) {
    this.namesRemembered = options.namesRemembered ?? DEFAULT_NAMES_REMEMBERED;
  }

  /** A DNS decision as a FlowEvent; its answers name the addresses in later kernel events. */
  fromDns(e: DnsDecisionEvent): FlowEvent {
    const w = e.workloadKey ? this.options.workloads.byKey(e.workloadKey) : null;
    if (w) this.fromWorkloadLookup(w.workloadId, e.query, e.answers);
    else for (const ip of e.answers) this.rememberName(ip, { name: e.query, from: 'workload-dns' });
    return {
      time: e.time,
      node: this.options.node(),
      workload: w ? identityOf(w) : { namespace: '', name: '(unknown source)', labels: {}, podIps: [e.sourceIp], cgroupId: '' },
      // The proxy cannot see which resolver the workload addressed (the kernel rewrote it); report the proxy it reached.
      destination: { ip: this.proxyAddressFor(e.sourceIp), port: 53, protocol: e.transport, family: e.sourceIp.includes(':') ? 6 : 4 },
      fqdn: e.query,
      fqdnSource: 'dns',
      layer: 'dns',
      verdict: e.verdict,
      tier: e.tier,
      policy: e.policy,
      rule: e.ruleName,
      ...(e.reason ? { reason: e.reason } : {}),
      count: 1,
      dns: { query: e.query, type: e.qtype, rcode: e.rcode, answers: e.answers },
      eventId: '',
    };
  }

  fromKernel(event: KernelEvent): FlowEvent {
    const w = this.options.workloads.byId(event.workloadId);
    // A withdrawn socket's packets are denied by a rule (the one the re-judgment found); the other reasons by none.
    const label: RuleLabel =
      event.reason && event.reason !== 'withdrawn-no-sock-destroy'
        ? { tier: event.tier, name: PACKET_INTEGRITY_RULE, policy: null }
        : event.tier === 3
          ? { tier: 3, name: 'default-action', policy: null }
          : (this.options.ruleLabel(event.ruleId) ?? { tier: event.tier, name: `rule#${event.ruleId}`, policy: null });
    // A dropped packet (a forged source above all) is named only from its own workload's lookups, never another's.
    const learned = event.reason ? this.ownNameOf(event.workloadId, event.ip) : this.learnedNameOf(event.workloadId, event.ip);
    const fqdn = event.sni ?? learned?.name ?? null;
    const sent = event.sni === null ? {} : event.layer === 'http' ? { httpHost: event.sni } : { sni: event.sni };
    return {
      time: new Date().toISOString(),
      node: this.options.node(),
      workload: w ? identityOf(w) : { namespace: '', name: '(unenrolled)', labels: {}, podIps: [], cgroupId: event.cgroupId.toString() },
      process: { pid: event.pid, comm: event.comm },
      destination: {
        ip: event.ip,
        port: event.port,
        protocol: protocolNames[event.protocol] ?? String(event.protocol),
        family: event.family,
      },
      ...(event.source !== undefined ? { source: { ip: event.source } } : {}),
      fqdn,
      fqdnSource: event.sni ? (event.layer === 'http' ? 'http-host' : 'sni') : fqdn ? 'dns' : 'none',
      ...sent,
      ...(learned !== null ? { learnedName: learned.name, learnedFrom: learned.from } : {}),
      ...(event.firstFlight !== undefined ? { firstFlight: event.firstFlight } : {}),
      ...(event.ech ? { ech: true as const } : {}),
      ...(event.evidence ? { evidence: true as const } : {}),
      layer: event.layer,
      verdict: event.verdict,
      tier: event.tier,
      policy: label.policy,
      rule: label.name,
      ...(event.reason ? { reason: event.reason } : {}),
      count: 1,
      eventId: '',
    };
  }

  /**
   * The agent resolved a policy's exact name for a workload (the name refresher): its addresses are learned for that
   * name. An answer to the workload's own query for the same name stays the better evidence and is kept.
   */
  /** A workload's lookup, remembered as its answer is learned (its decision event may come a moment later). */
  fromWorkloadLookup(workloadId: number, name: string, ips: readonly string[]): void {
    for (const ip of ips) {
      this.rememberName(ip, { name, from: 'workload-dns' });
      this.rememberName(`${workloadId}|${ip}`, { name, from: 'workload-dns' });
    }
  }

  fromAgentLookup(workloadId: number, name: string, ips: readonly string[]): void {
    for (const ip of ips) {
      const key = `${workloadId}|${ip}`;
      const have = this.namesByAddress.get(key);
      if (have?.name === name && have.from === 'workload-dns') continue;
      this.rememberName(key, { name, from: 'agent-resolution' });
    }
  }

  /** The name `ip` was last resolved to by this workload, else by any workload; null when none is remembered. */
  nameOf(workloadId: number, ip: string): string | null {
    return this.learnedNameOf(workloadId, ip)?.name ?? null;
  }

  private learnedNameOf(workloadId: number, ip: string): LearnedName | null {
    const own = this.ownNameOf(workloadId, ip);
    if (own !== null) return own;
    const other = this.namesByAddress.get(ip);
    return other === undefined ? null : { name: other.name, from: other.from === 'workload-dns' ? 'other-workload-dns' : other.from };
  }

  private ownNameOf(workloadId: number, ip: string): LearnedName | null {
    return this.namesByAddress.get(`${workloadId}|${ip}`) ?? null;
  }

  /** Bounded: workloads decide how many names they look up. The oldest entries go first. */
  private rememberName(key: string, learned: LearnedName): void {
    this.namesByAddress.delete(key);
    this.namesByAddress.set(key, learned);
    if (this.namesByAddress.size > this.namesRemembered) this.namesByAddress.delete(this.namesByAddress.keys().next().value!);
  }

  private proxyAddressFor(sourceIp: string): string {
    const wantV6 = sourceIp.includes(':') && !sourceIp.startsWith('::ffff:');
    const listen = this.options.dnsListen;
    return listen.find((a) => a.includes(':') === wantV6) ?? listen[0] ?? '';
  }
}
