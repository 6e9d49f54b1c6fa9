import { describe, test } from 'vitest';
import * as assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import {
  answersQuery,
  clientUdpLimit,
  encodeErrorResponse,
  encodeTruncatedResponse,
  encodeUpstreamQuery,
  frame,
  FrameReader,
  parseQuery,
  rcodeOf,
  type DnsQuery,
} from '../../src/dns/wire.js';

function query(packet: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'Api.OpenAI.com' }],
    ...packet,
  });
}

function parsedQuery(message: Buffer): DnsQuery {
  const parsed = parseQuery(message);
  assert.equal(parsed.kind, 'query');
  return (parsed as { query: DnsQuery }).query;
}

/** A query whose question name is given as raw label bytes. */
function rawNameQuery(labels: Buffer[]): Buffer {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const name = Buffer.concat([...labels.map((label) => Buffer.concat([Buffer.from([label.length]), label])), Buffer.from([0])]);
  return Buffer.concat([header, name, Buffer.from([0, 1, 0, 1])]);
}

describe('parseQuery', () => {
  test('keeps the client case for forwarding and lower-cases the name policy decides on', () => {
    const parsed = parsedQuery(query());
    assert.equal(parsed.id, 4242);
    assert.deepEqual(parsed.question, { name: 'Api.OpenAI.com', normalizedName: 'api.openai.com', type: 'A', class: 'IN' });
    assert.equal(parsed.edns, null);
  });

  test('reads the EDNS payload size and DO bit, never below 512', () => {
    const opt = (udpPayloadSize: number, flags: number): dnsPacket.OptAnswer => ({
      type: 'OPT',
      name: '.',
      udpPayloadSize,
      extendedRcode: 0,
      ednsVersion: 0,
      flags,
      flag_do: false,
      options: [],
    });
    const large = parsedQuery(query({ additionals: [opt(4096, dnsPacket.DNSSEC_OK)] }));
    assert.deepEqual(large.edns, { udpPayloadSize: 4096, dnssecOk: true });
    assert.equal(clientUdpLimit(large), 4096);
    const small = parsedQuery(query({ additionals: [opt(100, 0)] }));
    assert.equal(clientUdpLimit(small), 512);
    assert.equal(clientUdpLimit(parsedQuery(query())), 512);
  });

  test('drops messages too short to answer and messages that are responses', () => {
    assert.equal(parseQuery(Buffer.alloc(0)).kind, 'drop');
    assert.equal(parseQuery(Buffer.from([1, 2, 3, 4, 5])).kind, 'drop');
    assert.equal(parseQuery(query({ type: 'response' })).kind, 'drop');
  });

  test('answers FORMERR, keeping the id, for two questions, no question, a truncated question or trailing garbage records', () => {
    const cases: [string, Buffer, RegExp][] = [
      [
        'two questions',
        query({
          questions: [
            { type: 'A', name: 'a.example' },
            { type: 'A', name: 'b.example' },
          ],
        }),
        /2 questions/,
      ],
      ['no question', query({ questions: [] }), /0 questions/],
      ['truncated question', query().subarray(0, 20), /past the end/],
      ['header only claiming a question', query().subarray(0, 12), /past the end/],
      ['answer records in a query', query({ answers: [{ type: 'A', name: 'x.example', data: '198.18.0.1' }] }), /answer or authority/],
      ['additional count past the end', Buffer.concat([query().subarray(0, 10), Buffer.from([0, 3]), query().subarray(12)]), /undecodable/],
    ];
    for (const [label, message, reason] of cases) {
      const parsed = parseQuery(message);
      assert.equal(parsed.kind, 'reject', label);
      if (parsed.kind !== 'reject') continue;
      assert.equal(parsed.rcode, 'FORMERR', label);
      assert.match(parsed.reason, reason, label);
      const response = dnsPacket.decode(encodeErrorResponse(parsed.header, parsed.question, parsed.rcode));
      assert.equal(response.id, 4242, label);
      assert.equal(rcodeOf(encodeErrorResponse(parsed.header, parsed.question, parsed.rcode)), 'FORMERR', label);
    }
  });

  test('rejects names that would decode ambiguously: dots or binary inside a label, compression, over-long names', () => {
    const dotted = parseQuery(rawNameQuery([Buffer.from('evil.api'), Buffer.from('openai'), Buffer.from('com')]));
    assert.equal(dotted.kind, 'reject');
    const binary = parseQuery(rawNameQuery([Buffer.from([0x00, 0xff, 0x41]), Buffer.from('com')]));
    assert.equal(binary.kind, 'reject');
    const compressed = Buffer.concat([
      Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x00]),
      Buffer.from([0, 1, 0, 1]),
    ]);
    assert.equal(parseQuery(compressed).kind, 'reject');
    const long = parseQuery(rawNameQuery(Array.from({ length: 5 }, () => Buffer.alloc(60, 0x61))));
    assert.equal(long.kind, 'reject');
    assert.equal(parseQuery(rawNameQuery([Buffer.from('_sip'), Buffer.from('_tcp'), Buffer.from('example')])).kind, 'query');
  });

  test('answers NOTIMP for opcodes other than QUERY and FORMERR for the root name', () => {
    const update = query();
    update.writeUInt16BE(0x2800, 2);
    const parsed = parseQuery(update);
    assert.equal(parsed.kind === 'reject' && parsed.rcode, 'NOTIMP');
    const root = parseQuery(rawNameQuery([]));
    assert.equal(root.kind === 'reject' && root.rcode, 'FORMERR');
  });

  test('never throws on random bytes', () => {
    let seed = 12345;
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let i = 0; i < 5000; i += 1) {
      const message = Buffer.alloc(next() % 80);
      for (let j = 0; j < message.length; j += 1) message[j] = next() & 0xff;
      // Half the cases get a valid query header so the name and record parsers are exercised too.
      if (i % 2 === 0 && message.length >= 12) {
        message.writeUInt32BE(0x12340100, 0);
        message.writeUInt32BE(0x00010000, 4);
        message.writeUInt32BE(0, 8);
      }
      const parsed = parseQuery(message);
      assert.ok(['query', 'drop', 'reject'].includes(parsed.kind));
    }
  });
});

