// The lab's "internet": one process in the inet netns serving every test host address.
// TCP: writes `hello from <name>\n` and closes. TLS (tls.port): a real handshake with the certificate the SNI asks for,
// then `tls hello from <name> sni=<servername|none>\n`. UDP: echoes each datagram. Prints "ready" once every socket
// listens. With logPath, appends one ServerRecord JSON line per TCP/TLS connection (when it closes) and per UDP
// datagram, so tests can prove what did - and did not - reach the far end.
// Usage: node internet-server.js CONFIG.json   (config: InternetServerConfig, written by Lab.create)
import { createSocket } from 'node:dgram';
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer, isIPv6, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
import { parseClientHello } from './clienthello.js';

export interface InternetServerConfig {
  hosts: { name: string; addresses: string[] }[];
  tcpPorts: number[];
  udpPorts: number[];
  /** `sinkPort`: TLS that reads until the client ends, then answers `received <bytes>` (throughput benchmarks). */
  tls?: { port: number; sinkPort: number; certificates: { names: string[]; certPath: string; keyPath: string }[] };
  logPath?: string;
}

/** What one lab server socket received: one per TCP/TLS connection (written at close) or per UDP datagram. */
export interface ServerRecord {
  /** Lab host name owning the address that received it. */
  host: string;
  /** Local address it arrived on. */
  local: string;
  port: number;
  proto: 'tcp' | 'tls' | 'udp';
  /** Source address as the server saw it (a forged source shows up here). */
  remote: string;
  remotePort: number;
  /** Bytes of payload received from the client over the whole connection, or the datagram size. */
  bytesReceived: number;
  /** Separate reads the data arrived in (TCP): a payload written in gapped segments shows one read per segment. */
  reads: number;
  /** The client's first bytes formed a complete, well-formed ClientHello. */
  clientHello: boolean;
  /** server_name of that ClientHello; null when there was none (or no ClientHello). */
  sni: string | null;
  /** The ClientHello carried an encrypted_client_hello extension. */
  ech: boolean;
  /** A TLS handshake completed (TLS port only). */
  handshake: boolean;
  /** ISO time the record was written. */
  time: string;
}

// A dropped flow never closes from the client side: end idle server connections so their record is still written.
const IDLE_TIMEOUT_MS = 5000;
// ClientHellos beyond this are not parsed (the server log only needs to see test-sized ones).
const SNIFF_LIMIT = 64 * 1024;

let logPath: string | undefined;

function writeRecord(record: Omit<ServerRecord, 'time'>): void {
  if (logPath !== undefined) appendFileSync(logPath, `${JSON.stringify({ ...record, time: new Date().toISOString() })}\n`);
}

/** Counts the bytes a connection receives and parses its opening ClientHello, if it has one. */
class ConnectionRecorder {
  private received: Buffer[] = [];
  private sniffed = 0;
  private bytes = 0;
  private reads = 0;
  // Read at accept: a closed socket no longer reports its addresses.
  private readonly local: string;
  private readonly port: number;
  private readonly remote: string;
  private readonly remotePort: number;
  handshake = false;

  constructor(
    private readonly host: string,
    socket: Socket,
    private readonly proto: 'tcp' | 'tls',
  ) {
    this.local = socket.localAddress ?? '';
    this.port = socket.localPort ?? 0;
    this.remote = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
  }

  add(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.reads++;
    if (this.sniffed < SNIFF_LIMIT) {
      this.received.push(chunk);
      this.sniffed += chunk.length;
    }
  }

  write(): void {
    const hello = this.bytes === 0 ? null : parseClientHello(Buffer.concat(this.received));
    const parsed = hello === null || hello === 'incomplete' ? null : hello;
    writeRecord({
      host: this.host,
      local: this.local,
      port: this.port,
      proto: this.proto,
      remote: this.remote,
      remotePort: this.remotePort,
      bytesReceived: this.bytes,
      reads: this.reads,
      clientHello: parsed !== null,
      sni: parsed?.serverName ?? null,
      ech: parsed?.hasEch ?? false,
      handshake: this.handshake,
    });
  }
}

function servePlain(name: string, socket: Socket): void {
  const recorder = new ConnectionRecorder(name, socket, 'tcp');
  socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => recorder.add(chunk));
  socket.once('close', () => recorder.write());
  socket.end(`hello from ${name}\n`);
}

/** Picks the certificate for a requested server name: exact name, else the lab host it is a subdomain of, else `fallback`. */
function certificateChooser(contexts: Map<string, SecureContext>, fallback: SecureContext): (serverName: string) => SecureContext {
  return (serverName) => {
    const labels = serverName.toLowerCase().replace(/\.$/, '').split('.');
    for (let i = 0; i < labels.length; i++) {
      const context = contexts.get(labels.slice(i).join('.'));
      if (context !== undefined) return context;
    }
    return fallback;
  };
}

