// The kernel-feature check runs before the object loads: a missing feature is reported by name,
// with the Linux release that has it and the setting that avoids it. Probe results are injected.
import * as assert from 'node:assert/strict';
import { describe, test } from 'vitest';

import { FEATURE_NEEDS, OPTIONAL_FEATURES, checkKernelFeatures, degradedFeatures, optionalFeatures } from '../../src/datapath/features.js';
import type { KernelFeatures } from '../../src/datapath/native.js';

const ALL_PRESENT: KernelFeatures = {
  cgroupSockAddrProgram: true,
  hashMap: true,
  lpmTrieMap: true,
  ringBufferMap: true,
  socketStorageMap: true,
  perCpuArrayMap: true,
  ancestorCgroupIdHelper: true,
  socketStorageHelper: true,
  cgroupSkbProgram: true,
  schedClsProgram: true,
  loopHelper: true,
  socketDestroy: true,
};
const BOTH = { tls: true, packet: true };

describe('kernel features', () => {
  test('every probed feature is needed or optional, named once', () => {
    const named = [...FEATURE_NEEDS.map((need) => need.feature), ...OPTIONAL_FEATURES.map((optional) => optional.feature)];
    assert.deepEqual(named.sort(), Object.keys(ALL_PRESENT).sort());
  });

  test('a kernel without bpf_sock_destroy still starts; status says what is weaker, the same with and without the backstop', () => {
    const features = { ...ALL_PRESENT, socketDestroy: false };
    checkKernelFeatures(features, BOTH, '6.1.0');
    assert.deepEqual(optionalFeatures(features), { socketDestroy: false });
    assert.deepEqual(degradedFeatures(optionalFeatures(ALL_PRESENT), BOTH, '6.18.0'), []);
    const [withBackstop] = degradedFeatures(optionalFeatures(features), BOTH, '6.1.0');
    assert.match(withBackstop!, /^this kernel \(6\.1\.0\) lacks bpf_sock_destroy from socket iterators \(Linux ≥ 6\.5\): existing sockets/);
    assert.match(withBackstop!, /every packet they send is dropped instead \(reported with reason withdrawn-no-sock-destroy\)/);
    const [withoutBackstop] = degradedFeatures(optionalFeatures(features), { tls: true, packet: false }, '6.1.0');
    assert.equal(withoutBackstop, withBackstop, 'the cgroup_skb program drops them either way (containment-flows.test.ts)');
  });

  test('a kernel with every feature passes whatever the layers', () => {
    checkKernelFeatures(ALL_PRESENT, BOTH, '6.18.0');
    checkKernelFeatures(ALL_PRESENT, { tls: false, packet: false }, '6.18.0');
  });

  test('a missing tc program type names the feature, the release and enforcement.packet: false', () => {
    const features = { ...ALL_PRESENT, schedClsProgram: false };
    assert.throws(
      () => checkKernelFeatures(features, BOTH, '4.0.9'),
      (error: Error) => {
        assert.equal(
          error.message,
          'this kernel (4.0.9) lacks tc (sched_cls) programs (Linux ≥ 4.1); set enforcement.packet: false to run without the tc backstop, or upgrade the kernel',
        );
        return true;
      },
    );
    checkKernelFeatures(features, { tls: true, packet: false }, '4.0.9');
  });

  test('a feature every configuration needs says so, and no setting hides it', () => {
    const features = { ...ALL_PRESENT, loopHelper: false };
    for (const wanted of [BOTH, { tls: false, packet: false }]) {
      assert.throws(
        () => checkKernelFeatures(features, wanted, '5.15.0'),
        /^Error: this kernel \(5\.15\.0\) lacks bpf_loop \(the ClientHello parser\) \(Linux ≥ 5\.17\), which every configuration needs: upgrade the kernel$/,
      );
    }
  });

  test('every missing feature is listed', () => {
    const features = { ...ALL_PRESENT, ringBufferMap: false, socketStorageHelper: false };
    assert.throws(
      () => checkKernelFeatures(features, BOTH, '5.4.0'),
      (error: Error) => {
        assert.match(error.message, /lacks BPF ring buffers \(Linux ≥ 5\.8\)/);
        assert.match(error.message, /; this kernel \(5\.4\.0\) lacks socket storage in cgroup sock_addr programs \(Linux ≥ 5\.8\)/);
        return true;
      },
    );
  });
});
