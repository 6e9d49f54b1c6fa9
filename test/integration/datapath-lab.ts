// A small netns lab for the datapath tests: pod <-> node <-> inet, with the node namespace routing
// between them (forwarding is enabled only inside the node namespace), a test attach cgroup with one
// workload cgroup (plus any extra cgroups a test asks for), and helpers to run node scripts in the pod or inet.
import * as assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

import { destroyPinned } from '../../src/datapath/datapath.js';
import { ensureBpffs, findCgroup2Mount } from '../../src/datapath/mounts.js';
import { loadNative } from '../../src/datapath/native.js';
import type { Datapath, KernelEvent, KernelRule } from '../../src/datapath/types.js';
import { uniquePrefix } from '../support/privileged.js';

export function sh(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
}

export interface Lab {
  prefix: string;
  /** The cgroup2 mount the attach cgroup lives under. */
  cgroupRoot: string;
  podNs: string;
  nodeNs: string;
  inetNs: string;
  /** Host-side interface of the pod (in nodeNs). */
  podHostIf: string;
  attachCgroup: string;
  workloadCgroup: string;
  pinDir: string;
  podV4: string;
  podV6: string;
  inet(host: number, family: 4 | 6): string;
  /** Runs `node -e script` in the pod netns inside the workload cgroup (or as given); parses its JSON stdout. */
  inPod<T>(script: string, args: unknown, options?: { cgroup?: string }): Promise<T>;
  /** Starts a long-running node script in inet; resolves once it prints "ready". */
  serve(script: string, env?: Record<string, string>): Promise<ChildProcess>;
  cleanup(datapath: Datapath | null): void;
}

export function rule(partial: Partial<KernelRule> & Pick<KernelRule, 'ruleId' | 'action'>): KernelRule {
  return {
    protocol: 'any',
    portLow: 0,
    portHigh: 65535,
    cidrs: [],
    anyDestination: false,
    web: false,
    anyName: false,
    watch: false,
    log: false,
    tlsRequired: false,
    domains: null,
    ...partial,
  };
}

