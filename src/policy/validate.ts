// Validation of one decoded manifest object: the CRD shape (ajv) first, then the semantics ajv cannot express
// (references, domain grammar, ranges, uniqueness). Produces diagnostics that name the field and the fix, and the
// validated, normalised spec (references replaced by what they name). Any error rejects the object as a whole.
// What a rule means for a workload (destinations resolved, enforced or not) is compile.ts's job.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseCidr } from './cidr.js';
import { parseDomainPattern } from './domains.js';
import {
  FIREWALL_POLICY_KIND,
  POLICY_API_VERSION,
  WEBGROUP_POLICY_KIND,
  firewallPolicySchema,
  webgroupPolicySchema,
  type FirewallPolicySpec,
  type GroupRef,
  type RuleSelector,
  type RuleSpec,
  type SmartGroupSelector,
  type WebgroupPolicySpec,
} from './manifest.js';
import type { DomainPattern, PolicyDiagnostic, PolicyLocation, RuleAction, RuleProtocol } from './types.js';

/** Upper bound on domains per webGroup (and per WebgroupPolicy); larger lists are rejected. */
export const MAX_DOMAINS_PER_WEBGROUP = 1000;

export interface ValidationOptions {
  /** Namespace for objects whose metadata.namespace is missing; without it a missing namespace is an error. */
  defaultNamespace?: string;
  maxDomainsPerWebGroup?: number;
}

/** A segment of a field path: object keys and array indexes. */
export type PathSegment = string | number;

/** Where an object sits in its source, and how to find the line of a field. */
export interface ObjectSource {
  file?: string;
  document: number;
  /** Path of the object inside its document (e.g. `['items', 2]` inside a List); empty for a top-level object. */
  prefix: PathSegment[];
  /** Line of the node at `path` (or of its key when `key`), relative to the document root. */
  lineOf?: (path: PathSegment[], key: boolean) => number | undefined;
}

/** How a rule selects workloads in its policy's namespace. */
export type WorkloadSelector = { matchLabels: Record<string, string> } | { service: string };

/** A destination of a rule: the selectors of the smartGroup it names, or a uuid reference (which no mode resolves). */
export type DestinationRef =
  { group: string; selectors: SmartGroupSelector[]; location: PolicyLocation } | { uuid: string; location: PolicyLocation };

/** A webGroup of a rule: the domain patterns of the group it names, or a uuid reference (which no mode resolves). */
export type WebGroupRef = { group: string; domains: DomainPattern[] } | { uuid: string; location: PolicyLocation };

/** One rule, validated and normalised: defaults applied, references replaced by what they name. */
export interface ValidatedRule {
  name: string;
  selector: WorkloadSelector;
  /** `intrusion_detection_permit` is normalised to permit (reported in notEnforced). */
  action: RuleAction;
  protocol: RuleProtocol;
  /** Inclusive port range; 0..65535 when the rule names no port. */
  portLow: number;
  portHigh: number;
  destinations: DestinationRef[];
  /** null when the rule names no webGroups. */
  webGroups: WebGroupRef[] | null;
  watch: boolean;
  logging: boolean;
  tlsRequired: boolean;
  /** Fields accepted but not enforced whatever the mode (decryptPolicy, tlsProfile, ...); validation warned about each. */
  notEnforced: string[];
  /** Where the compiler's findings about the rule's selector and destination list point. */
  locations: { selector: PolicyLocation; destinations: PolicyLocation };
}

interface AcceptedBase {
  namespace: string;
  name: string;
  /** Starts at 1; PolicyStore increments it whenever the spec changes. */
  generation: number;
  source: { file?: string; document: number };
  /** Accepted-but-not-enforced findings, reported on status and in the log. */
  warnings: PolicyDiagnostic[];
}

export interface ValidatedPolicy extends AcceptedBase {
  kind: typeof FIREWALL_POLICY_KIND;
  spec: FirewallPolicySpec;
  rules: ValidatedRule[];
}

