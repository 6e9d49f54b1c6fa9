// Real receivers for the SIEM sink tests: rsyslog (Debian's rsyslogd with rsyslog-gnutls) started as the test's own
// process with its own config and work directory on 127.0.0.1, and free-port lookup. Killed by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
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
}

/**
 * rsyslogd with a TLS input (imtcp, gtls driver, server certificate, clients not authenticated) and a plain TCP
 * input, both octet-counting capable, writing every message's raw bytes (rawmsg, JSON-escaped so a message holding
 * newlines stays one line) to `received.log`. Control characters are kept as received (escaping off).
 */
export class Rsyslog {
  private constructor(
    private readonly child: ChildProcess,
    private readonly output: string,
    readonly tlsPort: number,
    readonly tcpPort: number,
    private readonly stderrText: () => string,
  ) {}

  static async start(options: RsyslogOptions): Promise<Rsyslog> {
    const work = join(options.dir, 'rsyslog-work');
    await mkdir(work, { recursive: true });
    const [tlsPort, tcpPort] = [await freePort(), await freePort()];
    const output = join(options.dir, 'received.log');
    const config = join(options.dir, 'rsyslog.conf');
    writeFileSync(
      config,
      `global(workDirectory="${work}" maxMessageSize="256k" parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="${options.caPath}" defaultNetstreamDriverCertFile="${options.certPath}"
       defaultNetstreamDriverKeyFile="${options.keyPath}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="list") { property(name="rawmsg" format="json") constant(value="\\n") }
ruleset(name="keep") { action(type="omfile" file="${output}" template="raw" flushOnTXEnd="on") }
input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="keep")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="keep" streamDriver.name="ptcp" streamDriver.mode="0")
`,
    );
    const child = spawn('rsyslogd', ['-n', '-f', config, '-i', join(options.dir, 'rsyslogd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const rsyslog = new Rsyslog(child, output, tlsPort, tcpPort, () => stderr);
    try {
      await waitForPort(tlsPort, child, () => stderr);
      await waitForPort(tcpPort, child, () => stderr);
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
