// Per-packet cost of the packet-layer programs with BPF_PROG_TEST_RUN (repeat N, the kernel's
// average ns per run), as ratios against the cgroup_skb fast path measured in the same run.
// The objects are loaded with their own pins (nothing is attached). Run as root:
//   node dist/bench/packet-cost.js        (BENCH_REPEAT=200000 by default)
import { mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

import {
  LAYOUTS,
  PROBE,
  RULE_FLAG,
  WORKLOAD_FLAG,
  addressToBytes,
  encodeAddrKey,
  encodeDomainKey,
  encodeProbeInput,
  encodeU32,
  encodeWorkload,
} from '../src/datapath/abi.js';
import { ensureBpffs } from '../src/datapath/mounts.js';
import { loadNative, type NativeProgram } from '../src/datapath/native.js';
import { buildClientHello } from '../test/unit/clienthello-helpers.js';

const objectPath = fileURLToPath(new URL('../../bpf/egressguard.bpf.o', import.meta.url));
/** eg_hello_probe lives in its own object; loaded under the same pin root it shares eg_domains. */
const probeObjectPath = fileURLToPath(new URL('../../bpf/tests/hello_probe.bpf.o', import.meta.url));
const REPEAT = Number(process.env.BENCH_REPEAT ?? 200_000);
const RULE_ID = 5;
const LOOPBACK_IFINDEX = 1; // test runs need a real device in this namespace; only its index is used

function ipv4Udp(src: string, dst: string, withEthernet: boolean): Buffer {
  const ip = Buffer.alloc(28);
  ip.writeUInt8(0x45, 0);
  ip.writeUInt16BE(28, 2);
  ip.writeUInt8(64, 8);
  ip.writeUInt8(17, 9);
  addressToBytes(src).copy(ip, 12, 12, 16);
  addressToBytes(dst).copy(ip, 16, 12, 16);
  ip.writeUInt16BE(40000, 20);
  ip.writeUInt16BE(9999, 22);
  ip.writeUInt16BE(8, 24);
  if (!withEthernet) return ip;
  const ethernet = Buffer.alloc(14);
  ethernet.writeUInt16BE(0x0800, 12);
  return Buffer.concat([ethernet, ip]);
}

/** struct __sk_buff with only ifindex set (offset 40 in the UAPI struct). */
function skbContext(ifindex: number): Buffer {
  const ctx = Buffer.alloc(192);
  ctx.writeUInt32LE(ifindex, 40);
  return ctx;
}

function main(): void {
  const native = loadNative();
  const pinRoot = join(ensureBpffs(), `egbench-${randomBytes(2).toString('hex')}`);
  mkdirSync(pinRoot);
  const object = new native.BpfObject(objectPath, pinRoot);
  const probeObject = new native.BpfObject(probeObjectPath, pinRoot);
  try {
    object.load();
    probeObject.load();
    const domains = object.map('eg_domains');
    for (let index = 0; index < 1000; index++) {
      domains.update(encodeDomainKey(RULE_ID, { kind: 'exact', name: `host${index}.example.com` })!, Buffer.from([1]));
    }
    domains.update(encodeDomainKey(RULE_ID, { kind: 'wildcard', suffix: 'allowed.example' })!, Buffer.from([1]));
    const workload = encodeWorkload({ workloadId: 1, ruleCount: 0, slot: 0, flags: WORKLOAD_FLAG.hasAddresses });
    object.map('eg_workload_ids').update(encodeU32(1), workload);
    object.map('eg_interfaces').update(encodeU32(LOOPBACK_IFINDEX), encodeU32(1));
    object.map('eg_workload_addrs').update(encodeAddrKey(1, '198.18.0.2'), Buffer.from([1]));
    // struct eg_flow_key (44 bytes: addresses, ports, protocol, workload id) -> struct eg_approval (24 bytes; kind 1: the whole flow).
    const approved = Buffer.alloc(44);
    addressToBytes('198.18.0.2').copy(approved, 0);
    addressToBytes('198.18.1.1').copy(approved, 16);
    approved.writeUInt16LE(40000, 32);
    approved.writeUInt16LE(9999, 34);
    approved.writeUInt8(17, 36);
    approved.writeUInt32LE(1, 40);
    const approval = Buffer.alloc(24);
    approval.writeUInt8(1, 0);
    object.map('eg_approved').update(approved, approval);

    const measure = (program: NativeProgram, data: Buffer, ctx?: Buffer): number =>
      program.testRun({ data, ctx, repeat: REPEAT, dataOutSize: data.length + 64, ctxOutSize: ctx?.length ?? 0 }).duration;
    const skb = object.program('eg_skb_egress');
    const probe = probeObject.program('eg_hello_probe');
    const tc = object.program('eg_tc_ingress');
    const hello = buildClientHello({ sni: 'api.allowed.example', grease: true });
    // The probe reads the production object's eg_domains through the shared pin: a miss here would time the wrong path.
    if ((probe.testRun({ data: encodeProbeInput(RULE_ID, RULE_FLAG.web, hello) }).retval & PROBE.match) === 0) {
      throw new Error('eg_hello_probe did not match api.allowed.example: is eg_domains shared through the pin root?');
    }
    const rows: Array<[string, number]> = [
      ['cgroup_skb egress, fast path (no socket state)', measure(skb, ipv4Udp('198.18.0.2', '198.18.1.1', false))],
      [`ClientHello (${hello.length} B): reassemble + parse + LPM match`, measure(probe, encodeProbeInput(RULE_ID, RULE_FLAG.web, hello))],
      ['ClientHello, `*` rule (no LPM lookup)', measure(probe, encodeProbeInput(RULE_ID, RULE_FLAG.web | RULE_FLAG.anyName, hello))],
      ['tc ingress, approved flow', measure(tc, ipv4Udp('198.18.0.2', '198.18.1.1', true), skbContext(LOOPBACK_IFINDEX))],
      [
        'tc ingress, judged (no rules: default + event)',
        measure(tc, ipv4Udp('198.18.0.2', '198.18.1.2', true), skbContext(LOOPBACK_IFINDEX)),
      ],
      ['tc ingress, forged source', measure(tc, ipv4Udp('198.18.0.9', '198.18.1.1', true), skbContext(LOOPBACK_IFINDEX))],
    ];
    const base = rows[0]![1];
    console.log(
      `node dist/bench/packet-cost.js  (BPF_PROG_TEST_RUN, repeat ${REPEAT}; ${LAYOUTS.eg_domain_key.size}-byte LPM keys, 1001 names in the trie)`,
    );
    for (const [what, ns] of rows) console.log(`${what.padEnd(52)} ${String(ns).padStart(6)} ns  x${(ns / Math.max(base, 1)).toFixed(1)}`);
  } finally {
    probeObject.close();
    object.close();
    for (const name of readdirSync(pinRoot)) unlinkSync(join(pinRoot, name));
    rmdirSync(pinRoot);
  }
}

main();
