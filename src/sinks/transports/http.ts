// HTTP transports: a batch is one POST, gzip-compressed when configured. The answer classifies the failure for the
// delivery: 2xx delivered; 429, 5xx and network errors retried with backoff; any other 4xx is the receiver
// refusing the records for good (a bad token, a malformed request), so they are dropped and counted, not retried.
// - Splunk HEC (docs.splunk.com, "Format events for HTTP Event Collector"): POST /services/collector/event,
//   `Authorization: Splunk <token>`, the batch's event objects concatenated (the format builds them, see
//   formats/hec.ts);
// - a generic webhook: NDJSON (`application/x-ndjson`), one record per line, optional extra headers.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { PermanentDeliveryError, type Transport } from '../types.js';

const gzip = promisify(gzipCallback);

export interface HttpTransportOptions {
  url: URL;
  headers: Record<string, string>;
  contentType: string;
  /** Joins the batch's records into one body. */
  separator: string;
  gzip: boolean;
  /** PEM CA bundle verifying an https server (default: the system store). */
  ca?: Buffer;
}

export class HttpTransport implements Transport {
  private readonly agent: HttpAgent;

  constructor(private readonly options: HttpTransportOptions) {
    const secure = options.url.protocol === 'https:';
    this.agent = secure
      ? new HttpsAgent({ keepAlive: true, ...(options.ca ? { ca: options.ca } : {}) })
      : new HttpAgent({ keepAlive: true });
  }

  async send(batch: readonly string[]): Promise<void> {
    const { url, headers, contentType, separator } = this.options;
    const text = Buffer.from(batch.join(separator) + (separator === '\n' ? '\n' : ''), 'utf8');
    const body = this.options.gzip ? await gzip(text) : text;
    const response = await this.post(url, body, {
      ...headers,
      'content-type': contentType,
      'content-length': String(body.length),
      ...(this.options.gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    const status = response.status;
    if (status >= 200 && status < 300) return;
    const detail = `${url.origin}${url.pathname} answered ${status}: ${response.body.slice(0, 200)}`;
    if (status === 429 || status >= 500) throw new Error(detail);
    throw new PermanentDeliveryError(detail);
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private post(url: URL, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'POST', headers, agent: this.agent }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}
