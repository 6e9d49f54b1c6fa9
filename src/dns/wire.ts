// DNS wire handling for the proxy: strict parsing of client queries, synthesized responses, TCP framing.
// dns-packet does the decoding and encoding; the checks here reject what it would accept ambiguously
// (labels containing dots or binary bytes decode to strings that name something else).

import dnsPacket from 'dns-packet';
import dnsClasses from 'dns-packet/classes.js';
import dnsTypes from 'dns-packet/types.js';

const HEADER_BYTES = 12;
const FLAG_QR = 0x8000;
const OPCODE_MASK = 0x7800;
const FLAG_RD = dnsPacket.RECURSION_DESIRED;
const FLAG_RA = dnsPacket.RECURSION_AVAILABLE;
const FLAG_CD = dnsPacket.CHECKING_DISABLED;
const FLAG_TC = dnsPacket.TRUNCATED_RESPONSE;
const MAX_NAME_WIRE_BYTES = 255;
/** Letters, digits, hyphen, underscore (SRV-style labels): everything a host or service name needs. */
const LABEL_BYTE = /^[A-Za-z0-9_-]+$/;
const PLAIN_DNS_UDP_LIMIT = 512;
const TYPE_OPT = 41;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type RcodeName = keyof typeof RCODE;
const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([name, code]) => [code, name]));

export interface EdnsInfo {
  udpPayloadSize: number;
  dnssecOk: boolean;
}

export interface DnsQuestion {
  /** As the client wrote it (case preserved, no trailing dot). */
  name: string;
  /** Lower case: what policy decides on. */
  normalizedName: string;
  /** dns-packet mnemonic, e.g. `A`, `UNKNOWN_65400`. */
  type: string;
  class: string;
}

export interface DnsQuery {
  id: number;
  /** Header flags word as received. */
  flags: number;
  question: DnsQuestion;
  edns: EdnsInfo | null;
}

/** The header fields a response can be built from even when the rest of the query is unusable. */
export interface QueryHeader {
  id: number;
  flags: number;
}

export type ParsedQuery =
  | { kind: 'query'; query: DnsQuery }
  /** Not worth an answer (too short to carry an id, or a response sent to us). */
  | { kind: 'drop'; reason: string }
  /** Answer with `rcode` and no question section. */
  | { kind: 'reject'; header: QueryHeader; rcode: 'FORMERR' | 'NOTIMP'; reason: string; question: DnsQuestion | null };

/** Parse a client query; never throws. */
export function parseQuery(message: Buffer): ParsedQuery {
  if (message.length < HEADER_BYTES) return { kind: 'drop', reason: `message of ${message.length} bytes is shorter than a DNS header` };
  const header: QueryHeader = { id: message.readUInt16BE(0), flags: message.readUInt16BE(2) };
  if ((header.flags & FLAG_QR) !== 0) return { kind: 'drop', reason: 'message is a response, not a query' };
  const reject = (rcode: 'FORMERR' | 'NOTIMP', reason: string, question: DnsQuestion | null = null): ParsedQuery => ({
    kind: 'reject',
    header,
    rcode,
    reason,
    question,
  });
  if ((header.flags & OPCODE_MASK) !== 0) return reject('NOTIMP', `opcode ${(header.flags & OPCODE_MASK) >> 11} is not QUERY`);
  const questionCount = message.readUInt16BE(4);
  if (questionCount !== 1) return reject('FORMERR', `query has ${questionCount} questions; exactly one is required`);
  if (message.readUInt16BE(6) !== 0 || message.readUInt16BE(8) !== 0) {
    return reject('FORMERR', 'query carries answer or authority records');
  }
  const read = readQuestionName(message);
  if (typeof read === 'string') return reject('FORMERR', read);
  const name = read.name;
  const question: DnsQuestion = {
    name,
    normalizedName: name.toLowerCase(),
    type: dnsTypes.toString(message.readUInt16BE(read.end)),
    class: dnsClasses.toString(message.readUInt16BE(read.end + 2)),
  };
  const edns = readEdns(message, read.end + 4);
  if (typeof edns === 'string') return reject('FORMERR', `undecodable query: ${edns}`);
  if (name === '') return reject('FORMERR', 'query for the root name is not served', question);
  return { kind: 'query', query: { id: header.id, flags: header.flags, question, edns } };
}

/**
 * Read the question name's labels on the wire: no compression, host-name characters only, RFC 1035 lengths. Returns
 * the name (no trailing dot; '' for the root) and the offset of its type, or what is wrong with it.
 */
