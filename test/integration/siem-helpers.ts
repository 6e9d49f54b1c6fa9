// Real receivers for the SIEM sink tests: rsyslog (Debian's rsyslogd with rsyslog-gnutls) started as the test's own
// process with its own config and work directory on 127.0.0.1 (killed by PID), a Splunk HEC receiver, free ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer, connect, type Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';

/** A port free on 127.0.0.1 at the time of the call. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (child.exitCode !== null) throw new Error(`rsyslogd exited (${child.exitCode}): ${stderr()}`);
    if (Date.now() > deadline) throw new Error(`rsyslogd did not listen on ${port}: ${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface RsyslogOptions {
  dir: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  /**
   * Accept and parse, then discard instead of writing (a receiver that is not the bottleneck, for benchmarks): the
   * file action only takes empty messages, as rsyslogd refuses to start without an action.
   */
  discard?: boolean;
}

/**
 * rsyslogd with a TLS input (imtcp, gtls driver, server certificate, clients not authenticated), one that requires
 * a client certificate signed by the CA (x509/certvalid), a plain TCP input and a UDP input, both octet-counting capable, writing every message's raw bytes (rawmsg, JSON-escaped so a message holding
 * newlines stays one line) to `received.log`. Control characters are kept as received (escaping off).
 */
export class Rsyslog {
  private constructor(
    private readonly child: ChildProcess,
    private readonly output: string,
    readonly tlsPort: number,
    readonly tcpPort: number,
    /** TLS input that requires a client certificate signed by the CA. */
    readonly mutualTlsPort: number,
    /** imudp: one message per datagram (RFC 5426). */
    readonly udpPort: number,
    private readonly stderrText: () => string,
  ) {}

  static async start(options: RsyslogOptions): Promise<Rsyslog> {
    const work = join(options.dir, 'rsyslog-work');
    await mkdir(work, { recursive: true });
    const [tlsPort, tcpPort, mutualTlsPort, udpPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const output = join(options.dir, 'received.log');
    const config = join(options.dir, 'rsyslog.conf');
    writeFileSync(
      config,
      `global(workDirectory="${work}" maxMessageSize="256k" parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="${options.caPath}" defaultNetstreamDriverCertFile="${options.certPath}"
       defaultNetstreamDriverKeyFile="${options.keyPath}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="list") { property(name="rawmsg" format="json") constant(value="\\n") }
ruleset(name="keep") { ${options.discard ? 'if $rawmsg == "" then { ' : ''}action(type="omfile" file="${output}" template="raw" flushOnTXEnd="on")${options.discard ? ' }' : ''} }
input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="keep")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="keep" streamDriver.name="ptcp" streamDriver.mode="0")
input(type="imtcp" address="127.0.0.1" port="${mutualTlsPort}" ruleset="keep" streamDriver.authMode="x509/certvalid")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="${udpPort}" ruleset="keep")
`,
    );
    const child = spawn('rsyslogd', ['-n', '-f', config, '-i', join(options.dir, 'rsyslogd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const rsyslog = new Rsyslog(child, output, tlsPort, tcpPort, mutualTlsPort, udpPort, () => stderr);
    try {
      await waitForPort(tlsPort, child, () => stderr);
      await waitForPort(tcpPort, child, () => stderr);
      await waitForPort(mutualTlsPort, child, () => stderr);
    } catch (error) {
      await rsyslog.stop();
      throw error;
    }
    return rsyslog;
  }

  /** The raw messages received so far, in arrival order. */
  received(): string[] {
    if (!existsSync(this.output)) return [];
    return readFileSync(this.output, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(`"${line}"`) as string);
  }

  get log(): string {
    return this.stderrText();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.pid === undefined) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    process.kill(this.child.pid, 'SIGTERM');
    await exited;
  }
}

/**
 * A Splunk HTTP Event Collector receiver, following the documented protocol (docs.splunk.com, "HTTP Event Collector
 * REST API endpoints", "Format events for HTTP Event Collector"): POST /services/collector/event (or
 * /services/collector), `Authorization: Splunk <token>` (401 code 2 when missing, 403 code 4 when wrong), an
 * optionally gzip-encoded body of JSON event objects one after another (400 code 5 "No data", code 6 "Invalid data
 * format", code 12 "Event field is required"), 200 `{"text":"Success","code":0}`. Scripted failures answer the next
 * requests with a given status. Not modelled: indexer acknowledgement (channels, /ack), the /raw endpoint, index
 * permissions of a token, the server's content-length limit, health endpoints, and what Splunk does with the events
 * (timestamp extraction, indexing).
 */
export class HecReceiver {
  readonly requests: { authorization: string | undefined; encoding: string | undefined; events: number; status: number }[] = [];
  readonly events: Record<string, unknown>[] = [];
  private failures: number[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly token: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Answer the next requests with these statuses (then succeed again). */
  failNext(...statuses: number[]): void {
    this.failures.push(...statuses);
  }

  async start(): Promise<void> {
    const server = createHttpServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }

  /** Stop at once, dropping open connections (a receiver that dies). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const answer = (status: number, text: string, code: number, events = 0) => {
      this.requests.push({ authorization: req.headers.authorization, encoding: req.headers['content-encoding'], events, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ text, code }));
    };
    if (req.method !== 'POST' || !['/services/collector/event', '/services/collector'].includes(req.url ?? ''))
      return answer(404, 'Not Found', 404);
    const authorization = req.headers.authorization;
    if (authorization === undefined) return answer(401, 'Token is required', 2);
    if (authorization !== `Splunk ${this.token}`) return answer(403, 'Invalid token', 4);
    const scripted = this.failures.shift();
    if (scripted !== undefined) return answer(scripted, 'Scripted failure', 9);
    let body: string;
    try {
      const raw = Buffer.concat(chunks);
      body = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
    } catch {
      return answer(400, 'Invalid data format', 6);
    }
    const events = concatenatedObjects(body);
    if (events === null) return answer(400, 'Invalid data format', 6);
    if (events.length === 0) return answer(400, 'No data', 5);
    if (events.some((e) => !('event' in e))) return answer(400, 'Event field is required', 12);
    this.events.push(...events);
    answer(200, 'Success', 0, events.length);
  }
}

/** Parse JSON objects written one after another (whitespace allowed between them); null if that is not what it is. */
function concatenatedObjects(body: string): Record<string, unknown>[] | null {
  const objects: Record<string, unknown>[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}') {
      if (--depth === 0) {
        try {
          objects.push(JSON.parse(body.slice(start, i + 1)) as Record<string, unknown>);
        } catch {
          return null;
        }
      }
    } else if (depth === 0 && !/\s/.test(c ?? '')) return null;
  }
  return depth === 0 && !inString ? objects : null;
}
