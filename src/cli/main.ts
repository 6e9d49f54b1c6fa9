#!/usr/bin/env node
// egressguard command line: run the agent, lint policies, show status, tear down, run the demo.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { controlRequest } from '../agent/control.js';
import { formatStatus, type AgentStatus } from '../agent/status.js';
import { observe } from './observe.js';
import { diffUsage, policyDiff } from './policy-diff.js';
import { explainUsage, policyExplain } from './policy-explain.js';
import { policyReplay, replayUsage } from './policy-replay.js';
import { suggest, suggestUsage } from './suggest.js';
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
  egressguard teardown --config FILE     detach programs and remove pins: enforcement ends (root)
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

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) throw new Error('egressguard run needs --config FILE');
  requireRoot('run');
  const { startAgent } = await import('../agent/agent.js');
  const log = pino({ name: 'egressguard', level: process.env.EGRESSGUARD_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const agent = await startAgent({ configPath: values.config, log });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping; pinned programs keep enforcing until `egressguard teardown`');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop();
  return 0;
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
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) throw new Error('egressguard teardown needs --config FILE (the one the agent ran with)');
  requireRoot('teardown');
  const { teardownFromConfig } = await import('../agent/teardown.js');
  teardownFromConfig(values.config);
  console.log('egressguard programs detached and pins removed: enforcement has ended');
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
