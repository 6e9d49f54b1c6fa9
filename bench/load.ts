// Load generator run inside a lab pod by bench/run.ts. Prints one JSON line.
//   load connect <ip> <port> <count>       sequential TCP connects (connect + close), connects per second, latency percentiles (us)
//   load dns <name> <server> <count>       sequential UDP queries, latency percentiles in microseconds
//   load dns-rate <name> <server> <qps> <seconds> <timeoutMs> <attempts>   paced lookups retried like glibc; counts, and
//                                          the silences (no answer for over 100 ms) with their epoch times
//   load connect-loop <ip> <port> <seconds>   TCP connects (one byte sent) one after the other; attempts, connected, errors
//   load tls-connect <ip> <port> <sni> <count>   sequential TLS handshakes (verified), handshakes per second
//   load tls-upload <ip> <port> <sni> <MiB>      one TLS flow sending MiB to the lab's sink, MiB per second
//   load verdict-watch <ip> <port>               back-to-back TCP connects until stdin closes; one line per verdict
//                                                change ({"t": CLOCK_MONOTONIC ns, "allowed": bool}), then the spacing
//                                                of the attempts (the resolution of those times)
import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import { connect as connectTls } from 'node:tls';
import dnsPacket from 'dns-packet';
import { percentile } from './common.js';

function connectOnce(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      // RST rather than FIN: no TIME_WAIT pile-up in the pod, which would slow later samples' port search.
      socket.resetAndDestroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

async function connectRate(host: string, port: number, count: number): Promise<void> {
  for (let i = 0; i < Math.min(50, count); i++) await connectOnce(host, port);
  const latencies: number[] = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const before = process.hrtime.bigint();
    await connectOnce(host, port);
    latencies.push(Number(process.hrtime.bigint() - before) / 1e3);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const [p50us, p99us] = [percentile(latencies, 50), percentile(latencies, 99)];
  console.log(JSON.stringify({ kind: 'connect', count, seconds, perSecond: count / seconds, p50us, p99us }));
}

async function dnsLatency(name: string, server: string, count: number): Promise<void> {
  const socket = createSocket(isIPv6(server) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => socket.bind(0, resolve));
  const ask = (id: number) =>
    new Promise<number>((resolve, reject) => {
      const started = process.hrtime.bigint();
      const timer = setTimeout(() => reject(new Error(`query ${id} timed out`)), 2000);
      const onMessage = (message: Buffer) => {
        if (message.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        socket.off('message', onMessage);
        resolve(Number(process.hrtime.bigint() - started) / 1e3);
      };
      socket.on('message', onMessage);
      socket.send(
        dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }),
        53,
        server,
      );
    });
  for (let i = 0; i < 20; i++) await ask(i + 1);
  const samples: number[] = [];
  for (let i = 0; i < count; i++) samples.push(await ask(((i + 100) % 65000) + 1));
  socket.close();
  samples.sort((a, b) => a - b);
  console.log(JSON.stringify({ kind: 'dns', count, p50us: percentile(samples, 50), p99us: percentile(samples, 99) }));
}

/** A stretch without any answer: from the last answer before it to the first after it (ms since the epoch). */
interface Silence {
  fromMs: number;
  toMs: number;
}
const SILENCE_MS = 100;

/**
 * Lookups at a steady rate from one socket, each retried like glibc's resolver (an attempt every `timeoutMs`, at most
 * `attempts`); counts lookups answered (by response code) and lookups that got no answer at all, and the silences.
 */
async function dnsRate(name: string, server: string, qps: number, seconds: number, timeoutMs: number, attempts: number): Promise<void> {
  const socket = createSocket(isIPv6(server) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => socket.bind(0, resolve));
  const rcodes: Record<string, number> = {};
  const waiting = new Map<number, { tries: number; timer: NodeJS.Timeout }>();
  let [sent, failed] = [0, 0];
  const silences: Silence[] = [];
  let lastAnswerMs = Date.now();
  const query = (id: number) =>
    dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  const attempt = (id: number, tries: number) => {
    const timer = setTimeout(() => {
      if (tries < attempts) return attempt(id, tries + 1);
      waiting.delete(id);
      failed += 1;
    }, timeoutMs);
    waiting.set(id, { tries, timer });
    socket.send(query(id), 53, server);
  };
  socket.on('message', (message: Buffer) => {
    const entry = waiting.get(message.readUInt16BE(0));
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    waiting.delete(message.readUInt16BE(0));
    const answeredMs = Date.now();
    if (answeredMs - lastAnswerMs > SILENCE_MS) silences.push({ fromMs: lastAnswerMs, toMs: answeredMs });
    lastAnswerMs = answeredMs;
    const rcode = (dnsPacket.decode(message) as { rcode?: string }).rcode ?? 'UNKNOWN';
    rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  });
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    const due = Math.floor(((performance.now() - started) / 1000) * qps);
    for (; sent < due; sent++) attempt((sent % 65535) + 1, 1);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  while (waiting.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  socket.close();
  console.log(JSON.stringify({ kind: 'dns-rate', sent, failed, rcodes, silences, lastAnswerMs }));
}

/** Connect, send one byte and close: a connection that got through is in the lab server's log. */
function connectAndSend(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () =>
      socket.write('x', () => {
        socket.destroy();
        resolve();
      }),
    );
    socket.once('error', reject);
  });
}

