// `egressguard policy explain WORKLOAD DESTINATION`: which tier and rule decide, and why, from a running agent's rules
// (the list its datapath has, and its learned addresses) or from a configuration and policy files.
import { parseArgs } from 'node:util';
import { controlRequest } from '../agent/control.js';
import { loadConfig } from '../agent/config.js';
import { loadPolicySet } from '../discover/policy-set.js';
import { explainFlow, formatExplanation, snapshotFromFiles, type RulesetSnapshot } from '../discover/ruleset.js';
import { CONFIG_CGROUP2_MOUNT } from './policy-replay.js';

export const explainUsage = `egressguard policy explain WORKLOAD NAME|ADDRESS [--address IP] [--port N] [--protocol tcp|udp|icmp]
                           [--sni NAME | --no-sni | --no-client-hello] [--socket PATH | --config FILE [--policies FILE|DIR]...] [--json]`;

const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6'];

export async function policyExplain(args: string[], defaultSocket: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      address: { type: 'string' },
      port: { type: 'string', default: '443' },
      protocol: { type: 'string', default: 'tcp' },
      sni: { type: 'string' },
      'no-sni': { type: 'boolean', default: false },
      'no-client-hello': { type: 'boolean', default: false },
      socket: { type: 'string' },
      config: { type: 'string' },
      policies: { type: 'string', multiple: true, default: [] },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 2) throw new Error(`egressguard policy explain needs WORKLOAD and a destination\n${explainUsage}`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port "${values.port}": give 0 to 65535`);
  if (!PROTOCOLS.includes(values.protocol)) throw new Error(`--protocol "${values.protocol}": use one of ${PROTOCOLS.join(', ')}`);
  if ([values.sni !== undefined, values['no-sni'], values['no-client-hello']].filter(Boolean).length > 1)
    throw new Error('give at most one of --sni, --no-sni, --no-client-hello');
  if (values.config !== undefined && values.socket !== undefined)
    throw new Error('give --config (files) or --socket (a running agent), not both');
  if (values.policies.length > 0 && values.config === undefined) throw new Error('--policies needs --config (the workloads and baseline)');

  let snapshot: RulesetSnapshot;
  if (values.config !== undefined) {
    const config = loadConfig(values.config, CONFIG_CGROUP2_MOUNT);
    const { policies } = loadPolicySet(values.policies.length > 0 ? values.policies : config.policies, config.policyNamespace);
    snapshot = snapshotFromFiles(config, policies);
  } else {
    const socket = values.socket ?? defaultSocket;
    const reply = await controlRequest(socket, { command: 'ruleset' });
    if (typeof reply.error === 'string') throw new Error(reply.error);
    snapshot = reply.ruleset as RulesetSnapshot;
  }
  const explanation = explainFlow(snapshot, {
    workload: positionals[0]!,
    destination: positionals[1]!,
    ...(values.address !== undefined && { address: values.address }),
    port,
    protocol: values.protocol,
    ...(values.sni !== undefined && { sni: values.sni }),
    ...(values['no-sni'] && { sni: null }),
    noClientHello: values['no-client-hello'],
  });
  if (values.json) {
    const { workload, evaluation, ...rest } = explanation;
    const label = (r: { policy: { namespace: string; name: string }; name: string }) => `${r.policy.namespace}/${r.policy.name}:${r.name}`;
    console.log(
      JSON.stringify({
        ...rest,
        workload: workload.key,
        verdict: evaluation.verdict,
        tier: evaluation.tier,
        layer: evaluation.layer,
        rule: evaluation.rule ? label(evaluation.rule) : evaluation.ruleName,
        reason: evaluation.reason,
        watched: evaluation.watched.map((w) => ({ rule: label(w.rule), verdict: w.verdict })),
        steps: evaluation.steps.map((s) => ({ rule: label(s.rule), outcome: s.outcome, why: s.why })),
      }),
    );
  } else console.log(formatExplanation(explanation));
  return 0;
}
