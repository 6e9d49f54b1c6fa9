// Sink types `splunk-hec` (Splunk HTTP Event Collector) and `webhook` (NDJSON POSTs to any URL).
import { readConfigFile } from './files.js';
import { createFormat, isJsonFormat } from './formats/index.js';
import { hecEvents } from './formats/hec.js';
import { REMOTE_SINK_PROPERTIES, type RemoteSinkConfig } from './options.js';
import { PRODUCT } from './product.js';
import { HttpTransport } from './transports/http.js';
import type { SinkDefinition } from './types.js';

export interface SplunkHecSinkConfig extends RemoteSinkConfig {
  type: 'splunk-hec';
  /** https://splunk.example:8088; the path defaults to /services/collector/event. */
  url: string;
  /** The HEC token, or a file holding it (one of the two). */
  token?: string;
  tokenFile?: string;
  caFile?: string;
  index?: string;
  /** Default egressguard. */
  source?: string;
  /** Default `egressguard:<format>`. */
  sourcetype?: string;
  /** Default true. */
  gzip?: boolean;
}

export interface WebhookSinkConfig extends RemoteSinkConfig {
  type: 'webhook';
  url: string;
  headers?: Record<string, string>;
  caFile?: string;
  /** Default false. */
  gzip?: boolean;
}

export const HEC_EVENT_PATH = '/services/collector/event';
const URL_PATTERN = '^https?://[^\\s]+$';

export const splunkHecSink: SinkDefinition<SplunkHecSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'url'],
    properties: {
      type: { const: 'splunk-hec' },
      url: { type: 'string', pattern: URL_PATTERN },
      token: { type: 'string', pattern: '^\\S+$' },
      tokenFile: { type: 'string', pattern: '^/' },
      caFile: { type: 'string', pattern: '^/' },
      index: { type: 'string', pattern: '\\S' },
      source: { type: 'string', pattern: '\\S' },
      sourcetype: { type: 'string', pattern: '\\S' },
      gzip: { type: 'boolean' },
      ...REMOTE_SINK_PROPERTIES,
    },
    oneOf: [{ required: ['token'] }, { required: ['tokenFile'] }],
  },
  destination: (config) => hecUrl(config.url).href,
  create(config) {
    const formatName = config.format ?? 'json';
    const token =
      config.token ??
      readConfigFile('tokenFile', config.tokenFile ?? '')
        .toString('utf8')
        .trim();
    const format = hecEvents(createFormat(formatName, PRODUCT), {
      source: config.source ?? 'egressguard',
      sourcetype: config.sourcetype ?? `egressguard:${formatName}`,
      ...(config.index ? { index: config.index } : {}),
      jsonRecords: isJsonFormat(formatName),
    });
    const transport = new HttpTransport({
      url: hecUrl(config.url),
      headers: { authorization: `Splunk ${token}` },
      contentType: 'application/json',
      // HEC batches are event objects one after another; a newline keeps them readable and is allowed between them.
      separator: '\n',
      gzip: config.gzip ?? true,
      ...(config.caFile ? { ca: readConfigFile('caFile', config.caFile) } : {}),
    });
    return { format, transport, ...(config.spool ? { spool: config.spool } : {}) };
  },
};

export const webhookSink: SinkDefinition<WebhookSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'url'],
    properties: {
      type: { const: 'webhook' },
      url: { type: 'string', pattern: URL_PATTERN },
      headers: { type: 'object', additionalProperties: { type: 'string' }, propertyNames: { pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" } },
      caFile: { type: 'string', pattern: '^/' },
      gzip: { type: 'boolean' },
      ...REMOTE_SINK_PROPERTIES,
    },
  },
  destination: (config) => new URL(config.url).href,
  create(config) {
    const transport = new HttpTransport({
      url: new URL(config.url),
      headers: config.headers ?? {},
      contentType: 'application/x-ndjson',
      separator: '\n',
      gzip: config.gzip ?? false,
      ...(config.caFile ? { ca: readConfigFile('caFile', config.caFile) } : {}),
    });
    return { format: createFormat(config.format ?? 'json', PRODUCT), transport, ...(config.spool ? { spool: config.spool } : {}) };
  },
};

function hecUrl(url: string): URL {
  const parsed = new URL(url);
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = HEC_EVENT_PATH;
  return parsed;
}
