// Domain grammar (policy contract §3), normalisation, matching, and the DNS proxy's per-name decision.
// Patterns: an exact hostname, `*.` followed by at least two labels (one or more labels, never the apex), or `*` alone.
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import type { CompiledRule, DomainPattern } from './types.js';

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
// LDH labels; underscores are legal in DNS names (e.g. `_acme-challenge`) so they are accepted too.
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;

/** A domain entry the grammar rejects: `reason` says what is wrong, `fix` what to write instead. */
export interface DomainProblem {
  reason: string;
  fix: string;
}

export type DomainParse = { ok: true; pattern: DomainPattern } | { ok: false; problem: DomainProblem };

/**
 * Names IDNA conversion returns unchanged: letters, digits, "-" and "_" in labels, no A-label to validate ("xn--"), and a
 * last label starting with a letter (a numeric or hex last label makes the URL host parser read an IPv4 address).
 */
const PLAIN_ASCII_NAME = /^(?!(?:.*\.)?xn--)(?:[a-z0-9_-]+\.)*[a-z_][a-z0-9_-]*$/;

/** Lower-case, strip one trailing dot and convert to IDNA A-labels; returns null when IDNA conversion fails. */
function toAsciiName(raw: string): string | null {
  let name = raw.trim().toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '') return null;
  // The DNS proxy normalises every query name: the common plain name skips the URL host parser.
  if (PLAIN_ASCII_NAME.test(name)) return name;
  const ascii = domainToASCII(name);
  return ascii === '' ? null : ascii;
}

function problem(reason: string, fix: string): DomainParse {
  return { ok: false, problem: { reason, fix } };
}

function looksLikeIp(text: string): boolean {
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  return isIP(unbracketed) !== 0;
}

/** Checks an already IDNA-converted name (no wildcard) label by label. */
function checkHostname(name: string, minLabels: number): DomainProblem | null {
  if (name.length > MAX_NAME_LENGTH) {
    return { reason: `is ${name.length} characters long (maximum ${MAX_NAME_LENGTH})`, fix: 'use a shorter name' };
  }
  const labels = name.split('.');
  for (const label of labels) {
    if (label === '') return { reason: 'has an empty label (`..` or a leading dot)', fix: 'remove the extra dot' };
    if (label.length > MAX_LABEL_LENGTH) {
      return { reason: `has a label of ${label.length} characters (maximum ${MAX_LABEL_LENGTH})`, fix: 'use a shorter label' };
    }
    if (!LABEL.test(label)) {
      return {
        reason: `has an invalid label "${label}"`,
        fix: 'labels use letters, digits, hyphens and underscores and do not start or end with a hyphen',
      };
    }
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) {
    return { reason: 'ends in a numeric label, which is an IP address form', fix: 'use a cidr smartGroup for IP addresses' };
  }
  if (labels.length < minLabels) {
    return {
      reason: `matches a whole top-level domain`,
      fix: 'a wildcard needs at least two labels after `*.` (e.g. `*.example.com`)',
    };
  }
  return null;
}

/** Parses one webGroup domain entry into a normalised pattern or a precise problem. */
export function parseDomainPattern(raw: string): DomainParse {
  const text = raw.trim();
  if (text === '') return problem('is empty', 'remove the entry or write a hostname');
  if (text === '*') return { ok: true, pattern: { kind: 'any' } };
  if (/\s/.test(text)) return problem('contains whitespace', 'write one hostname per entry, without spaces');
  if (looksLikeIp(text)) return problem('is an IP address', 'use a cidr smartGroup for IP addresses, not a webGroup');
  if (text.includes('://')) {
    return problem('is a URL', 'write only the hostname (e.g. `api.example.com` instead of `https://api.example.com/v1`)');
  }
  if (text.includes('/')) return problem('contains a path or prefix length', 'write only the hostname, without `/…`');
  if (text.includes(':')) return problem('contains a port', 'write only the hostname; put the port in the rule (`port:`)');

  const wildcard = text.startsWith('*.');
  const rest = wildcard ? text.slice(2) : text;
  if (rest.includes('*')) {
    return problem(
      'has an inner or repeated wildcard',
      'the only wildcard form is one leading `*.` followed by at least two labels (e.g. `*.example.com`)',
    );
  }
  const ascii = toAsciiName(rest);
  if (ascii === null) return problem('is not a valid domain name (IDNA conversion failed)', 'check the spelling of the name');
  if (looksLikeIp(ascii)) return problem('is an IP address', 'use a cidr smartGroup for IP addresses, not a webGroup');
  const bad = checkHostname(ascii, wildcard ? 2 : 1);
  if (bad !== null) return { ok: false, problem: bad };
  return { ok: true, pattern: wildcard ? { kind: 'wildcard', suffix: ascii } : { kind: 'exact', name: ascii } };
}

