// Syslog transports for RFC 5424 messages (the format wraps records, see formats/syslog.ts):
// - TLS (RFC 5425) and TCP (RFC 6587): octet-counting framing `LEN SP MSG`, LEN the UTF-8 byte length, never
//   newline framing (records may hold newlines). TLS verifies the server certificate against the configured CA file
//   (or the system store) and the host name; a failed verification fails the send, which the delivery counts and logs.
// - UDP (RFC 5426): one message per datagram.
// Syslog has no acknowledgement: a batch is "delivered" once the kernel has accepted its bytes. What the receiver
// had not read when it died is lost with it; the disk spool covers outages the transport can see (refused
// connections, resets, TLS failures, timeouts), not that window.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import type { Transport } from '../types.js';

/** A connection (TCP and TLS handshake) not up by then fails, so a silent peer cannot hold every later send. */
const CONNECT_TIMEOUT_MS = 10_000;

export interface SyslogStreamOptions {
  host: string;
  port: number;
  /** TLS settings; absent for plain TCP. */
  tls?: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'servername'>;
}

/** `LEN SP MSG` for each message (RFC 5425 section 4.3). */
export function octetCounted(batch: readonly string[]): Buffer {
  return Buffer.concat(
    batch.flatMap((message) => {
      const bytes = Buffer.from(message, 'utf8');
      return [Buffer.from(`${bytes.length} `, 'ascii'), bytes];
    }),
  );
}

export class SyslogStreamTransport implements Transport {
  private socket: Promise<Socket> | null = null;

  constructor(private readonly options: SyslogStreamOptions) {}

  async send(batch: readonly string[]): Promise<void> {
    const socket = await this.connected();
    const data = octetCounted(batch);
    await new Promise<void>((resolve, reject) => {
      socket.write(data, (error) => (error ? reject(error) : resolve()));
    }).catch((error: unknown) => {
      this.drop(socket);
      throw error;
    });
  }

  async close(): Promise<void> {
    const pending = this.socket;
    this.socket = null;
    const socket = await pending?.catch(() => null);
    if (!socket || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end();
      // A peer that never closes its side does not hold the agent's shutdown.
      setTimeout(() => socket.destroy(), 2000).unref();
    });
  }

  private connected(): Promise<Socket> {
    this.socket ??= this.connect().catch((error: unknown) => {
      this.socket = null;
      throw error;
    });
    return this.socket;
  }

  private connect(): Promise<Socket> {
    const { host, port, tls } = this.options;
    return new Promise<Socket>((resolve, reject) => {
      const ready = tls ? 'secureConnect' : 'connect';
      // SNI carries names only (RFC 6066); an address is checked against the certificate's IP SANs without it.
      const servername = tls?.servername ?? (isIP(host) === 0 ? host : undefined);
      const socket = tls ? connectTls({ host, port, ...tls, ...(servername ? { servername } : {}) }) : connectTcp({ host, port });
      socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error(`connecting to ${host}:${port} timed out`)));
      socket.once(ready, () => {
        socket.setTimeout(0);
        socket.off('error', reject);
        // Any later error or close: the next send reconnects (and a send in progress fails).
        socket.on('error', () => this.drop(socket));
        socket.on('close', () => this.drop(socket));
        // Syslog receivers send nothing back; read and discard so a chatty one cannot fill our buffers.
        socket.resume();
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  private drop(socket: Socket): void {
    socket.destroy();
    void this.socket?.then(
      (current) => {
        if (current === socket) this.socket = null;
      },
      () => undefined,
    );
  }
}

export class SyslogUdpTransport implements Transport {
  private readonly socket: UdpSocket;

  constructor(
    private readonly host: string,
    private readonly port: number,
    family: 4 | 6,
  ) {
    this.socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    // A destination that is down answers with ICMP port unreachable, reported on a later send; UDP delivery is
    // best effort by definition, so those are ignored here rather than failing unrelated batches.
    this.socket.on('error', () => undefined);
  }

  async send(batch: readonly string[]): Promise<void> {
    for (const message of batch) {
      await new Promise<void>((resolve, reject) => {
        this.socket.send(Buffer.from(message, 'utf8'), this.port, this.host, (error) => (error ? reject(error) : resolve()));
      });
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