describe('upstream query and responses', () => {
  test('the upstream query carries only the question, RD/CD, and the EDNS size and DO bit — no client options', () => {
    const client = query({
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED | dnsPacket.AUTHORITATIVE_ANSWER,
      additionals: [
        {
          type: 'OPT',
          name: '.',
          udpPayloadSize: 1400,
          extendedRcode: 0,
          ednsVersion: 0,
          flags: dnsPacket.DNSSEC_OK,
          flag_do: true,
          options: [{ code: 12, type: 'PADDING', length: 40 }],
        },
        { type: 'TXT', name: 'smuggled.example', data: 'secret' },
      ],
    });
    const upstream = dnsPacket.decode(encodeUpstreamQuery(parsedQuery(client), 777));
    assert.equal(upstream.id, 777);
    assert.equal(upstream.flag_rd, true);
    assert.equal(upstream.flag_cd, true);
    assert.equal(upstream.flag_aa, false);
    assert.deepEqual(upstream.questions, [{ name: 'Api.OpenAI.com', type: 'A', class: 'IN' }]);
    assert.equal(upstream.additionals?.length, 1);
    const opt = upstream.additionals?.[0] as dnsPacket.OptAnswer;
    assert.equal(opt.udpPayloadSize, 1400);
    assert.equal(opt.flag_do, true);
    assert.deepEqual(opt.options, []);
  });

  test('answersQuery accepts only the matching id, response bit and question', () => {
    const sent = parsedQuery(query());
    const response = (over: Partial<dnsPacket.Packet>): dnsPacket.DecodedPacket =>
      dnsPacket.decode(dnsPacket.encode({ type: 'response', id: 9, questions: [{ type: 'A', name: 'api.openai.com' }], ...over }));
    assert.equal(answersQuery(response({}), 9, sent.question), true);
    assert.equal(answersQuery(response({ id: 10 }), 9, sent.question), false);
    assert.equal(answersQuery(response({ type: 'query' }), 9, sent.question), false);
    assert.equal(answersQuery(response({ questions: [{ type: 'AAAA', name: 'api.openai.com' }] }), 9, sent.question), false);
    assert.equal(answersQuery(response({ questions: [{ type: 'A', name: 'evil.example' }] }), 9, sent.question), false);
  });

  test('truncated response sets TC and echoes the question', () => {
    const decoded = dnsPacket.decode(encodeTruncatedResponse(parsedQuery(query())));
    assert.equal(decoded.flag_tc, true);
    assert.equal(decoded.flag_qr, true);
    assert.equal(decoded.id, 4242);
    assert.equal(decoded.questions?.[0]?.name, 'Api.OpenAI.com');
  });
});

describe('FrameReader', () => {
  test('reassembles messages split across chunks and splits several in one chunk', () => {
    const first = query({ id: 1 });
    const second = query({ id: 2 });
    const stream = Buffer.concat([frame(first), frame(second)]);
    const reader = new FrameReader();
    assert.deepEqual(reader.push(stream.subarray(0, 1)), []);
    assert.deepEqual(reader.push(stream.subarray(1, 10)), []);
    const rest = reader.push(stream.subarray(10));
    assert.deepEqual(rest, [first, second]);
  });

  test('a zero-length frame yields an empty message the parser drops', () => {
    const [empty] = new FrameReader().push(Buffer.from([0, 0]));
    assert.equal(empty?.length, 0);
    assert.equal(parseQuery(empty as Buffer).kind, 'drop');
  });
});