/** Parsed and validated for CI linting; never enforced (Obot never writes it). */
export interface ValidatedWebgroupPolicy extends AcceptedBase {
  kind: typeof WEBGROUP_POLICY_KIND;
  spec: WebgroupPolicySpec;
  domains: DomainPattern[];
}

export type AcceptedObject = ValidatedPolicy | ValidatedWebgroupPolicy;

export interface ObjectValidation {
  object: AcceptedObject | null;
  diagnostics: PolicyDiagnostic[];
}

export function formatPath(path: readonly PathSegment[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? segment : `.${segment}`;
  }
  return text;
}

/** Levenshtein distance, for "did you mean" suggestions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

export function closestName(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the string "${value}"`;
  return `${typeof value} ${String(value)}`;
}

function quoteList(values: readonly unknown[]): string {
  return values.map((v) => `"${String(v)}"`).join(', ');
}

/** Collects diagnostics for one object, adding its location (file, document, name, line) to each. */
class Reporter {
  readonly diagnostics: PolicyDiagnostic[] = [];
  namespace: string | undefined;
  name: string | undefined;

  constructor(private readonly source: ObjectSource) {}

  get hasErrors(): boolean {
    return this.diagnostics.some((d) => d.severity === 'error');
  }

  error(path: PathSegment[], message: string, fix?: string, pointAtKey = false): void {
    this.push('error', path, message, fix, pointAtKey);
  }

  /** The location of `path` in this object (file, document, object, field and line), for findings made later. */
  locate(path: PathSegment[], pointAtKey = false): PolicyLocation {
    const fullPath = [...this.source.prefix, ...path];
    const location: PolicyLocation = { document: this.source.document };
    if (this.source.file !== undefined) location.file = this.source.file;
    const line = this.source.lineOf?.(fullPath, pointAtKey);
    if (line !== undefined) location.line = line;
    if (this.namespace !== undefined) location.namespace = this.namespace;
    if (this.name !== undefined) location.name = this.name;
    if (fullPath.length > 0) location.field = formatPath(fullPath);
    return location;
  }

  warning(path: PathSegment[], message: string, fix?: string): void {
    this.push('warning', path, message, fix, false);
  }

  private push(
    severity: PolicyDiagnostic['severity'],
    path: PathSegment[],
    message: string,
    fix: string | undefined,
    pointAtKey: boolean,
  ): void {
    const diagnostic: PolicyDiagnostic = { severity, location: this.locate(path, pointAtKey), message };
    if (fix !== undefined) diagnostic.fix = fix;
    this.diagnostics.push(diagnostic);
  }
}

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true });
const validateFirewallShape = ajv.compile(firewallPolicySchema);
const validateWebgroupShape = ajv.compile(webgroupPolicySchema);

function pointerToPath(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^[0-9]+$/.test(part) ? Number(part) : part));
}

/** Turns one ajv error into our own message: field path, what is wrong, what to write instead. */
function reportShapeError(report: Reporter, error: ErrorObject): void {
  const path = pointerToPath(error.instancePath);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const parent = error.parentSchema as { properties?: Record<string, unknown> } | undefined;
      const known = Object.keys(parent?.properties ?? {});
      const suggestion = closestName(field, known);
      report.error(
        [...path, field],
        'is not a known field',
        suggestion !== undefined ? `did you mean "${suggestion}"?` : `remove it; known fields here: ${known.join(', ')}`,
        true,
      );
      return;
    }
    case 'required': {
      const field = String(params.missingProperty);
      report.error([...path, field], 'is required but missing', `add "${field}"`);
      return;
    }
    case 'type':
      report.error(path, `must be ${params.type === 'integer' ? 'an' : 'a'} ${String(params.type)}, not ${describeValue(error.data)}`);
      return;
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String);
      const suggestion = typeof error.data === 'string' ? closestName(error.data, allowed) : undefined;
      report.error(
        path,
        `${describeValue(error.data)} is not one of ${quoteList(allowed)}`,
        suggestion !== undefined ? `did you mean "${suggestion}"?` : `use one of ${quoteList(allowed)}`,
      );
      return;
    }
    case 'const':
      report.error(
        path,
        `must be "${String(params.allowedValue)}", not ${describeValue(error.data)}`,
        `set it to ${String(params.allowedValue)}`,
      );
      return;
    case 'minItems':
      report.error(path, `must list at least ${String(params.limit)} entr${params.limit === 1 ? 'y' : 'ies'}`);
      return;
    case 'minLength':
      report.error(path, 'must not be empty');
      return;
    default:
      report.error(path, error.message ?? `fails schema rule ${error.keyword}`);
  }
}

