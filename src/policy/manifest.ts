// The wire shape of FirewallPolicy / WebgroupPolicy (CRD chart 10.1.0; 8.2.0 lacks the fields marked †)
// and the JSON schema ajv checks it against. Semantic checks (references, grammar, ranges) live in validate.ts.

export const POLICY_API_VERSION = 'networking.aviatrix.com/v1alpha1';
export const FIREWALL_POLICY_KIND = 'FirewallPolicy';
export const WEBGROUP_POLICY_KIND = 'WebgroupPolicy';

/** `{name}` XOR `{uuid}` reference to a smartGroup or webGroup. */
export interface GroupRef {
  name?: string;
  uuid?: string;
}

export interface RuleSelector {
  matchLabels?: Record<string, string>;
  service?: string;
}

export interface RuleSpec {
  name: string;
  action: 'permit' | 'deny' | 'intrusion_detection_permit';
  protocol?: 'tcp' | 'udp' | 'icmp' | 'any';
  port?: number;
  endPort?: number;
  selector: RuleSelector;
  destinationSmartGroups: GroupRef[];
  webGroups?: GroupRef[];
  logging?: boolean;
  logProfile?: 'start' | 'end' | 'start/end'; // †
  watch?: boolean; // †
  decryptPolicy?: string; // †
  flowAppRequirement?: 'tlsRequired' | 'tlsNotRequired'; // †
  tlsProfile?: string;
}

export interface SmartGroupSelector {
  type?: 'k8s' | 'vpc' | 'subnet' | 'vm' | 'k8s_node' | 'serverless';
  k8sNamespace?: string;
  k8sPodName?: string;
  k8sService?: string;
  k8sClusterId?: string;
  tags?: Record<string, string>;
  cidr?: string;
  external?: string;
  extArgs?: Record<string, string>;
  s2c?: string;
}

export interface SmartGroupSpec {
  name: string;
  selectors?: SmartGroupSelector[];
}

export interface WebGroupSpec {
  name: string;
  domains?: string[];
}

export interface FirewallPolicySpec {
  rules: RuleSpec[];
  smartGroups?: SmartGroupSpec[];
  webGroups?: WebGroupSpec[];
}

export interface WebgroupPolicySpec {
  allowedDomains: string[];
  selector?: RuleSelector;
}

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
const groupRef = {
  type: 'object',
  additionalProperties: false,
  properties: { name: { type: 'string' }, uuid: { type: 'string' } },
} as const;
const selector = {
  type: 'object',
  additionalProperties: false,
  properties: { matchLabels: stringMap, service: { type: 'string' } },
} as const;

const rule = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'action', 'selector', 'destinationSmartGroups'],
  properties: {
    name: { type: 'string', minLength: 1 },
    action: { enum: ['permit', 'deny', 'intrusion_detection_permit'] },
    protocol: { enum: ['tcp', 'udp', 'icmp', 'any'] },
    port: { type: 'integer' },
    endPort: { type: 'integer' },
    selector,
    destinationSmartGroups: { type: 'array', minItems: 1, items: groupRef },
    webGroups: { type: 'array', items: groupRef },
    logging: { type: 'boolean' },
    logProfile: { enum: ['start', 'end', 'start/end'] },
    watch: { type: 'boolean' },
    decryptPolicy: { type: 'string' },
    flowAppRequirement: { enum: ['tlsRequired', 'tlsNotRequired'] },
    tlsProfile: { type: 'string' },
  },
} as const;

const smartGroup = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    selectors: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          type: { enum: ['k8s', 'vpc', 'subnet', 'vm', 'k8s_node', 'serverless'] },
          k8sNamespace: { type: 'string' },
          k8sPodName: { type: 'string' },
          k8sService: { type: 'string' },
          k8sClusterId: { type: 'string' },
          tags: stringMap,
          cidr: { type: 'string' },
          external: { type: 'string' },
          extArgs: stringMap,
          s2c: { type: 'string' },
        },
      },
    },
  },
} as const;

const webGroup = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    domains: { type: 'array', items: { type: 'string' } },
  },
} as const;

const metadata = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    namespace: { type: 'string', minLength: 1 },
    labels: stringMap,
    annotations: stringMap,
  },
} as const;

function objectSchema(spec: object) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: POLICY_API_VERSION },
      kind: { type: 'string' },
      metadata,
      spec,
      // Written by controllers, never by Obot; accepted and ignored.
      status: { type: 'object' },
    },
  } as const;
}

export const firewallPolicySchema = objectSchema({
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: {
    rules: { type: 'array', minItems: 1, items: rule },
    smartGroups: { type: 'array', items: smartGroup },
    webGroups: { type: 'array', items: webGroup },
  },
});

export const webgroupPolicySchema = objectSchema({
  type: 'object',
  additionalProperties: false,
  required: ['allowedDomains'],
  properties: {
    allowedDomains: { type: 'array', minItems: 1, items: { type: 'string' } },
    selector,
  },
});
