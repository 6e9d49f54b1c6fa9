// The JSON line `probe` (lab/probe.ts) prints, one shape per sub-command. Errors are Node error codes
// (EPERM when the kernel denied the connect/send, ENOTFOUND for NXDOMAIN, ETIMEDOUT, ECONNREFUSED, ...).

export interface TcpProbeResult {
  kind: 'tcp';
  target: string;
  port: number;
  /** Addresses the resolver returned ([] when the target was an IP literal or resolution failed). */
  resolved: string[];
  /** Address actually connected to (the first resolved one of the requested family). */
  address: string | null;
  ok: boolean;
  firstLine?: string;
  error?: string;
  elapsedMs: number;
}

export interface UdpProbeResult {
  kind: 'udp';
  target: string;
  port: number;
  ok: boolean;
  reply?: string;
  error?: string;
  elapsedMs: number;
}

export interface DnsAnswer {
  name: string;
  type: string;
  ttl: number;
  data: string;
}

export interface DnsProbeResult {
  kind: 'dns';
  name: string;
  type: string;
  server: string;
  transport: 'udp' | 'tcp';
  ok: boolean;
  rcode?: string;
  answers: DnsAnswer[];
  /** Source address of the reply as the application sees it (rinfo.address / socket.remoteAddress). */
  replyFrom?: string;
  error?: string;
  elapsedMs: number;
}

export interface LoopTcpProbeResult {
  kind: 'loop-tcp';
  target: string;
  port: number;
  attempts: number;
  successes: number;
  /** Failed attempts by error code. */
  failures: Record<string, number>;
}

export interface TlsProbeResult {
  kind: 'tls';
  target: string;
  port: number;
  resolved: string[];
  address: string | null;
  /** Local port of the connection: match it against ServerRecord.remotePort. */
  sourcePort?: number;
  /** Server name sent in the ClientHello; null when the hello carried no server_name. */
  servername: string | null;
  /** The certificate was verified against --ca (the handshake fails otherwise). */
  verified: boolean;
  handshake: boolean;
  /** Whether the peer's chain checks out against the trusted CAs (the lab CA is trusted in pods), verified or not. */
  authorized?: boolean;
  authorizationError?: string;
  /** Handshake completed and the server's first line arrived. */
  ok: boolean;
  firstLine?: string;
  error?: string;
  elapsedMs: number;
}

export interface HelloProbeResult {
  kind: 'hello';
  target: string;
  port: number;
  payload: 'client-hello' | 'plain-http';
  /** server_name in the crafted ClientHello (outer SNI when ech), or Host header for plain-http. */
  sni: string | null;
  /** Local port of the connection: match it against ServerRecord.remotePort. */
  sourcePort?: number;
  /** Number of separate writes (TCP segments) the payload was sent in. */
  segments: number;
  bytesSent: number;
  connected: boolean;
  /** Any byte came back before the timeout or close. */
  serverResponded: boolean;
  /** The reply starts with a handshake record holding a ServerHello. */
  serverHello: boolean;
  /** The reply starts with an alert record. */
  alert: boolean;
  bytesReceived: number;
  error?: string;
  elapsedMs: number;
}

/** One UDP datagram sent below the socket layer: `packet` (AF_PACKET frame), `raw-udp` (IP_HDRINCL), `fragments`. */
export interface RawSendProbeResult {
  kind: 'packet' | 'raw-udp' | 'fragments';
  target: string;
  port: number;
  /** Source address written into the IP header (forged when --src is not the pod's). */
  source: string;
  /** Source port written into the UDP header: match it against ServerRecord.remotePort. */
  sourcePort: number;
  /** UDP payload bytes of the datagram (what the receiver logs as bytesReceived after reassembly). */
  payloadBytes: number;
  /** Frames or packets handed to the kernel (fragments: how many of the fragments were sent). */
  sent: number;
  ok: boolean;
  error?: string;
}

export interface PingProbeResult {
  kind: 'ping';
  target: string;
  method: 'raw' | 'ping-socket';
  sent: number;
  received: number;
  ok: boolean;
  error?: string;
}

export type ProbeResult =
  | TcpProbeResult
  | UdpProbeResult
  | DnsProbeResult
  | LoopTcpProbeResult
  | TlsProbeResult
  | HelloProbeResult
  | RawSendProbeResult
  | PingProbeResult;

/** The result type a sub-command kind produces, e.g. ProbeResultOfKind<'packet'> is RawSendProbeResult. */
export type ProbeResultOfKind<K extends ProbeResult['kind'], R = ProbeResult> = R extends { kind: infer RK }
  ? K extends RK
    ? R
    : never
  : never;
