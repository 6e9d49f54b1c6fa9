// TLS ClientHello bytes built by hand, so tests control every byte the kernel's SNI parser sees (GREASE, ECH,
// padding, record versions, record fragmentation), plus a small parser the lab server uses to log the SNI it received.
// Wire formats: RFC 8446 §4.1.2 (ClientHello), RFC 6066 §3 (server_name), RFC 8701 (GREASE), draft-ietf-tls-esni (ECH).
import { randomBytes } from 'node:crypto';

export type TlsVersion = '1.0' | '1.1' | '1.2' | '1.3';

export interface ClientHelloOptions {
  /** Host name for the server_name extension; null or absent = no server_name extension at all. */
  serverName?: string | null;
  /** Highest version offered. 1.3 adds supported_versions and key_share; lower ones set legacy_version. Default 1.3. */
  tlsVersion?: TlsVersion;
  /** Version field of the record header(s). Default 0x0301, as real clients send. */
  recordVersion?: number;
  /** Add GREASE values (RFC 8701) to cipher suites, extensions, groups and versions. */
  grease?: boolean;
  /** Add an encrypted_client_hello (0xfe0d) outer extension with a random payload: server_name is then the outer SNI. */
  ech?: boolean;
  /** Size of a padding extension (0x0015) body; makes the hello large. Default: no padding extension. */
  paddingBytes?: number;
  /** Extra extensions appended after the standard ones (fuzzing, "many extensions"). */
  extraExtensions?: readonly { type: number; data: Buffer }[];
  /** Put server_name last instead of first among the extensions. */
  serverNameLast?: boolean;
  /** Split the handshake message over records of at most this many bytes. Default 16384 (one record when it fits). */
  maxRecordPayload?: number;
  /** Source of random bytes (random, session id, key share, ECH payload); inject a seeded one for reproducible fuzzing. */
  random?: (size: number) => Buffer;
}

export const TLS_CONTENT_HANDSHAKE = 0x16;
export const TLS_CONTENT_ALERT = 0x15;
export const HANDSHAKE_CLIENT_HELLO = 0x01;
export const HANDSHAKE_SERVER_HELLO = 0x02;
export const EXTENSION_SERVER_NAME = 0x0000;
export const EXTENSION_ECH = 0xfe0d;
const EXTENSION_SUPPORTED_GROUPS = 0x000a;
const EXTENSION_EC_POINT_FORMATS = 0x000b;
const EXTENSION_SIGNATURE_ALGORITHMS = 0x000d;
const EXTENSION_PADDING = 0x0015;
const EXTENSION_SUPPORTED_VERSIONS = 0x002b;
const EXTENSION_KEY_SHARE = 0x0033;
const GROUP_X25519 = 0x001d;
const GROUP_SECP256R1 = 0x0017;
const MAX_RECORD_PAYLOAD = 16384;

const VERSION_CODES: Record<TlsVersion, number> = { '1.0': 0x0301, '1.1': 0x0302, '1.2': 0x0303, '1.3': 0x0304 };
// TLS 1.3 suites, then ECDHE suites for 1.2 (ECDSA first: the lab certificates are P-256), then one for 1.0/1.1.
const TLS13_SUITES = [0x1301, 0x1302, 0x1303];
const TLS12_SUITES = [0xc02b, 0xc02c, 0xc02f, 0xc030, 0xc009, 0xc013];
const SIGNATURE_ALGORITHMS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501];

/** `count` distinct GREASE values, 0x?a?a with both bytes equal (RFC 8701). */
function greaseValues(random: (size: number) => Buffer, count: number): number[] {
  const start = (random(1)[0] as number) >> 4;
  return Array.from({ length: count }, (_, i) => {
    const byte = (((start + i) & 0x0f) << 4) | 0x0a;
    return (byte << 8) | byte;
  });
}

function u8(value: number): Buffer {
  return Buffer.from([value & 0xff]);
}

function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