/**
 * Runs the shape check. Returns true when the semantic checks may run: unknown fields and wrong enum values leave
 * the shape intact, so the remaining errors are still worth reporting in the same pass.
 */
function checkShape(report: Reporter, check: ValidateFunction, raw: unknown): boolean {
  if (check(raw)) return true;
  const errors = check.errors ?? [];
  for (const error of errors) reportShapeError(report, error);
  return errors.every((e) => e.keyword === 'additionalProperties' || e.keyword === 'enum');
}

// Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label).
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function checkMetadata(report: Reporter, raw: Record<string, unknown>, options: ValidationOptions): void {
  const metadata = (raw.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  if (typeof metadata.name === 'string') {
    report.name = metadata.name;
    if (metadata.name !== '' && !OBJECT_NAME.test(metadata.name)) {
      report.error(
        ['metadata', 'name'],
        `"${metadata.name}" is not a valid object name`,
        'use lower-case letters, digits, "-" and "." (at most 253 characters)',
      );
    }
  }
  if (typeof metadata.namespace === 'string') {
    report.namespace = metadata.namespace;
    if (metadata.namespace !== '' && !NAMESPACE_NAME.test(metadata.namespace)) {
      report.error(
        ['metadata', 'namespace'],
        `"${metadata.namespace}" is not a valid namespace name`,
        'use lower-case letters, digits and "-" (at most 63 characters)',
      );
    }
  } else if (metadata.namespace === undefined) {
    if (options.defaultNamespace !== undefined) report.namespace = options.defaultNamespace;
    else
      report.error(['metadata', 'namespace'], 'is required but missing', 'add metadata.namespace (Obot writes its policies to obot-mcp)');
  }
}

/** Validates domain entries; returns the de-duplicated patterns. */
function checkDomains(report: Reporter, path: PathSegment[], domains: readonly string[], max: number): DomainPattern[] {
  if (domains.length > max) {
    report.error(path, `lists ${domains.length} domains (maximum ${max})`, 'split the list or use wildcard entries such as *.example.com');
    return [];
  }
  const patterns = new Map<string, DomainPattern>();
  domains.forEach((raw, index) => {
    const parsed = parseDomainPattern(raw);
    if (!parsed.ok) {
      report.error([...path, index], `"${raw}" ${parsed.problem.reason}`, parsed.problem.fix);
      return;
    }
    const { pattern } = parsed;
    const key = pattern.kind === 'any' ? '*' : pattern.kind === 'exact' ? pattern.name : `*.${pattern.suffix}`;
    patterns.set(key, pattern);
  });
  return [...patterns.values()];
}

function checkSelector(report: Reporter, path: PathSegment[], selector: RuleSelector): WorkloadSelector | null {
  const hasLabels = selector.matchLabels !== undefined;
  const hasService = selector.service !== undefined;
  if (hasLabels === hasService) {
    report.error(
      path,
      hasLabels ? 'sets both matchLabels and service' : 'sets neither matchLabels nor service',
      hasLabels ? 'keep exactly one of them' : 'add matchLabels (use `matchLabels: {}` to select every pod in the namespace)',
    );
    return null;
  }
  return selector.matchLabels !== undefined ? { matchLabels: selector.matchLabels } : { service: selector.service ?? '' };
}

const SELECTOR_KINDS = ['type', 'cidr', 'external', 's2c'] as const;
const ALLOWED_WITH: Record<(typeof SELECTOR_KINDS)[number], readonly string[]> = {
  type: ['type', 'k8sNamespace', 'k8sPodName', 'k8sService', 'k8sClusterId', 'tags'],
  cidr: ['cidr'],
  external: ['external', 'extArgs'],
  s2c: ['s2c'],
};

/** Checks one smartGroup selector: exactly one kind, only the fields of that kind, a well-formed cidr. */
function checkSmartGroupSelector(report: Reporter, path: PathSegment[], selector: SmartGroupSelector): boolean {
  const present = Object.keys(selector);
  const kinds = SELECTOR_KINDS.filter((kind) => selector[kind] !== undefined);
  if (kinds.length !== 1) {
    report.error(
      path,
      kinds.length === 0 ? 'names no selector kind' : `mixes selector kinds ${quoteList(kinds)}`,
      'use exactly one of: `cidr` alone, `type` (with k8s*/tags fields), `external` (+ extArgs), or `s2c`',
    );
    return false;
  }
  const kind = kinds[0] ?? 'type';
  const stray = present.filter((field) => !ALLOWED_WITH[kind].includes(field));
  if (stray.length > 0) {
    report.error(
      [...path, stray[0] ?? ''],
      `cannot be combined with "${kind}" in one selector`,
      `remove ${quoteList(stray)} or move it to a separate selector`,
      true,
    );
    return false;
  }
  if (kind === 'cidr') {
    const cidr = parseCidr(selector.cidr ?? '');
    if (typeof cidr === 'string') {
      report.error(
        [...path, 'cidr'],
        `"${selector.cidr ?? ''}": ${cidr}`,
        'write an address with a prefix length, e.g. 203.0.113.0/24 or 2001:db8::/32',
      );
      return false;
    }
  }
  return true;
}

function checkUniqueNames(report: Reporter, listPath: string, entries: readonly { name: string }[], what: string): void {
  const seen = new Map<string, number>();
  entries.forEach((entry, index) => {
    const first = seen.get(entry.name);
    if (first !== undefined) {
      report.error(
        ['spec', listPath, index, 'name'],
        `"${entry.name}" is already used by spec.${listPath}[${first}]`,
        `give each ${what} in the policy a unique name`,
      );
    } else seen.set(entry.name, index);
  });
}

type RefCheck = { kind: 'name'; name: string } | { kind: 'uuid'; uuid: string } | null;

function checkRef(
  report: Reporter,
  path: PathSegment[],
  ref: GroupRef,
  listName: string,
  known: ReadonlyMap<string, unknown>,
  what: string,
): RefCheck {
  if ((ref.name === undefined) === (ref.uuid === undefined)) {
    report.error(
      path,
      ref.name === undefined ? 'has neither name nor uuid' : 'has both name and uuid',
      `reference the ${what} by exactly one of name or uuid`,
    );
    return null;
  }
  if (ref.uuid !== undefined) return { kind: 'uuid', uuid: ref.uuid };
  const name = ref.name ?? '';
  if (!known.has(name)) {
    const names = [...known.keys()];
    const suggestion = closestName(name, names);
    report.error(
      [...path, 'name'],
      `"${name}" does not name a ${what} in spec.${listName} (known: ${names.length > 0 ? names.join(', ') : 'none'})`,
      suggestion !== undefined ? `did you mean "${suggestion}"?` : `define it in spec.${listName} or fix the name`,
    );
    return null;
  }
  return { kind: 'name', name };
}

/** Validates one rule and normalises it: defaults applied, smartGroup and webGroup names replaced by their content. */
function checkRule(
  report: Reporter,
  index: number,
  rule: RuleSpec,
  destinations: ReadonlyMap<string, SmartGroupSelector[]>,
  webGroups: ReadonlyMap<string, DomainPattern[]>,
): ValidatedRule | null {
  const path: PathSegment[] = ['spec', 'rules', index];
  const notEnforced: string[] = [];
  const unenforced = (field: PathSegment[], reason: string): void => {
    notEnforced.push(reason);
    report.warning([...path, ...field], `${reason}: not enforced`);
  };

  let portLow = 0;
  let portHigh = 65535;
  if (rule.port !== undefined) {
    if (rule.port < 1 || rule.port > 65535)
      report.error([...path, 'port'], `${rule.port} is outside 1..65535`, 'use a port from 1 to 65535');
    if (rule.protocol === 'icmp') report.error([...path, 'port'], 'is set on an icmp rule', 'remove port (ports apply to tcp, udp or any)');
    portLow = rule.port;
    portHigh = rule.port;
  }
  if (rule.endPort !== undefined) {
    if (rule.port === undefined)
      report.error([...path, 'endPort'], 'is set without port', 'add port (the start of the range) or remove endPort');
    else if (rule.endPort < rule.port)
      report.error([...path, 'endPort'], `${rule.endPort} is below port ${rule.port}`, 'endPort must be at least port');
    else if (rule.endPort > 65535) report.error([...path, 'endPort'], `${rule.endPort} is outside 1..65535`, 'use a port from 1 to 65535');
    portHigh = rule.endPort;
  }

  const selector = checkSelector(report, [...path, 'selector'], rule.selector);
  if (rule.action === 'intrusion_detection_permit') {
    report.warning([...path, 'action'], 'intrusion_detection_permit is enforced as permit (egressguard has no intrusion detection)');
    notEnforced.push('intrusion detection (enforced as permit)');
  }
  if (rule.decryptPolicy !== undefined) unenforced(['decryptPolicy'], 'decryptPolicy (egressguard does not decrypt TLS)');
  if (rule.tlsProfile !== undefined) unenforced(['tlsProfile'], 'tlsProfile (egressguard does not terminate TLS)');
  if (rule.logProfile !== undefined) unenforced(['logProfile'], `logProfile "${rule.logProfile}" (events follow \`logging\`)`);

  const destinationRefs: DestinationRef[] = [];
  rule.destinationSmartGroups.forEach((ref, refIndex) => {
    const refPath = [...path, 'destinationSmartGroups', refIndex];
    const checked = checkRef(report, refPath, ref, 'smartGroups', destinations, 'smartGroup');
    if (checked === null) return;
    if (checked.kind === 'uuid') destinationRefs.push({ uuid: checked.uuid, location: report.locate([...refPath, 'uuid']) });
    else destinationRefs.push({ group: checked.name, selectors: destinations.get(checked.name) ?? [], location: report.locate(refPath) });
  });

  let webGroupRefs: WebGroupRef[] | null = null;
  if (rule.webGroups !== undefined && rule.webGroups.length > 0) {
    const refs: WebGroupRef[] = [];
    rule.webGroups.forEach((ref, refIndex) => {
      const refPath = [...path, 'webGroups', refIndex];
      const checked = checkRef(report, refPath, ref, 'webGroups', webGroups, 'webGroup');
      if (checked === null) return;
      if (checked.kind === 'uuid') refs.push({ uuid: checked.uuid, location: report.locate([...refPath, 'uuid']) });
      else refs.push({ group: checked.name, domains: webGroups.get(checked.name) ?? [] });
    });
    webGroupRefs = refs;
  }

  if (selector === null) return null;
  return {
    name: rule.name,
    selector,
    action: rule.action === 'deny' ? 'deny' : 'permit',
    protocol: rule.protocol ?? 'any',
    portLow,
    portHigh,
    destinations: destinationRefs,
    webGroups: webGroupRefs,
    watch: rule.watch ?? false,
    logging: rule.logging ?? false,
    tlsRequired: rule.flowAppRequirement === 'tlsRequired',
    notEnforced,
    locations: {
      selector: report.locate('service' in selector ? [...path, 'selector', 'service'] : [...path, 'selector']),
      destinations: report.locate([...path, 'destinationSmartGroups']),
    },
  };
}

function checkFirewallSpec(report: Reporter, spec: FirewallPolicySpec, maxDomains: number): ValidatedRule[] {
  const smartGroups = spec.smartGroups ?? [];
  const webGroupSpecs = spec.webGroups ?? [];
  checkUniqueNames(report, 'smartGroups', smartGroups, 'smartGroup');
  checkUniqueNames(report, 'webGroups', webGroupSpecs, 'webGroup');
  checkUniqueNames(report, 'rules', spec.rules, 'rule');

  const destinations = new Map<string, SmartGroupSelector[]>();
  smartGroups.forEach((group, groupIndex) => {
    const selectors = (group.selectors ?? []).filter((selector, selectorIndex) =>
      checkSmartGroupSelector(report, ['spec', 'smartGroups', groupIndex, 'selectors', selectorIndex], selector),
    );
    if (!destinations.has(group.name)) destinations.set(group.name, selectors);
  });

  const webGroups = new Map<string, DomainPattern[]>();
  webGroupSpecs.forEach((group, groupIndex) => {
    const path = ['spec', 'webGroups', groupIndex, 'domains'];
    const patterns = checkDomains(report, path, group.domains ?? [], maxDomains);
    if ((group.domains ?? []).length === 0)
      report.warning(path, `webGroup "${group.name}" lists no domains, so rules using it match no name`);
    if (!webGroups.has(group.name)) webGroups.set(group.name, patterns);
  });

  const rules: ValidatedRule[] = [];
  spec.rules.forEach((rule, index) => {
    const checked = checkRule(report, index, rule, destinations, webGroups);
    if (checked !== null) rules.push(checked);
  });
  return rules;
}

/** Validates one decoded object (a FirewallPolicy or WebgroupPolicy). */
export function validateObject(raw: unknown, source: ObjectSource, options: ValidationOptions = {}): ObjectValidation {
  const report = new Reporter(source);
  const fail = (): ObjectValidation => ({ object: null, diagnostics: report.diagnostics });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    report.error(
      [],
      `is ${describeValue(raw)}, not a Kubernetes object`,
      'each YAML document must be a map with apiVersion, kind, metadata and spec',
    );
    return fail();
  }
  const object = raw as Record<string, unknown>;
  const kind = object.kind;
  if (kind !== FIREWALL_POLICY_KIND && kind !== WEBGROUP_POLICY_KIND) {
    report.error(
      ['kind'],
      kind === undefined ? 'is missing' : `${describeValue(kind)} is not supported`,
      `egressguard accepts kind ${FIREWALL_POLICY_KIND} (and ${WEBGROUP_POLICY_KIND} for linting) with apiVersion ${POLICY_API_VERSION}`,
    );
    return fail();
  }
  // Metadata first, so that every later diagnostic names the object.
  checkMetadata(report, object, options);
  const shapeUsable = checkShape(report, kind === FIREWALL_POLICY_KIND ? validateFirewallShape : validateWebgroupShape, raw);
  if (!shapeUsable || report.namespace === undefined || report.name === undefined) return fail();

  const maxDomains = options.maxDomainsPerWebGroup ?? MAX_DOMAINS_PER_WEBGROUP;
  const base = {
    namespace: report.namespace,
    name: report.name,
    generation: 1,
    source: source.file !== undefined ? { file: source.file, document: source.document } : { document: source.document },
  };
  if (kind === FIREWALL_POLICY_KIND) {
    const spec = object.spec as FirewallPolicySpec;
    const rules = checkFirewallSpec(report, spec, maxDomains);
    if (report.hasErrors) return fail();
    return { object: { kind, ...base, spec, rules, warnings: report.diagnostics }, diagnostics: report.diagnostics };
  }
  const spec = object.spec as WebgroupPolicySpec;
  const domains = checkDomains(report, ['spec', 'allowedDomains'], spec.allowedDomains, maxDomains);
  if (spec.selector !== undefined) checkSelector(report, ['spec', 'selector'], spec.selector);
  report.warning(
    ['kind'],
    'WebgroupPolicy is validated but not enforced: egressguard enforces FirewallPolicy (Obot never writes WebgroupPolicy)',
    'express the allowlist as a FirewallPolicy rule with a webGroup',
  );
  if (report.hasErrors) return fail();
  return { object: { kind, ...base, spec, domains, warnings: report.diagnostics }, diagnostics: report.diagnostics };
}
