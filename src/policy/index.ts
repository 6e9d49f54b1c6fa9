// The policy module's public API: parse/validate manifests, keep the accepted set, compile per workload, match names.
export { parseCidr, formatCidr } from './cidr.js';
export { compileForWorkload, selectorMatches, type WorkloadIdentity } from './compile.js';
export { dnsDecision, matchesDomain, normalizeDomain, parseDomainPattern, type DnsDecision } from './domains.js';
export { formatDiagnostic } from './diagnostics.js';
export { lintFiles, manifestFilesIn, type LintResult } from './lint.js';
export { parseManifestFile, parseManifests, type ParseResult } from './parse.js';
export { PolicyStore, type PolicyEntry } from './store.js';
export {
  MAX_DOMAINS_PER_WEBGROUP,
  type AcceptedObject,
  type ValidatedPolicy,
  type ValidatedRule,
  type ValidatedWebgroupPolicy,
  type ValidationOptions,
  type WorkloadSelector,
} from './validate.js';
export type * from './types.js';
