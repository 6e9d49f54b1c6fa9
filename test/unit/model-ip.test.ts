import { strict as assert } from 'node:assert';
import { describe, test } from 'vitest';
import { formatIp, ipBytes, isIpv6Address, unmapIpv4 } from '../../src/model/ip.js';

describe('src/model/ip: the one home of address helpers', () => {
  test('unmapIpv4 turns an IPv4-mapped IPv6 address into its IPv4 address and leaves everything else alone', () => {
    assert.equal(unmapIpv4('::ffff:198.18.0.1'), '198.18.0.1');
    assert.equal(unmapIpv4('::FFFF:198.18.0.1'), '198.18.0.1');
    assert.equal(unmapIpv4('198.18.0.1'), '198.18.0.1');
    assert.equal(unmapIpv4('fd00:eb::1'), 'fd00:eb::1');
    // Hex-form mapped addresses and look-alikes are not dotted quads: kept as they are.
    assert.equal(unmapIpv4('::ffff:c612:1'), '::ffff:c612:1');
    assert.equal(unmapIpv4('::ffff:198.18.0'), '::ffff:198.18.0');
    assert.equal(unmapIpv4('::ffff:999.1.1.1'), '::ffff:999.1.1.1');
  });

  test('isIpv6Address is false for IPv4 traffic on a dual-stack socket', () => {
    assert.equal(isIpv6Address('::ffff:198.18.0.1'), false);
    assert.equal(isIpv6Address('198.18.0.1'), false);
    assert.equal(isIpv6Address('fd00:eb::1'), true);
    assert.equal(isIpv6Address('::1'), true);
  });

  test('ipBytes and formatIp round-trip both families and reject what is not an address', () => {
    assert.deepEqual([...ipBytes('198.18.0.9')], [198, 18, 0, 9]);
    assert.equal(formatIp(ipBytes('fd00:eb:0:0:0:0:0:1')), 'fd00:eb::1');
    assert.equal(formatIp(ipBytes('::ffff:198.18.0.9')), '::ffff:c612:9');
    assert.throws(() => ipBytes('fe80::1%eth0'), /not an IP address/);
    assert.throws(() => ipBytes('example.com'), /not an IP address/);
  });
});