function u24(value: number): Buffer {
  return Buffer.from([(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff]);
}

/** A vector with a length prefix of `lengthBytes` bytes. */
function vector(lengthBytes: 1 | 2 | 3, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const limit = 2 ** (8 * lengthBytes) - 1;
  if (body.length > limit) throw new Error(`ClientHello field of ${body.length} bytes exceeds its ${lengthBytes}-byte length prefix`);
  const prefix = lengthBytes === 1 ? u8(body.length) : lengthBytes === 2 ? u16(body.length) : u24(body.length);
  return Buffer.concat([prefix, body]);
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vector(2, data)]);
}

function serverNameExtension(name: string): Buffer {
  const encoded = Buffer.from(name, 'ascii');
  if (encoded.length === 0 || encoded.length > 255) throw new Error(`server name must be 1..255 bytes, got ${encoded.length}`);
  return extension(EXTENSION_SERVER_NAME, vector(2, u8(0), vector(2, encoded)));
}

function echOuterExtension(random: (size: number) => Buffer): Buffer {
  // ECHClientHello, outer variant: type 0, HPKE suite (HKDF-SHA256, AES-128-GCM), config id, enc, encrypted payload.
  return extension(
    EXTENSION_ECH,
    Buffer.concat([u8(0), u16(0x0001), u16(0x0001), random(1), vector(2, random(32)), vector(2, random(176))]),
  );
}

/** The complete ClientHello: one or more TLS records carrying one handshake message. */
export function buildClientHello(options: ClientHelloOptions = {}): Buffer {
  const random = options.random ?? randomBytes;
  const version = options.tlsVersion ?? '1.3';
  const is13 = version === '1.3';
  const grease = options.grease === true;
  // Distinct values where they must differ (two extensions); the key share's group must be one offered in groups.
  const [greaseSuite, greaseGroup, greaseVersion, greaseFirstExtension, greaseLastExtension] = greaseValues(random, 5) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const suites = [...(grease ? [greaseSuite] : []), ...(is13 ? TLS13_SUITES : []), ...TLS12_SUITES];
  const groups = [...(grease ? [greaseGroup] : []), GROUP_X25519, GROUP_SECP256R1];

  const extensions: Buffer[] = [];
  if (grease) extensions.push(extension(greaseFirstExtension, Buffer.alloc(0)));
  const serverName = options.serverName ?? null;
  const sni = serverName === null ? null : serverNameExtension(serverName);
  if (sni !== null && options.serverNameLast !== true) extensions.push(sni);
  extensions.push(extension(EXTENSION_SUPPORTED_GROUPS, vector(2, ...groups.map(u16))));
  extensions.push(extension(EXTENSION_EC_POINT_FORMATS, vector(1, u8(0))));
  extensions.push(extension(EXTENSION_SIGNATURE_ALGORITHMS, vector(2, ...SIGNATURE_ALGORITHMS.map(u16))));
  if (is13) {
    const versions = [...(grease ? [greaseVersion] : []), 0x0304, 0x0303];
    extensions.push(extension(EXTENSION_SUPPORTED_VERSIONS, vector(1, ...versions.map(u16))));
    const shares = [
      ...(grease ? [Buffer.concat([u16(greaseGroup), vector(2, u8(0))])] : []),
      Buffer.concat([u16(GROUP_X25519), vector(2, random(32))]),
    ];
    extensions.push(extension(EXTENSION_KEY_SHARE, vector(2, ...shares)));
  }
  if (options.ech === true) extensions.push(echOuterExtension(random));
  for (const extra of options.extraExtensions ?? []) extensions.push(extension(extra.type, extra.data));
  if (sni !== null && options.serverNameLast === true) extensions.push(sni);
  if (options.paddingBytes !== undefined) extensions.push(extension(EXTENSION_PADDING, Buffer.alloc(options.paddingBytes)));
  if (grease) extensions.push(extension(greaseLastExtension, u8(0)));

  const body = Buffer.concat([
    u16(is13 ? 0x0303 : VERSION_CODES[version]),
    random(32),
    vector(1, random(32)),
    vector(2, ...suites.map(u16)),
    vector(1, u8(0)),
    vector(2, ...extensions),
  ]);
  const handshake = Buffer.concat([u8(HANDSHAKE_CLIENT_HELLO), vector(3, body)]);
  const maxPayload = options.maxRecordPayload ?? MAX_RECORD_PAYLOAD;
  if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > MAX_RECORD_PAYLOAD) {
    throw new Error(`maxRecordPayload must be 1..${MAX_RECORD_PAYLOAD}, got ${maxPayload}`);
  }
  const records: Buffer[] = [];
  for (let offset = 0; offset < handshake.length; offset += maxPayload) {
    const fragment = handshake.subarray(offset, offset + maxPayload);
    records.push(u8(TLS_CONTENT_HANDSHAKE), u16(options.recordVersion ?? 0x0301), u16(fragment.length), fragment);
  }
  return Buffer.concat(records);
}

