// IPv4/IPv6 + UDP packets built byte by byte (with checksums and, when asked, IP fragmentation), for probes that send
// below the socket layer (packet sockets, raw sockets with a hand-written IP header, forged source addresses).
import { isIPv4 } from 'node:net';
import { ipBytes } from '../src/model/ip.js';

const IPPROTO_UDP = 17;
const IPV6_NEXT_FRAGMENT = 44;
const UDP_HEADER_BYTES = 8;
const DEFAULT_TTL = 64;

/** RFC 1071 Internet checksum over the concatenated parts. */
export function internetChecksum(...parts: Buffer[]): number {
  const data = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += (data[data.length - 1] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface UdpPacketSpec {
  source: string;
  destination: string;
  sourcePort: number;
  destinationPort: number;
  payload: Buffer;
}

/** UDP header + payload with the checksum over the family's pseudo-header. */
function udpSegment(spec: UdpPacketSpec): Buffer {
  const length = UDP_HEADER_BYTES + spec.payload.length;
  const segment = Buffer.alloc(length);
  segment.writeUInt16BE(spec.sourcePort, 0);
  segment.writeUInt16BE(spec.destinationPort, 2);
  segment.writeUInt16BE(length, 4);
  spec.payload.copy(segment, UDP_HEADER_BYTES);
  const source = ipBytes(spec.source);
  const destination = ipBytes(spec.destination);
  const pseudo = Buffer.alloc(source.length === 4 ? 4 : 8);
  if (source.length === 4) {
    pseudo.writeUInt8(IPPROTO_UDP, 1);
    pseudo.writeUInt16BE(length, 2);
  } else {
    pseudo.writeUInt32BE(length, 0);
    pseudo.writeUInt8(IPPROTO_UDP, 7);
  }
  // A computed 0 is sent as 0xffff (0 means "no checksum" in IPv4 and is invalid in IPv6).
  segment.writeUInt16BE(internetChecksum(source, destination, pseudo, segment) || 0xffff, 6);
  return segment;
}

function ipv4Header(spec: UdpPacketSpec, payloadLength: number, identification: number, fragmentField: number): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt8(0x45, 0);
  header.writeUInt16BE(20 + payloadLength, 2);
  header.writeUInt16BE(identification, 4);
  header.writeUInt16BE(fragmentField, 6);
  header.writeUInt8(DEFAULT_TTL, 8);
  header.writeUInt8(IPPROTO_UDP, 9);
  ipBytes(spec.source).copy(header, 12);
  ipBytes(spec.destination).copy(header, 16);
  header.writeUInt16BE(internetChecksum(header), 10);
  return header;
}

function ipv6Header(spec: UdpPacketSpec, payloadLength: number, nextHeader: number): Buffer {
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x60000000, 0);
  header.writeUInt16BE(payloadLength, 4);
  header.writeUInt8(nextHeader, 6);
  header.writeUInt8(DEFAULT_TTL, 7);
  ipBytes(spec.source).copy(header, 8);
  ipBytes(spec.destination).copy(header, 24);
  return header;
}

function checkFamilies(spec: UdpPacketSpec): boolean {
  const v4 = isIPv4(spec.destination);
  if (v4 !== isIPv4(spec.source)) throw new Error(`source ${spec.source} and destination ${spec.destination} differ in family`);
  return v4;
}

/** One complete IP packet carrying the UDP datagram. */
export function buildUdpPacket(spec: UdpPacketSpec): Buffer {
  const segment = udpSegment(spec);
  const header = checkFamilies(spec) ? ipv4Header(spec, segment.length, 0, 0x4000 /* DF */) : ipv6Header(spec, segment.length, IPPROTO_UDP);
  return Buffer.concat([header, segment]);
}

/**
 * The UDP datagram as IP fragments of at most `fragmentBytes` bytes of fragmentable data each (rounded down to a
 * multiple of 8): IPv4 with MF/offset, IPv6 with a Fragment extension header. The first fragment carries the UDP header.
 */
export function buildUdpFragments(spec: UdpPacketSpec, fragmentBytes: number, identification: number): Buffer[] {
  const v4 = checkFamilies(spec);
  const segment = udpSegment(spec);
  const chunk = Math.floor(fragmentBytes / 8) * 8;
  if (chunk < UDP_HEADER_BYTES || chunk >= segment.length) {
    throw new Error(`fragment size ${fragmentBytes} must hold the UDP header and be smaller than the ${segment.length}-byte datagram`);
  }
  const fragments: Buffer[] = [];
  for (let offset = 0; offset < segment.length; offset += chunk) {
    const data = segment.subarray(offset, offset + chunk);
    const more = offset + chunk < segment.length ? 1 : 0;
    if (v4) {
      fragments.push(Buffer.concat([ipv4Header(spec, data.length, identification & 0xffff, (more << 13) | (offset / 8)), data]));
    } else {
      const fragmentHeader = Buffer.alloc(8);
      fragmentHeader.writeUInt8(IPPROTO_UDP, 0);
      fragmentHeader.writeUInt16BE(offset | more, 2);
      fragmentHeader.writeUInt32BE(identification >>> 0, 4);
      fragments.push(Buffer.concat([ipv6Header(spec, 8 + data.length, IPV6_NEXT_FRAGMENT), fragmentHeader, data]));
    }
  }
  return fragments;
}
