// Sink type `stdout`: records, one per line, on the agent's standard output (a container log collector's input).
import { createFormat } from './formats/index.js';
import type { CommonSinkConfig } from './options.js';
import { COMMON_SINK_PROPERTIES } from './options.js';
import { PRODUCT } from './product.js';
import { FileTransport, STDOUT_PATH } from './transports/file.js';
import type { SinkDefinition } from './types.js';

export interface StdoutSinkConfig extends CommonSinkConfig {
  type: 'stdout';
}

export const stdoutSink: SinkDefinition<StdoutSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: { type: { const: 'stdout' }, ...COMMON_SINK_PROPERTIES },
  },
  destination: () => 'standard output',
  create: (config) => ({ format: createFormat(config.format ?? 'json', PRODUCT), transport: new FileTransport(STDOUT_PATH) }),
};