export interface ParsedClientHello {
  /** host_name from server_name, or null when the extension is absent. */
  serverName: string | null;
  extensionTypes: number[];
  hasEch: boolean;
}

/**
 * Parse the ClientHello at the start of a client's byte stream (possibly spanning several records).
 * Returns 'incomplete' when more bytes are needed, null when the bytes are not a well-formed ClientHello.
 */
export function parseClientHello(stream: Buffer): ParsedClientHello | 'incomplete' | null {
  // Reassemble the handshake message from consecutive handshake records.
  const parts: Buffer[] = [];
  let offset = 0;
  let handshakeLength = -1;
  let collected = 0;
  for (;;) {
    if (stream.length < offset + 5) return 'incomplete';
    if (stream[offset] !== TLS_CONTENT_HANDSHAKE || stream[offset + 1] !== 0x03) return null;
    const length = stream.readUInt16BE(offset + 3);
    if (length === 0 || length > MAX_RECORD_PAYLOAD) return null;
    if (stream.length < offset + 5 + length) return 'incomplete';
    parts.push(stream.subarray(offset + 5, offset + 5 + length));
    collected += length;
    offset += 5 + length;
    if (handshakeLength < 0 && collected >= 4) {
      const head = Buffer.concat(parts);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return null;
      handshakeLength = 4 + head.readUIntBE(1, 3);
    }
    if (handshakeLength >= 0 && collected >= handshakeLength) break;
  }
  const message = Buffer.concat(parts).subarray(4, handshakeLength);
  try {
    return parseClientHelloBody(message);
  } catch {
    return null;
  }
}

function parseClientHelloBody(body: Buffer): ParsedClientHello {
  let at = 2 + 32;
  const skipVector = (lengthBytes: 1 | 2): void => {
    const length = body.readUIntBE(at, lengthBytes);
    at += lengthBytes + length;
  };
  skipVector(1); // session id
  skipVector(2); // cipher suites
  skipVector(1); // compression methods
  const result: ParsedClientHello = { serverName: null, extensionTypes: [], hasEch: false };
  if (at === body.length) return result;
  const end = at + 2 + body.readUInt16BE(at);
  if (end !== body.length) throw new Error('extensions length mismatch');
  at += 2;
  while (at < end) {
    const type = body.readUInt16BE(at);
    const length = body.readUInt16BE(at + 2);
    const data = body.subarray(at + 4, at + 4 + length);
    if (data.length !== length) throw new Error('truncated extension');
    at += 4 + length;
    result.extensionTypes.push(type);
    if (type === EXTENSION_ECH) result.hasEch = true;
    if (type === EXTENSION_SERVER_NAME && data.length >= 5 && data[2] === 0) {
      const nameLength = data.readUInt16BE(3);
      result.serverName = data.subarray(5, 5 + nameLength).toString('ascii');
    }
  }
  return result;
}