/**
 * Serve TLS over a JS stream that sits between the TCP socket and the TLS engine, so the recorder sees the raw bytes
 * (including a ClientHello whose handshake then fails or a first payload that is not TLS at all).
 */
function serveTls(name: string, raw: Socket, contexts: Map<string, SecureContext>, sink = false): void {
  const own = contexts.get(name) as SecureContext;
  const recorder = new ConnectionRecorder(name, raw, 'tls');
  const wire = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Buffer, _encoding, callback) => void raw.write(chunk, callback),
    final: (callback) => {
      raw.end();
      callback();
    },
  });
  raw.setTimeout(IDLE_TIMEOUT_MS, () => raw.destroy());
  raw.on('data', (chunk: Buffer) => {
    recorder.add(chunk);
    if (!wire.push(chunk)) raw.pause();
  });
  raw.once('end', () => wire.push(null));
  raw.on('error', () => raw.destroy());
  const chooseContext = certificateChooser(contexts, own);
  const tls = new TLSSocket(wire, {
    isServer: true,
    secureContext: own,
    SNICallback: (serverName, callback) => callback(null, chooseContext(serverName)),
  });
  tls.on('error', () => raw.destroy());
  tls.once('secure', () => {
    recorder.handshake = true;
    const servername = typeof tls.servername === 'string' && tls.servername !== '' ? tls.servername : 'none';
    if (!sink) return void tls.end(`tls hello from ${name} sni=${servername}\n`);
    let received = 0;
    tls.on('data', (chunk: Buffer) => (received += chunk.length));
    tls.once('end', () => tls.end(`received ${received}\n`));
  });
  raw.once('close', () => {
    tls.destroy();
    recorder.write();
  });
}

function listenTcp(address: string, port: number, handle: (socket: Socket) => void): Promise<void> {
  const server = createServer(handle);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port, ipv6Only: isIPv6(address) }, () => resolve());
  });
}

function listenUdp(name: string, address: string, port: number): Promise<void> {
  const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', ipv6Only: isIPv6(address) });
  socket.on('message', (message, rinfo) => {
    writeRecord({
      host: name,
      local: address,
      port,
      proto: 'udp',
      remote: rinfo.address,
      remotePort: rinfo.port,
      bytesReceived: message.length,
      reads: 1,
      clientHello: false,
      sni: null,
      ech: false,
      handshake: false,
    });
    // A failed echo (e.g. the peer is gone or forged) is the peer's problem, not a reason to stop serving.
    socket.send(message, rinfo.port, rinfo.address, () => undefined);
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve());
  });
}

function loadContexts(tls: NonNullable<InternetServerConfig['tls']>): Map<string, SecureContext> {
  const contexts = new Map<string, SecureContext>();
  for (const certificate of tls.certificates) {
    const context = createSecureContext({ cert: readFileSync(certificate.certPath), key: readFileSync(certificate.keyPath) });
    // Wildcard names are served through their base name (certificateChooser walks up the labels).
    for (const certName of certificate.names.filter((n) => !n.startsWith('*.'))) contexts.set(certName, context);
  }
  return contexts;
}

async function main(configPath: string): Promise<void> {
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as InternetServerConfig;
  logPath = config.logPath;
  const contexts = config.tls === undefined ? new Map<string, SecureContext>() : loadContexts(config.tls);
  const listening: Promise<void>[] = [];
  for (const host of config.hosts) {
    if (config.tls !== undefined && !contexts.has(host.name)) throw new Error(`no TLS certificate for lab host ${host.name}`);
    for (const address of host.addresses) {
      for (const port of config.tcpPorts) listening.push(listenTcp(address, port, (socket) => servePlain(host.name, socket)));
      if (config.tls !== undefined) {
        listening.push(listenTcp(address, config.tls.port, (socket) => serveTls(host.name, socket, contexts)));
        listening.push(listenTcp(address, config.tls.sinkPort, (socket) => serveTls(host.name, socket, contexts, true)));
      }
      for (const port of config.udpPorts) listening.push(listenUdp(host.name, address, port));
    }
  }
  await Promise.all(listening);
  process.stdout.write('ready\n');
}

const configPath = process.argv[2];
if (configPath === undefined) {
  process.stderr.write('usage: internet-server CONFIG.json\n');
  process.exit(2);
}
main(configPath).catch((error: unknown) => {
  process.stderr.write(`internet-server: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
