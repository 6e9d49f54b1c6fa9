#!/usr/bin/env node
// egressguard command line: run the agent, lint policies, show status, tear down, run the demo.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { controlRequest } from '../agent/control.js';
import { formatStatus, type AgentStatus } from '../agent/status.js';
import { observe } from './observe.js';
import { diffUsage, policyDiff } from './policy-diff.js';
import { explainUsage, policyExplain } from './policy-explain.js';
import { policyReplay, replayUsage } from './policy-replay.js';
import { suggest, suggestUsage } from './suggest.js';
import { agentOwnerFromEnv, type AgentOwner } from '../k8s/agent-owner.js';
import type { DaemonSetReader, OwnDaemonSetWatch } from '../k8s/uninstall.js';
import { lintFiles, formatDiagnostic } from '../policy/lint.js';

const usage = `egressguard — per-workload, default-deny, domain-aware egress enforcement in the kernel

Usage:
  egressguard run --config FILE          run the host-mode agent (root)
  egressguard policy lint FILE|DIR...    validate FirewallPolicy manifests (exit 1 on errors)
  ${suggestUsage}
                                         suggest one FirewallPolicy per MCP server from recorded traffic (docs/rollout.md)
  ${diffUsage}
  ${replayUsage}
                                         what the policies would have decided over recorded traffic, per workload
  ${explainUsage}
                                         which tier and rule decide a flow, and why
  egressguard status [--socket PATH] [--json]
                                         show what the running agent enforces per workload
  egressguard observe [--socket PATH] [--namespace NS] [--workload [NS/]NAME] [--verdict V] [--fqdn NAME|*.SUFFIX]
                      [--rule [NS/POLICY:]RULE] [--layer L] [--since 5m|ISO-TIME] [--last N] [--follow] [--output table|json]
                                         follow the running agent's decisions live (--last/--since alone: history, then exit)
  egressguard teardown [--config FILE | --pin-dir DIR] [--dns-interface NAME]
                                         detach programs and tc filters, remove pins (and the DNS proxy's dummy
                                         interface): enforcement ends and the node is left clean (root; default
                                         pin directory <bpffs>/egressguard)
  egressguard demo [--keep-logs]         replay the reference containment lab on this host (root)
  egressguard version
`;

const defaultSocket = '/run/egressguard/agent.sock';

function requireRoot(command: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(
      `egressguard ${command} must run as root: it loads eBPF programs (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and manages cgroups`,
    );
  }
}

interface UninstallWatch {
  owner: AgentOwner;
  reader: DaemonSetReader;
  watch: OwnDaemonSetWatch;
}

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) throw new Error('egressguard run needs --config FILE');
  requireRoot('run');
  const { startAgent } = await import('../agent/agent.js');
  const log = pino({ name: 'egressguard', level: process.env.EGRESSGUARD_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const agent = await startAgent({ configPath: values.config, log });
  const uninstall = await watchForUninstall(values.config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping; pinned programs keep enforcing until `egressguard teardown`');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop();
  if (uninstall !== null) await cleanNodeIfUninstalled(uninstall, values.config, log);
  return 0;
}

// Under the Helm chart the agent's DaemonSet tells an uninstall (clean the node) from a rolling update (keep the
// pinned state for the next agent): src/k8s/uninstall.ts. Elsewhere stopping never ends enforcement. The DaemonSet is
// watched while the agent runs: `helm uninstall` deletes the agent's RBAC and ServiceAccount right after the
// DaemonSet, so by the time the pod is stopped a read of it is refused; the established watch saw the deletion.
async function watchForUninstall(configPath: string, log: Logger): Promise<UninstallWatch | null> {
  const owner = agentOwnerFromEnv(process.env);
  // Outside the chart nothing is watched, and the Kubernetes client stays unloaded.
  if (owner === null) return null;
  const { apiDaemonSetReader, OwnDaemonSetWatch } = await import('../k8s/uninstall.js');
  try {
    // The API server as the agent reaches it (kubernetes.kubeconfig, or its service-account directory), not the
    // client's defaults, which know only the standard in-cluster paths.
    const [{ loadConfigFile }, { findCgroup2Mount }, { kubeClientFor }] = await Promise.all([
      import('../agent/config.js'),
      import('../datapath/mounts.js'),
      import('../k8s/client.js'),
    ]);
    const { kubernetes } = loadConfigFile(configPath, findCgroup2Mount() ?? '/sys/fs/cgroup').config;
    if (kubernetes === null) return null;
    const { client } = kubeClientFor(kubernetes);
    const watch = new OwnDaemonSetWatch(client, owner, log);
    watch.start();
    return { owner, reader: apiDaemonSetReader(client), watch };
  } catch (error) {
    log.warn({ error: String(error) }, 'cannot reach Kubernetes to tell an uninstall from a restart: enforcement stays in force on stop');
    return null;
  }
}

async function cleanNodeIfUninstalled({ owner, reader, watch }: UninstallWatch, configPath: string, log: Logger): Promise<void> {
  const { decideOnStop } = await import('../k8s/uninstall.js');
  const decision = await decideOnStop(owner, reader, 5000, watch.deletionSeen());
  await watch.stop();
  log.info({ cleanNode: decision.cleanNode }, decision.reason);
  if (!decision.cleanNode) return;
  const { teardownNode, describeTeardown } = await import('../agent/teardown.js');
  log.info(describeTeardown(teardownNode({ configPath, dnsInterface: process.env.EGRESSGUARD_DNS_INTERFACE?.trim() || undefined })));
}

function lint(args: string[]): number {
  if (args.length === 0) throw new Error('egressguard policy lint needs at least one FILE or DIR');
  const result = lintFiles(args);
  for (const d of result.diagnostics) console.log(formatDiagnostic(d));
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = result.diagnostics.length - errors;
  console.log(`${errors} error(s), ${warnings} warning(s)`);
  return result.ok ? 0 : 1;
}

async function status(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { socket: { type: 'string' }, json: { type: 'boolean' } } });
  const reply = await controlRequest(values.socket ?? defaultSocket, { command: 'status' });
  if (typeof reply.error === 'string') throw new Error(reply.error);
  const agentStatus = reply.status as AgentStatus;
  console.log(values.json ? JSON.stringify(agentStatus, null, 2) : formatStatus(agentStatus));
  return 0;
}