function readQuestionName(message: Buffer): { name: string; end: number } | string {
  let offset = HEADER_BYTES;
  let wireBytes = 0;
  const labels: string[] = [];
  for (;;) {
    if (offset >= message.length) return 'question name runs past the end of the message';
    const length = message[offset] as number;
    if (length === 0) {
      return offset + 5 <= message.length ? { name: labels.join('.'), end: offset + 1 } : 'question is truncated before its type and class';
    }
    if ((length & 0xc0) !== 0) return 'question name uses compression or an extended label type';
    if (offset + 1 + length > message.length) return 'question name runs past the end of the message';
    wireBytes += length + 1;
    if (wireBytes + 1 > MAX_NAME_WIRE_BYTES) return `question name exceeds ${MAX_NAME_WIRE_BYTES} bytes`;
    const label = message.toString('latin1', offset + 1, offset + 1 + length);
    if (!LABEL_BYTE.test(label)) return 'question name has a label with characters other than letters, digits, "-" and "_"';
    labels.push(label);
    offset += length + 1;
  }
}

/** The EDNS the additional section carries (its first OPT record), walking every record from `offset`; or what is wrong. */
function readEdns(message: Buffer, offset: number): EdnsInfo | null | string {
  let edns: EdnsInfo | null = null;
  let at = offset;
  for (let record = message.readUInt16BE(10); record > 0; record -= 1) {
    at = skipName(message, at);
    if (at < 0 || at + 10 > message.length) return 'additional record runs past the end of the message';
    const rdataEnd = at + 10 + message.readUInt16BE(at + 8);
    if (rdataEnd > message.length) return 'additional record data runs past the end of the message';
    if (message.readUInt16BE(at) === TYPE_OPT && edns === null) {
      // OPT: the class is the sender's UDP payload size; the TTL holds extended rcode, version and flags (DO first).
      const udpPayloadSize = Math.max(PLAIN_DNS_UDP_LIMIT, message.readUInt16BE(at + 2));
      edns = { udpPayloadSize, dnssecOk: (message.readUInt16BE(at + 6) & dnsPacket.DNSSEC_OK) !== 0 };
    }
    at = rdataEnd;
  }
  return edns;
}

/** Largest UDP response the client said it accepts. */
export function clientUdpLimit(query: DnsQuery): number {
  return query.edns?.udpPayloadSize ?? PLAIN_DNS_UDP_LIMIT;
}

/** A query carrying only what the upstream needs: the question, RD/CD, and the client's EDNS size and DO bit (no options). */
export function encodeUpstreamQuery(query: Omit<DnsQuery, 'id'>, id: number): Buffer {
  const packet: dnsPacket.Packet = {
    type: 'query',
    id,
    flags: query.flags & (FLAG_RD | FLAG_CD),
    questions: [{ name: query.question.name, type: query.question.type, class: query.question.class } as dnsPacket.Question],
  };
  if (query.edns !== null) {
    const opt: dnsPacket.OptAnswer = {
      type: 'OPT',
      name: '.',
      udpPayloadSize: query.edns.udpPayloadSize,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: query.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0,
      flag_do: query.edns.dnssecOk,
      options: [],
    };
    packet.additionals = [opt];
  }
  return dnsPacket.encode(packet);
}

/** A response with `rcode`, echoing the question when there is one to echo. */
export function encodeErrorResponse(header: QueryHeader, question: DnsQuestion | null, rcode: RcodeName): Buffer {
  return encodeHeaderOnlyResponse(header, question, RCODE[rcode]);
}

/** An empty response with TC set, telling a UDP client to retry over TCP. */
export function encodeTruncatedResponse(query: DnsQuery): Buffer {
  return encodeHeaderOnlyResponse(query, query.question, RCODE.NOERROR | FLAG_TC);
}

function encodeHeaderOnlyResponse(header: QueryHeader, question: DnsQuestion | null, extraFlags: number): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: header.id,
    flags: (header.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA | extraFlags,
    questions: question === null ? [] : [{ name: question.name, type: question.type, class: question.class } as dnsPacket.Question],
  });
}

/** Whether a decoded upstream message answers the query we sent (id, response bit, same single question). */
export function answersQuery(packet: dnsPacket.DecodedPacket, id: number, question: DnsQuestion): boolean {
  if (packet.id !== id || !packet.flag_qr || packet.questions?.length !== 1) return false;
  const echoed = packet.questions[0] as dnsPacket.Question;
  return (
    echoed.name.toLowerCase() === question.normalizedName && echoed.type === question.type && (echoed.class ?? 'IN') === question.class
  );
}

