// The JSON line `probe` (src/lab/probe.ts) prints, one shape per sub-command. Errors are Node error codes
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

export type ProbeResult = TcpProbeResult | UdpProbeResult | DnsProbeResult | LoopTcpProbeResult;
