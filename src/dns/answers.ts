// What an upstream answer teaches the datapath: the A/AAAA addresses reached from the query name through
// its CNAME chain, and how long they may be trusted. Records for any other owner name are ignored, so an
// answer cannot smuggle addresses for names the policy never allowed.

import type dnsPacket from 'dns-packet';

/** Longer chains are treated as broken (resolvers give up far earlier). */
const MAX_CNAME_HOPS = 16;

export interface ExtractedAddresses {
  /** Unique addresses, in answer order. */
  addresses: string[];
  /** Minimum TTL over the CNAME records followed and the address records taken; null without addresses. */
  ttlSeconds: number | null;
}

export function extractAddresses(packet: dnsPacket.Packet, queryName: string): ExtractedAddresses {
  const records = (packet.answers ?? []).filter((record) => ('class' in record ? (record.class ?? 'IN') === 'IN' : true));
  const chain = new Set<string>();
  let minTtl = Infinity;
  let owner = normalize(queryName);
  for (let hop = 0; hop <= MAX_CNAME_HOPS && !chain.has(owner); hop += 1) {
    chain.add(owner);
    const alias = records.find((record) => record.type === 'CNAME' && normalize(record.name) === owner);
    if (alias === undefined || alias.type !== 'CNAME') break;
    minTtl = Math.min(minTtl, alias.ttl ?? 0);
    owner = normalize(alias.data);
  }
  const addresses: string[] = [];
  for (const record of records) {
    if ((record.type !== 'A' && record.type !== 'AAAA') || !chain.has(normalize(record.name))) continue;
    minTtl = Math.min(minTtl, record.ttl ?? 0);
    if (!addresses.includes(record.data)) addresses.push(record.data);
  }
  return { addresses, ttlSeconds: addresses.length === 0 ? null : minTtl };
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