/** Waits for a matching event (the deadline only guards against a hang). */
export async function eventMatching<E extends KernelEvent>(events: E[], predicate: (event: E) => boolean): Promise<E> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = events.find(predicate);
    if (found) return found;
    if (Date.now() > deadline) {
      const recent = JSON.stringify(events.slice(-5), (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
      throw new Error(`no matching event among ${events.length}: ${recent}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface LabOptions {
  /** More cgroups to create, relative to the attach cgroup, parents first (e.g. `workload/container`). */
  extraCgroups?: string[];
}

export function createLab(tag: string, options: LabOptions = {}): Lab {
  const prefix = uniquePrefix(tag);
  const subnet = randomBytes(1)[0]! & 0x7f; // pod side 198.18.x, inet side 198.18.(x+128)
  const podNs = `${prefix}-pod`;
  const nodeNs = `${prefix}-node`;
  const inetNs = `${prefix}-inet`;
  const podHostIf = `${prefix}h`;
  const cgroup2 = findCgroup2Mount();
  assert.ok(cgroup2, 'cgroup2 must be mounted');
  const attachCgroup = join(cgroup2, prefix);
  const workloadCgroup = join(attachCgroup, 'workload');
  const cgroups = [attachCgroup, workloadCgroup, ...(options.extraCgroups ?? []).map((relative) => join(attachCgroup, relative))];
  const pinDir = join(ensureBpffs(), prefix);
  const podV4 = `198.18.${subnet}.2`;
  const podV6 = `fd00:eb:${subnet.toString(16)}::2`;
  const inet = (host: number, family: 4 | 6): string =>
    family === 4 ? `198.18.${subnet + 128}.${host}` : `fd00:eb:${(subnet + 128).toString(16)}::${host}`;
  const servers: ChildProcess[] = [];
  const ip = (ns: string, args: string[]): string => sh('ip', ['-n', ns, ...args]);
  const nsExec = (ns: string, args: string[]): string => sh('nsenter', [`--net=/run/netns/${ns}`, '--', ...args]);

  try {
    build();
  } catch (error) {
    // Nothing is handed back to the caller's cleanup, so undo a half-built lab here.
    cleanup(null);
    throw error;
  }

  function build(): void {
    for (const dir of cgroups) mkdirSync(dir);
    for (const ns of [podNs, nodeNs, inetNs]) sh('ip', ['netns', 'add', ns]);
    ip(podNs, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', podHostIf, 'netns', nodeNs]);
    ip(inetNs, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `${prefix}i`, 'netns', nodeNs]);
    ip(podNs, ['addr', 'add', `${podV4}/24`, 'dev', 'eth0']);
    ip(podNs, ['addr', 'add', `${podV6}/64`, 'dev', 'eth0', 'nodad']);
    ip(nodeNs, ['addr', 'add', `198.18.${subnet}.1/24`, 'dev', podHostIf]);
    ip(nodeNs, ['addr', 'add', `fd00:eb:${subnet.toString(16)}::1/64`, 'dev', podHostIf, 'nodad']);
    ip(nodeNs, ['addr', 'add', `${inet(1, 4)}/24`, 'dev', `${prefix}i`]);
    ip(nodeNs, ['addr', 'add', `${inet(1, 6)}/64`, 'dev', `${prefix}i`, 'nodad']);
    for (const host of [2, 3, 4]) {
      ip(inetNs, ['addr', 'add', `${inet(host, 4)}/24`, 'dev', 'eth0']);
      ip(inetNs, ['addr', 'add', `${inet(host, 6)}/64`, 'dev', 'eth0', 'nodad']);
    }
    for (const ns of [podNs, nodeNs, inetNs]) ip(ns, ['link', 'set', 'lo', 'up']);
    ip(podNs, ['link', 'set', 'eth0', 'up']);
    ip(inetNs, ['link', 'set', 'eth0', 'up']);
    ip(nodeNs, ['link', 'set', podHostIf, 'up']);
    ip(nodeNs, ['link', 'set', `${prefix}i`, 'up']);
    ip(podNs, ['route', 'add', 'default', 'via', `198.18.${subnet}.1`]);
    ip(podNs, ['-6', 'route', 'add', 'default', 'via', `fd00:eb:${subnet.toString(16)}::1`]);
    ip(inetNs, ['route', 'add', `198.18.${subnet}.0/24`, 'via', inet(1, 4)]);
    ip(inetNs, ['-6', 'route', 'add', `fd00:eb:${subnet.toString(16)}::/64`, 'via', inet(1, 6)]);
    // Forwarding only in the lab's own node namespace.
    nsExec(nodeNs, ['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  }

  function inPod<T>(script: string, args: unknown, options?: { cgroup?: string }): Promise<T> {
    const cgroup = options?.cgroup ?? workloadCgroup;
    return new Promise((resolve, reject) => {
      const child = spawn(
        'nsenter',
        [
          `--net=/run/netns/${podNs}`,
          '--',
          'sh',
          '-c',
          `echo $$ > ${join(cgroup, 'cgroup.procs')} && exec "$0" -e "$EG_SCRIPT"`,
          process.execPath,
        ],
        { env: { ...process.env, EG_SCRIPT: script, EG_ARGS: JSON.stringify(args) }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.on('error', reject);
      child.on('close', () => {
        try {
          resolve(JSON.parse(out) as T);
        } catch {
          reject(new Error(`pod script printed ${JSON.stringify(out)}; stderr: ${err}`));
        }
      });
    });
  }

  async function serve(script: string, env: Record<string, string> = {}): Promise<ChildProcess> {
    const child = spawn('nsenter', [`--net=/run/netns/${inetNs}`, process.execPath, '-e', script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    servers.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.on('exit', (code) => reject(new Error(`inet server exited with ${code}`)));
    });
    return child;
  }

  function cleanup(datapath: Datapath | null): void {
    const problems: string[] = [];
    const attempt = (what: string, action: () => void): void => {
      try {
        action();
      } catch (error) {
        problems.push(`${what}: ${(error as Error).message}`);
      }
    };
    attempt('close datapath', () => datapath?.close());
    if (existsSync(pinDir)) attempt('remove pins', () => destroyPinned(loadNative(), pinDir, `/run/netns/${nodeNs}`));
    for (const server of servers) {
      if (server.pid !== undefined && server.exitCode === null) attempt('stop server', () => process.kill(server.pid!));
    }
    for (const dir of [...cgroups].reverse()) if (existsSync(dir)) attempt(`rmdir ${dir}`, () => rmdirSync(dir));
    for (const ns of [podNs, nodeNs, inetNs]) {
      if (existsSync(`/run/netns/${ns}`)) attempt(`delete netns ${ns}`, () => sh('ip', ['netns', 'del', ns]));
    }
    if (problems.length > 0) throw new Error(`cleanup incomplete:\n${problems.join('\n')}`);
  }

  return {
    prefix,
    cgroupRoot: cgroup2,
    podNs,
    nodeNs,
    inetNs,
    podHostIf,
    attachCgroup,
    workloadCgroup,
    pinDir,
    podV4,
    podV6,
    inet,
    inPod,
    serve,
    cleanup,
  };
}
