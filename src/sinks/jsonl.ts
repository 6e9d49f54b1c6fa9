// Sink type `jsonl`: JSON lines appended to a file, or written to standard output with `path: "-"`.
import { jsonLinesFormat } from './formats/jsonl.js';
import { FileTransport } from './transports/file.js';
import type { SinkDefinition } from './types.js';

export interface JsonlSinkConfig {
  type: 'jsonl';
  /** File path, or `-` for standard output. */
  path: string;
}

export const jsonlSink: SinkDefinition<JsonlSinkConfig> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'path'],
    properties: {
      type: { const: 'jsonl' },
      // Not blank: a file path, or "-" for standard output.
      path: { type: 'string', pattern: '\\S' },
    },
  },
  destination: (config) => (config.path === '-' ? 'standard output' : config.path),
  create: (config) => ({ format: jsonLinesFormat, transport: new FileTransport(config.path) }),
};