async function connectLoop(host: string, port: number, seconds: number): Promise<void> {
  const errors: Record<string, number> = {};
  let [attempts, connected] = [0, 0];
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    attempts += 1;
    try {
      await connectAndSend(host, port);
      connected += 1;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      errors[code] = (errors[code] ?? 0) + 1;
      // A denied connect fails at once: pace the loop so it does not spin a core.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  console.log(JSON.stringify({ kind: 'connect-loop', attempts, connected, errors }));
}

function handshakeOnce(host: string, port: number, servername: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ host, port, servername }, () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

async function tlsConnectRate(host: string, port: number, servername: string, count: number): Promise<void> {
  for (let i = 0; i < Math.min(20, count); i++) await handshakeOnce(host, port, servername);
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await handshakeOnce(host, port, servername);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(JSON.stringify({ kind: 'tls-connect', count, seconds, perSecond: count / seconds }));
}

async function tlsUpload(host: string, port: number, servername: string, mebibytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const total = mebibytes * 1024 * 1024;
  const reply = await new Promise<{ seconds: number; answer: string }>((resolve, reject) => {
    const socket = connectTls({ host, port, servername }, () => {
      const started = process.hrtime.bigint();
      let sent = 0;
      let answer = '';
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
        socket.end();
      };
      socket.setEncoding('utf8').on('data', (text: string) => (answer += text));
      socket.once('end', () => resolve({ seconds: Number(process.hrtime.bigint() - started) / 1e9, answer: answer.trim() }));
      pump();
    });
    socket.once('error', reject);
  });
  if (reply.answer !== `received ${total}`) throw new Error(`the sink answered "${reply.answer}", expected "received ${total}"`);
  console.log(JSON.stringify({ kind: 'tls-upload', mebibytes, seconds: reply.seconds, mebibytesPerSecond: mebibytes / reply.seconds }));
}

/** One attempt: true when the connect completes, false when the connect hook refuses it (EPERM) or a policy change
 * ends it while it connects (ECONNABORTED: the agent's reaper). */
function attemptConnect(host: string, port: number): Promise<boolean> {
  return connectOnce(host, port).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPERM' || error.code === 'ECONNABORTED') return false;
      throw error;
    },
  );
}

async function verdictWatch(host: string, port: number): Promise<void> {
  let open = true;
  process.stdin.on('end', () => (open = false)).resume();
  const gaps: number[] = [];
  let last: boolean | null = null;
  let previous = process.hrtime.bigint();
  while (open) {
    const allowed = await attemptConnect(host, port);
    const now = process.hrtime.bigint();
    gaps.push(Number(now - previous) / 1e3);
    previous = now;
    if (allowed !== last) console.log(JSON.stringify({ t: now.toString(), allowed }));
    last = allowed;
    // Lets stdin's end through without spacing the attempts out.
    await new Promise((resolve) => setImmediate(resolve));
  }
  gaps.sort((x, y) => x - y);
  console.log(
    JSON.stringify({ kind: 'verdict-watch', attempts: gaps.length, gapP50us: percentile(gaps, 50), gapP99us: percentile(gaps, 99) }),
  );
}

const [mode, a, b, c, d, e, f] = process.argv.slice(2);
if (mode === 'connect') await connectRate(a!, Number(b), Number(c));
else if (mode === 'dns') await dnsLatency(a!, b!, Number(c));
else if (mode === 'dns-rate') await dnsRate(a!, b!, Number(c), Number(d), Number(e), Number(f));
else if (mode === 'connect-loop') await connectLoop(a!, Number(b), Number(c));
else if (mode === 'tls-connect') await tlsConnectRate(a!, Number(b), c!, Number(d));
else if (mode === 'tls-upload') await tlsUpload(a!, Number(b), c!, Number(d));
else if (mode === 'verdict-watch') await verdictWatch(a!, Number(b));
else {
  console.error('usage: load connect|dns|dns-rate|connect-loop|tls-connect|tls-upload|verdict-watch ... (see the header of bench/load.ts)');
  process.exit(2);
}
