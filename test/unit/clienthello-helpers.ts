// TLS ClientHello bytes for tests, and a reference reading of them written from RFC 8446 / 6066
// (independently of the kernel parser), used to judge what the kernel should decide.
import { randomBytes } from 'node:crypto';

export interface HelloOptions {
  /** host_name of server_name; null: no server_name extension. Bytes are taken as latin1. */
  sni: string | null;
  recordVersion?: number;
  /** GREASE extension first (RFC 8701). */
  grease?: boolean;
  /** encrypted_client_hello (0xfe0d) with random content. */
  ech?: boolean;
  /** Extra (type, body) extensions before server_name. */
  extra?: Array<[number, Buffer]>;
  sessionId?: Buffer;
}

const u8 = (value: number): Buffer => Buffer.from([value & 0xff]);
const u16 = (value: number): Buffer => Buffer.from([(value >> 8) & 0xff, value & 0xff]);
const u24 = (value: number): Buffer => Buffer.from([(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff]);
const vector16 = (body: Buffer): Buffer => Buffer.concat([u16(body.length), body]);
const extension = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), vector16(body)]);

export function buildClientHello(options: HelloOptions): Buffer {
  const extensions: Buffer[] = [];
  if (options.grease === true) extensions.push(extension(0x0a0a, Buffer.alloc(0)));
  for (const [type, body] of options.extra ?? []) extensions.push(extension(type, body));
  if (options.sni !== null) {
    const name = Buffer.from(options.sni, 'latin1');
    extensions.push(extension(0, vector16(Buffer.concat([u8(0), vector16(name)]))));
  }
  extensions.push(extension(0x000a, vector16(Buffer.from([0x00, 0x1d, 0x00, 0x17])))); // supported_groups
  extensions.push(extension(0x002b, Buffer.from([0x04, 0x03, 0x04, 0x03, 0x03]))); // supported_versions
  if (options.ech === true) extensions.push(extension(0xfe0d, randomBytes(48)));
  const sessionId = options.sessionId ?? randomBytes(32);
  const body = Buffer.concat([
    u16(0x0303),
    randomBytes(32),
    u8(sessionId.length),
    sessionId,
    vector16(Buffer.from([0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f])),
    Buffer.from([0x01, 0x00]),
    vector16(Buffer.concat(extensions)),
  ]);
  const handshake = Buffer.concat([u8(1), u24(body.length), body]);
  return Buffer.concat([u8(0x16), u16(options.recordVersion ?? 0x0301), vector16(handshake)]);
}

export interface HelloReading {
  /** A complete, well-formed ClientHello within one record (and within maxBytes). */
  valid: boolean;
  sni: string | null;
  ech: boolean;
}

/** Reads a first flight as a strict server would; maxBytes is the reassembly bound. */
export function readClientHello(bytes: Buffer, maxBytes: number, maxExtensions: number): HelloReading {
  const invalid: HelloReading = { valid: false, sni: null, ech: false };
  if (bytes.length < 9 || bytes[0] !== 0x16 || bytes[1] !== 3 || bytes[2]! < 1 || bytes[2]! > 4 || bytes[5] !== 1) return invalid;
  const recordEnd = 5 + bytes.readUInt16BE(3);
  if (recordEnd - 5 < 4 || recordEnd > maxBytes || bytes.length < recordEnd) return invalid;
  const end = 9 + bytes.readUIntBE(6, 3);
  if (end > recordEnd) return invalid;
  let at = 9 + 2 + 32;
  const need = (count: number): boolean => at + count <= end;
  if (!need(1)) return invalid;
  at += 1 + bytes[at]!;
  if (!need(2)) return invalid;
  at += 2 + bytes.readUInt16BE(at);
  if (!need(1)) return invalid;
  at += 1 + bytes[at]!;
  if (at === end) return { valid: true, sni: null, ech: false };
  if (!need(2) || at + 2 + bytes.readUInt16BE(at) !== end) return invalid;
  at += 2;
  let sni: string | null = null;
  let ech = false;
  for (let count = 0; at < end; count++) {
    if (count >= maxExtensions || !need(4)) return invalid;
    const type = bytes.readUInt16BE(at);
    const length = bytes.readUInt16BE(at + 2);
    const bodyStart = at + 4;
    if (bodyStart + length > end) return invalid;
    if (type === 0) {
      if (sni !== null || length < 5) return invalid;
      const listLength = bytes.readUInt16BE(bodyStart);
      const nameLength = bytes.readUInt16BE(bodyStart + 3);
      if (listLength + 2 !== length || bytes[bodyStart + 2] !== 0 || nameLength + 3 > listLength) return invalid;
      sni = bytes.subarray(bodyStart + 5, bodyStart + 5 + nameLength).toString('latin1');
    } else if (type === 0xfe0d) {
      ech = true;
    }
    at = bodyStart + length;
  }
  return { valid: true, sni, ech };
}

/** Whether an SNI satisfies exact names / `*.suffix` wildcards (policy contract §3), reference version. */
export function sniAllowed(sni: string, exact: string[], wildcardSuffixes: string[], maxName: number): boolean {
  let name = sni.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '' || name.length > maxName || !/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name)) return false;
  if (exact.includes(name)) return true;
  return wildcardSuffixes.some((suffix) => name.endsWith(`.${suffix}`));
}