/** Normalises a queried name for matching; names that fail IDNA fall back to their lower-case form (and match nothing but `*`). */
export function normalizeDomain(qname: string): string {
  return toAsciiName(qname) ?? qname.trim().toLowerCase().replace(/\.$/, '');
}

/** True when `name` (any case, optional trailing dot) matches one pattern. */
export function matchesDomain(name: string, pattern: DomainPattern): boolean {
  const normalised = normalizeDomain(name);
  if (normalised === '') return false;
  switch (pattern.kind) {
    case 'any':
      return true;
    case 'exact':
      return normalised === pattern.name;
    case 'wildcard':
      return normalised.endsWith(`.${pattern.suffix}`) && normalised.length > pattern.suffix.length + 1;
  }
}

/** A rule's patterns indexed so that a lookup walks the name's label suffixes, whatever the number of patterns. */
export class DomainIndex {
  private readonly any: boolean;
  private readonly exact = new Set<string>();
  private readonly suffixes = new Set<string>();

  constructor(patterns: readonly DomainPattern[]) {
    let any = false;
    for (const pattern of patterns) {
      if (pattern.kind === 'any') any = true;
      else if (pattern.kind === 'exact') this.exact.add(pattern.name);
      else this.suffixes.add(pattern.suffix);
    }
    this.any = any;
  }

  /** `name` must already be normalised (see normalizeDomain). */
  matches(name: string): boolean {
    if (name === '') return false;
    if (this.any || this.exact.has(name)) return true;
    // `*.s` matches when some proper suffix after a dot equals s: walk each dot.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      if (this.suffixes.has(name.slice(dot + 1))) return true;
    }
    return false;
  }
}

const indexCache = new WeakMap<readonly DomainPattern[], DomainIndex>();

/** The (cached) index of a compiled rule's pattern list. */
export function domainIndexFor(patterns: readonly DomainPattern[]): DomainIndex {
  let index = indexCache.get(patterns);
  if (index === undefined) {
    index = new DomainIndex(patterns);
    indexCache.set(patterns, index);
  }
  return index;
}

// What the DNS proxy asks of tier 2: may this workload resolve the name, and which rules learn the answer's IPs.

export interface DnsDecision {
  /** 'default': no rule covers the name; the caller applies tier 3. */
  action: 'permit' | 'deny' | 'default';
  /** The first covering rule (the one that decided), or null for 'default'. */
  rule: CompiledRule | null;
  /** Every active webGroup rule (permit or deny, watch included) whose patterns match: the answer's IPs are installed for each. */
  learnFor: CompiledRule[];
}

/**
 * Whether a rule without webGroups decides every name. A permit that reaches every address may as well resolve every
 * name; a deny decides names only when it denies every address on every protocol and port, otherwise a narrower deny
 * (say UDP only) would hide names that a later rule permits over TCP.
 */
function decidesEveryName(rule: CompiledRule): boolean {
  const everyAddress = rule.anyDestination || rule.cidrs.some((cidr) => cidr.prefix === 0);
  if (rule.action === 'permit') return everyAddress;
  return everyAddress && rule.protocol === 'any' && rule.portLow === 0 && rule.portHigh === 65535;
}

/**
 * True when an earlier enforced deny webGroup rule names `name` on every protocol and port `rule` covers: whatever
 * `rule` permits, the name is denied there, so its addresses are never learned for `rule` (neither from a workload's
 * answer nor from the agent's own resolution). "deny *.x.com, then permit api.x.com" never reaches api.x.com.
 */
export function shadowedByDeny(earlier: readonly CompiledRule[], rule: CompiledRule, name: string): boolean {
  return earlier.some(
    (deny) =>
      deny.active &&
      !deny.watch &&
      deny.action === 'deny' &&
      webRuleMatches(deny, name) &&
      (deny.protocol === 'any' || deny.protocol === rule.protocol) &&
      deny.portLow <= rule.portLow &&
      deny.portHigh >= rule.portHigh,
  );
}

function webRuleMatches(rule: CompiledRule, name: string): boolean {
  return rule.domains !== null && domainIndexFor(rule.domains).matches(name);
}

/**
 * First covering rule wins, skipping watch and inactive rules. A webGroup rule covers the names its patterns match;
 * a rule without webGroups covers every name only when it reaches every address (anyDestination or a /0 CIDR).
 */
export function dnsDecision(rules: readonly CompiledRule[], qname: string): DnsDecision {
  const name = normalizeDomain(qname);
  let decided: CompiledRule | null = null;
  const learnFor: CompiledRule[] = [];
  for (const [index, rule] of rules.entries()) {
    if (!rule.active) continue;
    const matches = webRuleMatches(rule, name);
    if (matches && !shadowedByDeny(rules.slice(0, index), rule, name)) learnFor.push(rule);
    if (decided !== null || rule.watch) continue;
    if (rule.domains !== null ? matches : decidesEveryName(rule)) decided = rule;
  }
  return { action: decided?.action ?? 'default', rule: decided, learnFor };
}