async function teardown(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, 'pin-dir': { type: 'string' }, 'dns-interface': { type: 'string' } },
  });
  if (values.config !== undefined && values['pin-dir'] !== undefined)
    throw new Error('egressguard teardown takes --config FILE (the one the agent ran with) or --pin-dir DIR, not both');
  requireRoot('teardown');
  const { teardownNode, describeTeardown } = await import('../agent/teardown.js');
  const report = teardownNode({ configPath: values.config, pinDir: values['pin-dir'], dnsInterface: values['dns-interface'] });
  console.log(describeTeardown(report));
  return 0;
}

// The demo lives in the lab (lab/demo.ts), which is not part of src: it is loaded by path, next to this compiled CLI
// (dist/src/cli/main.js -> dist/lab/demo.js), and an install without the lab says so instead of failing on an import.
const DEMO_MODULE = new URL('../../lab/demo.js', import.meta.url);

interface DemoModule {
  runDemo(args: string[]): Promise<number>;
}

async function loadDemo(): Promise<DemoModule> {
  const path = fileURLToPath(DEMO_MODULE);
  if (!existsSync(path)) {
    throw new Error(
      `the demo needs the lab (lab/), which this install does not have (${path} is missing): run it from a built source checkout with make demo`,
    );
  }
  const loaded = (await import(DEMO_MODULE.href)) as Partial<DemoModule>;
  if (typeof loaded.runDemo !== 'function') throw new Error(`${path} does not export runDemo: rebuild the lab (make build)`);
  return loaded as DemoModule;
}

async function demo(args: string[]): Promise<number> {
  requireRoot('demo');
  const { runDemo } = await loadDemo();
  return runDemo(args);
}

async function policy(args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  switch (subcommand) {
    case 'lint':
      return lint(rest);
    case 'diff':
      return policyDiff(rest);
    case 'replay':
      return policyReplay(rest, defaultSocket);
    case 'explain':
      return policyExplain(rest, defaultSocket);
    default:
      throw new Error('usage: egressguard policy lint|diff|replay|explain ... (egressguard help)');
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return run(rest);
    case 'policy':
      return policy(rest);
    case 'suggest':
      return suggest(rest, defaultSocket);
    case 'status':
      return status(rest);
    case 'observe':
      return observe(rest, defaultSocket);
    case 'teardown':
      return teardown(rest);
    case 'demo':
      return demo(rest);
    case 'version':
      console.log('egressguard 0.1.0');
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(usage);
      return command === undefined ? 2 : 0;
    default:
      console.error(`unknown command "${command}"\n\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`egressguard: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