export function decodeOrNull(message: Buffer): dnsPacket.DecodedPacket | null {
  try {
    return dnsPacket.decode(message);
  } catch {
    return null;
  }
}

export function rcodeOf(message: Buffer): string {
  const code = message.readUInt16BE(2) & 0x0f;
  return RCODE_NAMES.get(code) ?? `RCODE_${code}`;
}

export function isTruncated(packet: dnsPacket.DecodedPacket): boolean {
  return packet.flag_tc;
}

/** Offset just after the (possibly compressed) name at `offset`; -1 when the name runs past the message. */
function skipName(message: Buffer, offset: number): number {
  let at = offset;
  while (at < message.length) {
    const length = message[at] as number;
    if (length === 0) return at + 1;
    // A compression pointer ends the name in this record; its target is another record's business.
    if ((length & 0xc0) === 0xc0) return at + 2 <= message.length ? at + 2 : -1;
    if ((length & 0xc0) !== 0) return -1;
    at += length + 1;
  }
  return -1;
}

/**
 * Calls `visit` with the offset of each resource record's TTL field (answer section first), in order; false when the
 * message cannot be walked. `records` limits the walk to the first N records (the answer section is the first).
 */
function walkRecordTtls(message: Buffer, visit: (ttlOffset: number, type: number) => void, records?: number): boolean {
  if (message.length < HEADER_BYTES) return false;
  let offset = HEADER_BYTES;
  for (let question = message.readUInt16BE(4); question > 0; question -= 1) {
    offset = skipName(message, offset);
    if (offset < 0 || offset + 4 > message.length) return false;
    offset += 4;
  }
  const total = message.readUInt16BE(6) + message.readUInt16BE(8) + message.readUInt16BE(10);
  for (let record = Math.min(total, records ?? total); record > 0; record -= 1) {
    offset = skipName(message, offset);
    if (offset < 0 || offset + 10 > message.length) return false;
    visit(offset + 4, message.readUInt16BE(offset));
    offset += 10 + message.readUInt16BE(offset + 8);
    if (offset > message.length) return false;
  }
  return true;
}

/**
 * A copy of the response `message` in which no answer-section record has a TTL above `maxTtlSeconds`; null when the
 * message cannot be walked (see capAnswerTtlsInPlace).
 */
export function capAnswerTtls(message: Buffer, maxTtlSeconds: number): Buffer | null {
  const capped = Buffer.from(message);
  return capAnswerTtlsInPlace(capped, maxTtlSeconds) ? capped : null;
}

/**
 * Lower every answer-section TTL of `message` above `maxTtlSeconds` to it, patching the bytes in place (everything else
 * is relayed as the resolver sent it); false when the message cannot be walked. Other sections keep their TTLs: they
 * carry no address the workload connects to (and OPT's TTL is flags).
 */
export function capAnswerTtlsInPlace(message: Buffer, maxTtlSeconds: number): boolean {
  return walkRecordTtls(
    message,
    (ttl) => {
      if (message.readUInt32BE(ttl) > maxTtlSeconds) message.writeUInt32BE(maxTtlSeconds, ttl);
    },
    message.length >= HEADER_BYTES ? message.readUInt16BE(6) : 0,
  );
}

/** A copy of a cached response `elapsedSeconds` later: every record's TTL lowered by that much, never below 0 (OPT's is flags). */
export function ageTtls(message: Buffer, elapsedSeconds: number): Buffer | null {
  const aged = Buffer.from(message);
  const walked = walkRecordTtls(aged, (ttl, type) => {
    if (type !== TYPE_OPT) aged.writeUInt32BE(Math.max(0, aged.readUInt32BE(ttl) - elapsedSeconds), ttl);
  });
  return walked ? aged : null;
}

/** Prefix a message with its two-byte length for DNS over TCP. */
export function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length);
  return Buffer.concat([prefix, message]);
}

/** Splits a TCP byte stream into length-prefixed DNS messages, however the bytes were segmented. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const messages: Buffer[] = [];
    while (this.pending.length >= 2) {
      const length = this.pending.readUInt16BE(0);
      if (this.pending.length < 2 + length) break;
      messages.push(this.pending.subarray(2, 2 + length));
      this.pending = this.pending.subarray(2 + length);
    }
    return messages;
  }
}
