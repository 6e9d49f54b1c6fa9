// Sink type `file`: records, one per line, appended to a file that is rotated by size and count.
import { createFormat } from './formats/index.js';
import { COMMON_SINK_PROPERTIES, type CommonSinkConfig } from './options.js';
import { PRODUCT } from './product.js';
import { FileTransport } from './transports/file.js';
import type { SinkDefinition } from './types.js';

export interface FileSinkConfig extends CommonSinkConfig {
  type: 'file';
  path: string;
  /** Rotate before the file would exceed this (default 100 MiB). */
  maxBytes?: number;
  /** Rotated files kept besides the current one (default 5). */
  maxFiles?: number;
}

export const FILE_SINK_DEFAULTS = { maxBytes: 100 * 1024 * 1024, maxFiles: 5 };

export const fileSink: SinkDefinition<FileSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'path'],
    properties: {
      type: { const: 'file' },
      path: { type: 'string', pattern: '^/' },
      maxBytes: { type: 'integer', minimum: 4096 },
      maxFiles: { type: 'integer', minimum: 1, maximum: 1000 },
      ...COMMON_SINK_PROPERTIES,
    },
  },
  destination: (config) => config.path,
  create: (config) => ({
    // A local file takes large writes cheaply: fewer, larger batches (the queue bound is unchanged).
    delivery: { maxBatch: 2000 },
    format: createFormat(config.format ?? 'json', PRODUCT),
    transport: new FileTransport(config.path, {
      maxBytes: config.maxBytes ?? FILE_SINK_DEFAULTS.maxBytes,
      maxFiles: config.maxFiles ?? FILE_SINK_DEFAULTS.maxFiles,
    }),
  }),
};
