// Sink type `syslog`: RFC 5424 messages over TLS (RFC 5425, port 6514, the default), TCP (octet counting) or UDP.
// TLS verifies the server against `caFile` (default: the system store) and its name (`serverName`, default `host`);
// `certFile` + `keyFile` present a client certificate to receivers that require one.
import { isIP } from 'node:net';
import { readConfigFile } from './files.js';
import { createFormat } from './formats/index.js';
import { syslogMessages } from './formats/syslog.js';
import { REMOTE_SINK_PROPERTIES, type RemoteSinkConfig } from './options.js';
import { PRODUCT } from './product.js';
import { SyslogStreamTransport, SyslogUdpTransport } from './transports/syslog.js';
import type { SinkDefinition } from './types.js';

export interface SyslogSinkConfig extends RemoteSinkConfig {
  type: 'syslog';
  /** Default tls. */
  protocol?: 'tls' | 'tcp' | 'udp';
  host: string;
  /** Default 6514 for tls, 514 otherwise. */
  port?: number;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  serverName?: string;
  /** Default 13 (log audit). */
  facility?: number;
  /** Default egressguard. */
  appName?: string;
}

export const SYSLOG_TLS_PORT = 6514;
export const SYSLOG_PORT = 514;
const DEFAULT_FACILITY = 13;

export const syslogSink: SinkDefinition<SyslogSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'host'],
    properties: {
      type: { const: 'syslog' },
      protocol: { enum: ['tls', 'tcp', 'udp'] },
      host: { type: 'string', pattern: '^[^\\s/]+$' },
      port: { type: 'integer', minimum: 1, maximum: 65535 },
      caFile: { type: 'string', pattern: '^/' },
      certFile: { type: 'string', pattern: '^/' },
      keyFile: { type: 'string', pattern: '^/' },
      serverName: { type: 'string', pattern: '\\S' },
      facility: { type: 'integer', minimum: 0, maximum: 23 },
      appName: { type: 'string', pattern: '^[\\x21-\\x7e]{1,48}$' },
      ...REMOTE_SINK_PROPERTIES,
    },
    // A client certificate needs its key, and the TLS settings only make sense over TLS.
    dependencies: { certFile: ['keyFile'], keyFile: ['certFile'] },
    if: { required: ['protocol'], properties: { protocol: { enum: ['tcp', 'udp'] } } },
    then: { not: { anyOf: [{ required: ['caFile'] }, { required: ['certFile'] }, { required: ['serverName'] }] } },
  },
  destination: (config) => `${config.protocol ?? 'tls'}://${config.host}:${portOf(config)}`,
  create(config) {
    const protocol = config.protocol ?? 'tls';
    const format = syslogMessages(createFormat(config.format ?? 'json', PRODUCT), {
      facility: config.facility ?? DEFAULT_FACILITY,
      appName: config.appName ?? 'egressguard',
      procId: String(process.pid),
    });
    const port = portOf(config);
    const transport =
      protocol === 'udp'
        ? new SyslogUdpTransport(config.host, port, isIP(config.host) === 6 ? 6 : 4)
        : new SyslogStreamTransport({
            host: config.host,
            port,
            ...(protocol === 'tls'
              ? {
                  tls: {
                    ...(config.caFile ? { ca: readConfigFile('caFile', config.caFile) } : {}),
                    ...(config.certFile && config.keyFile
                      ? { cert: readConfigFile('certFile', config.certFile), key: readConfigFile('keyFile', config.keyFile) }
                      : {}),
                    ...(config.serverName ? { servername: config.serverName } : {}),
                  },
                }
              : {}),
          });
    return { format, transport, ...(config.spool ? { spool: config.spool } : {}) };
  },
};

function portOf(config: SyslogSinkConfig): number {
  return config.port ?? ((config.protocol ?? 'tls') === 'tls' ? SYSLOG_TLS_PORT : SYSLOG_PORT);
}
